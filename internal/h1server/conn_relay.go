package h1server

import (
	"errors"
	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"io"
	"strconv"
	"syscall"

	"github.com/warmproxy/warmproxy/internal/upstream"
	"github.com/warmproxy/warmproxy/internal/wire"
)

// relay sends the final response, whose head readFinalHead left in the
// upstream buffer, to the client, releases pc, and records the exchange.
// It reports whether the client connection may carry another request: a
// body that failed midway leaves it to be closed, so the client sees a
// truncated message, never a complete short one.
//
// A response that is all in hand (the head and a body that came with it)
// goes out in one write, after pc went back to the pool and the exchange
// was recorded: a client that sends its next request the moment it has
// the answer finds the connection idle and the metrics counted, as when
// net/http's server flushed its buffer after the handler returned.
func (cc *clientConn) relay(pc *upstream.PConn) (keep bool) {
	x := cc.x
	rh := &x.resp
	x.entry.Status = rh.Status
	if v, ok := rh.Get("Keep-Alive"); ok {
		pc.NoteKeepAlive([]string{string(v)})
	}
	have := (*x.up)[x.upHead:x.upN]
	// A response that came with both Content-Length and chunked framing
	// is read as chunked, and its connection is not used again (RFC 9112
	// section 6.1), as one that asked to close.
	closing := rh.Close || rh.CLAndTE
	// A body still on its way is not read to its end for sure: the
	// connection closes after this answer.
	x.out = cc.appendResponseHead(x.out[:0], rh, x.req.Close || cc.s.closing.Load() || x.stream && !x.bodyEOF.Load())
	var (
		n        int64
		reusable bool
		err      error
	)
	switch cl := rh.ContentLength; {
	case rh.Framing == wire.BodyNone, rh.Framing == wire.BodyLength && int64(len(have)) >= cl:
		if rh.Framing == wire.BodyLength {
			x.out = append(x.out, have[:cl]...)
			n, have = cl, have[cl:]
		}
		cc.finish(pc, len(have) == 0 && !closing, n, nil)
		_, err = cc.write(x.out)
		return err == nil
	case rh.Framing == wire.BodyLength:
		n, reusable, err = cc.relayLength(pc, have, cl)
	case rh.Framing == wire.BodyChunked:
		n, reusable, err = cc.relayChunked(pc, have)
	default:
		n, err = cc.relayClose(pc, have)
	}
	cc.finish(pc, reusable && err == nil && !closing, n, err)
	return err == nil
}

// finish releases pc and records the exchange, n body bytes sent, err the
// failure that cut the body. With a streamed request body both wait for
// its end (streamed).
func (cc *clientConn) finish(pc *upstream.PConn, reusable bool, n int64, err error) {
	if cc.x.stream {
		cc.x.relayed = relayResult{reusable: reusable, n: n, err: err}
		return
	}
	pc.Release(reusable)
	cc.end(relayed(&cc.x.entry, n, err), false)
}

// relayed sets in e the n body bytes a relay sent, and returns what the
// failure err that cut it, if any, ends the exchange with.
func relayed(e *accesslog.Entry, n int64, err error) error {
	e.BytesOut = n
	if err != nil {
		return proxy.MidBody(err)
	}
	return nil
}

// write writes p to the client; a failure is marked as the client's
// (proxy.WrapClientWrite).
func (cc *clientConn) write(p []byte) (int, error) {
	n, err := cc.c.Write(p)
	if err != nil {
		return n, proxy.WrapClientWrite(err)
	}
	return n, nil
}

// relayLength relays a body of cl bytes, of which have (less than all)
// came with the head: spliced between two plain TCP sockets
// (TCPConn.ReadFrom), else copied through the upstream buffer.
func (cc *clientConn) relayLength(pc *upstream.PConn, have []byte, cl int64) (sent int64, reusable bool, err error) {
	x := cc.x
	x.out = append(x.out, have...)
	if _, err = cc.write(x.out); err != nil {
		return 0, false, err
	}
	sent = int64(len(have))
	rest := cl - sent
	if cc.tcp != nil && pc.TCP != nil {
		x.lr = io.LimitedReader{R: pc.TCP, N: rest}
		m, err := cc.tcp.ReadFrom(&x.lr)
		sent += m
		switch {
		case err != nil && errors.Is(err, syscall.EPIPE):
			return sent, false, proxy.WrapClientWrite(err)
		case err != nil:
			return sent, false, err
		case x.lr.N > 0:
			return sent, false, io.ErrUnexpectedEOF
		}
		return sent, true, nil
	}
	buf := x.bigBuf()
	for rest > 0 {
		m, rerr := pc.Conn.Read(buf[:min(int64(len(buf)), rest)])
		if m > 0 {
			if _, err := cc.write(buf[:m]); err != nil {
				return sent, false, err
			}
			sent += int64(m)
			rest -= int64(m)
		}
		if rerr != nil && rest > 0 {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return sent, false, rerr
		}
	}
	return sent, true, nil
}

// relayChunked relays a chunked body as it arrives, validated by the
// chunked scanner, without re-encoding: framing and data go through
// byte-exact, in reads of the upstream buffer's size; the trailer section
// is held back and sent without the fields not allowed in trailers.
func (cc *clientConn) relayChunked(pc *upstream.PConn, have []byte) (data int64, reusable bool, err error) {
	x := cc.x
	cs := &x.cs
	cs.Reset()
	out := x.out
	p := have
	var buf []byte
	for {
		n, serr := cs.Scan(p)
		if len(out) == 0 && serr == nil && !cs.InTrailer() {
			// The common case: chunk framing and data, straight through.
			if _, err := cc.write(p[:n]); err != nil {
				return cs.DataBytes(), false, err
			}
		} else {
			out = append(out, p[:n]...)
		}
		p = p[n:]
		if serr == nil && cs.InTrailer() {
			var m int
			m, serr = cs.ScanTrailer(p)
			p = p[m:]
		}
		if serr == nil && cs.Done() {
			out = cc.appendTrailer(out)
		}
		if len(out) > 0 {
			if _, err := cc.write(out); err != nil {
				return cs.DataBytes(), false, err
			}
			out = x.out[:0]
		}
		switch {
		case serr != nil:
			return cs.DataBytes(), false, serr
		case cs.Done():
			return cs.DataBytes(), len(p) == 0, nil
		}
		if rem := cs.Remaining(); rem >= spliceMin && cc.tcp != nil && pc.TCP != nil {
			// A long run of chunk data: spliced, socket to socket.
			x.lr = io.LimitedReader{R: pc.TCP, N: int64(rem)}
			m, err := cc.tcp.ReadFrom(&x.lr)
			cs.Skip(uint64(m))
			if err != nil || x.lr.N > 0 {
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				return cs.DataBytes(), false, err
			}
			continue
		}
		if buf == nil {
			buf = x.bigBuf()
		}
		m, rerr := pc.Conn.Read(buf)
		p = buf[:m]
		if rerr != nil && m == 0 {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return cs.DataBytes(), false, rerr
		}
	}
}

// spliceMin is the least run of chunk data worth a splice: below it, the
// pipe's two system calls cost more than the copy they save.
const spliceMin = 32 << 10

// appendTrailer appends the trailer section, less the fields not allowed
// there (counted).
func (cc *clientConn) appendTrailer(dst []byte) []byte {
	raw, fields := cc.x.cs.Trailer()
	dropped := 0
	for _, f := range fields {
		if !wire.AllowedInTrailer(f.Name.In(raw)) {
			dropped++
		}
	}
	if dropped > 0 {
		cc.s.h.TrailersDropped(proxy.TrailerResponse, dropped)
	}
	return cc.x.cs.AppendTrailer(dst, wire.AllowedInTrailer)
}

// relayClose relays a body that ends when the origin closes, chunked to
// the client (an HTTP/1.1 client), as net/http's server sends a body of
// unknown length.
func (cc *clientConn) relayClose(pc *upstream.PConn, have []byte) (sent int64, err error) {
	x := cc.x
	out := appendChunk(x.out, have)
	sent = int64(len(have))
	buf := x.bigBuf()
	for {
		if len(out) > 0 {
			if _, err := cc.write(out); err != nil {
				return sent, err
			}
		}
		m, rerr := pc.Conn.Read(buf)
		sent += int64(m)
		out = appendChunk(x.out[:0], buf[:m])
		if rerr == io.EOF {
			out = append(out, "0\r\n\r\n"...)
			_, err := cc.write(out)
			return sent, err
		}
		if rerr != nil {
			return sent, rerr
		}
	}
}

// appendChunk appends p as one chunk (nothing for an empty p).
func appendChunk(dst, p []byte) []byte {
	if len(p) == 0 {
		return dst
	}
	dst = strconv.AppendInt(dst, int64(len(p)), 16)
	dst = append(dst, '\r', '\n')
	dst = append(dst, p...)
	return append(dst, '\r', '\n')
}
