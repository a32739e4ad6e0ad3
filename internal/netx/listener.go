package netx

import (
	"net"
	"sync"
)

// Listener is the listener of an http.Server that serves connections
// accepted elsewhere (handed over by a connection server): Accept yields
// what Push gives it and blocks until then, or until Close.
type Listener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewListener returns a Listener whose Addr is addr.
func NewListener(addr net.Addr) *Listener {
	return &Listener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Push hands c to Accept and blocks until it is taken; after Close it
// closes c instead.
func (l *Listener) Push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close ends every Accept and Push waiting now or later; it may be called
// more than once.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *Listener) Addr() net.Addr { return l.addr }
