package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// routeOrigin is an origin that records the request-target of every
// request it gets.
type routeOrigin struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func newRouteOrigin(t *testing.T) *routeOrigin {
	t.Helper()
	o := &routeOrigin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.paths = append(o.paths, r.RequestURI)
		o.mu.Unlock()
		w.Write([]byte("ok"))
	}))
	t.Cleanup(o.Close)
	return o
}

// take returns the request-targets recorded since the last call.
func (o *routeOrigin) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.paths
	o.paths = nil
	return p
}

// Issue 12: a route request whose path any common origin server could
// read as leaving the base path (a dot-segment in any of its disguises)
// or that holds a NUL byte gets a 400 and never reaches the origin;
// ordinary paths with dots, semicolons and escapes still pass unchanged.
func TestRouteTraversalForms(t *testing.T) {
	o := newRouteOrigin(t)
	cfg := testConfig()
	cfg.Routes = "/x/=" + o.URL + "/base/"
	p := startProxy(t, cfg)

	bad := []struct {
		name, path string
		server     bool // net/http refuses it before the handler
	}{
		{"dot dot param", "/x/..;/secret", false},
		{"dot param", "/x/.;/secret", false},
		{"dot dot named param", "/x/..;jsessionid=1/secret", false},
		{"encoded dot dot param", "/x/%2e%2e;/secret", false},
		{"dot dot encoded semicolon", "/x/..%3b/secret", false},
		{"encoded dot", "/x/%2e/secret", false},
		{"encoded dot dot mixed case", "/x/%2E%2e/secret", false},
		{"half encoded", "/x/.%2E/secret", false},
		{"dot dot nul", "/x/..%00/secret", false},
		{"dot dot nul suffix", "/x/..%00.jpg", false},
		{"nul in a name", "/x/a%00b", false},
		{"nul alone", "/x/%00", false},
		{"double encoded nul", "/x/%2500", false},
		{"overlong 2-byte dot dot", "/x/%c0%ae%c0%ae/secret", false},
		{"overlong 2-byte dot", "/x/%c0%ae/secret", false},
		{"overlong upper case", "/x/%C0%AE%C0%AE/secret", false},
		{"overlong 3-byte", "/x/%e0%80%ae%e0%80%ae/secret", false},
		{"overlong 4-byte", "/x/%f0%80%80%ae%f0%80%80%ae/secret", false},
		{"overlong bad continuation", "/x/%c0%2e%c0%2e/secret", false},
		{"overlong nul", "/x/..%c0%80", false},
		{"overlong slash", "/x/..%c0%afsecret", false},
		{"overlong backslash", "/x/..%c1%9csecret", false},
		{"fullwidth dot dot", "/x/%ef%bc%8e%ef%bc%8e/secret", false},
		{"fullwidth and ascii", "/x/.%ef%bc%8e/secret", false},
		{"two dot leader", "/x/%e2%80%a5/secret", false},
		{"small full stops", "/x/%ef%b9%92%ef%b9%92/secret", false},
		{"fullwidth solidus", "/x/..%ef%bc%8fsecret", false},
		{"fullwidth reverse solidus", "/x/..%ef%bc%bcsecret", false},
		{"fullwidth semicolon", "/x/..%ef%bc%9bx/secret", false},
		{"backslash", `/x/..\secret`, false},
		{"encoded backslash", "/x/..%5csecret", false},
		{"encoded backslash upper", "/x/..%5Csecret", false},
		{"encoded slash", "/x/..%2fsecret", false},
		{"encoded slashes around", "/x/a%2f..%2f..%2fsecret", false},
		{"encoded dots and slash", "/x/%2e%2e%2fsecret", false},
		{"double encoded", "/x/%252e%252e/secret", false},
		{"triple encoded", "/x/%25252e%25252e/secret", false},
		{"encoded four times", "/x/%2525252e", false},
		{"double encoded slash", "/x/..%252fsecret", false},
		{"trailing space", "/x/..%20/secret", false},
		{"undecodable byte", "/x/..%ff/secret", false},
		{"iis u escape", "/x/%u002e%u002e/secret", true},
		{"bad escape", "/x/%zz", true},
	}
	for _, tt := range bad {
		t.Run("bad/"+tt.name, func(t *testing.T) {
			resp, body := rawRoundTrip(t, p.addr, http.MethodGet, "GET "+tt.path+" HTTP/1.1\r\nHost: "+p.addr+"\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != http.StatusBadRequest || !tt.server && (!strings.Contains(resp.Header.Get("Proxy-Status"), "error=http_request_error") || !strings.Contains(body, "path")) {
				t.Errorf("GET %s = %d %q (Proxy-Status %q), want 400 naming the path", tt.path, resp.StatusCode, body, resp.Header.Get("Proxy-Status"))
			}
			if got := o.take(); len(got) != 0 {
				t.Errorf("GET %s reached the origin as %q", tt.path, got)
			}
		})
	}

	good := []struct{ name, path, want string }{
		{"dots in a name", "/x/a..b", "/base/a..b"},
		{"three dots", "/x/...", "/base/..."},
		{"encoded dots before a name", "/x/%2e%2efoo", "/base/%2e%2efoo"},
		{"dot file", "/x/.well-known/a", "/base/.well-known/a"},
		{"dots then a name with a param", "/x/..foo;v=1/a", "/base/..foo;v=1/a"},
		{"param in a name", "/x/a;b=c/d", "/base/a;b=c/d"},
		{"encoded slash in a name", "/x/group%2Fproject/files", "/base/group%2Fproject/files"},
		{"double encoded slash in a name", "/x/group%252Fproject", "/base/group%252Fproject"},
		{"utf-8 name", "/x/%c3%a9t%c3%a9", "/base/%c3%a9t%c3%a9"},
		{"ellipsis", "/x/%e2%80%a6", "/base/%e2%80%a6"},
		{"space in a name", "/x/a%20b", "/base/a%20b"},
		{"query", "/x/a?p=../..", "/base/a?p=../.."},
	}
	for _, tt := range good {
		t.Run("good/"+tt.name, func(t *testing.T) {
			resp, body := rawRoundTrip(t, p.addr, http.MethodGet, "GET "+tt.path+" HTTP/1.1\r\nHost: "+p.addr+"\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != http.StatusOK || body != "ok" {
				t.Errorf("GET %s = %d %q, want 200 from the origin", tt.path, resp.StatusCode, body)
			}
			if got := o.take(); len(got) != 1 || got[0] != tt.want {
				t.Errorf("GET %s reached the origin as %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}
