package config

import (
	"net/netip"
	"strings"
	"testing"
)

// Issue 16: Parse hands out each text setting parsed, so that no consumer
// parses it again: ports, routes, the client list, the destination
// policy, TLS rules with their host patterns, the parent proxy, its
// bypass list, prewarm targets and the socket mode.
func TestParseTypedValues(t *testing.T) {
	c := Default()
	c.ConnectPorts = "443, 8443"
	c.Routes = "/a/=https://a.test/base/, /b/=http://b.test:8080/"
	c.AllowClients = "127.0.0.1, 10.0.0.0/8"
	c.Deny = "evil.test"
	c.UpstreamTLS = "*.partner.test,sni=partner.test; dev.test,insecure"
	c.ParentProxy = "http://u:p@127.0.0.1:3128"
	c.NoParentFor = "direct.test, 10.1.0.0/16"
	c.Prewarm = "https://a.test*2,http://b.test"
	c.ListenMode = "0640"
	p, err := c.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if !p.ConnectPorts.Allows(8443) || p.ConnectPorts.Allows(80) {
		t.Errorf("ConnectPorts = %v, want 443,8443", p.ConnectPorts)
	}
	if len(p.Routes) != 2 || p.Routes[0].Prefix != "/a/" || p.Routes[0].Base != "/base/" || p.Routes[1].Host != "b.test:8080" {
		t.Errorf("Routes = %+v", p.Routes)
	}
	if p.AllowClients == nil || !p.AllowClients.Check(netip.MustParseAddr("10.2.3.4")).Allow || p.AllowClients.Check(netip.MustParseAddr("192.0.2.1")).Allow {
		t.Errorf("AllowClients = %v, want 127.0.0.1 and 10.0.0.0/8", p.AllowClients)
	}
	if p.Policy == nil || p.Policy.CheckName("evil.test", 443).Allow {
		t.Errorf("Policy lets evil.test through")
	}
	if len(p.UpstreamTLS) != 2 || !p.UpstreamTLS[0].Match[0].Match("api.partner.test", 443) || !p.UpstreamTLS[1].InsecureSkipVerify {
		t.Errorf("UpstreamTLS = %+v", p.UpstreamTLS)
	}
	if p.ParentProxy == nil || p.ParentProxy.Host != "127.0.0.1:3128" || p.ParentProxy.User.Username() != "u" {
		t.Errorf("ParentProxy = %v", p.ParentProxy)
	}
	if len(p.NoParentFor) != 2 || !p.NoParentFor[0].Match("direct.test", 443) {
		t.Errorf("NoParentFor = %v", p.NoParentFor)
	}
	if len(p.Prewarm) != 2 || p.Prewarm[0] != (PrewarmTarget{Scheme: "https", Addr: "a.test:443", Conns: 2}) {
		t.Errorf("Prewarm = %+v", p.Prewarm)
	}
	if p.ListenMode != 0o640 {
		t.Errorf("ListenMode = %o, want 640", p.ListenMode)
	}
	if p.Config != c {
		t.Errorf("Parsed.Config = %+v, want the Config parsed", p.Config)
	}

	// A bad entry is an error, never a silently shorter list.
	c.Routes += ",/c/=ftp://c.test/"
	if _, err := c.Parse(); err == nil || !strings.Contains(err.Error(), `route "/c/=ftp://c.test/"`) {
		t.Errorf("Parse(bad route) = %v, want the route named", err)
	}
}

// Issue 16: the -intercept patterns are parsed once, here, for the
// interceptor (the CA directory is only checked to exist).
func TestParseIntercept(t *testing.T) {
	c := Default()
	c.Intercept, c.InterceptCA = "api.test, *.partner.test", t.TempDir()
	p, err := c.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Intercept) != 2 || p.Intercept[1].String() != "*.partner.test" {
		t.Errorf("Intercept = %v, want [api.test *.partner.test]", p.Intercept)
	}
}
