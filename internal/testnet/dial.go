package testnet

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"syscall"
)

// LoopbackOnly is a net.Dialer Control that counts each dial in dials and
// refuses any non-loopback address, so a test can never send a packet
// off the machine even if the dial guard under test were broken.
func LoopbackOnly(dials *atomic.Int32) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		dials.Add(1)
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !ap.Addr().Unmap().IsLoopback() {
			return errors.New("test dialer: refusing non-loopback " + address)
		}
		return nil
	}
}
