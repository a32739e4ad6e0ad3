package config

import (
	"strings"
	"testing"
)

// Issue 8: unix: listeners, their file mode, and route syntax are checked
// with messages that say what to write.
func TestValidateClientSide(t *testing.T) {
	checkValidate(t, []validateCase{
		{"unix", func(c *Config) { c.Listen = "unix:/run/warmproxy/warmproxy.sock" }, ""},
		{"unix no path", func(c *Config) { c.Listen = "unix:" }, "want a socket path"},
		{"unix too long", func(c *Config) { c.Listen = "unix:/" + strings.Repeat("a", 120) }, "the most is 107"},
		{"unix with allow-clients", func(c *Config) { c.Listen = "unix:/tmp/w.sock"; c.AllowClients = "10.0.0.0/8" }, "cannot apply to a Unix socket"},
		{"unix is local", func(c *Config) { c.Listen = "unix:/tmp/w.sock"; c.OpenProxyIKnow = false }, ""},
		{"mode", func(c *Config) { c.ListenMode = "0600" }, ""},
		{"bad mode", func(c *Config) { c.ListenMode = "rw" }, `listen-mode "rw": want an octal file mode`},
		{"mode too big", func(c *Config) { c.ListenMode = "1777" }, `listen-mode "1777"`},
		{"routes", func(c *Config) {
			c.Routes = "/stripe/=https://api.stripe.com/, /openai/=https://api.openai.com/v1,/local/=http://127.0.0.1:8080/a/b/"
		}, ""},
		{"no equals", func(c *Config) { c.Routes = "/stripe/" }, "want /prefix/=https://host/"},
		{"prefix without slashes", func(c *Config) { c.Routes = "stripe=https://api.stripe.com/" }, "starts and ends with /"},
		{"root prefix", func(c *Config) { c.Routes = "/=https://api.stripe.com/" }, "at least one path segment"},
		{"dot prefix", func(c *Config) { c.Routes = "/a/../=https://x.test/" }, ". or .. segment"},
		{"odd prefix", func(c *Config) { c.Routes = "/a%2f/=https://x.test/" }, "want letters, digits"},
		{"scheme", func(c *Config) { c.Routes = "/a/=ftp://x.test/" }, "want an http:// or https:// URL"},
		{"no host", func(c *Config) { c.Routes = "/a/=https:///x/" }, "names no host"},
		{"userinfo", func(c *Config) { c.Routes = "/a/=https://u:p@x.test/" }, "credentials in the URL"},
		{"query", func(c *Config) { c.Routes = "/a/=https://x.test/?k=1" }, "want no query"},
		{"port", func(c *Config) { c.Routes = "/a/=https://x.test:99999/" }, "bad port"},
		{"twice", func(c *Config) { c.Routes = "/a/=https://x.test/,/a/=https://y.test/" }, "routed twice"},
	})
}

// Issue 8: a route's target base path always ends with a slash.
func TestParseRoute(t *testing.T) {
	r, err := ParseRoute("/openai/=https://api.openai.com/v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Route{Prefix: "/openai/", Scheme: "https", Host: "api.openai.com", Base: "/v1/"}); r != want {
		t.Errorf("ParseRoute = %+v, want %+v", r, want)
	}
}
