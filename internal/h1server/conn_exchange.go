package h1server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/headlimit"
	"github.com/warmproxy/warmproxy/internal/upstream"
	"github.com/warmproxy/warmproxy/internal/wire"
)

// eligible parses the head of length hl in cc's buffer and reports
// whether the connection server takes the request (see conn.go); when
// not, net/http's side gets it, from its first byte.
func (cc *clientConn) eligible(hl int) bool {
	s := cc.s
	if s.h.PerRequestChecks() {
		return false
	}
	if cc.x == nil {
		cc.x = exchanges.Get().(*exchange)
		s.held.Add(1)
	}
	r := &cc.x.req
	if err := r.Parse((*cc.buf)[:hl]); err != nil {
		return false
	}
	b := r.Bytes()
	switch {
	case r.Minor != 1, r.ExpectContinue, r.ExpectOther, r.CLAndTE, r.TEIgnored, r.Upgrade, r.ConnUpgrade:
		return false
	case cc.inner != "":
		// Inside a tunnel: origin-form for the tunnel's own authority.
		if r.Form != wire.OriginForm || !r.HasHost || !proxy.SameAuthority(string(r.Host.In(b)), cc.inner) {
			return false
		}
	case r.Form != wire.AbsoluteForm, r.Authority.Len() == 0, !wire.EqualFold(r.Scheme.In(b), "http"):
		return false
	}
	method := string(r.Method.In(b))
	if method == http.MethodConnect {
		return false
	}
	maxForwards := method == http.MethodTrace || method == http.MethodOptions
	for _, f := range r.Fields {
		name := f.Name.In(b)
		switch {
		case wire.EqualFold(name, "via") && containsFold(f.Value.In(b), s.h.ViaName()):
			// Maybe a loop: the Handler judges (508).
			return false
		case maxForwards && wire.EqualFold(name, "max-forwards"):
			// The Handler answers or counts down (RFC 9110 section
			// 7.6.2).
			return false
		}
	}
	return true
}

// exchange serves the request whose head (hl bytes) eligible parsed. It
// reports whether the connection may carry another request, or that it
// must be handed over (nothing was sent upstream nor answered).
func (cc *clientConn) exchange(hl int) (keep, handOver bool) {
	s, x := cc.s, cc.x
	r := &x.req
	b := r.Bytes()
	scheme, ok, authority := upstream.SchemeHTTPS, true, []byte(nil)
	if cc.inner == "" {
		scheme, ok = cc.scheme(r, b)
		authority = r.Authority.In(b)
	}
	if !ok || !cc.poolKey(scheme, authority) {
		return false, true
	}
	if _, isH2 := s.h2.Load(cc.key); isH2 {
		return false, true
	}
	e := &x.entry
	*e = accesslog.Entry{Start: time.Now(), Client: cc.remote, Method: methodString(r.Method.In(b)), Kind: accesslog.KindRequest}
	switch {
	case cc.inner != "":
		e.Kind = accesslog.KindIntercepted
		e.RequestedURL = "https://" + string(r.Host.In(b)) + string(r.Target.In(b))
		e.URL = e.RequestedURL
	default:
		e.RequestedURL = string(r.Target.In(b))
		e.URL = e.RequestedURL
		if scheme == upstream.SchemeHTTPS {
			e.URL = "https" + e.RequestedURL[len("http"):]
		}
	}
	if err := s.o.Gate.Enter(); err != nil {
		hw := newHeadWriter()
		s.o.Busy(hw, err)
		cc.c.Write(hw.render(true, e.Method != http.MethodHead))
		cc.linger = r.Framing != wire.BodyNone
		return false, false
	}
	defer s.o.Gate.Leave()
	s.o.Running.Add(1)
	defer s.o.Running.Add(-1)
	defer cc.endExchange()

	x.out = cc.appendRequestHead(x.out[:0], r, b)
	end, perr := cc.firstBody(hl)
	if perr != nil {
		cc.linger = true
		cc.end(perr, true)
		return false, false
	}
	keep, handOver = cc.roundTrip()
	if handOver {
		return false, true
	}
	cc.consume(end)
	return keep && x.done && !r.Close && !s.closing.Load(), false
}

// scheme returns the scheme the protocol header asks for (http without
// one); not ok for any value the Handler must judge.
func (cc *clientConn) scheme(r *wire.RequestHead, b []byte) (upstream.Scheme, bool) {
	scheme, seen := upstream.SchemeHTTP, false
	for _, f := range r.Fields {
		if !wire.EqualFold(f.Name.In(b), cc.s.h.ProtocolHeader()) {
			continue
		}
		if seen {
			return scheme, false
		}
		seen = true
		switch v := f.Value.In(b); {
		case wire.EqualFold(v, "https"):
			scheme = upstream.SchemeHTTPS
		case wire.EqualFold(v, "http"):
		default:
			return scheme, false
		}
	}
	return scheme, true
}

// poolKey sets cc.key and cc.target for authority over scheme, reusing
// the last ones when they match; false when the Handler must judge the
// target (a bad authority, a parent proxy). Inside a tunnel the target is
// the tunnel's.
func (cc *clientConn) poolKey(scheme upstream.Scheme, authority []byte) bool {
	if cc.lastAuth != nil && scheme == cc.lastScheme && string(authority) == string(cc.lastAuth) {
		return true
	}
	cc.lastAuth = nil
	target := string(authority)
	if cc.inner != "" {
		target = cc.inner
	}
	if proxy.CheckAuthority(target) != nil {
		return false
	}
	key, err := cc.s.o.Key(scheme, target)
	if err != nil || key.Parent != "" {
		return false
	}
	cc.key, cc.target, cc.lastScheme = key, target, scheme
	cc.lastAuth = append(cc.lastAuth[:0], authority...)
	return true
}

// roundTrip sends x.out (head and body) on a pooled connection, replaying
// on a fresh one what today's rule allows, and relays the response.
func (cc *clientConn) roundTrip() (keep, handOver bool) {
	s, x := cc.s, cc.x
	e := &x.entry
	for attempt := 0; ; attempt++ {
		pc, err := s.o.Pool.Get(context.Background(), cc.key)
		if err != nil {
			cc.end(proxy.ErrorFor(cc.target, err), false)
			return true, false
		}
		if pc.Proto == upstream.ProtoH2 {
			s.h2.Store(cc.key, true)
			if attempt == 0 {
				s.o.GiveH2(pc)
				return false, true
			}
			pc.Conn.Close()
			cc.end(proxy.ErrorFor(cc.target, errors.New("origin switched to http/2")), false)
			return true, false
		}
		e.Reused, e.Connect, e.TLSResumed, e.Retries = pc.Info.Reused, pc.Info.Connect, pc.Info.TLSResumed, attempt
		nw, err := pc.Conn.Write(x.out)
		if err == nil && x.stream {
			return cc.streamed(pc), false
		}
		started := false
		if err == nil {
			cc.watchClient(pc)
			started, err = cc.readFinalHead(pc)
			if cc.unwatch() {
				pc.Release(false)
				cc.end(proxy.ClientGone(err), false)
				return false, false
			}
		}
		e.BytesIn = x.sent
		if err == nil {
			return cc.relay(pc), false
		}
		if _, ok := err.(*proxy.Error); !ok && !started && upstream.MayReplay(cc.attempt(pc, nw == 0, attempt)) {
			pc.Release(false)
			continue
		}
		pc.Fail(err)
		pc.Release(false)
		cc.end(proxy.ErrorFor(cc.target, err), false)
		return true, false
	}
}

// attempt describes a failed try for upstream.MayReplay. A held body can
// be sent again; a streamed one cannot (its head's write failed before
// streamed took over), as net/http's rule treats a body without GetBody.
func (cc *clientConn) attempt(pc *upstream.PConn, nothingWritten bool, replays int) upstream.Attempt {
	r := &cc.x.req
	b := r.Bytes()
	a := upstream.Attempt{Method: string(r.Method.In(b)), Reused: pc.Info.Reused, NothingWritten: nothingWritten,
		HasBody: cc.x.bodyLen > 0 || cc.x.stream, Rewindable: !cc.x.stream, Replays: replays}
	for _, f := range r.Fields {
		if n := f.Name.In(b); wire.EqualFold(n, "idempotency-key") || wire.EqualFold(n, "x-idempotency-key") {
			a.Header = http.Header{http.CanonicalHeaderKey(string(n)): {string(f.Value.In(b))}}
		}
	}
	return a
}

// readFinalHead reads the origin's response head into x.resp, relaying
// interim responses (at most proxy.MaxInterim; 100 Continue is dropped, as the
// client sent no Expect). started reports whether any byte of a response
// arrived.
func (cc *clientConn) readFinalHead(pc *upstream.PConn) (started bool, err error) {
	x := cc.x
	if x.up == nil {
		x.up = upBufs.Get().(*[]byte)
	}
	if !x.stream {
		pc.Conn.SetReadDeadline(time.Now().Add(cc.s.o.ResponseHeaderTimeout))
	}
	defer func() {
		if !x.stream {
			pc.Conn.SetReadDeadline(time.Time{})
			return
		}
		// The body goroutine sets the deadline once the body ended.
		x.bodyMu.Lock()
		x.headDone = true
		pc.Conn.SetReadDeadline(time.Time{})
		x.bodyMu.Unlock()
	}()
	x.rs.Max = headlimit.MaxResponseBytes
	n, n1xx := 0, 0
	method := x.req.Method.In(x.req.Bytes())
	for {
		x.rs.Reset()
		hl := 0
		for hl == 0 {
			buf := *x.up
			if n > 0 {
				if hl, err = x.rs.Scan(buf[:n]); err != nil {
					return true, proxy.HeadTooLarge(cc.target, headlimit.MaxResponseBytes, nil)
				}
				if hl > 0 {
					break
				}
			}
			if n == len(buf) {
				cc.growUp(n)
				buf = *x.up
			}
			m, rerr := pc.Conn.Read(buf[n:])
			n += m
			if rerr != nil && (m == 0 || rerr != io.EOF) {
				if rerr == io.EOF && n > 0 {
					rerr = io.ErrUnexpectedEOF
				}
				return n > 0, rerr
			}
		}
		buf := *x.up
		if perr := x.resp.Parse(buf[:hl], method); perr != nil {
			return true, proxy.BadResponse(cc.target, malformed(buf[:hl], perr))
		}
		switch st := x.resp.Status; {
		case st >= 200:
			x.upHead, x.upN = hl, n
			return true, nil
		case st == http.StatusSwitchingProtocols:
			return true, proxy.UnaskedSwitch(cc.target, strconv.Quote(string(valueOf(&x.resp, "upgrade"))))
		case st != http.StatusContinue:
			if n1xx++; n1xx > proxy.MaxInterim {
				return true, proxy.BadResponse(cc.target, proxy.ErrTooManyInterim)
			}
			x.out = cc.appendResponseHead(x.out[:0], &x.resp, false)
			if _, werr := cc.c.Write(x.out); werr != nil {
				return true, proxy.WrapClientWrite(werr)
			}
		}
		n = copy(buf, buf[hl:n])
	}
}

// malformed says what was wrong with a response head, quoting its first
// line as net/http does.
func malformed(head []byte, err error) error {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	return fmt.Errorf("malformed HTTP response %q: %w", bytes.TrimSuffix(line, []byte("\r")), err)
}

// growUp doubles the upstream buffer, whose n bytes are a head not yet
// ended (a head over 64 KiB, up to headlimit's bound).
func (cc *clientConn) growUp(n int) {
	x := cc.x
	bigger := make([]byte, 2*len(*x.up))
	copy(bigger, (*x.up)[:n])
	upBufs.Put(x.up)
	x.up = &bigger
}

// valueOf returns the value of h's first field named name.
func valueOf(h *wire.ResponseHead, name string) []byte {
	v, _ := h.Get(name)
	return v
}

// methodString returns the method as a string, without allocating for
// the common ones.
func methodString(m []byte) string {
	for _, c := range commonMethods {
		if string(m) == c {
			return c
		}
	}
	return string(m)
}

var commonMethods = [...]string{http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodPatch}

// containsFold reports whether s holds sub, ASCII case ignored.
func containsFold(s []byte, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if wire.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// end ends the exchange with err (nil, a *proxy.Error to answer, or a
// *proxy.LateError), as the Handler ends its own: Handler.End answers
// and records it, and the answer goes out after the record. With
// closeAfter an answer says "Connection: close".
func (cc *clientConn) end(err error, closeAfter bool) {
	if !proxy.Answers(err) {
		cc.s.h.End(nil, &cc.x.entry, err)
		return
	}
	w := &answerWriter{headWriter: newHeadWriter(), c: cc.c, closeAfter: closeAfter,
		headOnly: cc.x.entry.Method == http.MethodHead}
	if cc.s.h.End(w, &cc.x.entry, err) {
		w.send()
	}
}
