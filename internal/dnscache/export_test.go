package dnscache

import "time"

// SetClock makes the cache read the time from now instead of time.Now.
func (c *Cache) SetClock(now func() time.Time) { c.now = now }

// SetStaleWait replaces staleAnswerWait, how long a lookup with an
// expired answer waits for the fresh one.
func (c *Cache) SetStaleWait(d time.Duration) { c.stWait = d }

// Flights is the number of lookups the cache has under way.
func (c *Cache) Flights() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.flights)
}

// LookupsInFlight is the number of lookups holding a place under
// MaxInFlight.
func (c *Cache) LookupsInFlight() int { return c.gate.InFlight() }
