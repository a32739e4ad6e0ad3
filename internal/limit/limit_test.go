package limit

import (
	"context"
	"errors"
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
	// Queue full: the fourth fails at once.
	start := time.Now()
	_, err = h.Acquire(ctx, "a")
	var se *SaturatedError
	if !errors.As(err, &se) || se.Queued || !errors.Is(err, ErrSaturated) {
		t.Fatalf("Acquire over the queue = %v, want a SaturatedError for a full queue", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("Acquire over the queue took %v, want immediate", time.Since(start))
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
