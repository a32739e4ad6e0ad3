// Package rttrelay is a TCP relay that adds a simulated network round-trip
// time, since this machine has no netem.
//
// For each accepted connection it waits one RTT (the SYN/SYN-ACK round trip
// a real connect would have cost) before dialing the target and before
// reading anything from the client. After that, every chunk read from either
// side is forwarded RTT/2 later, in order, so a request/response exchange
// costs one RTT and a fresh TCP connection plus one exchange costs two.
// Bandwidth is not limited.
package rttrelay

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Relay forwards connections to Target with a simulated RTT.
type Relay struct {
	// Target is the host:port every accepted connection is relayed to.
	Target string
	// RTT is the simulated round-trip time. Zero relays without delay.
	RTT time.Duration
	// Spin, if positive, makes each delay sleep until Spin before its due
	// time and then yield-spin (runtime.Gosched) until it, trading CPU for
	// precision. Delays sleep on a timerfd (see fdTimer): a runtime timer
	// alone oversleeps by ~0.7 ms here (a 5 ms RTT cost ~6.5 ms); the
	// timerfd by ~0.1 ms, and 100µs of spin takes most of that away.
	Spin time.Duration

	accepted atomic.Int64
}

// Accepted reports how many connections the relay has accepted.
func (r *Relay) Accepted() int64 { return r.accepted.Load() }

// DefaultSpin is the Spin the bench uses: enough to hide timerfd slack
// without burning much CPU on a 2-core machine.
const DefaultSpin = 100 * time.Microsecond

// queueLen bounds the chunks in flight per direction (each at most bufSize).
const (
	queueLen = 64
	bufSize  = 32 << 10
)

// Serve accepts on ln until ctx is done or ln fails, relaying each
// connection. It closes ln and every relayed connection before returning.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		r.accepted.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.handle(ctx, c)
		}()
	}
}

// handle relays one client connection and closes both ends when done.
func (r *Relay) handle(ctx context.Context, client net.Conn) {
	defer client.Close()
	if !r.sleepCtx(ctx, time.Now().Add(r.RTT)) {
		return
	}
	var d net.Dialer
	upstream, err := d.DialContext(ctx, "tcp", r.Target)
	if err != nil {
		return
	}
	defer upstream.Close()
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		upstream.Close()
	})
	defer stop()

	errc := make(chan error, 2)
	go func() { errc <- r.pipe(upstream, client) }()
	go func() { errc <- r.pipe(client, upstream) }()
	if err := <-errc; err != nil {
		// One direction broke: tear down both so the other pipe returns.
		client.Close()
		upstream.Close()
	}
	<-errc
}

type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst through a delay line of RTT/2. On a clean EOF from
// src it half-closes dst after the queued data is written.
func (r *Relay) pipe(dst, src net.Conn) error {
	q := make(chan chunk, queueLen)
	done := make(chan struct{})
	var werr error
	go func() {
		defer close(done)
		werr = r.delayedWriter(dst, q)
	}()
	buf := make([]byte, bufSize)
	half := r.RTT / 2
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c := chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(half)}
			select {
			case q <- c:
			case <-done:
				return werr
			}
		}
		if err != nil {
			close(q)
			<-done
			if werr != nil {
				return werr
			}
			if errors.Is(err, io.EOF) {
				closeWrite(dst)
				return nil
			}
			return err
		}
	}
}

// delayedWriter writes each queued chunk to dst no earlier than its due time.
// It returns when q is closed or a write fails; after a failure it drains
// nothing, the caller sees done closed and stops queueing.
func (r *Relay) delayedWriter(dst net.Conn, q <-chan chunk) error {
	var w waiter
	defer w.close()
	for c := range q {
		r.waitUntil(&w, c.due)
		if _, err := dst.Write(c.data); err != nil {
			return err
		}
	}
	return nil
}

// waitUntil sleeps until Spin before due, then yield-spins until due.
func (r *Relay) waitUntil(w *waiter, due time.Time) {
	if d := time.Until(due) - r.Spin; d > 0 {
		w.sleep(d)
	}
	for r.Spin > 0 && time.Now().Before(due) {
		spinYield()
	}
}

// waiter sleeps on a timerfd where it can (precise, see fdTimer), else on
// a runtime timer.
type waiter struct {
	fd    *fdTimer
	timer *time.Timer
	init  bool
}

func (w *waiter) sleep(d time.Duration) {
	if !w.init {
		w.init = true
		w.fd, _ = newFDTimer()
	}
	if w.fd != nil && w.fd.sleep(d) == nil {
		return
	}
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	<-w.timer.C
}

func (w *waiter) close() {
	if w.fd != nil {
		w.fd.close()
	}
	if w.timer != nil {
		w.timer.Stop()
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// sleepCtx waits until due like waitUntil, returning false if ctx ends
// first. It uses a runtime timer (once per connection, so slack matters
// less) and spins twice as long to make up for it.
func (r *Relay) sleepCtx(ctx context.Context, due time.Time) bool {
	if d := time.Until(due) - 2*r.Spin - time.Millisecond; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	}
	var w waiter
	defer w.close()
	r.waitUntil(&w, due)
	return ctx.Err() == nil
}
