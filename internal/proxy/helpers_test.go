package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/server"
	"github.com/warmproxy/warmproxy/internal/testnet"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// testConfig is the default Config with short timeouts and a loopback
// listener on a free port.
func testConfig() config.Config {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DialTimeout = 3 * time.Second
	cfg.TLSHandshakeTimeout = 3 * time.Second
	cfg.ResponseHeaderTimeout = 5 * time.Second
	cfg.ShutdownGrace = 3 * time.Second
	return cfg
}

// testProxy is the proxy handler on an httptest server, with the pooled
// upstream transport built from a Config and the access records kept.
type testProxy struct {
	srv  *httptest.Server
	up   *upstream.Upstream
	addr string
	url  *url.URL

	mu      sync.Mutex
	entries []accesslog.Entry
}

func startProxy(t testing.TB, cfg config.Config, opts ...upstream.Option) *testProxy {
	t.Helper()
	up, err := upstream.New(config.MustParse(cfg), opts...)
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	p := &testProxy{up: up}
	h := proxy.New(proxy.Options{
		Transport: up.Transport(),
		Dial:      proxy.DialFunc(up.Dial),
		Config:    config.MustParse(cfg),
		Record:    p.record,
	})
	p.srv = httptest.NewUnstartedServer(h)
	p.srv.Config.ReadHeaderTimeout = cfg.ClientHeaderTimeout
	p.srv.Config.MaxHeaderBytes = cfg.MaxHeaderBytes
	p.srv.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)
	p.srv.Start()
	p.addr = p.srv.Listener.Addr().String()
	p.url = &url.URL{Scheme: "http", Host: p.addr}
	t.Cleanup(func() {
		p.srv.Close()
		up.Transport().CloseIdleConnections()
	})
	return p
}

func (p *testProxy) record(e *accesslog.Entry) {
	p.mu.Lock()
	p.entries = append(p.entries, *e)
	p.mu.Unlock()
}

// waitEntries waits until n access records were written and returns them.
// A record is written after the response, so a client may be ahead of it.
func (p *testProxy) waitEntries(t *testing.T, n int) []accesslog.Entry {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		p.mu.Lock()
		got := append([]accesslog.Entry(nil), p.entries...)
		p.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d access records, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// client returns an HTTP client that sends every request through p, one
// fresh connection per request (as a PHP or curl process would), never
// following redirects and never decompressing.
func (p *testProxy) client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{
		Proxy:              http.ProxyURL(p.url),
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       testTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get fetches target through p and returns the response with its body read.
func (p *testProxy) get(t *testing.T, target string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vv := range header {
		req.Header[k] = vv
	}
	return do(t, p.client(t), req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, string(body)
}

// testOrigin is an httptest origin that counts the connections it accepts
// (http.StateNew) and closes.
type testOrigin struct {
	*httptest.Server
	newConns    atomic.Int64
	closedConns atomic.Int64
	// handshakes counts TLS ClientHellos (TLS origins only).
	handshakes atomic.Int64
	caFile     string
}

func newOrigin(t *testing.T, h http.HandlerFunc) *testOrigin {
	t.Helper()
	return newOriginWith(t, h, nil)
}

// newOriginWith is newOrigin with setup run on the server before it
// starts.
func newOriginWith(t *testing.T, h http.HandlerFunc, setup func(*testOrigin)) *testOrigin {
	t.Helper()
	o := &testOrigin{Server: httptest.NewUnstartedServer(h)}
	o.setup()
	if setup != nil {
		setup(o)
	}
	o.Start()
	t.Cleanup(o.Close)
	return o
}

// newTLSOrigin starts an HTTPS origin and writes its certificate to a PEM
// file for -ca-file.
func newTLSOrigin(t *testing.T, h http.HandlerFunc) *testOrigin {
	t.Helper()
	return newTLSOriginWith(t, h, false)
}

// newTLSOriginWith is newTLSOrigin that, with h2, also offers HTTP/2
// through ALPN.
func newTLSOriginWith(t *testing.T, h http.HandlerFunc, h2 bool) *testOrigin {
	t.Helper()
	o := &testOrigin{Server: httptest.NewUnstartedServer(h)}
	o.EnableHTTP2 = h2
	o.setup()
	o.TLS = &tls.Config{
		GetConfigForClient: testnet.OnHello(func() { o.handshakes.Add(1) }),
	}
	o.StartTLS()
	t.Cleanup(o.Close)
	o.caFile = testnet.CAFile(t, o.Certificate())
	return o
}

func (o *testOrigin) setup() {
	o.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)
	o.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			o.newConns.Add(1)
		case http.StateClosed, http.StateHijacked:
			o.closedConns.Add(1)
		}
	}
}

// hostPort is the origin's 127.0.0.1:port.
func (o *testOrigin) hostPort() string { return o.Listener.Addr().String() }

// httpURL is the origin's http:// URL with path.
func (o *testOrigin) httpURL(path string) string { return "http://" + o.hostPort() + path }

// rawOrigin is a TCP listener whose connections are served by a function
// that speaks raw bytes, for responses net/http refuses to write.
func rawOrigin(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	return testnet.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(testTimeout))
		serve(c, bufio.NewReader(c))
	})
}

// rawConn opens a plain TCP connection to addr with a deadline.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// rawRoundTrip writes raw to a fresh connection to addr and reads one
// response to a request of the given method, body included.
func rawRoundTrip(t *testing.T, addr, method, raw string) (*http.Response, string) {
	t.Helper()
	c, br := rawConn(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, br, method)
}

func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	return resp, string(body)
}

// runServer runs the whole server (server.Run, with its listener, framing
// scan and timeouts) for cfg and returns its address; access records go to
// the returned buffer. Cleanup stops it and checks it returned nil.
func runServer(t *testing.T, cfg config.Config) (string, *testnet.Buffer) {
	t.Helper()
	addrc := make(chan string, 1)
	log := slog.New(&addrHandler{addr: addrc})
	access := &testnet.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- server.Run(ctx, config.MustParse(cfg), log, access) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		cancel()
		t.Fatalf("server.Run: %v", err)
	case <-time.After(testTimeout):
		cancel()
		t.Fatal("server did not start listening")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("server.Run: %v", err)
			}
		case <-time.After(cfg.ShutdownGrace + testTimeout):
			t.Error("server.Run did not return after cancel")
		}
	})
	return addr, access
}

// addrHandler is a slog.Handler that sends the addr attribute of the
// "listening" record.
type addrHandler struct{ addr chan<- string }

func (h *addrHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *addrHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *addrHandler) WithGroup(string) slog.Handler            { return h }
func (h *addrHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "listening" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "addr" {
			select {
			case h.addr <- a.Value.String():
			default:
			}
			return false
		}
		return true
	})
	return nil
}

// waitFor polls cond until it holds or the test timeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testnet.WaitUntil(t, testTimeout, what, cond)
}
