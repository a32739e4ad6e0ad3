package h1server

import (
	"errors"
	"net"
	"time"

	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/upstream"
	"github.com/warmproxy/warmproxy/internal/wire"
)

// Request bodies. One of up to -retry-body-bytes with a Content-Length is
// read whole first and goes out with the head in one write, so a stale
// pooled connection's request can be sent again (today's rule). Any
// other (larger, or chunked) is sent on as it arrives, through the client
// buffer, after the head and what came with it: a Content-Length one by
// count, a chunked one validated by a ChunkedScanner and relayed
// byte-exact, its trailer section without the fields not allowed there.
// Each read of the client waits at most -client-body-timeout.

// firstBody prepares the body of the request whose head is hl bytes: it
// reads a small one whole and appends it to x.out, or starts streaming,
// appending what the buffer holds of the body. end is where the request
// ends in the buffer: what follows is a pipelined request's. A streamed
// body passes through the buffer after the head (x.base on), which stays
// in place: the exchange reads it to the end.
func (cc *clientConn) firstBody(hl int) (end int, perr *proxy.Error) {
	x := cc.x
	r := &x.req
	x.stream, x.sent, x.done, x.rest, x.bodyLen, x.base = false, 0, true, 0, 0, hl
	buf := *cc.buf
	switch r.Framing {
	case wire.BodyLength:
		cl := r.ContentLength
		if cl <= cc.s.h.RetryBodyBytes() && hl+int(cl) <= len(buf) {
			for cc.n < hl+int(cl) {
				if perr := cc.readClient(buf[cc.n:]); perr != nil {
					return 0, perr
				}
			}
			x.out = append(x.out, buf[hl:hl+int(cl)]...)
			x.bodyLen, x.sent = int(cl), cl
			return hl + int(cl), nil
		}
		// Not held for a replay: sent on as it comes, even when it is
		// all here already.
		have := min(int64(cc.n-hl), cl)
		x.out = append(x.out, buf[hl:hl+int(have)]...)
		x.stream, x.sent, x.rest = true, have, cl-have
		if x.done = x.rest == 0; x.done {
			return hl + int(cl), nil
		}
		cc.n = hl
		return hl, nil
	case wire.BodyChunked:
		x.rcs.Reset()
		x.stream, x.done = true, false
		var err error
		if x.out, err = cc.scanChunked(x.out, buf[hl:cc.n]); err != nil {
			return 0, cc.badBody(err)
		}
		if x.done {
			// The whole body came with the head: nothing to stream.
			x.stream = false
			return hl, nil
		}
		cc.n = hl
		return hl, nil
	}
	return hl, nil
}

// streamBody sends the rest of a streamed body to pc, on a goroutine of
// its own (see streamed). A failure of the client is an answer to send
// (perr); one of the origin is err. Once the body ended, the wait for the
// response head starts (-response-header-timeout counts from the
// request's end, as in net/http's transport).
func (cc *clientConn) streamBody(pc *upstream.PConn) (perr *proxy.Error, err error) {
	x := cc.x
	buf := *cc.buf
	defer func() {
		if x.done {
			x.bodyEOF.Store(true)
			x.bodyMu.Lock()
			if !x.headDone {
				pc.Conn.SetReadDeadline(time.Now().Add(cc.s.o.ResponseHeaderTimeout))
			}
			x.bodyMu.Unlock()
		}
	}()
	base := x.base
	for !x.done {
		cc.n = base
		if x.req.Framing == wire.BodyLength {
			if perr := cc.readClient(buf[base : base+int(min(int64(len(buf)-base), x.rest))]); perr != nil {
				return perr, nil
			}
			n := cc.n - base
			cc.n = base
			x.rest -= int64(n)
			x.sent += int64(n)
			x.done = x.rest == 0
			if _, err := pc.Conn.Write(buf[base : base+n]); err != nil {
				return nil, err
			}
			continue
		}
		if perr := cc.readClient(buf[base:]); perr != nil {
			return perr, nil
		}
		out, serr := cc.scanChunked(x.bodyOut[:0], buf[base:cc.n])
		x.bodyOut = out[:0]
		if serr != nil {
			return cc.badBody(serr), nil
		}
		if _, err := pc.Conn.Write(out); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// scanChunked appends to out what of p (client buffer bytes from x.base
// on) is chunk framing and data and, once the body ends, its trailer
// section; it leaves what follows the body (a pipelined request) at
// x.base, cc.n its end.
func (cc *clientConn) scanChunked(out, p []byte) (_ []byte, err error) {
	x := cc.x
	cs := &x.rcs
	n, err := cs.Scan(p)
	out = append(out, p[:n]...)
	p = p[n:]
	if err == nil && cs.InTrailer() {
		var m int
		m, err = cs.ScanTrailer(p)
		p = p[m:]
	}
	if err != nil {
		return out, err
	}
	if cs.Done() {
		raw, fields := cs.Trailer()
		if dropped := countDropped(raw, fields); dropped > 0 {
			cc.s.h.TrailersDropped(proxy.TrailerRequest, dropped)
		}
		out = cs.AppendTrailer(out, wire.AllowedInTrailer)
		x.done = true
		cc.n = x.base + copy((*cc.buf)[x.base:], p)
	}
	x.sent = cs.DataBytes()
	return out, nil
}

// countDropped counts the trailer fields not allowed in trailers.
func countDropped(raw []byte, fields []wire.Field) int {
	n := 0
	for _, f := range fields {
		if !wire.AllowedInTrailer(f.Name.In(raw)) {
			n++
		}
	}
	return n
}

// readClient reads the client's next bytes into p, advancing cc.n, within
// -client-body-timeout.
func (cc *clientConn) readClient(p []byte) *proxy.Error {
	x := cc.x
	x.bodyMu.Lock()
	if x.canceled {
		x.bodyMu.Unlock()
		return errCanceled
	}
	cc.c.SetReadDeadline(time.Now().Add(cc.s.o.BodyTimeout))
	x.bodyMu.Unlock()
	m, err := cc.c.Read(p)
	cc.n += m
	if err == nil || m > 0 {
		return nil
	}
	x.bodyMu.Lock()
	canceled := x.canceled
	x.bodyMu.Unlock()
	if canceled {
		return errCanceled
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return proxy.BodyStalled(cc.target, cc.s.o.BodyTimeout)
	}
	return proxy.ClientGone(err)
}

// errCanceled ends a streamed body the exchange no longer needs; it is
// never answered nor recorded.
var errCanceled = proxy.ClientGone(errors.New("request body no longer needed"))

// streamed serves the rest of an exchange whose head went out and whose
// body is streamed: the body goes to the origin on a goroutine of its own
// while this one reads and relays the response, so an origin that
// answers before the body ended (a 413, or a response streamed while the
// upload goes on) is heard at once, as with net/http's full-duplex path.
// A body that fails (it stalls, the client goes away, its chunks are bad)
// ends the exchange: with its answer while no response head was read,
// else by cutting the client connection.
func (cc *clientConn) streamed(pc *upstream.PConn) (keep bool) {
	x := cc.x
	e := &x.entry
	var (
		perr  *proxy.Error
		upErr error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		perr, upErr = cc.streamBody(pc)
		if perr != nil {
			pc.Conn.Close() // wakes the response read
		}
	}()
	_, err := cc.readFinalHead(pc)
	if err != nil {
		cc.stopBody(pc, done)
		cc.linger = !x.done
		e.BytesIn = x.sent
		pc.Release(false)
		if perr != nil && perr != errCanceled {
			cc.end(perr, true)
			return false
		}
		if upErr != nil {
			err = upErr
		}
		pc.Fail(err)
		cc.end(proxy.ErrorFor(cc.target, err), true)
		return false
	}
	keep = cc.relay(pc)
	if !x.bodyEOF.Load() || !keep {
		cc.stopBody(pc, done)
	}
	<-done
	e.BytesIn = x.sent
	r := x.relayed
	bodyOK := perr == nil && upErr == nil && x.done
	cc.linger = !x.done
	pc.Release(r.reusable && bodyOK)
	cut := relayed(e, r.n, r.err)
	switch {
	case perr == nil || perr == errCanceled:
	case errors.Is(perr, proxy.ErrBodyStalled):
		cut = proxy.StalledMidResponse(cc.s.o.BodyTimeout)
	default:
		cut = proxy.AfterHead(perr)
	}
	cc.end(cut, false)
	return keep && bodyOK
}

// stopBody ends the body goroutine and waits for it: its read of the
// client wakes with a deadline in the past, its write to the origin with
// the origin connection closed (it is not reused).
func (cc *clientConn) stopBody(pc *upstream.PConn, done chan struct{}) {
	x := cc.x
	x.bodyMu.Lock()
	x.canceled = true
	cc.c.SetReadDeadline(time.Now())
	x.bodyMu.Unlock()
	pc.Conn.Close()
	<-done
}

// badBody is the 400 for a chunked body that breaks the framing.
func (cc *clientConn) badBody(err error) *proxy.Error { return proxy.BadBody(cc.target, err) }

// consume drops the request's n bytes from cc's buffer, keeping what a
// pipelining client sent after them.
func (cc *clientConn) consume(n int) {
	buf := *cc.buf
	cc.n = copy(buf, buf[n:cc.n])
}
