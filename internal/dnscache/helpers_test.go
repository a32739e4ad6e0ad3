package dnscache_test

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// loopbackOnly is a dialer Control that refuses any non-loopback address,
// so a test can never send a packet off the machine even if the guard
// were broken.
func loopbackOnly(dials *atomic.Int32) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		dials.Add(1)
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !ap.Addr().Unmap().IsLoopback() {
			return errors.New("test dialer: refusing non-loopback " + address)
		}
		return nil
	}
}

// waitUntil polls cond until it holds, failing t after a hang guard of
// 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
