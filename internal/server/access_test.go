package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/warmproxy/warmproxy/internal/config"
)

// originForm sends an origin-form GET for path on c with the extra header
// lines and returns the status code.
func originForm(c net.Conn, br *bufio.Reader, path, extra string) (int, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", path, c.RemoteAddr(), extra); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// freshOriginForm is originForm on a new connection.
func freshOriginForm(t *testing.T, addr, path, extra string) (int, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return originForm(c, bufio.NewReader(c), path, extra)
}

// Issue 12: with -proxy-auth-file and no -admin-listen, the admin paths
// that tell about traffic (/metrics, /debug/pool) on the proxy's address
// need the proxy credentials, in Proxy-Authorization or Authorization
// (scrapers, curl -u); the health checks and the usage help do not.
func TestAdminPathsNeedCredentials(t *testing.T) {
	cfg := config.Default()
	cfg.ProxyAuthFile = authFile(t, "ops", "pw", bcrypt.MinCost)
	p := start(t, cfg)
	good, bad := basicAuth("ops", "pw"), basicAuth("ops", "nope")
	tests := []struct {
		path, header string
		want         int
	}{
		{"/metrics", "", 407},
		{"/debug/pool", "", 407},
		{"/metrics", "Proxy-Authorization: " + bad, 407},
		{"/metrics", "Authorization: " + bad, 407},
		{"/metrics", "Proxy-Authorization: " + good, 200},
		{"/metrics", "Authorization: " + good, 200},
		{"/debug/pool", "Authorization: " + good, 200},
		{"/debug/pprof/", "Authorization: " + good, 400}, // never on the proxy's address
		{"/debug/pprof/cmdline", "", 400},
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/nope", "", 400},
	}
	for _, tt := range tests {
		extra := ""
		if tt.header != "" {
			extra = tt.header + "\r\n"
		}
		code, err := freshOriginForm(t, p.addr, tt.path, extra)
		if err != nil || code != tt.want {
			t.Errorf("GET %s with %q = %d, %v; want %d", tt.path, tt.header, code, err, tt.want)
		}
	}
	// The refusals are logged like any other request.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.access.String(), "\tGET\t/metrics\t407\t") {
		if time.Now().After(deadline) {
			t.Fatalf("access log has no 407 line for /metrics:\n%s", p.access)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Issue 12: a reload that changes allow-clients applies at accept too: a
// client the new list allows is served, one it no longer allows is reset
// at accept, and a connection it let in before gets 403 on its next
// request (admin paths included).
func TestReloadAllowClientsAtAccept(t *testing.T) {
	cfg := config.Default()
	cfg.AllowClients = "10.0.0.0/8" // not this test's 127.0.0.1
	p := start(t, cfg)
	if code, err := freshOriginForm(t, p.addr, "/metrics", ""); err == nil {
		t.Fatalf("GET /metrics from a client not allowed = %d, want the connection reset", code)
	}

	allow := cfg
	allow.AllowClients = "127.0.0.1/32"
	if msg := p.reload(t, allow); msg != "configuration reloaded" {
		t.Fatalf("reload: %s", msg)
	}
	kept, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	br := bufio.NewReader(kept)
	if code, err := originForm(kept, br, "/metrics", ""); err != nil || code != 200 {
		t.Fatalf("GET /metrics after the reload allowed 127.0.0.1 = %d, %v; want 200", code, err)
	}

	if msg := p.reload(t, cfg); msg != "configuration reloaded" {
		t.Fatalf("reload: %s", msg)
	}
	if code, err := originForm(kept, br, "/metrics", ""); err != nil || code != 403 {
		t.Errorf("GET /metrics on a kept connection after 127.0.0.1 was removed = %d, %v; want 403", code, err)
	}
	if code, err := freshOriginForm(t, p.addr, "/healthz", ""); err == nil {
		t.Errorf("GET /healthz on a new connection after 127.0.0.1 was removed = %d, want the connection reset", code)
	}
}
