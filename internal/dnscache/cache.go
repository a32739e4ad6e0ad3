// Package dnscache keeps DNS answers for their records' TTL in front of
// Go's resolver: concurrent lookups of a name share one query, a name in
// steady use is refreshed before it expires, and an expired answer stands
// in while the resolver fails (RFC 8767). It learns the TTLs, which
// net.Resolver does not return, by reading the DNS messages on the
// resolver's connections (Resolver). It dials nothing but DNS servers and
// knows no destination policy: upstream's guard checks what it returns.
package dnscache

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warmproxy/warmproxy/internal/limit"
)

// staleAnswerWait is how long a lookup whose cached answer has expired
// waits for the fresh one before it takes the stale answer instead (the
// refresh goes on and updates the cache): RFC 8767 section 5's "client
// response timer".
const staleAnswerWait = 1800 * time.Millisecond

// prefetchDivisor sets when a hit refreshes its entry in the background:
// in the last 1/prefetchDivisor of the entry's TTL (Unbound's prefetch),
// so a name in steady use never expires in front of a request.
const prefetchDivisor = 10

// defaultLookupTimeout bounds one lookup of the cache when Options
// gives none.
const defaultLookupTimeout = 10 * time.Second

// LookupFunc resolves a host name to IPs, as net.Resolver.LookupNetIP does.
type LookupFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// Options sets up a Cache; config.Config's DNS* fields fill it.
type Options struct {
	// Size is the most names (per address family asked) kept; the least
	// recently used goes first.
	Size int
	// MinTTL and MaxTTL bound the records' TTL. A not-found answer is
	// kept for MinTTL.
	MinTTL, MaxTTL time.Duration
	// Stale is how long past its TTL an answer may still be used when the
	// resolver fails or is slow; 0 never uses an expired answer.
	Stale time.Duration
	// Timeout bounds one lookup; 0 means 10s.
	Timeout time.Duration
	// MaxInFlight bounds the lookups in flight (upstream.MaxDNSLookups);
	// 0: no bound.
	MaxInFlight int
}

// Stats counts what the cache did, since it started.
type Stats struct {
	// Hits were answered from a fresh entry, Misses had to wait for the
	// resolver, Stale got an expired answer because the resolver failed or
	// was slow, and Queries counts the lookups the cache made (a refresh
	// in the background included).
	Hits, Misses, Stale, Queries uint64
	// Entries is the number of names held now.
	Entries int
	// Abandoned counts the lookups cancelled because every caller waiting
	// for them had gone, Refused those not started because MaxInFlight
	// were in flight.
	Abandoned, Refused uint64
}

// Cache sits in front of a resolver and keeps its answers for the
// records' TTL, clamped to [MinTTL, MaxTTL]. Concurrent lookups of a name
// share one query; an answer near its expiry is refreshed in the
// background while the cached one is used; an expired answer is used for
// up to Stale more when the resolver fails (SERVFAIL, timeout, no server)
// or takes longer than staleAnswerWait. A not-found answer (NXDOMAIN, no
// address) is authoritative: it replaces a stale answer and is itself
// kept for MinTTL only. At most MaxInFlight lookups run at once; a
// lookup whose every waiter has gone (clients that left) is cancelled,
// unless the cache itself wants its answer (a prefetch, a refresh behind a
// stale answer).
//
// The TTLs come from the DNS messages themselves: the resolver built by
// Resolver wraps its connections and reads the TTLs of the answers
// that pass through (see ttlConn). An answer whose TTL is not known (from
// /etc/hosts, or a LookupFunc that is not such a resolver) is kept for
// MinTTL.
type Cache struct {
	lookup  LookupFunc
	opts    Options
	now     func() time.Time // time.Now; tests move it
	stWait  time.Duration    // staleAnswerWait; tests shorten it
	mu      sync.Mutex
	entries map[dnsKey]*dnsEntry
	lru     dnsEntry // sentinel of the ring: lru.next is the most recent
	flights map[dnsKey]*dnsFlight
	wg      sync.WaitGroup // one per flight
	gate    *limit.Gate    // lookups in flight

	hits, misses, stale, queries, abandoned atomic.Uint64
}

type dnsKey struct{ host, network string }

// dnsEntry is one cached answer: addresses, or a not-found error.
type dnsEntry struct {
	key        dnsKey
	ips        []netip.Addr // shared with callers: never changed
	err        error
	ttl        time.Duration
	expires    time.Time // fresh until
	staleUntil time.Time // usable when the resolver fails until
	prev, next *dnsEntry
}

// dnsFlight is one lookup in progress; done is closed when ips and err
// are set.
type dnsFlight struct {
	done chan struct{}
	ips  []netip.Addr
	err  error
	// Under the cache's mu: waiters counts the callers waiting for the
	// answer; kept is set when the cache wants the answer whoever waits
	// (a prefetch, a refresh behind a stale answer); cancel ends the
	// lookup once neither holds.
	waiters int
	kept    bool
	cancel  context.CancelFunc
}

// New wraps lookup in a cache. For the records' TTLs to be honoured,
// lookup should be the LookupNetIP of a resolver built by Resolver.
func New(lookup LookupFunc, o Options) *Cache {
	if o.Timeout <= 0 {
		o.Timeout = defaultLookupTimeout
	}
	if o.Size < 1 {
		o.Size = 1
	}
	c := &Cache{
		lookup:  lookup,
		opts:    o,
		now:     time.Now,
		stWait:  staleAnswerWait,
		entries: make(map[dnsKey]*dnsEntry),
		flights: make(map[dnsKey]*dnsFlight),
		gate:    limit.NewGate(o.MaxInFlight, limit.WhatDNS),
	}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

// Lookup resolves host for network ("ip", "ip4" or "ip6") through the
// cache. The slice returned is shared: callers must not change it.
func (c *Cache) Lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	key := dnsKey{host, network}
	now := c.now()
	c.mu.Lock()
	e := c.entries[key]
	if e != nil && now.Before(e.expires) {
		c.touchLocked(e)
		if e.err == nil && e.expires.Sub(now) < e.ttl/prefetchDivisor {
			c.flightLocked(key, false) // past the bound: no prefetch
		}
		ips, err := e.ips, e.err
		c.mu.Unlock()
		c.hits.Add(1)
		return ips, err
	}
	var stale []netip.Addr
	if e != nil {
		if e.err == nil && now.Before(e.staleUntil) {
			stale = e.ips
		} else {
			c.removeLocked(e)
		}
	}
	f, err := c.flightLocked(key, true)
	c.mu.Unlock()
	if err != nil {
		if stale != nil {
			c.stale.Add(1)
			return stale, nil
		}
		return nil, &net.DNSError{Err: err.Error(), Name: host, IsTemporary: true, UnwrapErr: err}
	}

	if stale == nil {
		c.misses.Add(1)
		select {
		case <-f.done:
			return f.ips, f.err
		case <-ctx.Done():
			c.leave(key, f, false)
			return nil, ctxDNSError(ctx, host)
		}
	}
	timer := time.NewTimer(c.stWait)
	defer timer.Stop()
	select {
	case <-f.done:
		if f.err == nil || isNotFound(f.err) {
			c.misses.Add(1)
			return f.ips, f.err
		}
	case <-timer.C:
		// The refresh goes on for the cache.
		c.leave(key, f, true)
	case <-ctx.Done():
		c.leave(key, f, false)
		return nil, ctxDNSError(ctx, host)
	}
	c.stale.Add(1)
	return stale, nil
}

// leave ends a caller's wait for f; keep says the cache still wants the
// answer. The last waiter to leave a flight nobody else wants cancels it,
// and the next caller for key starts a new one.
func (c *Cache) leave(key dnsKey, f *dnsFlight, keep bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f.waiters--
	if keep {
		f.kept = true
	}
	if f.waiters > 0 || f.kept {
		return
	}
	select {
	case <-f.done:
		return
	default:
	}
	if c.flights[key] == f {
		delete(c.flights, key)
	}
	c.abandoned.Add(1)
	f.cancel()
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Stale: c.stale.Load(), Queries: c.queries.Load(), Entries: n,
		Abandoned: c.abandoned.Load(), Refused: c.gate.Refused()}
}

// Wait returns once no lookup started by the cache is in flight; each
// one ends within the lookup timeout.
func (c *Cache) Wait() { c.wg.Wait() }

// flightLocked returns the lookup in flight for key, joining it as a
// waiter (or, with waiter false, as the cache wanting the answer), and
// starts one if none is. The lookup runs on its own goroutine with its own
// timeout, so a caller that gives up does not cancel it for the others
// waiting, and its answer still reaches the cache; the last waiter to give
// up cancels it (leave). Past MaxInFlight lookups it starts none and
// returns the gate's *limit.InFlightError.
func (c *Cache) flightLocked(key dnsKey, waiter bool) (*dnsFlight, error) {
	f := c.flights[key]
	if f == nil {
		if err := c.gate.Enter(); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
		f = &dnsFlight{done: make(chan struct{}), cancel: cancel}
		c.flights[key] = f
		c.wg.Add(1)
		go c.resolve(ctx, key, f)
	}
	if waiter {
		f.waiters++
	} else {
		f.kept = true
	}
	return f, nil
}

// resolve runs one lookup for key and files its answer.
func (c *Cache) resolve(ctx context.Context, key dnsKey, f *dnsFlight) {
	defer c.wg.Done()
	defer c.gate.Leave()
	defer f.cancel()
	c.queries.Add(1)
	rec := &ttlRecorder{}
	ips, err := c.lookup(context.WithValue(ctx, ttlKey{}, rec), key.network, key.host)
	if err == nil && len(ips) == 0 {
		err = &net.DNSError{Err: "no such host", Name: key.host, IsNotFound: true}
	}
	if err == nil {
		for i, ip := range ips {
			ips[i] = ip.Unmap()
		}
	}
	now := c.now()
	c.mu.Lock()
	if c.flights[key] == f {
		delete(c.flights, key)
	}
	switch {
	case err == nil:
		ttl, ok := rec.get()
		if !ok {
			ttl = c.opts.MinTTL
		}
		ttl = min(max(ttl, c.opts.MinTTL), c.opts.MaxTTL)
		c.storeLocked(key, ips, nil, ttl, now)
	case isNotFound(err):
		c.storeLocked(key, nil, err, c.opts.MinTTL, now)
	}
	// Any other failure leaves the entry there is, for a stale answer.
	c.mu.Unlock()
	f.ips, f.err = ips, err
	close(f.done)
}

func (c *Cache) storeLocked(key dnsKey, ips []netip.Addr, err error, ttl time.Duration, now time.Time) {
	e := c.entries[key]
	if ttl <= 0 {
		if e != nil {
			c.removeLocked(e)
		}
		return
	}
	if e == nil {
		e = &dnsEntry{key: key}
		c.entries[key] = e
		e.prev, e.next = &c.lru, c.lru.next
		e.prev.next, e.next.prev = e, e
		for len(c.entries) > c.opts.Size {
			c.removeLocked(c.lru.prev)
		}
	} else {
		c.touchLocked(e)
	}
	e.ips, e.err, e.ttl = ips, err, ttl
	e.expires = now.Add(ttl)
	e.staleUntil = e.expires
	if err == nil {
		e.staleUntil = e.expires.Add(c.opts.Stale)
	}
}

func (c *Cache) touchLocked(e *dnsEntry) {
	if c.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = &c.lru, c.lru.next
	e.prev.next, e.next.prev = e, e
}

func (c *Cache) removeLocked(e *dnsEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(c.entries, e.key)
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// ctxDNSError is the error of a lookup its caller stopped waiting for, as
// net.Resolver reports it.
func ctxDNSError(ctx context.Context, host string) error {
	err := ctx.Err()
	return &net.DNSError{Err: err.Error(), Name: host, UnwrapErr: err, IsTimeout: errors.Is(err, context.DeadlineExceeded)}
}
