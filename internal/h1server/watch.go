package h1server

import (
	"syscall"
	"time"

	"github.com/warmproxy/warmproxy/internal/upstream"
)

// The client watch. While an exchange waits for the origin's answer
// nothing reads the client, so a client that leaves would be noticed only
// at the first write. An origin that keeps a request waiting longer than
// watchAfter gets a watch on the client connection, on a goroutine of its
// own: a client that closes or resets ends the wait at once (the origin
// connection is closed, so the upstream request is cancelled, as
// net/http's background read did) and the exchange is recorded 499. The
// timer is the connection's, made once; a fast answer costs a lock, a
// Reset and a Stop.

// watchAfter is how long an answer may take before the client is watched.
const watchAfter = 100 * time.Millisecond

// watchClient arms the watch for the wait for pc's answer.
func (cc *clientConn) watchClient(pc *upstream.PConn) {
	if cc.raw == nil {
		return
	}
	if cc.watchTimer == nil {
		cc.watchAck = make(chan struct{}, 1)
		cc.watchTimer = time.AfterFunc(time.Hour, cc.watch)
		cc.watchTimer.Stop()
	}
	cc.watchMu.Lock()
	cc.watchPC, cc.watchStop, cc.gone = pc, false, false
	cc.watchMu.Unlock()
	cc.watchTimer.Reset(watchAfter)
}

// unwatch ends the watch and waits for it; it reports whether the client
// left.
func (cc *clientConn) unwatch() (gone bool) {
	if cc.watchTimer == nil {
		return false
	}
	if cc.watchTimer.Stop() {
		// The watch never ran and now never will: nothing else touches
		// the fields, and gone is the false watchClient set.
		cc.watchPC = nil
		return false
	}
	cc.watchMu.Lock()
	cc.watchStop = true
	if cc.watching {
		cc.c.SetReadDeadline(time.Now())
	}
	cc.watchMu.Unlock()
	<-cc.watchAck
	cc.watchMu.Lock()
	defer cc.watchMu.Unlock()
	cc.watchPC = nil
	return cc.gone
}

// watch runs when the timer fires: it waits until the client's socket is
// readable and peeks; an end of stream or an error means the client left.
// Bytes (a pipelined request) end the watch: the client is there.
func (cc *clientConn) watch() {
	defer func() { cc.watchAck <- struct{}{} }()
	cc.watchMu.Lock()
	if cc.watchStop {
		cc.watchMu.Unlock()
		return
	}
	cc.watching = true
	pc := cc.watchPC
	// No client deadline while watching: -response-header-timeout bounds
	// the wait, and the exchange's next read of the client sets its own.
	cc.c.SetReadDeadline(time.Time{})
	cc.watchMu.Unlock()
	var gone bool
	err := cc.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK {
			return false
		}
		gone = err != nil || n == 0
		return true
	})
	cc.watchMu.Lock()
	cc.watching = false
	stopped := cc.watchStop
	if err == nil && gone && !stopped {
		cc.gone = true
		pc.Conn.Close()
	}
	cc.watchMu.Unlock()
}
