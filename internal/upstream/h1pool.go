package upstream

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/limit"
	"github.com/warmproxy/warmproxy/internal/parentproxy"
)

// The HTTP/1.1 connection pool of the data path (issue 14). It keeps what
// the dial stack dials (the dial-time guard, DNS cache, happy eyeballs,
// TLS rules and session caches, parent proxies, the prewarm stash, the
// counting of track.go): it calls the transport's own dial functions, so
// nothing of that changes. internal/h1server carries its requests.
//
// Hand-out safety. A connection is handed out again only when the kernel
// holds nothing for it: before each reuse, one recvfrom(MSG_PEEK |
// MSG_DONTWAIT) of one byte on the socket, run through
// syscall.RawConn.Read (no goroutine per idle connection, no buffer). A
// readable byte (a stray or unsolicited response, a TLS record) or an EOF
// (the origin's FIN) or an error (RST) closes it; EAGAIN means healthy. For
// TLS, bytes the tls.Conn has already read from the socket but not handed
// up are checked when the connection is released (see drained). This
// closes the race of golang/go#31259, where net/http's read loop had not
// yet seen the origin's close when the transport handed the connection to
// the next request.
//
// Stale connections. A request that fails on a reused connection may be
// sent again on a fresh one only as MayReplay says: today's rule.

// H1Key is what makes two connections interchangeable: a request may go on
// any idle connection of its key, and on none of another.
type H1Key struct {
	Scheme Scheme
	// Addr is the host:port dialed, lower case with the scheme's default
	// port: the origin, or for plain http through an http parent, the
	// parent.
	Addr string
	// TLSRule is the text of the -upstream-tls rule the connection is made
	// under ("" for none), ServerName the TLS server name it verifies; both
	// are empty for plain http.
	TLSRule    string
	ServerName string
	// Parent is the parent proxy the connection goes through (its URL,
	// password redacted); "" for a direct connection.
	Parent string
	// AbsoluteForm is set when requests go to an http parent in absolute
	// form (with the parent's Proxy-Authorization), not to the origin.
	AbsoluteForm bool
}

// H1Key returns the key of a request to hostport (host or host:port) over
// scheme: the dial stack's view of which TLS rule and which parent proxy
// apply. For plain http through an http parent it applies the
// destination policy by name first, as the transport's Proxy function
// does: a denied target is never sent to the parent.
func (u *Upstream) H1Key(s Scheme, hostport string) (H1Key, error) {
	k := H1Key{Scheme: s, Addr: canonicalAddr(s, strings.ToLower(hostport))}
	host, portStr, _ := net.SplitHostPort(k.Addr)
	port := atoiPort(portStr)
	if s == SchemeHTTPS {
		k.ServerName = host
		if r := u.tls.rules.match(host, port); r != nil {
			k.TLSRule = r.text
			if r.serverName != "" {
				k.ServerName = r.serverName
			}
		}
	}
	if par := u.parent; par != nil && !par.bypassed(host, port) {
		k.Parent = par.Shown
		if s == SchemeHTTP && par.Scheme == parentproxy.HTTP {
			if err := par.checkTarget(host, port); err != nil {
				return H1Key{}, err
			}
			k.Addr, k.AbsoluteForm = par.Addr, true
		}
	}
	return k, nil
}

// ConnInfo is what the access log wants to know of a connection.
type ConnInfo struct {
	// Reused is set for a connection that was pooled, or prewarmed
	// (-prewarm): its request paid no connect.
	Reused bool
	// Connect is what a new connection cost: TCP connect plus the TLS
	// handshake; 0 when reused.
	Connect time.Duration
	// TLSResumed is set when the TLS handshake resumed a session.
	TLSResumed bool
}

// Protocols a PConn may speak.
const (
	ProtoHTTP1 = "http/1.1"
	ProtoH2    = "h2"
)

// PConn is a connection of an H1Pool, held by one request from Get until
// Release. A PConn whose Proto is ProtoH2 is not the pool's: the origin
// chose HTTP/2 by ALPN, and the caller hands Conn to the HTTP/2 pool.
type PConn struct {
	// Conn is the dial stack's connection: a *tls.Conn for https, else
	// the counted connection of track.go. Write the request head through
	// it (that write runs the policy re-check after a reload).
	Conn net.Conn
	// TCP is the socket beneath a plain-http Conn, for splicing bodies
	// (TCPConn.ReadFrom, WriteTo); nil for TLS, or where the dial stack
	// gave no *net.TCPConn. Bytes moved through it skip Conn's counting
	// of activity, which only the keep-alive retirement timer reads, and
	// that timer never retires a connection a request holds.
	TCP *net.TCPConn
	// Proto is ProtoHTTP1, or ProtoH2 for a connection the pool gave up.
	Proto string
	// Key is the key the connection was dialed for.
	Key  H1Key
	Info ConnInfo

	pool    *H1Pool
	host    *h1Host
	hs      *hostStats // counted in while held; nil without stats
	tracked *trackedConn
	tls     *tls.Conn
	raw     syscall.RawConn // the socket, for the peek; nil: none reachable
	out     bool            // held by a request
	// idleSince is when it went idle, in the pool clock's nanoseconds.
	idleSince int64
	peekFn    func(fd uintptr) bool
	peekOK    bool
	peekBuf   [1]byte
}

// H1Pool keeps idle HTTP/1.1 connections per H1Key, newest first, and
// dials through the dial stack when none is idle. Build it with
// Upstream.NewH1Pool; Close ends it.
type H1Pool struct {
	dial, dialTLS   DialFunc
	stats           *Tracker // nil: nothing counted (tests)
	maxIdlePerHost  int      // > 0
	maxIdle         int      // > 0
	maxConnsPerHost int      // 0: no limit
	queue           int
	queueWait       time.Duration
	idleTimeout     time.Duration // 0: none
	now             func() int64  // nanoseconds
	// healthy is the hand-out check, (*PConn).healthy; tests of the
	// timing logic over net.Pipe replace it.
	healthy func(*PConn) bool

	hosts     atomic.Pointer[map[H1Key]*h1Host]
	mu        sync.Mutex // serializes the writers of hosts
	idleTotal atomic.Int64
	closed    atomic.Bool
	stop      chan struct{}
	reaped    chan struct{}
}

// h1Host is the pool of one key.
type h1Host struct {
	key H1Key
	mu  sync.Mutex
	// idle is a LIFO stack: the newest at the end, the oldest at 0.
	idle []*PConn
	// conns counts the key's connections: idle, held, or being dialed.
	conns   int
	waiters []chan struct{}
	dead    bool // pruned from the map; Get looks again
}

// NewH1Pool returns an HTTP/1.1 pool over u's dial stack with cfg's limits:
// MaxIdlePerHost, MaxIdle, MaxConnsPerHost with MaxConnsPerHostQueue
// waiting up to UpstreamQueueTimeout, IdleTimeout. Requests and connections count
// in u's Tracker, so /debug/pool shows them.
func (u *Upstream) NewH1Pool(cfg config.Parsed) *H1Pool {
	// The transport adds "h2" to its TLSClientConfig.NextProtos on first
	// use (configureHTTP2); Clone does that now, so the pool's TLS dials
	// offer HTTP/2 as the transport's own would (see newPrewarm).
	_ = u.transport.Clone()
	dialTLS := u.transport.DialTLSContext
	u.transport.DialTLSContext = u.given.wrap(dialTLS)
	return newH1Pool(h1Limits{
		maxIdlePerHost:  cfg.MaxIdlePerHost,
		maxIdle:         cfg.MaxIdle,
		maxConnsPerHost: cfg.MaxConnsPerHost,
		queue:           cfg.MaxConnsPerHostQueue,
		queueWait:       cfg.UpstreamQueueTimeout,
		idleTimeout:     cfg.IdleTimeout,
	}, u.transport.DialContext, dialTLS, u.tracker)
}

// GiveH2 hands pc, a connection whose origin chose HTTP/2, to the
// transport: its next TLS dial to that address takes it instead of
// dialing, so the request that found out pays one handshake, not two. A
// connection not taken within givenWait is closed.
func (u *Upstream) GiveH2(pc *PConn) { u.given.put(strings.ToLower(pc.Key.Addr), pc.Conn) }

// givenWait bounds how long a given connection waits for its dial.
const givenWait = 10 * time.Second

// givenConns holds given connections by address.
type givenConns struct {
	mu    sync.Mutex
	conns map[string][]net.Conn
}

func (g *givenConns) put(addr string, c net.Conn) {
	g.mu.Lock()
	if g.conns == nil {
		g.conns = map[string][]net.Conn{}
	}
	g.conns[addr] = append(g.conns[addr], c)
	g.mu.Unlock()
	time.AfterFunc(givenWait, func() {
		if g.remove(addr, c) {
			c.Close()
		}
	})
}

// take pops a connection given for addr, nil when none waits.
func (g *givenConns) take(addr string) net.Conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	cs := g.conns[addr]
	if len(cs) == 0 {
		return nil
	}
	c := cs[len(cs)-1]
	g.conns[addr] = cs[:len(cs)-1]
	if len(cs) == 1 {
		delete(g.conns, addr)
	}
	return c
}

// remove drops c from addr's list, reporting whether it was there.
func (g *givenConns) remove(addr string, c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	cs := g.conns[addr]
	for i, x := range cs {
		if x == c {
			g.conns[addr] = append(cs[:i], cs[i+1:]...)
			if len(g.conns[addr]) == 0 {
				delete(g.conns, addr)
			}
			return true
		}
	}
	return false
}

// wrap returns next with the given connections handed out first.
func (g *givenConns) wrap(next DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if c := g.take(strings.ToLower(addr)); c != nil {
			return c, nil
		}
		return next(ctx, network, addr)
	}
}

type h1Limits struct {
	maxIdlePerHost, maxIdle, maxConnsPerHost, queue int
	queueWait, idleTimeout                          time.Duration
}

// defaultMaxIdle stands in for a limit of 0 (net/http's "no limit"):
// limits are on.
var defaultMaxIdle = config.Default().MaxIdle

func newH1Pool(l h1Limits, dial, dialTLS DialFunc, stats *Tracker) *H1Pool {
	p := &H1Pool{
		dial: dial, dialTLS: dialTLS, stats: stats,
		maxIdlePerHost: l.maxIdlePerHost, maxIdle: l.maxIdle,
		maxConnsPerHost: l.maxConnsPerHost, queue: l.queue, queueWait: l.queueWait,
		idleTimeout: l.idleTimeout,
		now:         func() int64 { return time.Now().UnixNano() },
		healthy:     (*PConn).healthy,
		stop:        make(chan struct{}),
		reaped:      make(chan struct{}),
	}
	if p.maxIdlePerHost <= 0 {
		p.maxIdlePerHost = config.Default().MaxIdlePerHost
	}
	if p.maxIdle <= 0 {
		p.maxIdle = defaultMaxIdle
	}
	m := map[H1Key]*h1Host{}
	p.hosts.Store(&m)
	go p.reap()
	return p
}

// host returns the pool of key, made on first use.
func (p *H1Pool) host(key H1Key) *h1Host {
	if h := (*p.hosts.Load())[key]; h != nil {
		return h
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.hosts.Load()
	if h := old[key]; h != nil {
		return h
	}
	m := make(map[H1Key]*h1Host, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	h := &h1Host{key: key}
	m[key] = h
	p.hosts.Store(&m)
	return h
}

// Get returns an idle connection of key, the newest that is fit to carry a
// request, or dials one. With MaxConnsPerHost reached it waits in a
// bounded queue for one to be released, or fails with a
// *limit.SaturatedError. A *PConn whose Proto is ProtoH2 is the caller's,
// for the HTTP/2 pool.
func (p *H1Pool) Get(ctx context.Context, key H1Key) (*PConn, error) {
	if p.closed.Load() {
		return nil, errPoolClosed
	}
	for {
		h := p.host(key)
		pc, dial, err := p.take(ctx, h)
		switch {
		case err != nil:
			p.countFailed(key)
			return nil, err
		case pc != nil:
			pc.Info = ConnInfo{Reused: true}
			p.checkOut(pc)
			return pc, nil
		case dial:
			return p.dialNew(ctx, h)
		}
	}
}

// take pops the newest idle connection of h that passes the hand-out
// checks, closing the ones that fail; or reserves a slot to dial (dial);
// or waits for one. It returns nothing at all when h was pruned.
func (p *H1Pool) take(ctx context.Context, h *h1Host) (_ *PConn, dial bool, _ error) {
	for {
		h.mu.Lock()
		if h.dead {
			h.mu.Unlock()
			return nil, false, nil
		}
		if n := len(h.idle); n > 0 {
			pc := h.idle[n-1]
			h.idle[n-1] = nil
			h.idle = h.idle[:n-1]
			h.mu.Unlock()
			p.idleTotal.Add(-1)
			if p.fit(pc) {
				return pc, false, nil
			}
			pc.destroy()
			continue
		}
		if p.maxConnsPerHost <= 0 || h.conns < p.maxConnsPerHost {
			h.conns++
			h.mu.Unlock()
			return nil, true, nil
		}
		if err := p.wait(ctx, h); err != nil {
			return nil, false, err
		}
	}
}

// fit reports whether an idle pc may be handed out: not past the idle
// timeout nor the origin's keep-alive limit, and nothing waiting on its
// socket. A connection retired for the keep-alive limit is counted so.
func (p *H1Pool) fit(pc *PConn) bool {
	idle := time.Duration(p.now() - pc.idleSince)
	if p.idleTimeout > 0 && idle >= p.idleTimeout || pc.tracked != nil && pc.tracked.closed.Load() {
		return false
	}
	if pc.hs != nil {
		if limit := pc.hs.retireLimit(); limit > 0 && idle >= limit {
			pc.countRetired()
			return false
		}
	}
	return p.healthy(pc)
}

// wait queues for a slot of h, whose lock it holds and releases. It
// returns once woken (the caller looks again) or with the error that
// ended the wait.
func (p *H1Pool) wait(ctx context.Context, h *h1Host) error {
	if len(h.waiters) >= p.queue {
		h.mu.Unlock()
		return &limit.SaturatedError{Host: h.key.Addr, Max: p.maxConnsPerHost}
	}
	ch := make(chan struct{}, 1)
	h.waiters = append(h.waiters, ch)
	h.mu.Unlock()
	var expired <-chan time.Time
	if p.queueWait > 0 {
		t := time.NewTimer(p.queueWait)
		defer t.Stop()
		expired = t.C
	}
	var err error
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-expired:
		err = &limit.SaturatedError{Host: h.key.Addr, Max: p.maxConnsPerHost, Queued: true}
	case <-p.stop:
		err = errPoolClosed
	}
	h.mu.Lock()
	for i, w := range h.waiters {
		if w == ch {
			h.waiters = append(h.waiters[:i], h.waiters[i+1:]...)
			break
		}
	}
	h.mu.Unlock()
	select {
	case <-ch: // woken as it gave up: pass the turn on
		p.wake(h)
	default:
	}
	return err
}

// wake tells the first waiter of h, if any, to look again.
func (p *H1Pool) wake(h *h1Host) {
	h.mu.Lock()
	h.wakeLocked()
	h.mu.Unlock()
}

func (h *h1Host) wakeLocked() {
	if len(h.waiters) == 0 {
		return
	}
	ch := h.waiters[0]
	h.waiters = append(h.waiters[:0], h.waiters[1:]...)
	ch <- struct{}{} // buffered 1, and each waiter is woken once
}

var errPoolClosed = poolClosedError{}

type poolClosedError struct{}

func (poolClosedError) Error() string { return "upstream: http/1.1 pool closed" }
