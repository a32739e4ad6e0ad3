package upstream

// SetLookup replaces the resolver, under the cache if there is one; before
// the first dial.
func (g *Guard) SetLookup(f LookupFunc) {
	g.lookup = f
	if g.dns != nil {
		g.dns.lookup = f
	}
}
