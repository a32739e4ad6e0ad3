package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/h1server"
	"github.com/warmproxy/warmproxy/internal/limit"
	"github.com/warmproxy/warmproxy/internal/proxy"
)

// rejectLogEvery is the least time between two log lines about refused
// client connections; the lines in between are counted, not written.
const rejectLogEvery = 10 * time.Second

// limits guards the client side of the proxy: only clients in
// -allow-clients get past accept (the list the proxy handler holds, so a
// reload changes both checks at once); at most -max-client-conns
// connections are served at once, tunnels included; at most
// -max-requests-in-flight requests (HTTP/1.1 requests and h2c streams)
// are served at once; and an h2c connection that resets most of its
// streams is closed. The accepted conns are counted, not wrapped here (the
// wrappers on the way to net/http's server unwrap with NetConn, so CONNECT
// tunnels keep splice(2)): a connection is counted from accept until the
// HTTP/1.1 connection server closes it or net/http's server reports
// StateClosed or StateHijacked, and a hijacked one (tunnel, upgrade) while
// the proxy's tunnel tracker holds it.
type limits struct {
	// clients returns the client list in force (nil: every client); set
	// before the first Accept.
	clients func() *acl.Clients
	max     int64
	via     string
	log     *slog.Logger

	// served counts accepted connections the http.Server still owns.
	served atomic.Int64
	// tracked counts the conns of open tunnels: a client and an origin
	// conn each.
	tracked atomic.Int64

	// requests holds a place per request being served, HTTP/1.1 and
	// HTTP/2 streams alike (-max-requests-in-flight).
	requests *limit.Gate
	// reqBusy counts requests refused by it, reqGone those whose client
	// had gone (a reset stream) before their handler started; resetClosed
	// the h2c connections closed for resetting too many streams.
	reqBusy, reqGone, resetClosed atomic.Int64

	refused, busy atomic.Int64
	lastLog       atomic.Int64
}

// newLimits builds the limits of cfg; clients is the proxy handler's
// current client list.
func newLimits(cfg config.Parsed, clients func() *acl.Clients, log *slog.Logger) *limits {
	if cfg.OpenProxyIKnow && cfg.AllowClients == nil && cfg.ProxyAuthFile == "" && !config.LoopbackListen(cfg.Listen) {
		log.Warn("OPEN PROXY: listening on a non-loopback address with neither -allow-clients nor -proxy-auth-file; "+
			"anyone who can reach it can send traffic through it (-open-proxy-i-know)", "addr", cfg.Listen)
	}
	return &limits{clients: clients, max: int64(cfg.MaxClientConns), via: cfg.ViaName, log: log,
		requests: limit.NewGate(cfg.MaxRequestsInFlight, limit.WhatRequests)}
}

// handler wraps next with the bound on requests in flight: a request past
// -max-requests-in-flight gets 503 with Retry-After, without reaching
// next. A CONNECT tunnel or an upgrade holds its place until it closes,
// since its handler runs as long. An h2c stream reset before its handler
// started is dropped unserved: nothing could read its answer, and 20,000
// of them must not become 20,000 upstream requests. (An HTTP/1.1 client
// gone that early still gets its 499 access-log line from the proxy.)
func (l *limits) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cr, _ := r.Context().Value(connResetsKey{}).(*connResets)
		if r.ProtoMajor != 2 {
			cr = nil
		}
		cr.stream()
		if cr != nil && r.Context().Err() != nil {
			l.reqGone.Add(1)
			l.reset(cr, r)
			return
		}
		if err := l.requests.Enter(); err != nil {
			l.rejectRequest(w, err)
			l.note(&l.reqBusy, "request refused: -max-requests-in-flight reached", remoteAddr(r.RemoteAddr))
			return
		}
		defer l.requests.Leave()
		if cr != nil {
			// Counted as the reset arrives, while the handler runs; a
			// normal end cancels the stream's context only after the
			// handler returned, and stop comes first.
			stop := context.AfterFunc(r.Context(), func() { l.reset(cr, r) })
			defer stop()
		}
		next.ServeHTTP(w, r)
	})
}

// Premature resets (the HTTP/2 "rapid reset" attack, CVE-2023-44487): a
// client that opens streams and resets them at once makes the proxy start
// request after request for nothing. An h2c connection on which at least
// minResets streams, and more than half of all its streams, were reset
// before their answer is closed, as Envoy does; a client that resets now
// and then is never near it.
const minResets = 100

// connResets counts an h2c connection's streams and premature resets.
type connResets struct {
	c              net.Conn
	streams, reset atomic.Int64
	closed         atomic.Bool
}

type connResetsKey struct{}

// stream counts a stream; a nil *connResets (HTTP/1.1) counts nothing.
func (cr *connResets) stream() {
	if cr != nil {
		cr.streams.Add(1)
	}
}

// reset counts a stream of cr reset early, and closes the connection past
// the bound.
func (l *limits) reset(cr *connResets, r *http.Request) {
	if cr == nil {
		return
	}
	n := cr.reset.Add(1)
	if n < minResets || 2*n <= cr.streams.Load() || cr.closed.Swap(true) {
		return
	}
	cr.c.Close()
	l.note(&l.resetClosed, "client connection closed: too many streams reset before their answer", remoteAddr(r.RemoteAddr))
}

// connContext wraps the http.Server's ConnContext next with the
// connection's reset counts.
func (l *limits) connContext(next func(context.Context, net.Conn) context.Context) func(context.Context, net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(next(ctx, c), connResetsKey{}, &connResets{c: c})
	}
}

// rejectRequest answers a request over -max-requests-in-flight.
func (l *limits) rejectRequest(w http.ResponseWriter, err error) {
	proxy.WriteError(w, l.via, proxy.RequestsBusy(l.requests.Max(), err))
}

// remoteAddr is a request's RemoteAddr as a net.Addr, for note.
type remoteAddr string

func (a remoteAddr) Network() string { return "tcp" }
func (a remoteAddr) String() string  { return string(a) }

// listener wraps ln with the client checks.
func (l *limits) listener(ln net.Listener) net.Listener { return &limitListener{Listener: ln, l: l} }

// connState is the http.Server ConnState hook that ends a connection's
// count.
func (l *limits) connState(_ net.Conn, s http.ConnState) {
	if s == http.StateClosed || s == http.StateHijacked {
		l.served.Add(-1)
	}
}

// tracker wraps the proxy's tunnel tracker to count tunnel connections.
func (l *limits) tracker(inner proxy.ConnTracker) proxy.ConnTracker {
	return &countingTracker{inner: inner, n: &l.tracked}
}

// active is the number of client connections open: served ones plus one
// per tunnel.
func (l *limits) active() int64 { return l.served.Load() + l.tracked.Load()/2 }

type limitListener struct {
	net.Listener
	l *limits
}

// Accept returns the next connection from an allowed client while under
// the limit. A client not allowed is reset at once; one over the limit
// gets a 503 and is closed. Accept errors (EMFILE included) go to the
// http.Server unchanged, which backs off and retries.
func (ln *limitListener) Accept() (net.Conn, error) {
	l := ln.l
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if clients := l.clients(); clients != nil {
			ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
			if d := clients.Check(ap.Addr()); err != nil || !d.Allow {
				if tc, ok := c.(*net.TCPConn); ok {
					tc.SetLinger(0) // reset, not a polite FIN
				}
				c.Close()
				l.note(&l.refused, "client refused: not in -allow-clients", c.RemoteAddr())
				continue
			}
		}
		if l.active() >= l.max {
			l.rejectBusy(c)
			l.note(&l.busy, "client refused: -max-client-conns reached", c.RemoteAddr())
			continue
		}
		l.served.Add(1)
		return c, nil
	}
}

// rejectBusy answers a connection over the limit with a 503 and closes
// it. The answer fits the socket buffer of a fresh connection; the short
// deadline covers a peer that will not take it.
func (l *limits) rejectBusy(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write(h1server.ErrorResponse(l.via, proxy.ConnsBusy(l.max)))
	c.Close()
}

// note counts a refusal and logs at most one line per rejectLogEvery.
func (l *limits) note(counter *atomic.Int64, msg string, addr net.Addr) {
	n := counter.Add(1)
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(rejectLogEvery) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn(msg, "client", addr.String(), "refused_total", l.refused.Load(), "busy_total", l.busy.Load(),
		"requests_busy_total", l.reqBusy.Load(), "reset_closed_total", l.resetClosed.Load(), "this_kind_total", n)
}

// countingTracker counts the conns it tracks.
type countingTracker struct {
	inner proxy.ConnTracker
	n     *atomic.Int64
}

func (t *countingTracker) Track(c net.Conn) func() {
	t.n.Add(1)
	untrack := t.inner.Track(c)
	var done atomic.Bool
	return func() {
		if !done.Swap(true) {
			t.n.Add(-1)
		}
		untrack()
	}
}
