package upstream

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Scheme indexes the per-scheme totals of a Pool.
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

// maxHosts is how many origins a Pool keeps statistics for. Past it, the
// origins with no open connection and no request in flight are forgotten,
// so a proxy that sees many hosts does not grow without bound. The
// per-scheme totals are never forgotten.
const maxHosts = 1024

// Pool counts the connections warmproxy holds to origins and the requests
// sent over them, per origin (host:port and scheme) and in total. It sees
// connections through the dial functions it wraps and requests through
// the RoundTripper Wrap returns; counting is a few atomic adds.
type Pool struct {
	totals [numSchemes]counters
	// hosts is replaced, never changed in place, so lookups take no lock;
	// mu serializes the writers.
	hosts atomic.Pointer[hostMap]
	mu    sync.Mutex
	// onTLS, if set, is told of every successful TLS handshake.
	onTLS func(resumed bool, d time.Duration)
	// tlsRules adjust the TLS settings per origin (tlsrules.go).
	tlsRules *tlsRules
	// honorKeepAlive makes the pool learn origins' "Keep-Alive: timeout=N"
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

// NewPool returns an empty Pool.
func NewPool() *Pool {
	p := &Pool{}
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
func (p *Pool) SetTLSObserver(fn func(resumed bool, d time.Duration)) { p.onTLS = fn }

// instrument makes t count its connections in p. It wraps t.DialContext,
// whatever it is, for http, and for https sets t.DialTLSContext to dial
// the same way, then run the TLS handshake p times. t's own TLS settings
// are kept: the handshake uses t.TLSClientConfig and t.TLSHandshakeTimeout,
// and the transport still runs the request's httptrace TLS hooks (on the
// finished handshake). Call it once t's dialer is set.
func (p *Pool) instrument(t *http.Transport) {
	dial := DialFunc(t.DialContext)
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	t.DialContext = p.dialer(dial)
	t.DialTLSContext = p.tlsDialer(dial, t.TLSClientConfig, t.TLSHandshakeTimeout)
}

func (p *Pool) dialer(dial DialFunc) DialFunc {
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
func (p *Pool) dialTracked(ctx context.Context, hs *hostStats, dial DialFunc, network, addr string, then func(context.Context, net.Conn) (net.Conn, error)) (net.Conn, error) {
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

func (p *Pool) tlsDialer(dial DialFunc, base *tls.Config, timeout time.Duration) DialFunc {
	if base == nil {
		base = &tls.Config{}
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		hs := p.host(SchemeHTTPS, addr)
		return p.dialTracked(ctx, hs, dial, network, addr, func(ctx context.Context, c net.Conn) (net.Conn, error) {
			return p.clientHandshake(ctx, hs, c, base, addr, timeout)
		})
	}
}

// clientHandshake runs the TLS handshake on c, a tracked connection to
// addr, and counts it (full, resumed or failed) for hs.
func (p *Pool) clientHandshake(ctx context.Context, hs *hostStats, c net.Conn, base *tls.Config, addr string, timeout time.Duration) (net.Conn, error) {
	cfg := p.tlsRules.clientConfig(base, addr)
	tc := tls.Client(c, cfg)
	start := time.Now()
	if err := handshake(ctx, tc, addr, timeout); err != nil {
		c.Close()
		hs.tlsErrors.Add(1)
		p.totals[SchemeHTTPS].tlsErrors.Add(1)
		if ctx.Err() == nil {
			hs.setErr("tls handshake: " + err.Error())
		}
		return nil, err
	}
	d := time.Since(start)
	resumed := tc.ConnectionState().DidResume
	if resumed {
		hs.tlsResumed.Add(1)
		p.totals[SchemeHTTPS].tlsResumed.Add(1)
	} else {
		hs.tlsFull.Add(1)
		p.totals[SchemeHTTPS].tlsFull.Add(1)
	}
	if p.onTLS != nil {
		p.onTLS(resumed, d)
	}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		c.(*trackedConn).markH2()
		hs.proto.Store(protoH2)
	} else {
		hs.proto.Store(protoHTTP1)
	}
	return tc, nil
}

func (p *Pool) dialFailed(ctx context.Context, hs *hostStats, err error) {
	hs.dialErrors.Add(1)
	p.totals[hs.scheme].dialErrors.Add(1)
	if ctx.Err() == nil {
		hs.setErr("dial: " + err.Error())
	}
}

// track wraps c, dialed to addr under the policy generation gen.
func (p *Pool) track(c net.Conn, hs *hostStats, addr string, gen uint64) net.Conn {
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
func (p *Pool) policyGen() uint64 {
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
func (p *Pool) host(s Scheme, key string) *hostStats {
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

// Wrap returns next counting, per origin, the requests it carries and
// those in flight: from RoundTrip until the response body is read to its
// end or closed (for a 101 upgrade: until the upgraded stream closes).
func (p *Pool) Wrap(next http.RoundTripper) http.RoundTripper {
	return &trackingTransport{next: next, p: p}
}

type trackingTransport struct {
	next http.RoundTripper
	p    *Pool
}

func (t *trackingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s := SchemeHTTP
	if req.URL.Scheme == "https" {
		s = SchemeHTTPS
	}
	hs := t.p.host(s, req.URL.Host)
	total := &t.p.totals[s]
	hs.requests.Add(1)
	hs.inflight.Add(1)
	total.requests.Add(1)
	total.inflight.Add(1)
	if t.p.honorKeepAlive && hs.keepAlive.Load() > 0 {
		req = withConnTrace(req)
	}
	req, dialsDone := bindDials(req)
	resp, err := t.next.RoundTrip(req)
	dialsDone(err == nil)
	if err == nil && t.p.honorKeepAlive {
		if v, ok := resp.Header["Keep-Alive"]; ok {
			hs.learnKeepAlive(v)
		}
	}
	if err != nil {
		hs.inflight.Add(-1)
		total.inflight.Add(-1)
		hs.failed.Add(1)
		total.failed.Add(1)
		if req.Context().Err() == nil {
			hs.setErr(err.Error())
		}
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusSwitchingProtocols:
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			resp.Body = &trackedStream{trackedBody: trackedBody{rc: rwc, hs: hs, total: total}, w: rwc}
			break
		}
		fallthrough
	case resp.Body == nil || resp.Body == http.NoBody:
		hs.inflight.Add(-1)
		total.inflight.Add(-1)
	default:
		resp.Body = &trackedBody{rc: resp.Body, hs: hs, total: total}
	}
	return resp, nil
}

// trackedBody ends its request's time in flight at EOF or Close.
type trackedBody struct {
	rc    io.ReadCloser
	hs    *hostStats
	total *counters
	done  atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.end()
	}
	return n, err
}

func (b *trackedBody) Close() error {
	b.end()
	return b.rc.Close()
}

func (b *trackedBody) end() {
	if b.done.CompareAndSwap(false, true) {
		b.hs.inflight.Add(-1)
		b.total.inflight.Add(-1)
	}
}

// trackedStream is a trackedBody over an upgraded (101) stream, still
// writable.
type trackedStream struct {
	trackedBody
	w io.Writer
}

func (s *trackedStream) Write(p []byte) (int, error) { return s.w.Write(p) }

// Stats describe the connections to one origin, or to all origins of a
// scheme.
type Stats struct {
	Scheme string `json:"scheme"`
	// Host is the origin's host:port; empty in totals.
	Host string `json:"host,omitempty"`
	// Open counts connections open now: Active ones carry a request, Idle
	// ones wait in the pool.
	Open   int64 `json:"open"`
	Active int64 `json:"active"`
	Idle   int64 `json:"idle"`
	// HTTP2 counts the open connections that speak HTTP/2; each carries
	// many concurrent requests, so Active and Idle count requests' share
	// of connections only for HTTP/1.1.
	HTTP2 int64 `json:"http2,omitempty"`
	// InFlight counts requests under way, including those still waiting
	// for a connection.
	InFlight int64 `json:"in_flight"`
	// Requests counts the requests sent, Failed those of them that got
	// no response; Opened and Closed count the connections.
	Requests uint64 `json:"requests"`
	Failed   uint64 `json:"failed"`
	Opened   uint64 `json:"opened"`
	Closed   uint64 `json:"closed"`
	// ReuseRatio is the share of answered requests that needed no new
	// connection: 1 - Opened/(Requests-Failed), at least 0; 0 with no
	// answered request.
	ReuseRatio float64 `json:"reuse_ratio"`
	// Reused counts the answered requests that needed no new connection,
	// at least 0: Requests-Failed-Opened. RoundTripsSaved is what they
	// saved, at least: one per reused request for the TCP handshake, one
	// more for https (a TLS 1.3 handshake; TLS 1.2 costs two).
	Reused          uint64 `json:"reused"`
	RoundTripsSaved uint64 `json:"round_trips_saved"`
	// Protocol is what the latest connection to the origin speaks,
	// "HTTP/1.1" or "HTTP/2"; empty in totals and before a connection.
	Protocol   string `json:"protocol,omitempty"`
	DialErrors uint64 `json:"dial_errors"`
	TLSFull    uint64 `json:"tls_full,omitempty"`
	TLSResumed uint64 `json:"tls_resumed,omitempty"`
	TLSErrors  uint64 `json:"tls_errors,omitempty"`
	// Retired counts connections closed shortly before the keep-alive
	// timeout the origin announced; KeepAliveTimeout is that timeout in
	// seconds (0: none announced).
	Retired          uint64  `json:"retired,omitempty"`
	KeepAliveTimeout float64 `json:"keepalive_timeout_s,omitempty"`
	// Warm counts the prewarmed connections waiting for a first request.
	Warm int `json:"warm,omitempty"`
	// DialWaits counts the new-connection dials that waited for one of
	// the origin's MaxDialsPerHost slots.
	DialWaits uint64 `json:"dial_waits,omitempty"`
	// LastError is the latest failure to reach the origin (dial, TLS, or a
	// request that got no response), and LastErrorAt when it happened.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

func (c *counters) stats(s Scheme) Stats {
	st := Stats{
		Scheme:     s.String(),
		Open:       max(c.open.Load(), 0),
		InFlight:   max(c.inflight.Load(), 0),
		HTTP2:      max(c.h2open.Load(), 0),
		Requests:   c.requests.Load(),
		Failed:     c.failed.Load(),
		Opened:     c.opened.Load(),
		Closed:     c.closed.Load(),
		DialErrors: c.dialErrors.Load(),
		TLSFull:    c.tlsFull.Load(),
		TLSResumed: c.tlsResumed.Load(),
		TLSErrors:  c.tlsErrors.Load(),
		Retired:    c.retired.Load(),
	}
	st.Active = min(st.InFlight, st.Open)
	st.Idle = st.Open - st.Active
	if answered := st.Requests - min(st.Failed, st.Requests); answered > st.Opened {
		st.ReuseRatio = 1 - float64(st.Opened)/float64(answered)
		st.Reused = answered - st.Opened
	}
	st.RoundTripsSaved = st.Reused * roundTripsPerHandshake(s)
	return st
}

// roundTripsPerHandshake is what a new connection of scheme s costs
// before its first request, at least: TCP, plus TLS 1.3 for https.
func roundTripsPerHandshake(s Scheme) uint64 {
	if s == SchemeHTTPS {
		return 2
	}
	return 1
}

// Totals returns the stats over every origin of scheme s.
func (p *Pool) Totals(s Scheme) Stats { return p.totals[s].stats(s) }

// Hosts returns the stats of each origin, ordered by scheme and host.
func (p *Pool) Hosts() []Stats {
	m := p.hosts.Load()
	out := make([]Stats, 0, m.n)
	for s := range m.byKey {
		for k, hs := range m.byKey[s] {
			if k != hs.addr {
				continue
			}
			st := hs.stats(Scheme(s))
			st.Host = hs.addr
			st.Protocol = protoNames[hs.proto.Load()]
			st.KeepAliveTimeout = hs.keepAliveTimeout().Seconds()
			st.DialWaits = hs.dialWaits.Load()
			if w := hs.warm.Load(); w != nil {
				st.Warm = w.stashed()
			}
			if le := hs.lastErr.Load(); le != nil {
				st.LastError, st.LastErrorAt = le.msg, le.at
			}
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b Stats) int {
		if c := strings.Compare(a.Scheme, b.Scheme); c != 0 {
			return c
		}
		return strings.Compare(a.Host, b.Host)
	})
	return out
}
