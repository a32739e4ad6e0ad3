package limit

import (
	"errors"
	"testing"
)

// Issue 12: a Gate admits max holders and refuses the next at once, with
// an *InFlightError naming what is bounded.
func TestGate(t *testing.T) {
	g := NewGate(2, WhatDNS)
	for i := range 2 {
		if err := g.Enter(); err != nil {
			t.Fatalf("Enter #%d = %v, want nil", i+1, err)
		}
	}
	err := g.Enter()
	var ie *InFlightError
	if !errors.As(err, &ie) || ie.Max != 2 || ie.What != WhatDNS {
		t.Fatalf("Enter over the bound = %v, want an InFlightError{dns lookups, 2}", err)
	}
	if g.InFlight() != 2 || g.Refused() != 1 {
		t.Errorf("InFlight, Refused = %d, %d, want 2, 1", g.InFlight(), g.Refused())
	}
	g.Leave()
	if err := g.Enter(); err != nil {
		t.Errorf("Enter after a Leave = %v, want nil", err)
	}
	open := NewGate(0, WhatRequests)
	for range 100 {
		if err := open.Enter(); err != nil {
			t.Fatalf("Enter with no bound = %v", err)
		}
	}
}
