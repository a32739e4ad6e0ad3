package testnet

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// LoopbackOnly lets a loopback dial through and refuses any other before
// a packet leaves; both are counted.
func TestLoopbackOnly(t *testing.T) {
	addr := Serve(t, func(c net.Conn) { c.Close() })
	var dials atomic.Int32
	d := &net.Dialer{Timeout: 2 * time.Second, Control: LoopbackOnly(&dials)}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("Dial(%s) = %v, want nil", addr, err)
	}
	c.Close()
	if _, err := d.Dial("tcp", "192.0.2.1:80"); err == nil || !strings.Contains(err.Error(), "refusing non-loopback") {
		t.Errorf("Dial(192.0.2.1:80) = %v, want a refusal", err)
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("dials counted = %d, want 2", n)
	}
}
