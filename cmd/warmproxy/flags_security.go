package main

import (
	"flag"

	"github.com/warmproxy/warmproxy/internal/config"
)

// securityFlags defines the access, destination-policy and limit flags.
func securityFlags(fs *flag.FlagSet, cfg *config.Config) {
	fs.StringVar(&cfg.AllowClients, "allow-clients", cfg.AllowClients, "client `IPs/CIDRs`, comma-separated, that may use the proxy; others are disconnected")
	fs.StringVar(&cfg.ProxyAuthFile, "proxy-auth-file", cfg.ProxyAuthFile, "htpasswd `file` of bcrypt hashes (htpasswd -B); requires Proxy-Authorization: Basic")
	fs.BoolVar(&cfg.OpenProxyIKnow, "open-proxy-i-know", cfg.OpenProxyIKnow, "allow a non-loopback listener with neither -allow-clients nor -proxy-auth-file (an open proxy)")
	fs.StringVar(&cfg.Allow, "allow", cfg.Allow, "destination `rules` allowed, comma-separated: host, *.domain, IP, CIDR, [v6]:port, :port, host:lo-hi; when set, all else is denied")
	fs.StringVar(&cfg.Deny, "deny", cfg.Deny, "destination `rules` denied, comma-separated, same forms as -allow; checked on resolved IPs at dial time")
	fs.BoolVar(&cfg.DenyPrivate, "deny-private", cfg.DenyPrivate, "deny loopback, RFC 1918, CGNAT, link-local and ULA destinations (cloud metadata is always denied)")
	fs.IntVar(&cfg.MaxClientConns, "max-client-conns", cfg.MaxClientConns, "concurrent client connections, tunnels included; more get 503")
	fs.IntVar(&cfg.MaxRequestsInFlight, "max-requests-in-flight", cfg.MaxRequestsInFlight, "requests served at once, HTTP/1.1 and h2c streams together, open tunnels included; more get 503 with Retry-After")
	fs.IntVar(&cfg.MaxConnsPerHostQueue, "max-conns-per-host-queue", cfg.MaxConnsPerHostQueue, "requests that may wait for a connection at -max-conns-per-host; more get 503")
	fs.StringVar(&cfg.DNSServer, "dns-server", cfg.DNSServer, "DNS server `host:port` to ask instead of the system resolver")
	fs.IntVar(&cfg.DNSCacheSize, "dns-cache-size", cfg.DNSCacheSize, "names the DNS cache holds, least recently used out first (0: no cache)")
	fs.DurationVar(&cfg.DNSMinTTL, "dns-min-ttl", cfg.DNSMinTTL, "shortest time a DNS answer is cached, whatever its TTL; also how long \"no such host\" is cached")
	fs.DurationVar(&cfg.DNSMaxTTL, "dns-max-ttl", cfg.DNSMaxTTL, "longest time a DNS answer is cached, whatever its TTL")
	fs.DurationVar(&cfg.DNSStale, "dns-stale", cfg.DNSStale, "how long past its TTL a cached DNS answer is used while the resolver fails or is slow (0: never)")
}
