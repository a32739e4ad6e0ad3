package netx

import (
	"errors"
	"io"
	"net"
	"testing"
)

// halfCloser is a connection that records a CloseWrite.
type halfCloser struct {
	net.Conn
	closedWrite bool
}

func (c *halfCloser) CloseWrite() error {
	c.closedWrite = true
	return nil
}

// A PrefixConn reads its read-ahead bytes first, hides the connection
// beneath from the tunnel relay until they are read, and passes a
// half-close through.
func TestPrefixConn(t *testing.T) {
	near, far := net.Pipe()
	t.Cleanup(func() { near.Close(); far.Close() })
	go func() {
		far.Write([]byte("rest"))
		far.Close()
	}()
	hc := &halfCloser{Conn: near}
	c := Prefixed(hc, []byte("head"))
	if got := c.NetConn(); got != nil {
		t.Errorf("NetConn() with bytes pending = %v, want nil", got)
	}
	buf := make([]byte, 3)
	if n, err := c.Read(buf); n != 3 || err != nil || string(buf[:n]) != "hea" {
		t.Errorf("Read = %d, %v (%q), want 3, nil (\"hea\")", n, err, buf[:n])
	}
	if got := c.NetConn(); got != nil {
		t.Errorf("NetConn() with a byte pending = %v, want nil", got)
	}
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "drest" {
		t.Errorf("ReadAll = %q, %v, want \"drest\", nil", rest, err)
	}
	if got := c.NetConn(); got != net.Conn(hc) {
		t.Errorf("NetConn() once read = %v, want the connection beneath", got)
	}
	if err := c.CloseWrite(); err != nil || !hc.closedWrite {
		t.Errorf("CloseWrite() = %v (passed on %v), want nil (true)", err, hc.closedWrite)
	}
	// A connection beneath that cannot half-close: nothing to do.
	if err := Prefixed(near, nil).CloseWrite(); err != nil {
		t.Errorf("CloseWrite() over a net.Pipe = %v, want nil", err)
	}
}

// Accept yields what Push gives it; after Close, Accept fails with
// net.ErrClosed and Push closes what it is given.
func TestListener(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	l := NewListener(addr)
	if l.Addr() != net.Addr(addr) {
		t.Errorf("Addr() = %v, want %v", l.Addr(), addr)
	}
	near, far := net.Pipe()
	t.Cleanup(func() { near.Close(); far.Close() })
	go l.Push(near)
	if c, err := l.Accept(); c != near || err != nil {
		t.Fatalf("Accept() = %v, %v, want the pushed conn, nil", c, err)
	}
	l.Close()
	l.Close() // a second Close is harmless
	if c, err := l.Accept(); c != nil || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept() after Close = %v, %v, want nil, net.ErrClosed", c, err)
	}
	late, lateFar := net.Pipe()
	t.Cleanup(func() { lateFar.Close() })
	l.Push(late)
	if _, err := late.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Write on a conn pushed after Close = %v, want io.ErrClosedPipe (closed)", err)
	}
}
