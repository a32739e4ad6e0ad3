package upstream

import "github.com/warmproxy/warmproxy/internal/dnscache"

// SetLookup replaces the resolver, under a new cache if there is one;
// before the first dial.
func (g *Guard) SetLookup(f dnscache.LookupFunc) {
	g.lookup = f
	if g.dns != nil {
		g.dns = dnscache.New(f, g.dnsOpts)
	}
}

// Guard is u's dial-time guard, for tests that change its policy or
// resolver without what Upstream.SetPolicy does besides.
func (u *Upstream) Guard() *Guard { return u.guard }
