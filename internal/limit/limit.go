// Package limit holds the bounds on work in flight, each of which refuses
// at once past its bound (the proxy answers 503 with Retry-After) instead
// of piling up goroutines and memory behind a slow origin. Hosts, and
// RoundTripper on net/http's side, bound the requests in flight to each
// origin: at most Max hold a connection, at most Queue wait for one, each
// for at most Wait; past that a request fails with a *SaturatedError (the
// HTTP/1.1 pool in internal/upstream keeps the same bound itself and
// fails with the same error). A Gate bounds a proxy-wide count (DNS
// lookups, requests in flight) and refuses with an *InFlightError.
package limit

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrSaturated is matched by every *SaturatedError (errors.Is).
var ErrSaturated = errors.New("origin connection limit reached")

// SaturatedError says a request could not get a connection slot.
type SaturatedError struct {
	Host string
	// Max is the per-origin connection limit; Queued is true when the
	// request waited for a slot and gave up, false when the queue was full.
	Max    int
	Queued bool
}

func (e *SaturatedError) Error() string {
	if e.Queued {
		return "limit: " + e.Host + ": no connection free within the wait (max-conns-per-host " + strconv.Itoa(e.Max) + ")"
	}
	return "limit: " + e.Host + ": " + strconv.Itoa(e.Max) + " connections busy and the wait queue is full"
}

// Is makes errors.Is(err, ErrSaturated) true.
func (e *SaturatedError) Is(target error) bool { return target == ErrSaturated }

// Hosts counts the slots in use per origin. Build it with NewHosts.
type Hosts struct {
	max, queue int
	wait       time.Duration

	mu    sync.Mutex
	hosts map[string]*hostState
}

type hostState struct {
	active  int
	waiters []chan struct{}
}

// NewHosts allows max requests per origin at once, queue more waiting up
// to wait each.
func NewHosts(max, queue int, wait time.Duration) *Hosts {
	return &Hosts{max: max, queue: queue, wait: wait, hosts: map[string]*hostState{}}
}

// Acquire takes a slot for host, waiting in the queue if none is free. The
// returned release gives it back; calling it more than once is harmless.
func (h *Hosts) Acquire(ctx context.Context, host string) (release func(), err error) {
	h.mu.Lock()
	st := h.hosts[host]
	if st == nil {
		st = &hostState{}
		h.hosts[host] = st
	}
	if st.active < h.max {
		st.active++
		h.mu.Unlock()
		return h.releaser(host), nil
	}
	if len(st.waiters) >= h.queue {
		h.mu.Unlock()
		return nil, &SaturatedError{Host: host, Max: h.max}
	}
	ch := make(chan struct{})
	st.waiters = append(st.waiters, ch)
	h.mu.Unlock()

	timer := time.NewTimer(h.wait)
	defer timer.Stop()
	select {
	case <-ch:
		return h.releaser(host), nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = &SaturatedError{Host: host, Max: h.max, Queued: true}
	}
	h.mu.Lock()
	select {
	case <-ch:
		// Granted while giving up: pass the slot on.
		h.mu.Unlock()
		h.releaser(host)()
		return nil, err
	default:
	}
	for i, w := range st.waiters {
		if w == ch {
			st.waiters = append(st.waiters[:i], st.waiters[i+1:]...)
			break
		}
	}
	h.mu.Unlock()
	return nil, err
}

func (h *Hosts) releaser(host string) func() {
	var done atomic.Bool
	return func() {
		if done.Swap(true) {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		st := h.hosts[host]
		if len(st.waiters) > 0 {
			// Hand the slot straight to the first waiter.
			ch := st.waiters[0]
			st.waiters = st.waiters[1:]
			close(ch)
			return
		}
		st.active--
		if st.active == 0 {
			delete(h.hosts, host)
		}
	}
}

// RoundTripper wraps next so each request holds a slot of its origin from
// the start of the round trip until its response body is done. With max
// 0 it returns next unchanged.
func RoundTripper(next http.RoundTripper, max, queue int, wait time.Duration) http.RoundTripper {
	if max <= 0 {
		return next
	}
	return &roundTripper{next: next, hosts: NewHosts(max, queue, wait)}
}

type roundTripper struct {
	next  http.RoundTripper
	hosts *Hosts
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	release, err := rt.hosts.Acquire(req.Context(), req.URL.Scheme+"://"+req.URL.Host)
	if err != nil {
		return nil, err
	}
	resp, err := rt.next.RoundTrip(req)
	if err != nil {
		release()
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The upgraded connection leaves the pool.
		release()
		return resp, nil
	}
	resp.Body = &releaseBody{rc: resp.Body, release: release}
	return resp, nil
}

// CloseIdleConnections passes on to the wrapped transport.
func (rt *roundTripper) CloseIdleConnections() {
	if c, ok := rt.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// releaseBody releases its slot at the end of the body or on Close.
type releaseBody struct {
	rc      io.ReadCloser
	release func()
}

func (b *releaseBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.release()
	}
	return n, err
}

func (b *releaseBody) Close() error {
	err := b.rc.Close()
	b.release()
	return err
}
