package server

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/proxy"
)

// rejectLogEvery is the least time between two log lines about refused
// client connections; the lines in between are counted, not written.
const rejectLogEvery = 10 * time.Second

// limits guards the client side of the proxy: only clients in
// -allow-clients get past accept (the list the proxy handler holds, so a
// reload changes both checks at once), and at most -max-client-conns
// connections are served at once, tunnels included. It counts without
// wrapping the accepted conns, so CONNECT tunnels keep splice(2):
// connections being served are counted from accept to the server's
// StateClosed or StateHijacked, and hijacked ones (tunnels, upgrades)
// while the proxy's tunnel tracker holds them.
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

	refused, busy atomic.Int64
	lastLog       atomic.Int64
}

// newLimits builds the limits of cfg; clients is the proxy handler's
// current client list.
func newLimits(cfg config.Config, clients func() *acl.Clients, log *slog.Logger) *limits {
	if cfg.OpenProxyIKnow && cfg.AllowClients == "" && cfg.ProxyAuthFile == "" && !config.LoopbackListen(cfg.Listen) {
		log.Warn("OPEN PROXY: listening on a non-loopback address with neither -allow-clients nor -proxy-auth-file; "+
			"anyone who can reach it can send traffic through it (-open-proxy-i-know)", "addr", cfg.Listen)
	}
	return &limits{clients: clients, max: int64(cfg.MaxClientConns), via: cfg.ViaName, log: log}
}

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
	body := "warmproxy: too many client connections (max-client-conns " + strconv.FormatInt(l.max, 10) + "); retry later\n"
	resp := "HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Proxy-Status: " + l.via + "; error=" + proxy.PSConnectionLimit + "\r\n" +
		"Retry-After: 1\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write([]byte(resp))
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
	l.log.Warn(msg, "client", addr.String(), "refused_total", l.refused.Load(), "busy_total", l.busy.Load(), "this_kind_total", n)
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
