// Package upstream owns every connection warmproxy opens to an origin: the
// dialer (the destination guard over internal/dnscache, happy eyeballs,
// parent proxies, the TLS step with its rules, prewarm), the pools built
// on it (the *http.Transport, and H1Pool for the HTTP/1.1 data path), and
// the Tracker that counts their connections and requests per origin. New
// composes them into one Upstream, whose methods are what its users get:
// the round tripper and dials, prewarm's start and readiness, the
// proxy's own addresses and policy reloads, the Tracker and DNS cache to
// report on, and Close. It never touches a client's ResponseWriter.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/dnscache"
	"github.com/warmproxy/warmproxy/internal/headlimit"
	"github.com/warmproxy/warmproxy/internal/limit"
)

// tlsSessionCacheSize is the number of origins whose TLS sessions are kept
// for resumption.
const tlsSessionCacheSize = 4096

// expectContinueTimeout is how long a request with "Expect: 100-continue"
// waits for the origin's 100 before its body is sent anyway (RFC 9110
// section 10.1.1).
const expectContinueTimeout = time.Second

// DialFunc opens a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Upstream is the dial stack and the pools on it, as New composes them;
// its parts are reached only through its methods. The server hands the
// proxy RoundTripper, Dial and DialTLS, and the HTTP/1.1 connection
// server NewH1Pool, H1Key and GiveH2; it tells it the proxy's own
// addresses (SetSelf) and then calls Start, reads Ready, Tracker and DNS
// for the admin pages and metrics, applies a reloaded destination policy
// with SetPolicy, and ends it with Close.
type Upstream struct {
	// transport is the pooled net/http transport under rt.
	transport *http.Transport
	// tracker counts the transport's connections and, through rt, its
	// requests, per origin.
	tracker *Tracker
	// guard enforces the destination policy on every dial (guard.go).
	guard *Guard
	// prewarm holds connections open to the origins of cfg.Prewarm once
	// started; nil when there are none (prewarm.go).
	prewarm *Prewarm
	// dial opens origin connections: the guard's, or the parent proxy's.
	dial DialFunc
	// rt is what RoundTripper returns.
	rt http.RoundTripper
	// tls is the TLS step of the transport's https dials and of DialTLS,
	// under the per-host TLS settings (-upstream-tls).
	tls tlsStep
	// parent is the parent proxy, nil without one.
	parent *parent
	// given holds the HTTP/2 connections the HTTP/1.1 pool dialed and
	// handed to the transport (GiveH2).
	given givenConns
}

// RoundTripper is the transport requests go through: the pooled
// transport (with an http parent's 407 to a plain-http request turned
// into a *ParentError, see parentAuthCheck) under the per-origin request
// limit (-max-conns-per-host and its queue), its requests counted per
// origin by Tracker.
func (u *Upstream) RoundTripper() http.RoundTripper { return u.rt }

// Transport is the pooled transport under RoundTripper, without the
// per-origin request limit, the request counting and the parent's 407
// check: its connections still count in Tracker. It is there for tests in
// other packages that put a proxy straight on the pool or change its dial
// function; the proxy itself uses RoundTripper.
func (u *Upstream) Transport() *http.Transport { return u.transport }

// Dial opens a connection to addr as the pooled transport does: through
// the guard, and the parent proxy if there is one. CONNECT tunnels use
// it.
func (u *Upstream) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return u.dial(ctx, network, addr)
}

// SetSelf records the proxy's listen addresses: a request that would loop
// back to one of them is refused at dial time.
func (u *Upstream) SetSelf(addrs ...net.Addr) { u.guard.SetSelf(addrs...) }

// Start begins prewarming (-prewarm). Call it once SetSelf knows the
// proxy's own addresses: a prewarm target that loops back to the proxy is
// refused then.
func (u *Upstream) Start(log *slog.Logger) { u.prewarm.Start(log) }

// Ready is closed once every prewarmed origin has its connections, or
// gave up; at once without -prewarm.
func (u *Upstream) Ready() <-chan struct{} { return u.prewarm.Ready() }

// SetPolicy replaces the destination policy (allow, deny, deny-private)
// for every dial from now on. The idle connections were checked against
// the old policy when they were dialed, so it closes them: the prewarmed
// ones (their keepers re-dial under the new policy) and the transport's.
// A connection busy meanwhile is checked against the new policy before
// its next write (recheck.go), and so are the idle connections of an
// H1Pool (NewH1Pool), which it does not close: the request head written
// through PConn.Conn runs that check.
func (u *Upstream) SetPolicy(p *acl.Policy) {
	u.guard.SetPolicy(p)
	u.prewarm.Flush()
	u.transport.CloseIdleConnections()
}

// Tracker counts the connections and requests of the pools per origin:
// metrics and /debug/pool read it.
func (u *Upstream) Tracker() *Tracker { return u.tracker }

// DNS returns the dialer's DNS cache, nil when caching is off.
func (u *Upstream) DNS() *dnscache.Cache { return u.guard.DNS() }

// Close stops prewarming (closing the stashed connections) and closes the
// transport's idle connections, the drain's last step; connections
// requests still hold are theirs to finish.
func (u *Upstream) Close() {
	u.prewarm.Stop()
	u.transport.CloseIdleConnections()
}

// Option adjusts what New builds.
type Option func(*options)

type options struct {
	resolver *net.Resolver
	log      *slog.Logger
}

// WithLogger makes New log what it set up that an operator should know
// of: a parent proxy, TLS rules that skip verification.
func WithLogger(log *slog.Logger) Option {
	return func(o *options) { o.log = log }
}

// WithResolver makes the dialer resolve origin names with r instead of
// the system's resolver, e.g. a test's resolver that asks a DNS server on
// loopback.
func WithResolver(r *net.Resolver) Option {
	return func(o *options) { o.resolver = r }
}

// New builds the dial stack, the pooled transport and the round tripper
// over it from cfg.
func New(cfg config.Parsed, opts ...Option) (*Upstream, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	roots, err := rootCAs(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	rules, err := newTLSRules(cfg.UpstreamTLS, roots, o.log)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{
		Timeout:   cfg.DialTimeout,
		KeepAlive: 30 * time.Second,
		Resolver:  o.resolver,
	}
	guard, err := NewGuard(cfg, dialer)
	if err != nil {
		return nil, err
	}
	// With a parent proxy (parent.go) every origin dial goes through it,
	// and plain-http requests go to an http parent in absolute form.
	dial, transportDial := DialFunc(guard.DialContext), DialFunc(guard.DialContext)
	var proxyFunc func(*http.Request) (*url.URL, error)
	par, err := newParent(cfg, guard, o.log)
	if err != nil {
		return nil, err
	}
	if par != nil {
		dial, transportDial = par.dial, par.transportDial
		if par.Scheme == config.ParentHTTP {
			proxyFunc = par.proxy
		}
	}
	t := &http.Transport{
		// Never http.ProxyFromEnvironment: HTTP_PROXY in warmproxy's own
		// environment usually points at warmproxy itself.
		Proxy:                  proxyFunc,
		DialContext:            transportDial,
		MaxIdleConns:           cfg.MaxIdle,
		MaxIdleConnsPerHost:    cfg.MaxIdlePerHost,
		MaxConnsPerHost:        cfg.MaxConnsPerHost,
		IdleConnTimeout:        cfg.IdleTimeout,
		TLSHandshakeTimeout:    cfg.TLSHandshakeTimeout,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout:  expectContinueTimeout,
		MaxResponseHeaderBytes: headlimit.MaxResponseBytes,
		// Bodies pass through untouched: no Accept-Encoding is added and
		// nothing is decompressed.
		DisableCompression: true,
		WriteBufferSize:    32 << 10,
		ReadBufferSize:     32 << 10,
		TLSClientConfig: &tls.Config{
			RootCAs:            roots,
			ClientSessionCache: tls.NewLRUClientSessionCache(tlsSessionCacheSize),
			MinVersion:         tls.VersionTLS12,
		},
	}
	configureHTTP2(t, cfg.Config)
	tracker := NewTracker()
	tracker.honorKeepAlive = cfg.HonorKeepAliveTimeout
	tracker.policy = &recheck{guard: guard, parent: par}
	step := newTLSStep(rules, t)
	tracker.instrument(t, step)
	// After instrument: the stash sits in front of the dial functions the
	// transport ends up with, and prewarm dials through them (prewarm.go).
	warm, err := newPrewarm(cfg, tracker, t, par)
	if err != nil {
		return nil, err
	}
	var rt http.RoundTripper = t
	if par != nil && par.Scheme == config.ParentHTTP {
		rt = &parentAuthCheck{next: t, p: par}
	}
	rt = tracker.Wrap(limit.RoundTripper(rt, cfg.MaxConnsPerHost, cfg.MaxConnsPerHostQueue, cfg.UpstreamQueueTimeout))
	return &Upstream{transport: t, tracker: tracker, guard: guard, prewarm: warm, dial: dial, rt: rt,
		tls: step, parent: par}, nil
}

// minH2PingTimeout is the shortest wait for a ping's answer. A ping is sent
// only on a connection that has been silent, so no data is queued ahead of
// its answer; a false alarm still costs a connection.
const minH2PingTimeout = 2 * time.Second

// configureHTTP2 sets which protocols t offers https origins. With HTTP/2
// on, the transport adds "h2" to t.TLSClientConfig.NextProtos on its first
// use, and the TLS step (handshake.go) clones that config at every dial, so
// the offer reaches each handshake; an origin that picks h2 gets one
// connection carrying many streams. Pool limits then count connections:
// MaxConnsPerHost caps HTTP/2 connections as it caps HTTP/1.1 ones, a
// second HTTP/2 connection is opened only when the origin's
// SETTINGS_MAX_CONCURRENT_STREAMS are all in use, and MaxIdlePerHost does
// not apply (an HTTP/2 connection stays until IdleTimeout or a failed
// ping). The per-origin request limit (-max-conns-per-host's queue) still
// counts requests, so it bounds streams.
func configureHTTP2(t *http.Transport, cfg config.Config) {
	var p http.Protocols
	p.SetHTTP1(true)
	if cfg.UpstreamHTTP2 {
		p.SetHTTP2(true)
		h2 := &http.HTTP2Config{}
		if cfg.UpstreamH2PingInterval > 0 {
			h2.SendPingTimeout = cfg.UpstreamH2PingInterval
			h2.PingTimeout = max(cfg.UpstreamH2PingInterval, minH2PingTimeout)
		}
		t.HTTP2 = h2
	}
	t.Protocols = &p
}

// rootCAs returns the system roots plus the PEM certificates in file. With
// no file it returns nil, which makes crypto/tls use the system roots (and
// so SSL_CERT_FILE and SSL_CERT_DIR).
func rootCAs(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ca-file: %v", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca-file %s: no PEM certificate found", file)
	}
	return pool, nil
}

// DialTLS dials addr with the pool's dialer (through the parent proxy, if
// any) and completes a TLS handshake with the pool's TLS settings (roots,
// session cache, handshake timeout, the matching -upstream-tls rule),
// offering HTTP/1.1 only. Upgrade requests to https origins use it: after
// a 101 their connection belongs to a tunnel, so it never joins the pool.
func (u *Upstream) DialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("dial tls %s: %v", addr, err)
	}
	raw, err := u.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := u.tls.client(raw, addr, []string{"http/1.1"})
	if err := u.tls.handshake(ctx, tc, addr); err != nil {
		raw.Close()
		return nil, err
	}
	return tc, nil
}
