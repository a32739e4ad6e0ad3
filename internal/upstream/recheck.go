package upstream

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/parentproxy"
)

// policyChecker re-checks a pooled connection against the destination
// policy in force.
type policyChecker interface {
	// generation changes each time the policy does.
	generation() uint64
	// recheck reports whether the current policy still lets c, dialed to
	// addr, be used: nil, or the *acl.DeniedError (or acl.ErrLoop) a dial
	// to addr would get now.
	recheck(addr string, c net.Conn) error
}

// recheck applies the guard's current policy to connections dialed before
// it changed. The dial-time check (Guard.dial, parent.dial) is not enough
// after a reload: a connection that was busy while the reload closed the
// idle ones goes back to the pool afterwards, and would carry requests to
// a destination the new rules deny.
type recheck struct {
	guard  *Guard
	parent *parent // nil without a parent proxy
}

func (r *recheck) generation() uint64 { return r.guard.gen.Load() }

func (r *recheck) recheck(addr string, c net.Conn) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port := atoiPort(portStr)
	if p := r.parent; p != nil && !p.bypassed(host, port) {
		switch {
		case p.Scheme == parentproxy.HTTP && addr == p.Addr:
			// The http parent's own connection carries absolute-form
			// requests to any origin; each is checked as it starts
			// (parent.proxy, Transport.Proxy).
			return nil
		case p.Scheme == parentproxy.SOCKS5:
			ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
			defer cancel()
			_, err := p.resolve(ctx, "tcp", host, port)
			return err
		}
		return p.checkTarget(host, port)
	}
	return r.guard.recheckDirect(host, port, c.RemoteAddr())
}

// recheckDirect checks a direct connection to host:port, connected to
// remote, as a dial to it would be checked now: the name, then the IP it
// is connected to.
func (g *Guard) recheckDirect(host string, port int, remote net.Addr) error {
	policy := g.policy.Load()
	if _, err := netip.ParseAddr(host); err != nil {
		if d := policy.CheckName(host, port); !d.Allow {
			return &acl.DeniedError{Decision: d, Host: host, Port: port}
		}
	}
	ap, err := netip.ParseAddrPort(remote.String())
	if err != nil {
		return fmt.Errorf("recheck %s: remote address %q: %v", host, remote, err)
	}
	ip := ap.Addr().Unmap().WithZone("")
	if d := policy.Check(host, port, ip); !d.Allow {
		return &acl.DeniedError{Decision: d, Host: host, Port: port, IP: ip}
	}
	if g.isSelf(ip, port) {
		return fmt.Errorf("dial %s: %w", ap, acl.ErrLoop)
	}
	return nil
}

// checkPolicy re-checks c when the policy changed since it was last
// checked. On a connection the new policy denies, every write fails with
// the denial and sends nothing; the transport then closes it (HTTP/1.1
// and HTTP/2 alike) and retries a request that may be replayed on a fresh
// dial, which the guard refuses (403), or fails it with the denial (403).
// Closing it here instead would hide the denial behind the read side's
// "connection lost" on HTTP/2.
func (c *trackedConn) checkPolicy() error {
	cur := c.policy.generation()
	if c.gen.Load() == cur {
		return nil
	}
	if err := c.policy.recheck(c.addr, c.Conn); err != nil {
		return fmt.Errorf("upstream: pooled connection to %s no longer allowed: %w", c.addr, err)
	}
	c.gen.Store(cur)
	return nil
}
