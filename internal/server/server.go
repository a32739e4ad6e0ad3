package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/h1server"
	"github.com/warmproxy/warmproxy/internal/metrics"
	"github.com/warmproxy/warmproxy/internal/netx"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// Run serves cfg until ctx is done, then drains: stop accepting, let
// in-flight requests and tunnels finish within cfg.ShutdownGrace, close
// what is left, close idle upstream connections, flush the access log.
// Access records go to accessOut; lifecycle events to log.
func Run(ctx context.Context, cfg config.Parsed, log *slog.Logger, accessOut io.Writer, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s, err := build(cfg, log, accessOut)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.serve(ctx, o.reload); err != nil {
		return err
	}
	s.drain()
	if err := <-s.errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// instance is one run of the proxy: what build wires together, serve
// runs and close ends.
type instance struct {
	cfg     config.Parsed
	log     *slog.Logger
	up      *upstream.Upstream
	lim     *limits
	ln      net.Listener
	adminLn net.Listener // nil without -admin-listen
	access  *liveAccessLog
	// reloaders are the parts a configuration reload changes.
	reloaders []reloader
	ready     atomic.Bool
	tunnels   *connRegistry
	running   inflight
	admin     *http.ServeMux
	handler   *proxy.Handler
	h1        *upstream.H1Pool
	conns     *h1server.ConnServer
	// srv serves what conns hands over through hand.
	srv  *http.Server
	hand *netx.Listener
	// errc gets the proxy servers' errors, adminErrc the admin
	// server's; stopAdmin ends the admin server (nil without one).
	errc      chan error
	adminErrc chan error
	stopAdmin func()
}

// build wires the proxy from cfg: the upstream, the listeners, the proxy
// handler and the two servers that feed it (the HTTP/1.1 connection
// server, and net/http for what it hands over), none serving yet.
func build(cfg config.Parsed, log *slog.Logger, accessOut io.Writer) (*instance, error) {
	s := &instance{cfg: cfg, log: log, tunnels: &connRegistry{conns: map[net.Conn]struct{}{}}}
	var err error
	if s.up, err = upstream.New(cfg, upstream.WithLogger(log)); err != nil {
		return nil, err
	}
	// The handler owns the client list; the accept-time check reads it
	// (handler is set before the first Accept).
	s.lim = newLimits(cfg, func() *acl.Clients { return s.handler.Clients() }, log)
	acc, err := proxy.NewAccess(cfg)
	if err != nil {
		return nil, err
	}
	icpt, err := newInterceptor(cfg, log)
	if err != nil {
		return nil, err
	}
	if s.ln, s.adminLn, err = listenAll(cfg, s.up); err != nil {
		return nil, err
	}
	s.ln = s.lim.listener(s.ln)
	s.access = newLiveAccessLog(accessOut, cfg.LogFormat)
	m := metrics.New(metrics.Options{Tracker: s.up.Tracker(), Tunnels: s.tunnels.open, DNS: s.up.DNS()})
	proxyAdmin := s.adminPaths(m)
	s.handler = proxy.New(proxy.Options{
		Transport:       s.up.RoundTripper(),
		Dial:            s.up.Dial,
		Config:          cfg,
		Admin:           proxyAdmin,
		Record:          m.Record(s.running.record(s.access.Log)),
		Tunnels:         s.lim.tracker(s.tunnels),
		Log:             log,
		DialTLS:         s.up.DialTLS,
		Access:          acc,
		Intercept:       icpt,
		TrailersDropped: m.TrailersDropped,
	})
	// Reloadable parts: the access log format, the access rules and
	// credentials, the destination policy.
	s.reloaders = []reloader{s.access.reloader(cfg.LogFormat), clientsReloader(s.handler), policyReloader(s.up, cfg)}
	s.buildServers()
	return s, nil
}

// adminPaths builds the admin mux over m and returns what the proxy's own
// address serves of it. With a separate admin address, the proxy's own
// address serves no admin path: every origin-form request there gets
// usage help. The admin address's root is the stats page; the proxy's
// root keeps the usage help. pprof is served only there (Validate
// requires admin-listen for it): /debug/pprof/cmdline shows the command
// line.
func (s *instance) adminPaths(m *metrics.Metrics) (proxyAdmin *http.ServeMux) {
	s.admin = adminMux(s.up, m, &s.ready)
	if s.adminLn == nil {
		return s.admin
	}
	s.admin.Handle("GET /{$}", m.StatsHandler())
	if s.cfg.PProf {
		registerPprof(s.admin)
	}
	return nil
}

// buildServers sets up the HTTP/1.1 connection server, which takes every
// accepted connection, and the http.Server that serves what it hands
// over (h2c, and what it does not speak), both on the proxy handler.
func (s *instance) buildServers() {
	cfg, lim := s.cfg, s.lim
	hand := netx.NewListener(s.ln.Addr())
	s.hand = hand
	s.h1 = s.up.NewH1Pool(cfg)
	s.conns = h1server.New(s.handler, h1server.ConnOptions{
		Pool: s.h1, Key: s.up.H1Key, GiveH2: s.up.GiveH2, Gate: lim.requests, Busy: lim.rejectRequest,
		Fallback:      func(c net.Conn) { hand.Push(proxy.WatchFraming(c)) },
		Closed:        func() { lim.served.Add(-1) },
		Running:       &s.running.n,
		HeaderTimeout: cfg.ClientHeaderTimeout, IdleTimeout: cfg.ClientIdleTimeout, BodyTimeout: cfg.ClientBodyTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes,
	})
	// HTTP/1.1 inside intercepted tunnels takes the same path.
	s.handler.SetInnerServer(s.conns.ServeIntercepted)
	s.srv = &http.Server{
		Handler:           lim.handler(s.running.handler(s.handler)),
		ReadHeaderTimeout: cfg.ClientHeaderTimeout,
		IdleTimeout:       cfg.ClientIdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext:       lim.connContext(proxy.FramingContext),
		ConnState:         lim.connState,
		Protocols:         protocols(cfg),
		// A bounded number of streams per h2c connection; a stream reset
		// frees its place at once, but its handler still counts in
		// -max-requests-in-flight until it returns.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: cfg.ClientH2CMaxStreams},
	}
}

// serve accepts connections, starts the admin server and prewarming, and
// applies reloads until ctx is done (nil) or a server fails (its error).
func (s *instance) serve(ctx context.Context, reloads <-chan config.Parsed) error {
	s.errc = make(chan error, 2)
	go func() { s.errc <- s.srv.Serve(s.hand) }()
	go func() {
		if err := acceptLoop(s.ln, s.conns); err != nil {
			s.errc <- err
		}
	}()
	// The admin server outlives the proxy's drain, so /readyz can say 503
	// while in-flight requests finish.
	s.adminErrc = make(chan error, 1)
	if s.adminLn != nil {
		s.stopAdmin = serveAdmin(s.cfg, s.log, s.admin, s.adminLn, s.adminErrc)
	}
	// Prewarm dials once up knows the proxy's own addresses (listenAll).
	s.up.Start(s.log)
	s.ready.Store(true)
	s.log.Info("listening", "addr", listenAddr(s.ln), "log_format", s.cfg.LogFormat, "h2c", s.cfg.ClientH2C)
	logStartHints(s.log, s.cfg, s.ln, s.adminLn)

	for running := s.cfg; ; {
		select {
		case err := <-s.errc:
			return fmt.Errorf("serve: %w", err)
		case err := <-s.adminErrc:
			s.adminErrc <- err // for stopAdmin's wait
			s.ln.Close()
			s.conns.Close()
			s.srv.Close()
			<-s.errc
			return fmt.Errorf("admin serve: %w", err)
		case <-ctx.Done():
			return nil
		case next := <-reloads:
			running = reload(s.log, s.cfg, running, next, s.reloaders)
		}
	}
}

// close ends what outlives the drain, in this order: the upstream
// (prewarming and its idle connections), the admin server, the HTTP/1.1
// pool, the access log. It runs after a drain and after a failed serve
// alike, so it is where the upstream is closed.
func (s *instance) close() {
	s.up.Close()
	if s.stopAdmin != nil {
		s.stopAdmin()
	}
	s.h1.Close()
	s.access.Close()
}

// listenAll opens the proxy's listener and, with -admin-listen, the admin
// one, and tells up both addresses: a proxy request to either is a
// loop.
func listenAll(cfg config.Parsed, up *upstream.Upstream) (ln, adminLn net.Listener, err error) {
	ln, err = listen(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("listen: %w", err)
	}
	if cfg.AdminListen == "" {
		up.SetSelf(ln.Addr())
		return ln, nil, nil
	}
	if adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("admin listen: %w", err)
	}
	up.SetSelf(ln.Addr(), adminLn.Addr())
	return ln, adminLn, nil
}

// serveAdmin serves h on ln until the returned stop is called; Serve's
// error goes to errc (buffered, one place), and stop waits for it.
func serveAdmin(cfg config.Parsed, log *slog.Logger, h http.Handler, ln net.Listener, errc chan error) (stop func()) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ClientHeaderTimeout,
		IdleTimeout:       cfg.ClientIdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() { errc <- srv.Serve(ln) }()
	log.Info("admin listening", "addr", ln.Addr().String(), "pprof", cfg.PProf)
	return func() {
		srv.Close()
		<-errc
	}
}

// adminMux serves the admin paths: liveness, readiness (503 while
// shutting down or prewarming), the metrics and the pool and stats pages.
func adminMux(up *upstream.Upstream, m *metrics.Metrics, ready *atomic.Bool) *http.ServeMux {
	admin := http.NewServeMux()
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	admin.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		select {
		case <-up.Ready():
		default:
			http.Error(w, "prewarming", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	admin.Handle("GET /metrics", m.Handler())
	admin.Handle("GET /debug/pool", m.PoolHandler())
	admin.Handle("GET /stats", m.StatsHandler())
	return admin
}

// drain shuts the proxy down in the house order: stop accepting and let
// in-flight requests and tunnels finish within -shutdown-grace, cut what
// is left. The upstream side and the admin server are close's business:
// the admin server outlives the drain, so /readyz can say 503 meanwhile.
func (s *instance) drain() {
	s.ready.Store(false)
	s.ln.Close()
	s.log.Info("shutting down", "grace", s.cfg.ShutdownGrace)
	drainCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	// Both servers close their idle client connections and answer
	// in-flight requests with "Connection: close" (the listener is
	// closed). Hijacked tunnels are not their business: they get the
	// grace period too.
	connsErr := make(chan error, 1)
	go func() { connsErr <- s.conns.Shutdown(drainCtx) }()
	shutdownErr := s.srv.Shutdown(drainCtx)
	if err := <-connsErr; err != nil && shutdownErr == nil {
		shutdownErr = err
	}
	// Intercepted tunnels carry keep-alive requests: their idle
	// connections close now, busy ones after the response.
	s.handler.ShutdownIntercepted(drainCtx)
	s.tunnels.waitEmpty(drainCtx)
	if shutdownErr != nil || s.tunnels.len() > 0 {
		cutLeft(s.log, s.srv, s.conns, s.tunnels, &s.running)
	}
	s.tunnels.closeAll()
}

// connRegistry holds the hijacked connections of open tunnels.
type connRegistry struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// closed is set once the drain closed what was left; a conn tracked
	// after that is closed at once.
	closed bool
}

// Track adds c; the returned func removes it.
func (r *connRegistry) Track(c net.Conn) func() {
	r.mu.Lock()
	if r.closed {
		c.Close()
	}
	r.conns[c] = struct{}{}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}
}

// open is how many tunnels are open: each registers its client and its
// origin connection.
func (r *connRegistry) open() int { return r.len() / 2 }

func (r *connRegistry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// waitEmpty waits for the tunnels to end on their own until ctx is done.
func (r *connRegistry) waitEmpty(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for r.len() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// closeAll closes every tracked conn; any conn tracked later is closed at
// once.
func (r *connRegistry) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
}

// closeWait bounds how long the drain waits, after cutting what was left
// at the deadline, for the handlers to write their access records.
const closeWait = 2 * time.Second

// inflight counts the proxy handlers running, tunnels included, so the
// drain can say how many it cut and wait for their access records. Once
// cut is set, every record written is one of a request or tunnel the
// drain cut (nothing new is accepted by then), and says so.
type inflight struct {
	n   atomic.Int64
	cut atomic.Bool
}

func (f *inflight) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.n.Add(1)
		defer f.n.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// record marks the entries recorded after the cut with end=shutdown.
func (f *inflight) record(next func(*accesslog.Entry)) func(*accesslog.Entry) {
	return func(e *accesslog.Entry) {
		if f.cut.Load() {
			e.End = accesslog.EndShutdown
		}
		next(e)
	}
}

// cutLeft ends what the grace period left running: it logs how many
// requests and tunnels it cuts, closes their connections (which cancels
// the requests' upstream side too) and waits, at most closeWait, for
// their handlers to write their access records. The process still exits
// 0: the shutdown was asked for and went as configured; the Warn line and
// the records say what it cost.
func cutLeft(log *slog.Logger, srv *http.Server, conns *h1server.ConnServer, tunnels *connRegistry, f *inflight) {
	f.cut.Store(true)
	nTunnels := int64(tunnels.open())
	log.Warn("shutdown grace ran out, cut what was left", "requests", max(0, f.n.Load()-nTunnels), "tunnels", nTunnels)
	tunnels.closeAll()
	conns.Close()
	srv.Close()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(closeWait)
	for f.n.Load() > 0 && time.Now().Before(deadline) {
		<-t.C
	}
	if n := f.n.Load(); n > 0 {
		log.Warn("requests still running after the cut; their access records are lost", "requests", n)
	}
}

// registerPprof serves net/http/pprof on mux.
func registerPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
