// Package tunnel relays bytes both ways between two connections, for
// CONNECT tunnels and 101 upgrades. It knows nothing of HTTP.
package tunnel

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// How a tunnel ended, as Result.End reports it.
const (
	// EndEOF: both sides finished their direction (FIN both ways).
	EndEOF = "eof"
	// EndIdle: no byte moved either way for the idle timeout, or a side
	// stopped reading for that long while the other had bytes for it.
	EndIdle = "idle"
	// EndClosed: a connection was closed from outside, e.g. at shutdown.
	EndClosed = "closed"
	// EndReset: a side reset its connection (RST, or a write into a
	// closed one).
	EndReset = "reset"
	// EndError: any other failure.
	EndError = "error"
)

// Options tune one relay.
type Options struct {
	// Idle ends the tunnel when no byte moved either way for this long.
	// Zero or less means no idle timeout.
	Idle time.Duration
	// ToOrigin holds bytes already read from the client (pipelined after
	// a CONNECT head or an upgrade request); they reach the origin first.
	ToOrigin []byte
	// ToClient holds bytes already read from the origin (after its 101
	// head); they reach the client first.
	ToClient []byte
}

// Result says how a relay went.
type Result struct {
	// Up counts bytes from the client to the origin, Down the other way.
	Up, Down int64
	// End is one of the End* values.
	End string
	// Err is the error that ended the tunnel; nil for EndEOF.
	Err error
}

// Relay copies client→origin and origin→client until both directions are
// done, then closes both connections; it owns them from the call on. A
// FIN from one side becomes a CloseWrite on the other, so data still
// flowing the other way is delivered. An error on either side, or closing
// either connection from another goroutine (shutdown), ends both
// directions.
//
// Between two *net.TCPConn the bytes move with splice(2) and never enter
// user space. A connection that wraps another may expose it with a
// NetConn() net.Conn or Unwrap() net.Conn method: the relay then reads and
// writes the inner one (so splice still applies) and closes the outer one.
// Such a wrapper must be transparent, holding no bytes of its own; a
// *tls.Conn is never unwrapped.
func Relay(client, origin net.Conn, o Options) Result {
	r := &relay{client: client, origin: origin, idle: o.Idle}
	r.last.Store(time.Now().UnixNano())
	cio, oio := inner(client), inner(origin)
	splice := isTCP(cio) && isTCP(oio)
	// A hijacked conn may carry the HTTP server's deadlines; from here on
	// only the relay's own apply.
	cio.SetDeadline(time.Time{})
	oio.SetDeadline(time.Time{})

	down := make(chan half, 1)
	go r.copyDown(cio, oio, o.ToClient, splice, down)
	up := r.copyUp(oio, cio, o.ToOrigin, splice)
	dn := <-down
	client.Close()
	origin.Close()

	res := Result{Up: up.n, Down: dn.n, End: EndEOF}
	if r.stopped.Load() {
		res.End, res.Err = r.cause.end, r.cause.err
	}
	return res
}

// relay is the state both copy directions share.
type relay struct {
	client, origin net.Conn // as given: these are closed
	idle           time.Duration
	// last is when a byte last moved either way, in Unix nanoseconds.
	last atomic.Int64
	// stopped is set by the first direction that ends the tunnel; cause,
	// written before it, says why.
	stopped atomic.Bool
	cause   half
	// eofClosed is set when a direction passed its EOF on by closing a
	// connection that cannot half-close; the other direction then ends
	// with net.ErrClosed, which is no failure.
	eofClosed atomic.Bool
}

// half is the outcome of one direction.
type half struct {
	n   int64
	end string
	err error
}

// copyUp is the client→origin direction.
func (r *relay) copyUp(origin, client net.Conn, pending []byte, splice bool) half {
	return r.pipe(origin, client, pending, splice)
}

// copyDown is the origin→client direction.
func (r *relay) copyDown(client, origin net.Conn, pending []byte, splice bool, done chan<- half) {
	done <- r.pipe(client, origin, pending, splice)
}

// chunk bounds the bytes one io.Copy call moves, so that the shared
// activity clock advances while a long transfer runs, and so that a
// write, once its bytes are read, has at most this much to deliver.
const chunk = 128 << 10

// pipe copies src to dst until src's EOF, then half-closes dst.
//
// Idle detection uses deadlines, which splice honours. Every pass sets
// src's read deadline to half the idle time ahead and dst's write deadline
// a full idle time after that. A read deadline firing loses nothing (no
// byte has been read), so the copy goes on unless neither direction moved
// a byte for the idle time. A write deadline firing means the peer took
// none of the bytes already read for the idle time; those bytes are lost,
// so the tunnel ends as idle. The two are told apart by the clock: before
// the write deadline, only the read one can have fired.
func (r *relay) pipe(dst, src net.Conn, pending []byte, splice bool) half {
	var total int64
	if len(pending) > 0 {
		if r.idle > 0 {
			dst.SetWriteDeadline(time.Now().Add(r.idle))
		}
		n, err := dst.Write(pending)
		total += int64(n)
		if err != nil {
			return r.stop(total, err, errors.Is(err, os.ErrDeadlineExceeded))
		}
		r.last.Store(time.Now().UnixNano())
	}

	var buf []byte
	var w io.Writer = dst
	if !splice {
		// No splice: copy through one buffer for the tunnel's life, and
		// hide dst's ReadFrom, which would allocate one per call.
		buf = make([]byte, 32<<10)
		w = writerOnly{dst}
	}
	lr := &io.LimitedReader{R: src}
	period := r.idle / 2
	for {
		var wd time.Time
		if r.idle > 0 {
			now := time.Now()
			wd = now.Add(period + r.idle)
			src.SetReadDeadline(now.Add(period))
			dst.SetWriteDeadline(wd)
		}
		lr.N = chunk
		n, err := io.CopyBuffer(w, lr, buf)
		total += n
		if n > 0 {
			r.last.Store(time.Now().UnixNano())
		}
		switch {
		case err == nil && lr.N > 0:
			// EOF from src: pass the FIN on.
			r.closeWrite(dst)
			return half{n: total, end: EndEOF}
		case err == nil:
			continue
		case r.idle > 0 && errors.Is(err, os.ErrDeadlineExceeded):
			now := time.Now()
			if now.Before(wd) && now.Sub(time.Unix(0, r.last.Load())) < r.idle {
				continue
			}
			return r.stop(total, err, true)
		case r.eofClosed.Load() && errors.Is(err, net.ErrClosed):
			return half{n: total, end: EndEOF}
		default:
			return r.stop(total, err, false)
		}
	}
}

// stop ends the tunnel because of err, unless another direction already
// did: the first cause is the one reported. Closing both connections
// unblocks the other direction.
func (r *relay) stop(n int64, err error, idle bool) half {
	h := half{n: n, err: err, end: classify(err, idle)}
	if r.stopped.CompareAndSwap(false, true) {
		r.cause = h
		r.client.Close()
		r.origin.Close()
	}
	return h
}

func classify(err error, idle bool) string {
	switch {
	case idle:
		return EndIdle
	case errors.Is(err, net.ErrClosed):
		// The relay had not closed anything yet (see stop), so someone
		// else did.
		return EndClosed
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return EndReset
	default:
		return EndError
	}
}

// closeWrite half-closes c, or closes it when it cannot half-close (the
// other direction then ends too).
func (r *relay) closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	r.eofClosed.Store(true)
	c.Close()
}

// maxUnwrap bounds how many wrappers inner looks through.
const maxUnwrap = 8

// inner returns the connection c wraps, if c says so (see Relay), else c.
func inner(c net.Conn) net.Conn {
	for range maxUnwrap {
		if _, ok := c.(*tls.Conn); ok {
			return c
		}
		var next net.Conn
		switch w := c.(type) {
		case interface{ NetConn() net.Conn }:
			next = w.NetConn()
		case interface{ Unwrap() net.Conn }:
			next = w.Unwrap()
		}
		if next == nil {
			return c
		}
		c = next
	}
	return c
}

func isTCP(c net.Conn) bool {
	_, ok := c.(*net.TCPConn)
	return ok
}

// writerOnly hides every method of a writer but Write.
type writerOnly struct{ io.Writer }
