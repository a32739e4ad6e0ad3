package upstream

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Scheme indexes the per-scheme totals of a Tracker.
type Scheme int

// Schemes spoken to origins.
const (
	SchemeHTTP Scheme = iota
	SchemeHTTPS
	numSchemes
)

func (s Scheme) String() string {
	if s == SchemeHTTPS {
		return "https"
	}
	return "http"
}

// Schemes lists every Scheme, for callers that report per scheme.
var Schemes = [...]Scheme{SchemeHTTP, SchemeHTTPS}

// maxHosts is how many origins a Tracker keeps statistics for. Past it, the
// origins with no open connection and no request in flight are forgotten,
// so a proxy that sees many hosts does not grow without bound. The
// per-scheme totals are never forgotten.
const maxHosts = 1024

// Tracker counts the connections warmproxy holds to origins and the
// requests sent over them, per origin (host:port and scheme) and in total;
// it pools nothing (the transport and H1Pool do). It sees connections
// through the dial functions it wraps and requests through the
// RoundTripper Wrap returns; counting is a few atomic adds. Its per-origin
// state also carries what rides on a connection's life: the dial slots
// (dialgate.go), the learned keep-alive timeout (keepalive.go), the
// prewarm keeper (prewarm.go) and the policy generation (recheck.go).
type Tracker struct {
	totals [numSchemes]counters
	// hosts is replaced, never changed in place, so lookups take no lock;
	// mu serializes the writers.
	hosts atomic.Pointer[hostMap]
	mu    sync.Mutex
	// onTLS, if set, is told of every successful TLS handshake.
	onTLS func(resumed bool, d time.Duration)
	// honorKeepAlive makes the tracker learn origins' "Keep-Alive: timeout=N"
	// and retire idle connections before it (keepalive.go).
	honorKeepAlive bool
	// policy, when set, has pooled connections re-checked against the
	// destination policy after a reload changed it (recheck.go).
	policy policyChecker
}

// hostMap maps, per scheme, both the request's URL host ("example.com")
// and the dialed address ("example.com:443") to the same stats.
type hostMap struct {
	byKey [numSchemes]map[string]*hostStats
	n     int
}

type counters struct {
	open, inflight, h2open                       atomic.Int64
	requests, failed, opened, closed, dialErrors atomic.Uint64
	tlsFull, tlsResumed, tlsErrors               atomic.Uint64
	// retired counts connections closed before the origin's announced
	// keep-alive timeout (keepalive.go).
	retired atomic.Uint64
}

type hostStats struct {
	counters
	addr    string
	scheme  Scheme
	lastErr atomic.Pointer[lastError]
	// proto is the protocol the latest connection to the origin speaks:
	// protoNone before the first, then protoHTTP1 or protoH2.
	proto atomic.Uint32
	// keepAlive is the idle timeout, in nanoseconds, the origin announced
	// in "Keep-Alive: timeout=N"; 0 until it does (keepalive.go).
	keepAlive atomic.Int64
	// warm is the prewarm keeper of this origin, told when a connection
	// closes; nil for an origin not prewarmed (prewarm.go). An origin
	// with a keeper is never pruned.
	warm atomic.Pointer[warmOrigin]
	// dialing holds a token per new connection being dialed, at most
	// MaxDialsPerHost; dialWaits counts the dials that had to wait
	// (dialgate.go).
	dialing   chan struct{}
	dialWaits atomic.Uint64
}

// What a connection to an origin speaks, for Stats.Protocol.
const (
	protoNone uint32 = iota
	protoHTTP1
	protoH2
)

var protoNames = [...]string{protoNone: "", protoHTTP1: "HTTP/1.1", protoH2: "HTTP/2"}

type lastError struct {
	at  time.Time
	msg string
}

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker {
	p := &Tracker{}
	m := &hostMap{}
	for i := range m.byKey {
		m.byKey[i] = map[string]*hostStats{}
	}
	p.hosts.Store(m)
	return p
}

// SetTLSObserver makes fn hear of every successful handshake with an
// origin: whether it resumed a session and how long it took. Call it
// before the first request.
func (p *Tracker) SetTLSObserver(fn func(resumed bool, d time.Duration)) { p.onTLS = fn }

// instrument makes t count its connections in p. It wraps t.DialContext,
// whatever it is, for http, and for https sets t.DialTLSContext to dial
// the same way, then run step (handshake.go, built over t's own TLS
// settings by newTLSStep), and the transport still runs the request's
// httptrace TLS hooks (on the finished handshake). Call it once t's
// dialer is set.
func (p *Tracker) instrument(t *http.Transport, step tlsStep) {
	dial := DialFunc(t.DialContext)
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	t.DialContext = p.dialer(dial)
	t.DialTLSContext = p.tlsDialer(dial, step)
}

func (p *Tracker) dialer(dial DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		hs := p.host(SchemeHTTP, addr)
		return p.dialTracked(ctx, hs, dial, network, addr, func(_ context.Context, c net.Conn) (net.Conn, error) {
			hs.proto.Store(protoHTTP1)
			return c, nil
		})
	}
}

// dialTracked dials addr for hs within one of its dial slots, counts and
// tracks the connection under the current policy generation, and hands
// it to then, which finishes it (a TLS handshake) while the slot and
// the request-bound context still hold.
func (p *Tracker) dialTracked(ctx context.Context, hs *hostStats, dial DialFunc, network, addr string, then func(context.Context, net.Conn) (net.Conn, error)) (net.Conn, error) {
	gen := p.policyGen()
	ctx, cancel, gone := dialContext(ctx)
	defer cancel()
	release, err := hs.dialSlot(ctx, gone)
	if err != nil {
		return nil, err
	}
	defer release()
	c, err := dial(ctx, network, addr)
	if err != nil {
		p.dialFailed(ctx, hs, err)
		return nil, err
	}
	return then(ctx, p.track(c, hs, addr, gen))
}

func (p *Tracker) tlsDialer(dial DialFunc, step tlsStep) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		hs := p.host(SchemeHTTPS, addr)
		return p.dialTracked(ctx, hs, dial, network, addr, func(ctx context.Context, c net.Conn) (net.Conn, error) {
			tc := step.client(c, addr, nil)
			start := time.Now()
			if err := step.handshake(ctx, tc, addr); err != nil {
				c.Close()
				p.handshakeFailed(ctx, hs, err)
				return nil, err
			}
			p.handshakeDone(hs, c.(*trackedConn), tc.ConnectionState(), time.Since(start))
			return tc, nil
		})
	}
}

// handshakeFailed counts a failed TLS handshake with hs's origin.
func (p *Tracker) handshakeFailed(ctx context.Context, hs *hostStats, err error) {
	hs.tlsErrors.Add(1)
	p.totals[SchemeHTTPS].tlsErrors.Add(1)
	if ctx.Err() == nil {
		hs.setErr("tls handshake: " + err.Error())
	}
}

// handshakeDone counts a TLS handshake on c with hs's origin that took d
// (full or resumed) and notes the protocol the origin chose.
func (p *Tracker) handshakeDone(hs *hostStats, c *trackedConn, st tls.ConnectionState, d time.Duration) {
	if st.DidResume {
		hs.tlsResumed.Add(1)
		p.totals[SchemeHTTPS].tlsResumed.Add(1)
	} else {
		hs.tlsFull.Add(1)
		p.totals[SchemeHTTPS].tlsFull.Add(1)
	}
	if p.onTLS != nil {
		p.onTLS(st.DidResume, d)
	}
	if st.NegotiatedProtocol == "h2" {
		c.markH2()
		hs.proto.Store(protoH2)
	} else {
		hs.proto.Store(protoHTTP1)
	}
}

func (p *Tracker) dialFailed(ctx context.Context, hs *hostStats, err error) {
	hs.dialErrors.Add(1)
	p.totals[hs.scheme].dialErrors.Add(1)
	if ctx.Err() == nil {
		hs.setErr("dial: " + err.Error())
	}
}

// track wraps c, dialed to addr under the policy generation gen.
func (p *Tracker) track(c net.Conn, hs *hostStats, addr string, gen uint64) net.Conn {
	hs.opened.Add(1)
	hs.open.Add(1)
	t := &p.totals[hs.scheme]
	t.opened.Add(1)
	t.open.Add(1)
	tc := &trackedConn{Conn: c, hs: hs, total: t, addr: addr, policy: p.policy}
	tc.gen.Store(gen)
	return tc
}

// policyGen is the destination policy's generation now; 0 without one.
func (p *Tracker) policyGen() uint64 {
	if p.policy == nil {
		return 0
	}
	return p.policy.generation()
}

// trackedConn counts its Close, once. Its Read and Write (keepalive.go)
// note its last activity once its origin announced a keep-alive timeout.
type trackedConn struct {
	net.Conn
	hs     *hostStats
	total  *counters
	closed atomic.Bool
	h2     atomic.Bool
	// last is the time of the last activity, in Unix nanoseconds, once the
	// retirement timer is armed; 0 before, retiredMark once retired.
	last  atomic.Int64
	timer atomic.Pointer[time.Timer]
	// busy counts the requests holding the connection, from the
	// transport's GotConn to its PutIdleConn; traced is set once a request
	// was counted so (keepalive.go: only requests to an origin that
	// announced its keep-alive timeout are).
	busy   atomic.Int32
	traced atomic.Bool
	// pending holds bytes a prewarm watcher read from Conn before the
	// transport got the connection; Read returns them first.
	pending []byte
	// probe makes Read answer errProbe without reading: the H1Pool's
	// check for TLS records already buffered (h1conn.go). Only the
	// request holding the connection sets it.
	probe bool
	// prewarmed is set before a prewarmed connection is handed to the
	// transport (prewarm.go), so never written once shared.
	prewarmed bool
	// addr is the address the transport dialed; gen the generation of
	// the destination policy it was checked under. policy (nil: none)
	// re-checks it before a write once the policy changed (recheck.go).
	addr   string
	gen    atomic.Uint64
	policy policyChecker
}

// Prewarmed reports whether c was opened ahead of the request that first
// used it (-prewarm): that request paid no connect and no handshake.
func (c *trackedConn) Prewarmed() bool { return c.prewarmed }

// markH2 counts c among the open HTTP/2 connections, until it closes.
func (c *trackedConn) markH2() {
	c.h2.Store(true)
	c.hs.h2open.Add(1)
	c.total.h2open.Add(1)
}

func (c *trackedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.hs.closed.Add(1)
		c.hs.open.Add(-1)
		c.total.closed.Add(1)
		c.total.open.Add(-1)
		if c.h2.Load() {
			c.hs.h2open.Add(-1)
			c.total.h2open.Add(-1)
		}
		if t := c.timer.Load(); t != nil {
			t.Stop()
		}
		if w := c.hs.warm.Load(); w != nil {
			w.poke()
		}
	}
	return c.Conn.Close()
}

func (h *hostStats) setErr(msg string) {
	h.lastErr.Store(&lastError{at: time.Now(), msg: msg})
}

// host returns the stats of key, a URL host or a dialed host:port.
func (p *Tracker) host(s Scheme, key string) *hostStats {
	if hs := p.hosts.Load().byKey[s][key]; hs != nil {
		return hs
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.hosts.Load()
	if hs := old.byKey[s][key]; hs != nil {
		return hs
	}
	addr := canonicalAddr(s, key)
	m := old.clone()
	if m.n >= maxHosts {
		m.prune()
	}
	hs := m.byKey[s][addr]
	if hs == nil {
		hs = &hostStats{addr: addr, scheme: s, dialing: make(chan struct{}, MaxDialsPerHost)}
		m.byKey[s][addr] = hs
		m.n++
	}
	m.byKey[s][key] = hs
	p.hosts.Store(m)
	return hs
}

func (m *hostMap) clone() *hostMap {
	c := &hostMap{n: m.n}
	for i := range m.byKey {
		c.byKey[i] = make(map[string]*hostStats, len(m.byKey[i])+2)
		for k, v := range m.byKey[i] {
			c.byKey[i][k] = v
		}
	}
	return c
}

// prune drops the origins with nothing open and nothing in flight.
func (m *hostMap) prune() {
	for s := range m.byKey {
		for k, hs := range m.byKey[s] {
			if hs.open.Load() == 0 && hs.inflight.Load() == 0 && hs.warm.Load() == nil && len(hs.dialing) == 0 {
				delete(m.byKey[s], k)
				if k == hs.addr {
					m.n--
				}
			}
		}
	}
}

// canonicalAddr is host:port with the scheme's default port, as the
// transport dials it.
func canonicalAddr(s Scheme, hostport string) string {
	u := url.URL{Host: hostport}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if s == SchemeHTTPS {
			port = "443"
		}
	}
	return net.JoinHostPort(host, port)
}
