package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
)

// LookupFunc resolves a host name to IPs, as net.Resolver.LookupNetIP does.
type LookupFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// Guard is the dialer every upstream connection goes through, pooled and
// CONNECT alike. It resolves the name itself, asks the policy about every
// IP the name resolves to, and dials only an IP it checked, so a name that
// resolves to a denied address (DNS rebinding, evil.example → 10.0.0.1)
// is refused at dial time, and so is a connection to the proxy's own
// listener (a loop).
type Guard struct {
	policy atomic.Pointer[acl.Policy] // SetPolicy swaps it on a reload
	dialer *net.Dialer
	lookup LookupFunc
	self   atomic.Pointer[selfAddrs]
}

// NewGuard builds the policy from cfg and wraps dialer. With
// cfg.DNSServer set, names are resolved by that server only.
func NewGuard(cfg config.Config, dialer *net.Dialer) (*Guard, error) {
	policy, err := NewPolicy(cfg)
	if err != nil {
		return nil, err
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
				var d net.Dialer
				return d.DialContext(ctx, network, server)
			},
		}
	}
	g := &Guard{dialer: dialer, lookup: resolver.LookupNetIP}
	g.policy.Store(policy)
	return g, nil
}

// NewPolicy builds the destination policy of cfg (allow, deny,
// deny-private).
func NewPolicy(cfg config.Config) (*acl.Policy, error) {
	return acl.New(acl.Config{
		Allow:       acl.SplitList(cfg.Allow),
		Deny:        acl.SplitList(cfg.Deny),
		DenyPrivate: cfg.DenyPrivate,
	})
}

// SetPolicy replaces the destination policy for the dials that start from
// now on; a configuration reload calls it.
func (g *Guard) SetPolicy(p *acl.Policy) { g.policy.Store(p) }

// SetLookup replaces the resolver; for tests.
func (g *Guard) SetLookup(f LookupFunc) { g.lookup = f }

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

// DialContext resolves addr's host, checks every IP against the policy
// and the proxy's own addresses, then dials the IPs in order until one
// answers. A denied IP fails the whole dial with an *acl.DeniedError: an
// attacker who controls the name must not pick which of its IPs is used.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	policy := g.policy.Load()
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("bad port %q", portStr)}
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		// A name a rule denies is not even resolved: no DNS query leaks.
		if d := policy.CheckName(host, port); !d.Allow {
			return nil, &acl.DeniedError{Decision: d, Host: host, Port: port}
		}
		lookupNet := "ip"
		switch network {
		case "tcp4":
			lookupNet = "ip4"
		case "tcp6":
			lookupNet = "ip6"
		}
		if ips, err = g.lookup(ctx, lookupNet, host); err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		if len(ips) == 0 {
			return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}}
		}
	}
	for i, ip := range ips {
		ip = ip.Unmap()
		ips[i] = ip
		if d := policy.Check(host, port, ip); !d.Allow {
			return nil, &acl.DeniedError{Decision: d, Host: host, Port: port, IP: ip}
		}
		if g.isSelf(ip, port) {
			return nil, fmt.Errorf("dial %s: %w", netip.AddrPortFrom(ip, uint16(port)), acl.ErrLoop)
		}
	}
	if g.dialer.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.dialer.Timeout)
		defer cancel()
	}
	var firstErr error
	for _, ip := range ips {
		if network == "tcp4" && !ip.Is4() || network == "tcp6" && !ip.Is6() {
			continue
		}
		c, err := g.dialer.DialContext(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
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
	if firstErr == nil {
		firstErr = &net.OpError{Op: "dial", Net: network, Err: errors.New("no address of the right family")}
	}
	return nil, firstErr
}
