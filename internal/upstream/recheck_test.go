package upstream_test

import (
	"errors"
	"net"
	"testing"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// Issue 12: a pooled connection dialed before the destination policy
// changed is checked against the new policy before it carries another
// request, directly (by the IP it is connected to, for a name whose
// address a rule now denies) and through each kind of parent (by the
// name the parent is asked for, or the IP warmproxy resolved): the
// request gets the *acl.DeniedError a fresh dial would, and nothing is
// sent on the old connection.
func TestPooledConnRecheckedAfterPolicyChange(t *testing.T) {
	plain, _ := countingOrigin(t)
	_, plainPort, _ := net.SplitHostPort(plain.Listener.Addr().String())
	tlsO := startTLSOrigin(t, nil, nil)
	httpURL, httpsURL := "http://origin.test:"+plainPort+"/", "https://origin.test:"+tlsO.port+"/"
	tests := []struct {
		name, parent, url, deny string
		names                   []string // resolved by warmproxy
		// shared: the connection is the http parent's, carrying requests
		// to every origin, checked one by one; it stays open.
		shared bool
	}{
		{"direct http, IP rule", "", httpURL, "127.0.0.0/8", []string{"origin.test"}, false},
		{"direct https, IP rule", "", httpsURL, "127.0.0.0/8", []string{"origin.test"}, false},
		{"direct http, name rule", "", httpURL, "origin.test", []string{"origin.test"}, false},
		{"http parent, https tunnel", "http", httpsURL, "origin.test", nil, false},
		{"http parent, plain http", "http", httpURL, "origin.test", nil, true},
		{"socks5, IP rule", "socks5", httpURL, "127.0.0.0/8", []string{"origin.test"}, false},
		{"socks5h, name rule", "socks5h", httpsURL, "origin.test", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			switch tt.parent {
			case "http":
				cfg = parentConfig(startHTTPParent(t, "u", "p", "origin.test").url())
			case "socks5", "socks5h":
				cfg = parentConfig(startSOCKSParent(t, "u", "p", "origin.test").url(tt.parent))
			}
			cfg.UpstreamTLS = "origin.test,insecure"
			up, _ := testUpstream(t, cfg, tt.names...)
			rt := up.RoundTripper()
			get(t, rt, tt.url) // pooled now
			next := cfg
			next.Deny = tt.deny
			parsed, err := next.Parse()
			if err != nil {
				t.Fatal(err)
			}
			p := parsed.Policy
			before := up.Tracker().Totals(schemeOf(tt.url))
			up.Guard().SetPolicy(p) // no CloseIdleConnections: as for a conn busy during the reload
			_, err = tryGet(rt, tt.url)
			var de *acl.DeniedError
			if !errors.As(err, &de) {
				t.Fatalf("GET %s after deny %s = %v, want an *acl.DeniedError", tt.url, tt.deny, err)
			}
			if after := up.Tracker().Totals(schemeOf(tt.url)); after.Open != 0 && !tt.shared {
				t.Errorf("%d connections still open after the denial (before: %+v), want 0", after.Open, before)
			}
		})
	}
}

func schemeOf(url string) upstream.Scheme {
	if url[:5] == "https" {
		return upstream.SchemeHTTPS
	}
	return upstream.SchemeHTTP
}
