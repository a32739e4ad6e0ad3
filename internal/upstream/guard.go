package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/dnscache"
	"github.com/warmproxy/warmproxy/internal/limit"
)

// MaxDNSLookups bounds the DNS lookups in flight, cached or not: past it a
// lookup fails at once (the client gets 503 dns_error with Retry-After),
// or takes a stale answer when the cache has one. A resolver that never
// answers so costs at most this many goroutines and sockets, whatever the
// clients do.
const MaxDNSLookups = 256

// Guard is the dialer every upstream connection goes through, pooled and
// CONNECT alike. It resolves the name itself, asks the policy about every
// IP the name resolves to, and dials only an IP it checked, so a name that
// resolves to a denied address (DNS rebinding, evil.example → 10.0.0.1)
// is refused at dial time, and so is a connection to the proxy's own
// listener (a loop).
type Guard struct {
	policy atomic.Pointer[acl.Policy] // SetPolicy swaps it on a reload
	// gen counts SetPolicy calls: a pooled connection dialed under an
	// older generation is re-checked before it is used again (recheck.go).
	gen    atomic.Uint64
	dialer *net.Dialer
	lookup dnscache.LookupFunc
	// dns caches lookup's answers; nil with cfg.DNSCacheSize 0. dnsOpts
	// are the options it was built with.
	dns     *dnscache.Cache
	dnsOpts dnscache.Options
	// lookups bounds the uncached lookups in flight (MaxDNSLookups); the
	// cache has its own.
	lookups *limit.Gate
	self    atomic.Pointer[selfAddrs]
}

// NewGuard builds the policy from cfg and wraps dialer. With
// cfg.DNSServer set, names are resolved by that server only; with
// cfg.DNSCacheSize above 0 the answers are cached (see dnscache.Cache).
func NewGuard(cfg config.Parsed, dialer *net.Dialer) (*Guard, error) {
	policy := cfg.Policy
	if policy == nil {
		return nil, errors.New("upstream: no destination policy: build the config with config.Parse")
	}
	resolver := net.DefaultResolver
	if dialer.Resolver != nil {
		resolver = dialer.Resolver
	}
	if cfg.DNSServer != "" {
		server := cfg.DNSServer
		resolver = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dnscache.DialLookup(ctx, network, server)
			},
		}
	}
	g := &Guard{dialer: dialer, lookup: resolver.LookupNetIP, lookups: limit.NewGate(MaxDNSLookups, limit.WhatDNS)}
	if cfg.DNSCacheSize > 0 {
		g.dnsOpts = dnscache.Options{
			Size:        cfg.DNSCacheSize,
			MinTTL:      cfg.DNSMinTTL,
			MaxTTL:      cfg.DNSMaxTTL,
			Stale:       cfg.DNSStale,
			Timeout:     dialer.Timeout,
			MaxInFlight: MaxDNSLookups,
		}
		g.dns = dnscache.New(dnscache.Resolver(resolver).LookupNetIP, g.dnsOpts)
	}
	g.policy.Store(policy)
	return g, nil
}

// SetPolicy replaces the destination policy for the dials that start from
// now on, and for the next write on every pooled connection dialed before
// (recheck.go); a configuration reload calls it.
func (g *Guard) SetPolicy(p *acl.Policy) {
	g.policy.Store(p)
	g.gen.Add(1)
}

// DNS returns the guard's DNS cache, nil when caching is off.
func (g *Guard) DNS() *dnscache.Cache { return g.dns }

// Policy returns the destination policy the guard enforces.
func (g *Guard) Policy() *acl.Policy { return g.policy.Load() }

// selfAddrs are the proxy's own listen addresses.
type selfAddrs struct {
	ports map[int]bool
	// exact holds the bound IP:ports; anyIP the ports bound on an
	// unspecified address, reachable on every local IP.
	exact map[netip.AddrPort]bool
	anyIP map[int]bool
	local map[netip.Addr]bool
}

// SetSelf records the proxy's listen addresses, so requests that would
// loop back to it are refused.
func (g *Guard) SetSelf(addrs ...net.Addr) {
	s := &selfAddrs{ports: map[int]bool{}, exact: map[netip.AddrPort]bool{}, anyIP: map[int]bool{}, local: map[netip.Addr]bool{}}
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			continue
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
		port := int(ap.Port())
		s.ports[port] = true
		if ap.Addr().IsUnspecified() {
			s.anyIP[port] = true
		} else {
			s.exact[ap] = true
		}
	}
	if len(s.anyIP) > 0 {
		if ifAddrs, err := net.InterfaceAddrs(); err == nil {
			for _, ia := range ifAddrs {
				if p, err := netip.ParsePrefix(ia.String()); err == nil {
					s.local[p.Addr().Unmap()] = true
				}
			}
		}
	}
	g.self.Store(s)
}

// isSelf reports whether ip:port reaches one of the proxy's listeners.
func (g *Guard) isSelf(ip netip.Addr, port int) bool {
	s := g.self.Load()
	if s == nil || !s.ports[port] {
		return false
	}
	if ip.IsUnspecified() {
		// Connecting to 0.0.0.0 or :: reaches the local host.
		return true
	}
	if s.exact[netip.AddrPortFrom(ip, uint16(port))] {
		return true
	}
	return s.anyIP[port] && (ip.IsLoopback() || s.local[ip])
}

// Resolve returns the addresses of host for network ("ip", "ip4" or
// "ip6") through the DNS cache when there is one, with no policy check;
// an IP literal is returned as it is. The slice may be shared with other
// callers: do not change it. A parent proxy's name is resolved with it.
// Past MaxDNSLookups in flight it fails at once with a *net.DNSError
// wrapping a *limit.InFlightError.
func (g *Guard) Resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	var (
		ips []netip.Addr
		err error
	)
	if g.dns != nil {
		ips, err = g.dns.Lookup(ctx, network, host)
	} else {
		ips, err = g.lookupUncached(ctx, network, host)
	}
	if err == nil && len(ips) == 0 {
		err = &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return ips, err
}

// lookupUncached asks the resolver, within the gate. Go's resolver ends
// the lookup when ctx is done and no other caller shares it.
func (g *Guard) lookupUncached(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if err := g.lookups.Enter(); err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: host, IsTemporary: true, UnwrapErr: err}
	}
	defer g.lookups.Leave()
	return g.lookup(ctx, network, host)
}

// DialContext resolves addr's host, checks every IP against the policy
// and the proxy's own addresses, then dials the IPs with happy eyeballs
// (dialIPs). A denied IP fails the whole dial with an *acl.DeniedError:
// an attacker who controls the name must not pick which of its IPs is
// used.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return g.dial(ctx, network, addr, g.policy.Load())
}

// DialUnguarded dials addr as DialContext does (the DNS cache, happy
// eyeballs, the dial timeout) but checks neither the destination policy
// nor the proxy's own addresses: for a destination the operator
// configured, such as a parent proxy.
func (g *Guard) DialUnguarded(ctx context.Context, network, addr string) (net.Conn, error) {
	return g.dial(ctx, network, addr, nil)
}

// dial resolves and dials addr; with a policy, every IP is checked first.
func (g *Guard) dial(ctx context.Context, network, addr string, policy *acl.Policy) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("bad port %q", portStr)}
	}
	addrs, err := g.resolveChecked(ctx, network, host, port, policy)
	if err != nil {
		return nil, err
	}
	if g.dialer.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.dialer.Timeout)
		defer cancel()
	}
	return g.dialIPs(ctx, network, interleave(addrs))
}

// resolveChecked resolves host and returns its addresses of network's
// family, in the resolver's order, with port. With a policy, a name a rule
// denies is not even resolved (no DNS query leaks), and any denied IP or
// one of the proxy's own addresses fails the whole lookup: an attacker who
// controls the name must not pick which of its IPs is used.
func (g *Guard) resolveChecked(ctx context.Context, network, host string, port int, policy *acl.Policy) ([]netip.AddrPort, error) {
	if _, err := netip.ParseAddr(host); err != nil && policy != nil {
		if d := policy.CheckName(host, port); !d.Allow {
			return nil, &acl.DeniedError{Decision: d, Host: host, Port: port}
		}
	}
	lookupNet := "ip"
	switch network {
	case "tcp4":
		lookupNet = "ip4"
	case "tcp6":
		lookupNet = "ip6"
	}
	ips, err := g.Resolve(ctx, lookupNet, host)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	addrs := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		ip = ip.Unmap()
		if policy != nil {
			if d := policy.Check(host, port, ip); !d.Allow {
				return nil, &acl.DeniedError{Decision: d, Host: host, Port: port, IP: ip}
			}
			if g.isSelf(ip, port) {
				return nil, fmt.Errorf("dial %s: %w", netip.AddrPortFrom(ip, uint16(port)), acl.ErrLoop)
			}
		}
		if network == "tcp4" && !ip.Is4() || network == "tcp6" && !ip.Is6() {
			continue
		}
		addrs = append(addrs, netip.AddrPortFrom(ip, uint16(port)))
	}
	if len(addrs) == 0 {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("no address of the right family for %s", host)}
	}
	return addrs, nil
}

// fallbackDelay is how long a connection attempt has before the next
// address is tried alongside it, as net.Dialer's FallbackDelay (RFC 8305
// section 5 recommends 250ms).
const fallbackDelay = 300 * time.Millisecond

// attempt is the outcome of dialing one address.
type attempt struct {
	c   net.Conn
	err error
}

// dialIPs dials addrs with happy eyeballs (RFC 8305 section 5): the first
// address at once, then the next one each time fallbackDelay passes with
// no connection or an attempt fails, the earlier attempts going on. The
// first connection wins; the others are cancelled, and one that connects
// anyway is closed. With the dialer's FallbackDelay negative, the
// addresses are tried one after the other. The error of a dial that fails
// is the first attempt's.
func (g *Guard) dialIPs(ctx context.Context, network string, addrs []netip.AddrPort) (net.Conn, error) {
	if len(addrs) == 1 {
		return g.dialer.DialContext(ctx, network, addrs[0].String())
	}
	delay := g.dialer.FallbackDelay
	if delay == 0 {
		delay = fallbackDelay
	}
	if delay < 0 {
		var firstErr error
		for _, a := range addrs {
			c, err := g.dialer.DialContext(ctx, network, a.String())
			if err == nil {
				return c, nil
			}
			if firstErr == nil {
				firstErr = err
			}
			if ctx.Err() != nil {
				break
			}
		}
		return nil, firstErr
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan attempt) // unbuffered: a result is taken, or returned is closed
	returned := make(chan struct{})
	defer close(returned)
	next, pending := 0, 0
	start := func() {
		a := addrs[next]
		next++
		pending++
		go g.dialAttempt(ctx, network, a.String(), results, returned)
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	start()
	var firstErr error
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.err == nil {
				return r.c, nil
			}
			if firstErr == nil {
				firstErr = r.err
			}
			if next < len(addrs) && ctx.Err() == nil {
				start()
				timer.Reset(delay)
			}
		case <-timer.C:
			if next < len(addrs) {
				start()
				timer.Reset(delay)
			}
		}
	}
	return nil, firstErr
}

// dialAttempt dials one address for dialIPs and hands the result over, or
// closes its connection when dialIPs has returned without it.
func (g *Guard) dialAttempt(ctx context.Context, network, addr string, results chan<- attempt, returned <-chan struct{}) {
	c, err := g.dialer.DialContext(ctx, network, addr)
	select {
	case results <- attempt{c, err}:
	case <-returned:
		if c != nil {
			c.Close()
		}
	}
}

// interleave orders addrs for happy eyeballs (RFC 8305 section 4): the
// resolver's order within each family, alternating families, starting
// with the family of the first address.
func interleave(addrs []netip.AddrPort) []netip.AddrPort {
	if len(addrs) < 2 {
		return addrs
	}
	first := addrs[0].Addr().Is4()
	var a, b []netip.AddrPort
	for _, ap := range addrs {
		if ap.Addr().Is4() == first {
			a = append(a, ap)
		} else {
			b = append(b, ap)
		}
	}
	if len(b) == 0 {
		return addrs
	}
	out := make([]netip.AddrPort, 0, len(addrs))
	for i := 0; i < len(a) || i < len(b); i++ {
		if i < len(a) {
			out = append(out, a[i])
		}
		if i < len(b) {
			out = append(out, b[i])
		}
	}
	return out
}
