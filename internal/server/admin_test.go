package server_test

import (
	"context"
	"encoding/json"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/metrics"
	"github.com/warmproxy/warmproxy/internal/server"
	"github.com/warmproxy/warmproxy/internal/testnet"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// running is a server.Run under test.
type running struct {
	addr, admin string // admin is "" without -admin-listen
	cancel      context.CancelFunc
	done        chan error
	access      *testnet.Buffer
	// reloads feeds server.WithReload; reloaded hears each reload's
	// outcome message.
	reloads  chan config.Parsed
	reloaded chan string
	// log holds the lifecycle log (stderr) as text.
	log *testnet.Buffer
}

// reload applies cfg as a SIGHUP would and waits until Run logged the
// outcome, which it returns ("configuration reloaded" or "reload failed,
// keeping the old configuration").
func (r *running) reload(t *testing.T, cfg config.Config) string {
	t.Helper()
	parsed, err := cfg.Parse()
	if err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	select {
	case r.reloads <- parsed:
	case <-time.After(10 * time.Second):
		t.Fatal("Run took no reload within 10s")
	}
	select {
	case msg := <-r.reloaded:
		return msg
	case <-time.After(10 * time.Second):
		t.Fatal("Run logged no reload outcome within 10s")
	}
	return ""
}

// stop cancels Run and waits for it to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run() = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return 15s after cancel")
	}
	r.done = nil
}

// addrHandler passes the addr attribute of the "listening" and "admin
// listening" records on, and the reload outcomes, and writes every record
// to Handler.
type addrHandler struct {
	slog.Handler
	addrs    chan<- [2]string
	reloaded chan<- string
}

func (h addrHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h addrHandler) Handle(ctx context.Context, r slog.Record) error {
	h.Handler.Handle(ctx, r)
	if strings.HasPrefix(r.Message, "configuration reloaded") || strings.HasPrefix(r.Message, "reload failed") {
		h.reloaded <- r.Message
	}
	if r.Message == "listening" || r.Message == "admin listening" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "addr" {
				h.addrs <- [2]string{r.Message, a.Value.String()}
			}
			return true
		})
	}
	return nil
}

// start runs server.Run with cfg (listening on 127.0.0.1:0) until the test
// ends.
func start(t *testing.T, cfg config.Config) *running {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	return startOn(t, cfg)
}

// startOn is start without the forced TCP address: it runs server.Run on
// cfg.Listen as given (a unix: path, or 127.0.0.1:0).
func startOn(t *testing.T, cfg config.Config) *running {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	addrs := make(chan [2]string, 2)
	r := &running{done: make(chan error, 1), access: &testnet.Buffer{}, reloads: make(chan config.Parsed),
		reloaded: make(chan string, 1), log: &testnet.Buffer{}}
	log := slog.New(addrHandler{Handler: slog.NewTextHandler(r.log, nil), addrs: addrs, reloaded: r.reloaded})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- server.Run(ctx, config.MustParse(cfg), log, r.access, server.WithReload(r.reloads)) }()
	t.Cleanup(func() {
		if r.done != nil {
			r.stop(t)
		}
	})
	want := 1
	if cfg.AdminListen != "" {
		want = 2
	}
	for range want {
		select {
		case a := <-addrs:
			if a[0] == "listening" {
				r.addr = a[1]
			} else {
				r.admin = a[1]
			}
		case err := <-r.done:
			r.done = nil
			t.Fatalf("Run() = %v before listening", err)
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not listen within 10s")
		}
	}
	return r
}

// tlsOrigin starts an HTTPS origin with h and returns it with cfg trusting
// its certificate.
func tlsOrigin(t *testing.T, h http.Handler) (*httptest.Server, config.Config, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	o := httptest.NewUnstartedServer(h)
	o.Config.ConnState = testnet.OnNew(func() { conns.Add(1) })
	o.StartTLS()
	t.Cleanup(o.Close)
	ca := testnet.CAFile(t, o.Certificate())
	cfg := config.Default()
	cfg.CAFile = ca
	return o, cfg, &conns
}

// freshClient opens a new TCP connection to the proxy for every request,
// as a PHP script does.
func freshClient(t *testing.T, proxyAddr string) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr}), DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get sends GET target through c, with the protocol header set to proto
// unless it is empty, and returns status and body.
func get(t *testing.T, c *http.Client, target, proto string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if proto != "" {
		req.Header.Set("X-Real-Protocol", proto)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", target, err)
	}
	return resp.StatusCode, string(b)
}

// direct sends an origin-form GET for path to addr, not through a proxy.
func direct(t *testing.T, addr, path string) (int, string, http.Header) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s%s: reading body: %v", addr, path, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// scrape fetches /metrics from addr and parses it with the Prometheus text
// parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body, hdr := direct(t, addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d %q, want 200", code, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics Content-Type = %q, want text/plain", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return mfs
}

// metricWant is a metric family, label name, value pairs to select its
// samples, and the value metricValue must find.
type metricWant struct {
	name   string
	labels []string
	want   float64
}

// checkMetrics checks each want against mfs.
func checkMetrics(t *testing.T, mfs map[string]*dto.MetricFamily, wants []metricWant) {
	t.Helper()
	for _, c := range wants {
		if got := metricValue(t, mfs, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// metricValue sums the samples of family name whose labels include the
// given name, value pairs. A histogram's value is its sample count.
func metricValue(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("/metrics has no %s", name)
	}
	var sum float64
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Issue 4: N requests, each on a fresh client connection, to one HTTPS
// origin through the protocol header: one upstream connection, one full
// TLS handshake, N-1 reuses, all visible in /metrics and the access log.
func TestMetricsCountReuseAcrossFreshClientConnections(t *testing.T) {
	const n = 5
	o, cfg, originConns := tlsOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello over "+r.Proto)
	}))
	p := start(t, cfg)
	c := freshClient(t, p.addr)
	target := strings.Replace(o.URL, "https://", "http://", 1) + "/"
	for i := range n {
		if code, body := get(t, c, target, "https"); code != http.StatusOK || !strings.HasPrefix(body, "hello") {
			t.Fatalf("request %d = %d %q, want 200 hello", i, code, body)
		}
	}
	mfs := scrape(t, p.addr)
	checkMetrics(t, mfs, []metricWant{
		{"warmproxy_requests_total", nil, n},
		{"warmproxy_requests_total", []string{"method", "GET", "code", "2xx"}, n},
		{"warmproxy_upstream_connections_opened_total", []string{"scheme", "https"}, 1},
		{"warmproxy_upstream_connections_opened_total", []string{"scheme", "http"}, 0},
		{"warmproxy_upstream_requests_total", []string{"conn", "reused"}, n - 1},
		{"warmproxy_upstream_requests_total", []string{"conn", "new"}, 1},
		{"warmproxy_tls_handshakes_total", []string{"result", "full"}, 1},
		{"warmproxy_tls_handshakes_total", []string{"result", "resumed"}, 0},
		{"warmproxy_tls_handshake_duration_seconds", []string{"kind", "full"}, 1},
		{"warmproxy_handshakes_avoided_total", []string{"kind", "tcp"}, n - 1},
		{"warmproxy_handshakes_avoided_total", []string{"kind", "tls"}, n - 1},
		{"warmproxy_request_duration_seconds", nil, n},
		{"warmproxy_request_duration_seconds", []string{"conn", "reused"}, n - 1},
		{"warmproxy_upstream_connect_duration_seconds", nil, 1},
		{"warmproxy_upstream_connections", []string{"scheme", "https", "state", "idle"}, 1},
		{"warmproxy_upstream_connections", []string{"scheme", "https", "state", "active"}, 0},
		{"warmproxy_upstream_requests_in_flight", nil, 0},
		{"warmproxy_upstream_retries_total", nil, 0},
		{"warmproxy_errors_total", nil, 0},
		{"warmproxy_tunnels_open", nil, 0},
	})
	if got := originConns.Load(); got != 1 {
		t.Errorf("origin saw %d connections, want 1", got)
	}

	// The access log tells the same story line by line.
	p.stop(t)
	lines := strings.Split(strings.TrimSpace(p.access.String()), "\n")
	if len(lines) != n {
		t.Fatalf("access log has %d lines, want %d:\n%s", len(lines), n, p.access.String())
	}
	for i, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) < 12 {
			t.Fatalf("access log line %d has %d fields: %q", i, len(f), l)
		}
		reused, connect, retries := f[8], f[9], f[11]
		connectS, err := strconv.ParseFloat(connect, 64)
		if err != nil {
			t.Fatalf("line %d connect_s %q: %v", i, connect, err)
		}
		wantReused := "yes"
		if i == 0 {
			wantReused = "no"
		}
		if reused != wantReused || (i == 0) != (connectS > 0) || retries != "0" {
			t.Errorf("line %d reused, connect_s, retries = %s, %s, %s; want %s, %v, 0", i, reused, connect, retries, wantReused, i == 0)
		}
	}
}

// Issue 4: a resumed TLS session is counted apart from a full handshake.
func TestMetricsCountResumedHandshakes(t *testing.T) {
	const n = 3
	o, cfg, originConns := tlsOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	}))
	p := start(t, cfg)
	c := freshClient(t, p.addr)
	target := strings.Replace(o.URL, "https://", "http://", 1) + "/"
	for i := range n {
		if code, _ := get(t, c, target, "https"); code != http.StatusOK {
			t.Fatalf("request %d = %d, want 200", i, code)
		}
	}
	mfs := scrape(t, p.addr)
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"result", "full"}, 1},
		{[]string{"result", "resumed"}, n - 1},
		{[]string{"result", "error"}, 0},
	} {
		if got := metricValue(t, mfs, "warmproxy_tls_handshakes_total", c.labels...); got != c.want {
			t.Errorf("warmproxy_tls_handshakes_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := metricValue(t, mfs, "warmproxy_tls_handshake_duration_seconds", "kind", "resumed"); got != n-1 {
		t.Errorf("resumed handshake durations observed = %v, want %d", got, n-1)
	}
	if got := metricValue(t, mfs, "warmproxy_upstream_connections_opened_total", "scheme", "https"); got != n {
		t.Errorf("connections opened = %v, want %d", got, n)
	}
	if got := originConns.Load(); got != n {
		t.Errorf("origin saw %d connections, want %d", got, n)
	}
}

// Issue 4: a request replayed because its pooled connection was stale
// shows in warmproxy_upstream_retries_total and the access log.
func TestMetricsCountStaleConnectionRetries(t *testing.T) {
	addr, _, originConns := dropOrigin(t)
	p := start(t, config.Default())
	c := freshClient(t, p.addr)
	for i := range 2 {
		if code, body := get(t, c, "http://"+addr+"/", ""); code != http.StatusOK || body != "ok" {
			t.Fatalf("request %d = %d %q, want 200 ok", i, code, body)
		}
	}
	mfs := scrape(t, p.addr)
	checkMetrics(t, mfs, []metricWant{
		{"warmproxy_upstream_retries_total", nil, 1},
		{"warmproxy_upstream_connections_opened_total", []string{"scheme", "http"}, 2},
		{"warmproxy_upstream_connections_closed_total", []string{"scheme", "http"}, 1},
		{"warmproxy_upstream_connections", []string{"scheme", "http", "state", "idle"}, 1},
		{"warmproxy_requests_total", []string{"code", "2xx"}, 2},
	})
	if got := originConns.Load(); got != 2 {
		t.Errorf("origin saw %d connections, want 2", got)
	}
	p.stop(t)
	lines := strings.Split(strings.TrimSpace(p.access.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("access log has %d lines, want 2:\n%s", len(lines), p.access.String())
	}
	if f := strings.Split(lines[1], "\t"); len(f) < 12 || f[11] != "1" || f[8] != "no" {
		t.Errorf("second access log line reused, retries = %q, %q; want no, 1: %q", f[8], f[11], lines[1])
	}
}

// Issue 4: failures are counted by Proxy-Status error type and the
// origin's last error shows in /debug/pool.
func TestMetricsCountErrorsByType(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	p := start(t, config.Default())
	c := freshClient(t, p.addr)
	if code, _ := get(t, c, "http://"+refused+"/", ""); code != http.StatusBadGateway {
		t.Fatalf("request to closed port = %d, want 502", code)
	}
	mfs := scrape(t, p.addr)
	if got := metricValue(t, mfs, "warmproxy_errors_total", "type", "connection_refused"); got != 1 {
		t.Errorf("warmproxy_errors_total{type=connection_refused} = %v, want 1", got)
	}
	if got := metricValue(t, mfs, "warmproxy_requests_total", "code", "5xx"); got != 1 {
		t.Errorf("warmproxy_requests_total{code=5xx} = %v, want 1", got)
	}
	if got := metricValue(t, mfs, "warmproxy_upstream_dial_errors_total", "scheme", "http"); got != 1 {
		t.Errorf("warmproxy_upstream_dial_errors_total{scheme=http} = %v, want 1", got)
	}
	rep := pool(t, p.addr)
	h := findUpstream(t, rep, "http", refused)
	if h.DialErrors != 1 || h.Failed != 1 || h.ReuseRatio != 0 || !strings.Contains(h.LastError, "refused") || h.LastErrorAt.IsZero() {
		t.Errorf("pool entry for %s: dial_errors %d, failed %d, reuse_ratio %v, last_error %q at %v; want 1, 1, 0, connection refused, a time",
			refused, h.DialErrors, h.Failed, h.ReuseRatio, h.LastError, h.LastErrorAt)
	}

	// An origin whose certificate warmproxy does not trust.
	untrusted := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	untrusted.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	untrusted.StartTLS()
	t.Cleanup(untrusted.Close)
	host := strings.TrimPrefix(untrusted.URL, "https://")
	if code, _ := get(t, c, "http://"+host+"/", "https"); code != http.StatusBadGateway {
		t.Fatalf("request to untrusted origin = %d, want 502", code)
	}
	mfs = scrape(t, p.addr)
	if got := metricValue(t, mfs, "warmproxy_errors_total", "type", "tls_certificate_error"); got != 1 {
		t.Errorf("warmproxy_errors_total{type=tls_certificate_error} = %v, want 1", got)
	}
	if got := metricValue(t, mfs, "warmproxy_tls_handshakes_total", "result", "error"); got != 1 {
		t.Errorf("warmproxy_tls_handshakes_total{result=error} = %v, want 1", got)
	}
	if got := metricValue(t, mfs, "warmproxy_upstream_connections", "scheme", "https"); got != 0 {
		t.Errorf("open https connections after a failed handshake = %v, want 0", got)
	}
	h = findUpstream(t, pool(t, p.addr), "https", host)
	if h.TLSErrors != 1 || !strings.Contains(h.LastError, "certificate") || h.Open != 0 || h.Closed != 1 {
		t.Errorf("pool entry for %s = %+v, want 1 tls error, last error from the handshake, closed", host, h)
	}
}

func pool(t *testing.T, addr string) metrics.PoolReport {
	t.Helper()
	code, body, hdr := direct(t, addr, "/debug/pool")
	if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /debug/pool = %d %s, want 200 application/json", code, hdr.Get("Content-Type"))
	}
	var rep metrics.PoolReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("GET /debug/pool: %v\n%s", err, body)
	}
	return rep
}

func findUpstream(t *testing.T, rep metrics.PoolReport, scheme, host string) upstream.Stats {
	t.Helper()
	for _, u := range rep.Upstreams {
		if u.Scheme == scheme && u.Host == host {
			return u
		}
	}
	t.Fatalf("/debug/pool has no %s upstream %s: %+v", scheme, host, rep.Upstreams)
	return upstream.Stats{}
}

// Issue 4: /debug/pool shows, per origin and scheme, active and idle
// connections, requests and the reuse ratio.
func TestDebugPool(t *testing.T) {
	held := newHeldOrigin(t)
	o, cfg, _ := tlsOrigin(t, held)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(plain.Close)
	p := start(t, cfg)
	c := freshClient(t, p.addr)
	tlsHost := strings.TrimPrefix(o.URL, "https://")
	plainHost := strings.TrimPrefix(plain.URL, "http://")

	slow := held.getHeld(t, c, "http://"+tlsHost, "https")
	// While the slow request is in flight its connection is active.
	var h upstream.Stats
	deadline := time.Now().Add(5 * time.Second)
	for {
		rep := pool(t, p.addr)
		for _, u := range rep.Upstreams {
			if u.Scheme == "https" && u.Host == tlsHost {
				h = u
			}
		}
		if h.Active == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h.Open != 1 || h.Active != 1 || h.Idle != 0 || h.InFlight != 1 {
		t.Errorf("during the slow request: open, active, idle, in_flight = %d, %d, %d, %d; want 1, 1, 0, 1", h.Open, h.Active, h.Idle, h.InFlight)
	}
	held.release()
	select {
	case code := <-slow:
		if code != http.StatusOK {
			t.Fatalf("slow request = %d, want 200", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow request did not finish")
	}
	for i := range 3 {
		if code, _ := get(t, c, "http://"+tlsHost+"/", "https"); code != http.StatusOK {
			t.Fatalf("https request %d = %d", i, code)
		}
	}
	if code, _ := get(t, c, "http://"+plainHost+"/", ""); code != http.StatusOK {
		t.Fatal("plain request failed")
	}

	rep := pool(t, p.addr)
	h = findUpstream(t, rep, "https", tlsHost)
	want := upstream.Stats{Scheme: "https", Host: tlsHost, Open: 1, Idle: 1, Requests: 4, Opened: 1, ReuseRatio: 0.75, TLSFull: 1,
		Reused: 3, RoundTripsSaved: 6, Protocol: "HTTP/1.1"}
	if h != want {
		t.Errorf("https upstream = %+v\nwant %+v", h, want)
	}
	h = findUpstream(t, rep, "http", plainHost)
	want = upstream.Stats{Scheme: "http", Host: plainHost, Open: 1, Idle: 1, Requests: 1, Opened: 1, Protocol: "HTTP/1.1"}
	if h != want {
		t.Errorf("http upstream = %+v\nwant %+v", h, want)
	}
	if len(rep.Totals) != 2 || rep.Totals[1].Scheme != "https" || rep.Totals[1].Requests != 4 || rep.Totals[0].Requests != 1 {
		t.Errorf("totals = %+v, want http 1 request, https 4", rep.Totals)
	}
}

// Issue 4: origin-form requests for admin paths are answered by warmproxy;
// any other path keeps the 400 usage help; pprof never on the proxy's
// address (issue 12: pprof needs -admin-listen).
func TestAdminPaths(t *testing.T) {
	tests := []struct {
		name       string
		path       string
		wantCode   int
		wantInBody string
	}{
		{"healthz", "/healthz", 200, "ok"},
		{"readyz", "/readyz", 200, "ready"},
		{"metrics", "/metrics", 200, "warmproxy_requests_total"},
		{"pool", "/debug/pool", 200, `"totals"`},
		{"stats", "/stats", 200, "warmproxy</span> stats"},
		{"other path", "/nope", 400, "forward proxy"},
		{"root", "/", 400, "forward proxy"},
		{"pprof", "/debug/pprof/", 400, "forward proxy"},
	}
	p := start(t, config.Default())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, _ := direct(t, p.addr, tt.path)
			if code != tt.wantCode || !strings.Contains(body, tt.wantInBody) {
				t.Errorf("GET %s = %d %.80q, want %d containing %q", tt.path, code, body, tt.wantCode, tt.wantInBody)
			}
		})
	}
}

// Issue 12: -pprof serves /debug/pprof/ on -admin-listen only; the proxy's
// address answers it (and cmdline) with usage help.
func TestPprofOnAdminListenOnly(t *testing.T) {
	cfg := config.Default()
	cfg.AdminListen, cfg.PProf = "127.0.0.1:0", true
	p := start(t, cfg)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
		if code, body, _ := direct(t, p.admin, path); code != 200 {
			t.Errorf("admin GET %s = %d %.80q, want 200", path, code, body)
		}
		if code, _, _ := direct(t, p.addr, path); code != 400 {
			t.Errorf("proxy GET %s = %d, want 400", path, code)
		}
	}
	cfg.AdminListen = ""
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "pprof needs admin-listen") {
		t.Errorf("Validate(pprof without admin-listen) = %v, want the pprof needs admin-listen error", err)
	}
}

// Issue 4: with -admin-listen the admin paths move there; the proxy's
// address answers them with usage help.
func TestAdminListen(t *testing.T) {
	cfg := config.Default()
	cfg.AdminListen = "127.0.0.1:0"
	p := start(t, cfg)
	if p.admin == "" || p.admin == p.addr {
		t.Fatalf("admin address %q, proxy %q: want a separate admin address", p.admin, p.addr)
	}
	for _, path := range []string{"/metrics", "/healthz", "/readyz", "/debug/pool", "/stats"} {
		if code, body, _ := direct(t, p.admin, path); code != http.StatusOK {
			t.Errorf("admin GET %s = %d %q, want 200", path, code, body)
		}
		if code, _, _ := direct(t, p.addr, path); code != http.StatusBadRequest {
			t.Errorf("proxy GET %s = %d, want 400", path, code)
		}
	}
}

// Issue 4: /readyz answers 503 while a graceful shutdown drains a slow
// in-flight request, /healthz stays 200, and the request still completes.
func TestReadyzFlipsDuringShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "slow ok")
	}))
	t.Cleanup(origin.Close)
	cfg := config.Default()
	cfg.AdminListen = "127.0.0.1:0"
	cfg.ShutdownGrace = 10 * time.Second
	p := start(t, cfg)
	if code, _, _ := direct(t, p.admin, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before shutdown = %d, want 200", code)
	}

	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	c := freshClient(t, p.addr)
	go func() {
		resp, err := c.Get(origin.URL + "/")
		if err != nil {
			slow <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- result{resp.StatusCode, string(b), err}
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("slow request did not reach the origin")
	}

	p.cancel()
	code := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if code, _, _ = direct(t, p.admin, "/readyz"); code == http.StatusServiceUnavailable {
			break
		}
	}
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during shutdown = %d, want 503", code)
	}
	if code, _, _ := direct(t, p.admin, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz during shutdown = %d, want 200", code)
	}
	select {
	case err := <-p.done:
		p.done = nil
		t.Fatalf("Run returned %v with a request in flight", err)
	default:
	}

	unblock()
	select {
	case r := <-slow:
		if r.err != nil || r.code != http.StatusOK || r.body != "slow ok" {
			t.Errorf("in-flight request = %d %q %v, want 200 slow ok", r.code, r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	p.stop(t)
	if c, err := net.DialTimeout("tcp", p.admin, time.Second); err == nil {
		c.Close()
		t.Error("admin address still accepts connections after Run returned")
	}
}
