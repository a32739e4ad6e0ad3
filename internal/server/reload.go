package server

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// Option changes how Run runs.
type Option func(*options)

type options struct {
	reload <-chan config.Parsed
}

// WithReload makes Run apply each Config received on ch, already
// parsed, to what can change while running (see reloader). Settings
// that cannot change are logged as needing a restart and keep their value.
func WithReload(ch <-chan config.Parsed) Option {
	return func(o *options) { o.reload = ch }
}

// A reloader owns settings that can change while running. prepare checks
// a new Config and readies the change without making it, so that when any
// reloader fails none has changed anything; commit makes the change and
// cannot fail.
type reloader struct {
	// keys are the settings it applies, as named in warmproxy.yaml.
	keys    []string
	prepare func(cfg config.Parsed) (commit func(), err error)
}

// reload applies next to the running process: every reloader prepares,
// then, if all succeeded, every one commits. started is the Config the
// process started with, running the one last applied; it returns the new
// running Config, or running itself when the reload failed.
func reload(log *slog.Logger, started, running, next config.Parsed, rs []reloader) config.Parsed {
	var live []string
	commits := make([]func(), 0, len(rs))
	var errs []error
	for _, r := range rs {
		live = append(live, r.keys...)
		commit, err := r.prepare(next)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		commits = append(commits, commit)
	}
	if err := errors.Join(errs...); err != nil {
		log.Error("reload failed, keeping the old configuration", "err", err)
		return running
	}
	for _, commit := range commits {
		commit()
	}
	var applied, restart []string
	for _, k := range config.Diff(running.Config, next.Config) {
		if slices.Contains(live, k) {
			applied = append(applied, k)
		}
	}
	for _, k := range config.Diff(started.Config, next.Config) {
		if !slices.Contains(live, k) {
			restart = append(restart, k)
		}
	}
	log.Info("configuration reloaded", "applied", applied, "needs_restart", restart)
	return next
}

// liveAccessLog is the access log whose format a reload can change. Each
// record costs one atomic load more than a plain *accesslog.Logger.
type liveAccessLog struct {
	out io.Writer
	cur atomic.Pointer[accesslog.Logger]

	mu sync.Mutex
	// retired loggers may still receive a record from a request that
	// loaded them just before a swap; Close flushes them again.
	retired []*accesslog.Logger
}

func newLiveAccessLog(out io.Writer, format string) *liveAccessLog {
	l := &liveAccessLog{out: out}
	l.cur.Store(accesslog.New(out, format))
	return l
}

// Log writes e in the current format.
func (l *liveAccessLog) Log(e *accesslog.Entry) { l.cur.Load().Log(e) }

// Close flushes and stops the current logger and those it replaced.
func (l *liveAccessLog) Close() {
	l.cur.Load().Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.retired {
		r.Flush()
	}
}

// reloader switches the format when log-format changes. Reloads run one
// at a time, on Run's goroutine.
func (l *liveAccessLog) reloader(format string) reloader {
	return reloader{
		keys: []string{"log-format"},
		prepare: func(cfg config.Parsed) (func(), error) {
			return func() {
				if cfg.LogFormat == format {
					return
				}
				format = cfg.LogFormat
				old := l.cur.Swap(accesslog.New(l.out, format))
				old.Close()
				l.mu.Lock()
				l.retired = append(l.retired, old)
				l.mu.Unlock()
			}, nil
		},
	}
}

// clientsReloader re-reads who may use the proxy: allow-clients and the
// proxy-auth-file credentials. It reads the credentials file on every
// reload, so rotating passwords in the same file needs only a SIGHUP.
// Requests already let in finish; the next ones meet the new checks.
func clientsReloader(h *proxy.Handler) reloader {
	return reloader{
		keys: []string{"allow-clients", "proxy-auth-file"},
		prepare: func(cfg config.Parsed) (func(), error) {
			a, err := proxy.NewAccess(cfg)
			if err != nil {
				return nil, err
			}
			return func() { h.SetAccess(a) }, nil
		},
	}
}

// policyReloader replaces the destination rules (allow, deny,
// deny-private) with Upstream.SetPolicy. Pooled connections were checked
// against the old rules when they were dialed, so it closes the idle
// ones, and every other one (busy during the reload, or dialing) is
// checked against the new rules before its next write (upstream
// recheck.go): every request after the reload goes out on a connection
// the new rules allow. Open tunnels are left to finish.
func policyReloader(up *upstream.Upstream, started config.Parsed) reloader {
	rules := func(c config.Parsed) [3]any { return [3]any{c.Allow, c.Deny, c.DenyPrivate} }
	current := rules(started)
	return reloader{
		keys: []string{"allow", "deny", "deny-private"},
		prepare: func(cfg config.Parsed) (func(), error) {
			next := rules(cfg)
			if next == current {
				return func() {}, nil
			}
			p := cfg.Policy
			return func() {
				current = next
				up.SetPolicy(p)
			}, nil
		},
	}
}
