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
	"github.com/warmproxy/warmproxy/internal/limit"
	"github.com/warmproxy/warmproxy/internal/metrics"
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
	up, err := upstream.New(cfg, upstream.WithLogger(log))
	if err != nil {
		return err
	}
	// The handler owns the client list; the accept-time check reads it
	// (handler is set before the first Accept).
	var handler *proxy.Handler
	lim := newLimits(cfg, func() *acl.Clients { return handler.Clients() }, log)
	acc, err := proxy.NewAccess(cfg)
	if err != nil {
		return err
	}
	icpt, err := newInterceptor(cfg, log)
	if err != nil {
		return err
	}
	ln, adminLn, err := listenAll(cfg, up.Guard)
	if err != nil {
		return err
	}
	ln = lim.listener(ln)
	access := newLiveAccessLog(accessOut, cfg.LogFormat)
	defer access.Close()
	// Reloadable parts; the access rules and credentials join below.
	reloaders := []reloader{access.reloader(cfg.LogFormat)}

	var ready atomic.Bool
	tunnels := &connRegistry{conns: map[net.Conn]struct{}{}}
	var running inflight
	m := metrics.New(metrics.Options{Pool: up.Tracker, Tunnels: tunnels.open, DNS: up.Guard.DNS()})
	admin := adminMux(up, m, &ready)
	// With a separate admin address, the proxy's own address serves no
	// admin path: every origin-form request there gets usage help. The
	// admin address's root is the stats page; the proxy's root keeps the
	// usage help. pprof is served only there (Validate requires
	// admin-listen for it): /debug/pprof/cmdline shows the command line.
	proxyAdmin := admin
	if adminLn != nil {
		proxyAdmin = nil
		admin.Handle("GET /{$}", m.StatsHandler())
		if cfg.PProf {
			registerPprof(admin)
		}
	}

	handler = proxy.New(proxy.Options{
		Transport:       up.Tracker.Wrap(limit.RoundTripper(up.RoundTripper(), cfg.MaxConnsPerHost, cfg.MaxConnsPerHostQueue, cfg.UpstreamQueueTimeout)),
		Dial:            proxy.DialFunc(up.Dial),
		Config:          cfg,
		Admin:           proxyAdmin,
		Record:          m.Record(running.record(access.Log)),
		Tunnels:         lim.tracker(tunnels),
		Log:             log,
		DialTLS:         up.DialTLS,
		Access:          acc,
		Intercept:       icpt,
		TrailersDropped: m.TrailersDropped,
	})
	reloaders = append(reloaders, clientsReloader(handler), policyReloader(up, cfg))
	hand := newHandoffListener(ln.Addr())
	h1 := up.NewH1Pool(cfg)
	defer h1.Close()
	conns := h1server.New(handler, h1server.ConnOptions{
		Pool: h1, Key: up.H1Key, GiveH2: up.GiveH2, Gate: lim.requests, Busy: lim.rejectRequest,
		Fallback:      func(c net.Conn) { hand.push(proxy.WatchFraming(c)) },
		Closed:        func() { lim.served.Add(-1) },
		Running:       &running.n,
		HeaderTimeout: cfg.ClientHeaderTimeout, IdleTimeout: cfg.ClientIdleTimeout, BodyTimeout: cfg.ClientBodyTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes,
	})
	// HTTP/1.1 inside intercepted tunnels takes the same path.
	handler.SetInnerServer(conns.ServeIntercepted)
	srv := &http.Server{
		Handler:           lim.handler(running.handler(handler)),
		ReadHeaderTimeout: cfg.ClientHeaderTimeout,
		IdleTimeout:       cfg.ClientIdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext:       lim.connContext(proxy.FramingContext),
		ConnState:         lim.connState,
		Protocols:         protocols(cfg),
		// A bounded number of streams per h2c connection; a stream reset
		// frees its place at once, but its handler still counts in
		// -max-requests-in-flight until it returns.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: cfg.ClientH2CMaxStreams},
	}

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(hand) }()
	go func() {
		if err := acceptLoop(ln, conns); err != nil {
			errc <- err
		}
	}()
	// The admin server outlives the proxy's drain, so /readyz can say 503
	// while in-flight requests finish.
	adminErrc := make(chan error, 1)
	if adminLn != nil {
		stop := serveAdmin(cfg, log, admin, adminLn, adminErrc)
		defer stop()
	}
	// Prewarm dials once the guard knows the proxy's own addresses.
	up.Prewarm.Start(log)
	defer up.Prewarm.Stop()
	ready.Store(true)
	log.Info("listening", "addr", listenAddr(ln), "log_format", cfg.LogFormat, "h2c", cfg.ClientH2C)
	logStartHints(log, cfg, ln, adminLn)

	for running, stop := cfg, false; !stop; {
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case err := <-adminErrc:
			adminErrc <- err // for the deferred wait
			ln.Close()
			conns.Close()
			srv.Close()
			<-errc
			return fmt.Errorf("admin serve: %w", err)
		case <-ctx.Done():
			stop = true
		case next := <-o.reload:
			running = reload(log, cfg, running, next, reloaders)
		}
	}

	ready.Store(false)
	ln.Close()
	drain(log, cfg, srv, conns, handler, tunnels, &running, up)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// listenAll opens the proxy's listener and, with -admin-listen, the admin
// one, and tells guard both addresses: a proxy request to either is a
// loop.
func listenAll(cfg config.Parsed, guard *upstream.Guard) (ln, adminLn net.Listener, err error) {
	ln, err = listen(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("listen: %w", err)
	}
	if cfg.AdminListen == "" {
		guard.SetSelf(ln.Addr())
		return ln, nil, nil
	}
	if adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("admin listen: %w", err)
	}
	guard.SetSelf(ln.Addr(), adminLn.Addr())
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
		case <-up.Prewarm.Ready():
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
// is left, then close the upstream side. The admin server is not its
// business: it outlives the drain, so /readyz can say 503 meanwhile.
func drain(log *slog.Logger, cfg config.Parsed, srv *http.Server, conns *h1server.ConnServer, handler *proxy.Handler, tunnels *connRegistry, running *inflight, up *upstream.Upstream) {
	log.Info("shutting down", "grace", cfg.ShutdownGrace)
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	// Both servers close their idle client connections and answer
	// in-flight requests with "Connection: close" (the listener is
	// closed). Hijacked tunnels are not their business: they get the
	// grace period too.
	connsErr := make(chan error, 1)
	go func() { connsErr <- conns.Shutdown(drainCtx) }()
	shutdownErr := srv.Shutdown(drainCtx)
	if err := <-connsErr; err != nil && shutdownErr == nil {
		shutdownErr = err
	}
	// Intercepted tunnels carry keep-alive requests: their idle
	// connections close now, busy ones after the response.
	handler.ShutdownIntercepted(drainCtx)
	tunnels.waitEmpty(drainCtx)
	if shutdownErr != nil || tunnels.len() > 0 {
		cutLeft(log, srv, conns, tunnels, running)
	}
	tunnels.closeAll()
	up.Prewarm.Stop()
	up.Transport.CloseIdleConnections()
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
