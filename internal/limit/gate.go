package limit

import (
	"strconv"
	"sync/atomic"
)

// What a Gate bounds, for InFlightError.What.
const (
	WhatDNS      = "dns lookups"
	WhatRequests = "requests"
)

// InFlightError says a proxy-wide bound on work in flight was reached;
// the proxy answers 503 with Retry-After.
type InFlightError struct {
	// What names the work: WhatDNS or WhatRequests.
	What string
	Max  int
}

func (e *InFlightError) Error() string {
	return "limit: " + strconv.Itoa(e.Max) + " " + e.What + " in flight already"
}

// Gate admits at most max holders at once and refuses the rest at once:
// no queue, so what it guards never piles up. The zero Gate, or one built
// with max 0, admits everyone (and still counts).
type Gate struct {
	max     int64
	what    string
	n       atomic.Int64
	refused atomic.Uint64
}

// NewGate bounds what (WhatDNS, WhatRequests) to max in flight; 0: no
// bound.
func NewGate(max int, what string) *Gate { return &Gate{max: int64(max), what: what} }

// Enter takes a place, or returns an *InFlightError when all max are
// taken. Each successful Enter needs one Leave.
func (g *Gate) Enter() error {
	if n := g.n.Add(1); g.max > 0 && n > g.max {
		g.n.Add(-1)
		g.refused.Add(1)
		return &InFlightError{What: g.what, Max: int(g.max)}
	}
	return nil
}

// Leave gives back a place Enter took.
func (g *Gate) Leave() { g.n.Add(-1) }

// Max is the bound, 0 for none.
func (g *Gate) Max() int { return int(g.max) }

// InFlight is how many hold a place now.
func (g *Gate) InFlight() int { return int(g.n.Load()) }

// Refused counts the Enters refused since the start.
func (g *Gate) Refused() uint64 { return g.refused.Load() }
