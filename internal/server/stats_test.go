package server_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// Issue 15: the admin address serves an HTML stats page at / and /stats:
// per origin its connections, requests, reuse ratio, round trips saved,
// TLS handshakes, protocol and last error, with totals; it refreshes
// itself, loads nothing else, and escapes what origins and clients put
// in it (a malformed response quoted in the error, a host name).
func TestStatsPage(t *testing.T) {
	o, cfg, _ := tlsOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	bad := testnet.Serve(t, func(c net.Conn) {
		c.Read(make([]byte, 4096))
		io.WriteString(c, "<script>alert(2)</script>\r\n\r\n")
	})
	cfg.AdminListen = "127.0.0.1:0"
	cfg.DNSServer = testnet.DNS(t, nil)
	p := start(t, cfg)
	c := freshClient(t, p.addr)
	tlsHost := strings.TrimPrefix(o.URL, "https://")
	for i := range 3 {
		if code, _ := get(t, c, "http://"+tlsHost+"/", "https"); code != http.StatusOK {
			t.Fatalf("https request %d = %d, want 200", i, code)
		}
	}
	if code, _ := get(t, c, "http://"+bad+"/", ""); code != http.StatusBadGateway {
		t.Fatalf("request to the malformed origin = %d, want 502", code)
	}
	// A host with markup in it, where the proxy lets it reach the pool.
	pinRaw(t, p.addr, "GET http://<script>alert(1)/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	hostInPool := false
	defer func() { t.Logf("a host with markup reached the pool: %v", hostInPool) }()
	for _, u := range pool(t, p.admin).Upstreams {
		hostInPool = hostInPool || strings.Contains(u.Host, "<script>")
	}

	for _, path := range []string{"/", "/stats"} {
		code, body, h := direct(t, p.admin, path)
		if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			t.Fatalf("admin GET %s = %d %s, want 200 text/html:\n%.300s", path, code, h.Get("Content-Type"), body)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q, want default-src 'none'", path, csp)
		}
		for _, want := range []string{
			`<meta http-equiv="refresh" content="5">`,
			`<td class="l host">` + tlsHost + `</td>`,
			`<td class="l host">` + bad + `</td>`,
			`<span class="proto h1">HTTP/1.1</span>`,
			`<td>66.7%`,         // 3 requests on 1 connection
			`id="total-rtt">4<`, // 2 reused https requests: TCP + TLS each
			`malformed HTTP response &#34;&lt;script&gt;alert(2)&lt;/script&gt;&#34;`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s: page lacks %q:\n%s", path, want, body)
			}
		}
		if hostInPool && !strings.Contains(body, "&lt;script&gt;alert(1)") {
			t.Errorf("GET %s: the <script> host is in the pool but not escaped on the page:\n%s", path, body)
		}
		if strings.Contains(strings.ToLower(body), "<script") {
			t.Errorf("GET %s: page has an unescaped <script:\n%s", path, body)
		}
	}

	code, body, _ := direct(t, p.admin, "/stats?refresh=0")
	if code != http.StatusOK || strings.Contains(body, `http-equiv="refresh"`) {
		t.Errorf("GET /stats?refresh=0 = %d, want 200 without a meta refresh", code)
	}
	code, body, _ = direct(t, p.admin, "/stats?refresh=soon")
	if code != http.StatusBadRequest || !strings.Contains(body, "want whole seconds") {
		t.Errorf("GET /stats?refresh=soon = %d %q, want 400 naming what it wants", code, body)
	}
	// The proxy's own root keeps its usage help.
	if code, _, _ := direct(t, p.addr, "/"); code != http.StatusBadRequest {
		t.Errorf("proxy GET / = %d, want 400", code)
	}
}
