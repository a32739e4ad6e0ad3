package config

import "fmt"

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
