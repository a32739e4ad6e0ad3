package config

import "testing"

// Issue 6: a listener others can reach needs -allow-clients,
// -proxy-auth-file or -open-proxy-i-know; bad rules are refused.
func TestValidateSecurity(t *testing.T) {
	checkValidate(t, []validateCase{
		{"default loopback", func(*Config) {}, ""},
		{"localhost", func(c *Config) { c.Listen = "localhost:9999" }, ""},
		{"ipv6 loopback", func(c *Config) { c.Listen = "[::1]:9999" }, ""},
		{"all interfaces", func(c *Config) { c.Listen = ":9999" }, "open proxy"},
		{"unspecified", func(c *Config) { c.Listen = "0.0.0.0:9999" }, "open proxy"},
		{"a name", func(c *Config) { c.Listen = "proxy.example:9999" }, "open proxy"},
		{"with allow-clients", func(c *Config) { c.Listen = ":9999"; c.AllowClients = "10.0.0.0/8" }, ""},
		{"with auth", func(c *Config) { c.Listen = ":9999"; c.ProxyAuthFile = "/etc/warmproxy/htpasswd" }, ""},
		{"open on purpose", func(c *Config) { c.Listen = ":9999"; c.OpenProxyIKnow = true }, ""},
		{"bad client", func(c *Config) { c.AllowClients = "10.0.0.0/33" }, "allow-clients"},
		{"bad allow rule", func(c *Config) { c.Allow = "exa mple.com" }, "destination rule"},
		{"bad deny rule", func(c *Config) { c.Deny = "10.0.0.0/99" }, "destination rule"},
		{"max client conns", func(c *Config) { c.MaxClientConns = 0 }, "max-client-conns"},
		{"max requests in flight", func(c *Config) { c.MaxRequestsInFlight = 0 }, "max-requests-in-flight"},
		{"h2c max streams", func(c *Config) { c.ClientH2CMaxStreams = 0 }, "client-h2c-max-streams"},
		{"queue", func(c *Config) { c.MaxConnsPerHostQueue = -1 }, "max-conns-per-host-queue"},
		{"dns server", func(c *Config) { c.DNSServer = "127.0.0.1" }, "dns-server"},
	})
}
