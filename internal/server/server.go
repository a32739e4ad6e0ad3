// Package server runs warmproxy: the listener, the http.Server and its
// timeouts, the registry of hijacked connections, and the drain order at
// shutdown. It knows no request semantics.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// Run serves cfg until ctx is done, then drains: stop accepting, let
// in-flight requests and tunnels finish within cfg.ShutdownGrace, close
// what is left, close idle upstream connections, flush the access log.
// Access records go to accessOut; lifecycle events to log.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, accessOut io.Writer, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	up, err := upstream.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	access := newLiveAccessLog(accessOut, cfg.LogFormat)
	defer access.Close()
	// Reloadable parts; access rules and credentials join here.
	reloaders := []reloader{access.reloader(cfg.LogFormat)}

	var ready atomic.Bool
	tunnels := &connRegistry{conns: map[net.Conn]struct{}{}}
	admin := http.NewServeMux()
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	admin.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})

	handler := proxy.New(proxy.Options{
		Transport: up.Transport,
		Dial:      proxy.DialFunc(up.Dial),
		Config:    cfg,
		Admin:     admin,
		Record:    access.Log,
		Tunnels:   tunnels,
		Log:       log,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ClientHeaderTimeout,
		IdleTimeout:       cfg.ClientIdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	ready.Store(true)
	log.Info("listening", "addr", ln.Addr().String(), "log_format", cfg.LogFormat)

	for running, stop := cfg, false; !stop; {
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
			stop = true
		case next := <-o.reload:
			running = reload(log, cfg, running, next, reloaders)
		}
	}

	ready.Store(false)
	log.Info("shutting down", "grace", cfg.ShutdownGrace)
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	// Shutdown closes the listener and idle client connections, and
	// answers in-flight requests with "Connection: close". Hijacked
	// tunnels are not its business: they get the grace period too.
	shutdownErr := srv.Shutdown(drainCtx)
	tunnels.waitOrClose(drainCtx)
	if shutdownErr != nil {
		srv.Close()
	}
	up.Transport.CloseIdleConnections()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// connRegistry holds the hijacked connections of open tunnels.
type connRegistry struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Track adds c; the returned func removes it.
func (r *connRegistry) Track(c net.Conn) func() {
	r.mu.Lock()
	r.conns[c] = struct{}{}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}
}

func (r *connRegistry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// waitOrClose waits for the tunnels to end on their own until ctx is done,
// then closes those still open.
func (r *connRegistry) waitOrClose(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for r.len() > 0 {
		select {
		case <-ctx.Done():
			r.mu.Lock()
			for c := range r.conns {
				c.Close()
			}
			r.mu.Unlock()
			return
		case <-t.C:
		}
	}
}
