package testnet

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestServeEchoesAndCleansUp(t *testing.T) {
	var done = make(chan struct{})
	t.Run("serve", func(t *testing.T) {
		addr := Serve(t, func(c net.Conn) {
			io.Copy(c, c) // returns once the cleanup closes c
		})
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "ping")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo = %q, %v; want ping", buf, err)
		}
		close(done)
	})
	<-done
	// The subtest's cleanup closed the connection its client still holds
	// open, so the serve call returned and Serve's wait ended.
}

// Nothing listens on ClosedAddr: a dial there is refused.
func TestClosedAddr(t *testing.T) {
	addr := ClosedAddr(t)
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.Close()
		t.Errorf("dial %s succeeded, want it refused", addr)
	}
}
