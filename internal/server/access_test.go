package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
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
	cfg.ProxyAuthFile = testnet.Htpasswd(t, "ops", "pw", bcrypt.MinCost)
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

// heldOrigin is an origin handler that counts the requests it gets and
// holds a request for /slow until release is called (or 20 s pass). It
// answers with the protocol and the path.
type heldOrigin struct {
	hits    atomic.Int32
	entered chan struct{}
	free    chan struct{}
	once    sync.Once
}

// newHeldOrigin returns a heldOrigin that lets go of any held request
// when the test ends.
func newHeldOrigin(t *testing.T) *heldOrigin {
	o := &heldOrigin{entered: make(chan struct{}), free: make(chan struct{})}
	t.Cleanup(o.release)
	return o
}

// ServeHTTP counts r, holds it if it is for /slow, and answers.
func (o *heldOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.hits.Add(1)
	if r.URL.Path == "/slow" {
		o.entered <- struct{}{}
		select {
		case <-o.free:
		case <-time.After(20 * time.Second):
		}
	}
	io.WriteString(w, r.Proto+" "+r.URL.Path)
}

// release lets the held request answer.
func (o *heldOrigin) release() { o.once.Do(func() { close(o.free) }) }

// getHeld sends GET target+"/slow" through c on its own goroutine, with
// the protocol header set to proto unless it is empty, and returns once
// the origin holds it. Its status (0 on an error) arrives on the channel.
func (o *heldOrigin) getHeld(t *testing.T, c *http.Client, target, proto string) <-chan int {
	t.Helper()
	slow := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, target+"/slow", nil)
		if proto != "" {
			req.Header.Set("X-Real-Protocol", proto)
		}
		resp, err := c.Do(req)
		if err != nil {
			slow <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	select {
	case <-o.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach the origin within 10s")
	}
	return slow
}

// reloadDeny reloads p with cfg plus a deny rule for the origin at addr.
func reloadDeny(t *testing.T, p *running, cfg config.Config, addr string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	deny := cfg
	deny.Deny = ":" + port
	if msg := p.reload(t, deny); msg != "configuration reloaded" {
		t.Fatalf("reload: %s", msg)
	}
}

// checkDenied sends three GETs for target+"/after" through c and checks
// that each gets 403 with inBody in its body and none reaches the origin.
func (o *heldOrigin) checkDenied(t *testing.T, c *http.Client, target, proto, inBody string) {
	t.Helper()
	before := o.hits.Load()
	for i := range 3 {
		if code, body := get(t, c, target+"/after", proto); code != http.StatusForbidden || !strings.Contains(body, inBody) {
			t.Errorf("request %d after the deny reload = %d %q, want 403 %s", i, code, body, inBody)
		}
	}
	if n := o.hits.Load() - before; n != 0 {
		t.Errorf("the denied origin got %d requests after the reload, want 0", n)
	}
}

// Issue 12: after a reload adds a deny rule, no request reaches the newly
// denied destination, whatever state its pooled connection was in: one
// that was busy during the reload (so the reload could not close it as
// idle) goes back to the pool, and the next request to that destination
// must get 403 without reaching the origin, not ride that connection. The
// request in flight during the reload finishes (it reads; it writes no
// more).
func TestReloadDenyClosesBusyPooledConn(t *testing.T) {
	h := newHeldOrigin(t)
	o := httptest.NewServer(h)
	t.Cleanup(o.Close)
	cfg := config.Default()
	p := start(t, cfg)
	c := freshClient(t, p.addr)

	slow := h.getHeld(t, c, o.URL, "")
	reloadDeny(t, p, cfg, o.Listener.Addr().String())
	// Traffic after the reload (to another origin) ends net/http's "close
	// what goes idle next" mode of CloseIdleConnections, as under load.
	other, _ := countingOrigin(t)
	if code, _ := get(t, c, other.URL+"/", ""); code != 200 {
		t.Fatalf("request to an allowed origin after the reload = %d, want 200", code)
	}
	h.release()
	if code := <-slow; code != 200 {
		t.Fatalf("the request in flight during the reload = %d, want 200 (it was let in before)", code)
	}
	// The connection it used goes back to the pool.
	deadline := time.Now().Add(10 * time.Second)
	for findUpstream(t, pool(t, p.addr), "http", o.Listener.Addr().String()).Idle != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no idle pooled connection 10s after the slow request: %+v", pool(t, p.addr))
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.checkDenied(t, c, o.URL, "", "denied")
}

// Issue 12: the same for an HTTP/2 origin connection, which carries every
// request to its origin as a stream: one that was busy during the deny
// reload carries no new request to the now-denied origin.
func TestReloadDenyClosesBusyH2Conn(t *testing.T) {
	h := newHeldOrigin(t)
	o := httptest.NewUnstartedServer(h)
	o.EnableHTTP2 = true
	o.StartTLS()
	t.Cleanup(o.Close)
	ca := testnet.CAFile(t, o.Certificate())
	target := "http://" + o.Listener.Addr().String()
	cfg := config.Default()
	cfg.CAFile = ca
	p := start(t, cfg)
	c := freshClient(t, p.addr)
	if code, body := get(t, c, target+"/first", "https"); code != 200 || !strings.HasPrefix(body, "HTTP/2") {
		t.Fatalf("first request = %d %q, want 200 over HTTP/2", code, body)
	}

	slow := h.getHeld(t, c, target, "https")
	reloadDeny(t, p, cfg, o.Listener.Addr().String())
	h.release()
	<-slow
	h.checkDenied(t, c, target, "https", "")
}
