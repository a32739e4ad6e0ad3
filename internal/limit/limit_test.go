package limit

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 6: at most max slots, at most queue waiters; more fail at once.
func TestHostsQueue(t *testing.T) {
	h := NewHosts(2, 1, 5*time.Second)
	ctx := context.Background()
	r1, err := h.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := h.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another host is not affected.
	rb, err := h.Acquire(ctx, "b")
	if err != nil {
		t.Fatalf("Acquire(b) with a full: %v", err)
	}
	rb()

	var wg sync.WaitGroup
	got := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, err := h.Acquire(ctx, "a")
		if err == nil {
			defer r()
		}
		got <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for h.Waiting("a") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("waiter never queued")
		}
		time.Sleep(time.Millisecond)
	}
	// Queue full: the fourth fails at once, without queueing (issue 12:
	// no wall-clock bound; a queued one would fail Queued, after 5 s).
	_, err = h.Acquire(ctx, "a")
	var se *SaturatedError
	if !errors.As(err, &se) || se.Queued || !errors.Is(err, ErrSaturated) {
		t.Fatalf("Acquire over the queue = %v, want a SaturatedError for a full queue", err)
	}
	if n := h.Waiting("a"); n != 1 {
		t.Errorf("%d waiting after the refused Acquire, want still 1", n)
	}
	r1()
	r1() // a second release is a no-op
	if err := <-got; err != nil {
		t.Fatalf("queued Acquire: %v", err)
	}
	wg.Wait()
	r2()
	h.mu.Lock()
	n := len(h.hosts)
	h.mu.Unlock()
	if n != 0 {
		t.Errorf("hosts map holds %d entries after every release, want 0", n)
	}
}

func TestHostsWaitTimeout(t *testing.T) {
	h := NewHosts(1, 4, 50*time.Millisecond)
	r, err := h.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	defer r()
	_, err = h.Acquire(context.Background(), "a")
	var se *SaturatedError
	if !errors.As(err, &se) || !se.Queued {
		t.Fatalf("Acquire after the wait = %v, want a queued SaturatedError", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Acquire(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a canceled ctx = %v, want context.Canceled", err)
	}
	if n := h.Waiting("a"); n != 0 {
		t.Errorf("Waiting = %d after giving up, want 0", n)
	}
}

type stubRT struct{ status int }

func (s stubRT) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: s.status, Body: io.NopCloser(strings.NewReader("body")), Request: r}, nil
}

// Issue 6: a slot is held until the response body is done.
func TestRoundTripperHoldsSlotUntilBodyDone(t *testing.T) {
	rt := RoundTripper(stubRT{200}, 1, 0, time.Second)
	req := httptest.NewRequest("GET", "http://origin.test/", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RoundTrip(req); !errors.Is(err, ErrSaturated) {
		t.Fatalf("second request with the body open: %v, want ErrSaturated", err)
	}
	// Another origin is not affected.
	if r2, err := rt.RoundTrip(httptest.NewRequest("GET", "http://other.test/", nil)); err != nil {
		t.Fatalf("other origin: %v", err)
	} else {
		r2.Body.Close()
	}
	io.ReadAll(resp.Body) // EOF releases
	resp2, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("after the body ended: %v", err)
	}
	resp2.Body.Close()
	resp2.Body.Close()
	// A 101 releases at once.
	up := RoundTripper(stubRT{101}, 1, 0, time.Second)
	for range 2 {
		if _, err := up.RoundTrip(req); err != nil {
			t.Fatalf("upgrade: %v", err)
		}
	}
	if got := RoundTripper(stubRT{200}, 0, 0, time.Second); got != (stubRT{200}) {
		t.Errorf("RoundTripper with max 0 = %T, want the transport unchanged", got)
	}
}
