package proxy_test

import (
	"net/http"
	"strings"
	"testing"
)

// Issue 12: a request target whose host cannot name an origin ("<b>x",
// "a{b}") is refused with 400 before any lookup or dial, so it reaches
// neither the resolver nor the pool's per-origin stats; good names and
// IP literals still go through.
func TestBadTargetHostRefused(t *testing.T) {
	origin := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	p := startProxy(t, testConfig())
	port := origin.hostPort()[strings.LastIndexByte(origin.hostPort(), ':'):]
	for _, tt := range []struct {
		name, raw string
		status    int
	}{
		{"angle brackets", "GET http://<b>x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"quote", "GET http://a\"b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"zone", "GET http://[fe80::1%25eth0]" + port + "/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"connect angle", "CONNECT <b>x:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 400},
		{"ipv4", "GET http://127.0.0.1" + port + "/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 200},
		{"name", "GET http://localhost" + port + "/ HTTP/1.1\r\nHost: localhost\r\n\r\n", 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			method := strings.Fields(tt.raw)[0]
			resp, body := rawRoundTrip(t, p.addr, method, tt.raw)
			if resp.StatusCode != tt.status {
				t.Fatalf("%q: status %d (%s), want %d", tt.raw, resp.StatusCode, body, tt.status)
			}
			if tt.status == 400 && !strings.Contains(resp.Header.Get("Proxy-Status"), "http_request_error") {
				t.Errorf("Proxy-Status %q, want error=http_request_error", resp.Header.Get("Proxy-Status"))
			}
		})
	}
}
