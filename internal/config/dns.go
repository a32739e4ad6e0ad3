package config

import (
	"fmt"
	"time"
)

// DNS cache defaults. The size is Squid's ipcache_size and Envoy's DNS
// cache max_hosts. The 5s floor is Envoy's dns_min_refresh_rate: it caps
// the queries for a busy name with a TTL of 0 or 1 at one per 5s (Squid's
// 1m floor would hide a DNS failover for a minute). The 5m ceiling makes
// a name with a day-long TTL re-checked every 5m, a cheap query, so a
// moved origin is found soon. An hour of stale answers rides out a
// resolver outage (RFC 8767 suggests 1 to 3 days for a recursive
// resolver; a forward proxy should not send traffic to an address much
// longer than that on an answer it cannot check).
const (
	DefaultDNSCacheSize = 1024
	DefaultDNSMinTTL    = 5 * time.Second
	DefaultDNSMaxTTL    = 5 * time.Minute
	DefaultDNSStale     = time.Hour
)

// validateDNS checks the DNS cache settings.
func (c *Config) validateDNS() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DNSCacheSize < 0 {
		bad("dns-cache-size %d: want 0 (no cache) or more", c.DNSCacheSize)
	}
	if c.DNSMinTTL < 0 {
		bad("dns-min-ttl %v: want 0 or more, e.g. 5s", c.DNSMinTTL)
	}
	if c.DNSMaxTTL < c.DNSMinTTL {
		bad("dns-max-ttl %v: want at least dns-min-ttl (%v), e.g. 5m", c.DNSMaxTTL, c.DNSMinTTL)
	}
	if c.DNSStale < 0 {
		bad("dns-stale %v: want 0 (never use an expired answer) or more, e.g. 1h", c.DNSStale)
	}
	return errs
}
