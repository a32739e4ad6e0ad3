package proxy_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// silentTLSOrigin accepts TCP connections and reads the ClientHello but
// never answers it, as a firewall that passes the SYN and drops the rest.
func silentTLSOrigin(t *testing.T) string {
	t.Helper()
	return testnet.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(testTimeout))
		io.Copy(io.Discard, c)
	})
}

// Issue 15: an error says what went wrong in which phase, and names the
// flag that fixes or bounds it: the x509 reason and -ca-file or
// -upstream-tls for a refused certificate; for a timeout, the phase's
// Proxy-Status type and its flag. Before, a hanging TLS handshake was an
// http_response_timeout saying "did not answer in time" with "context
// deadline exceeded" in the details, and a refused certificate said only
// "not accepted".
func TestErrorsNameTheFix(t *testing.T) {
	tlsOrigin := newTLSOrigin(t, func(w http.ResponseWriter, r *http.Request) {})
	silent := silentTLSOrigin(t)
	slow := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(testTimeout):
		}
	})
	https := http.Header{"X-Real-Protocol": {"https"}}
	tests := []struct {
		name    string
		cfg     func(*config.Config)
		target  string
		status  int
		ptype   string
		body    []string
		details string
	}{
		{
			name: "unknown authority", target: "http://" + tlsOrigin.hostPort() + "/",
			status: 502, ptype: "tls_certificate_error",
			body: []string{"x509: certificate signed by unknown authority", "-ca-file FILE", "-upstream-tls '127.0.0.1,ca=FILE'"},
		},
		{
			name: "wrong name",
			cfg: func(c *config.Config) {
				c.CAFile = tlsOrigin.caFile
				c.UpstreamTLS = "127.0.0.1,sni=wrong.test"
			},
			target: "http://" + tlsOrigin.hostPort() + "/",
			status: 502, ptype: "tls_certificate_error",
			body: []string{"x509: certificate is valid for", "not wrong.test", "-upstream-tls '127.0.0.1,sni=NAME'"},
		},
		{
			name:   "tls handshake hangs",
			cfg:    func(c *config.Config) { c.TLSHandshakeTimeout = 300 * time.Millisecond },
			target: "http://" + silent + "/", status: 504, ptype: "connection_timeout",
			body:    []string{"tls handshake with " + silent + " timed out after 300ms", "-tls-handshake-timeout"},
			details: "tls handshake timed out after 300ms",
		},
		{
			name:   "response head",
			cfg:    func(c *config.Config) { c.ResponseHeaderTimeout = 200 * time.Millisecond },
			target: "http://" + slow.hostPort() + "/", status: 504, ptype: "http_response_timeout",
			body: []string{"sent no response head in time", "-response-header-timeout"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			p := startProxy(t, cfg)
			header := https
			if tt.ptype == "http_response_timeout" {
				header = nil
			}
			resp, body := p.get(t, tt.target, header)
			t.Logf("%d %s\nProxy-Status: %s", resp.StatusCode, body, resp.Header.Get("Proxy-Status"))
			checkProxyError(t, resp, body, tt.status, tt.ptype, strings.TrimPrefix(tt.target[:len(tt.target)-1], "http://"))
			for _, want := range tt.body {
				if !strings.Contains(body, want) {
					t.Errorf("body %q, want it to say %q", body, want)
				}
			}
			if ps := resp.Header.Get("Proxy-Status"); !strings.Contains(ps, tt.details) {
				t.Errorf("Proxy-Status %q, want details saying %q", ps, tt.details)
			}
			if e := p.waitEntries(t, 1)[0]; e.Error != tt.ptype || !strings.Contains(e.Detail, tt.body[len(tt.body)-1]) {
				t.Errorf("access record error %q detail %q, want %s naming %q", e.Error, e.Detail, tt.ptype, tt.body[len(tt.body)-1])
			}
		})
	}
}

// Issue 15: the TSV access log says why a request was refused, in a
// detail field at the end of the line (the JSON format had it already):
// curl shows only "CONNECT tunnel failed, response 403", and the log
// showed only http_request_denied.
func TestTSVDetailConnectDenied(t *testing.T) {
	addr, access := runServer(t, testConfig())
	c, br := rawConn(t, addr)
	io.WriteString(c, "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
	if resp, body := readResponse(t, br, http.MethodConnect); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CONNECT to port 22: %d %q, want 403", resp.StatusCode, body)
	}
	var line string
	for deadline := time.Now().Add(testTimeout); line == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no access line for the CONNECT; log:\n%s", access)
		}
		for _, l := range strings.Split(access.String(), "\n") {
			if strings.Contains(l, "\tCONNECT\t") {
				line = l
			}
		}
	}
	f := strings.Split(line, "\t")
	if len(f) != 17 {
		t.Fatalf("access line has %d fields, want 17: %q", len(f), line)
	}
	if f[14] != "http_request_denied" || !strings.Contains(f[16], "port not in -connect-ports (now 443)") {
		t.Errorf("error %q detail %q, want http_request_denied and the port rule", f[14], f[16])
	}
}

// Issue 15: the usage help for an origin-form request names the
// lowercase http_proxy, as docs/integration.md does: curl reads only the
// lowercase name for http:// URLs, and Go refuses HTTP_PROXY under CGI.
func TestUsageNamesLowercaseHTTPProxy(t *testing.T) {
	p := startProxy(t, testConfig())
	resp, body := rawRoundTrip(t, p.addr, http.MethodGet, "GET /x HTTP/1.1\r\nHost: "+p.addr+"\r\n\r\n")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("origin-form request: %d %q, want 400", resp.StatusCode, body)
	}
	if !strings.Contains(body, "set http_proxy=http://") || strings.Contains(body, "set HTTP_PROXY") {
		t.Errorf("usage %q, want it to say set http_proxy=..., not HTTP_PROXY", body)
	}
}
