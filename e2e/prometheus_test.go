package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// promQuery is an answer of Prometheus's /api/v1/query.
type promQuery struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

// nonEmpty reports whether the answer succeeded with at least one sample
// (a vector or matrix with a series, or a scalar).
func (q promQuery) nonEmpty() bool {
	if q.Status != "success" {
		return false
	}
	var list []json.RawMessage
	if err := json.Unmarshal(q.Data.Result, &list); err != nil {
		return false
	}
	return len(list) > 0
}

// prometheus is a Prometheus server scraping one target every second.
type prometheus struct {
	api string // http://127.0.0.1:PORT
	log *testnet.Buffer
}

// startPrometheus runs Debian's prometheus on a free loopback port with a
// temporary config and storage, scraping target's /metrics every second,
// and waits (up to 60 s) until it is ready. Prometheus takes no ":0", so a
// port taken between picking and binding is retried.
func startPrometheus(t *testing.T, bin, target string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"+
		"scrape_configs:\n  - job_name: warmproxy\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastLog string
	for try := range 3 {
		addr := testnet.ClosedAddr(t)
		p := &prometheus{api: "http://" + addr, log: &testnet.Buffer{}}
		cmd := command(t, 5*time.Minute, bin, "--config.file="+cfg,
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data%d", try)),
			"--web.listen-address="+addr, "--log.level=warn")
		cmd.Stdout, cmd.Stderr = p.log, p.log
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting prometheus: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		if p.waitReady(exited) {
			t.Cleanup(stop)
			return p
		}
		stop()
		lastLog = p.log.String()
	}
	t.Fatalf("prometheus did not get ready in 3 tries:\n%s", lastLog)
	return nil
}

// waitReady polls /-/ready until it answers 200 (true), the process
// exits or 60 s pass (false).
func (p *prometheus) waitReady(exited <-chan struct{}) bool {
	c := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		select {
		case <-exited:
			return false
		case <-time.After(200 * time.Millisecond):
		}
		if resp, err := c.Get(p.api + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
	}
	return false
}

// query runs expr through the HTTP API, at the current time.
func (p *prometheus) query(t *testing.T, expr string) (promQuery, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.PostForm(p.api+"/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		t.Fatalf("query %q: %v", expr, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var q promQuery
	if err := json.Unmarshal(raw, &q); err != nil {
		t.Fatalf("query %q: %v\n%s", expr, err, raw)
	}
	return q, string(raw)
}

// waitNonEmpty queries expr until its answer is non-empty or deadline
// passes, and reports whether it became so, with the last answer.
func (p *prometheus) waitNonEmpty(t *testing.T, expr string, deadline time.Time) (bool, string) {
	t.Helper()
	for {
		q, raw := p.query(t, expr)
		if q.nonEmpty() {
			return true, raw
		}
		if q.Status == "error" || time.Now().After(deadline) {
			return false, raw
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// dashboardExprs returns every PromQL expression of every panel in
// deploy/grafana-dashboard.json, by "panel title/refId", with Grafana's
// interval variables replaced by 1m.
func dashboardExprs(t *testing.T) [][2]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana-dashboard.json: %v", err)
	}
	vars := strings.NewReplacer("$__rate_interval", "1m", "${__rate_interval}", "1m",
		"$__interval", "1m", "${__interval}", "1m", "$__range", "1m", "${__range}", "1m")
	var out [][2]string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			expr := vars.Replace(tg.Expr)
			if strings.Contains(expr, "$") {
				t.Errorf("panel %q %s: unknown variable left in %q", p.Title, tg.RefID, expr)
			}
			out = append(out, [2]string{p.Title + "/" + tg.RefID, expr})
		}
	}
	if len(out) == 0 {
		t.Fatal("dashboard has no queries")
	}
	return out
}

// tunnelGet opens a CONNECT tunnel to target through the proxy and sends
// one HTTP/1.1 GET through it, returning the response's status code.
func tunnelGet(t *testing.T, proxyAddr, target string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %v %v", target, resp, err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET through the tunnel to %s: %v", target, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// dashboardTraffic sends what every dashboard panel shows: plain
// requests to an origin by name (DNS cache), https by header to an
// HTTP/1.1 and an HTTP/2 origin, CONNECT tunnels, and a request to a
// closed port (an error).
func dashboardTraffic(t *testing.T, p *proxyProc, plainHost, plainAddr, h1Host, h2Host string) {
	t.Helper()
	c := proxyClient(t, p.URL())
	for i := range 10 {
		for _, o := range []struct {
			host string
			tls  bool
		}{{plainHost, false}, {h1Host, true}, {h2Host, true}} {
			if code := proxyGet(t, c, fmt.Sprintf("http://%s/%d", o.host, i), o.tls); code != http.StatusOK {
				t.Fatalf("GET %s = %d, want 200", o.host, code)
			}
		}
	}
	for _, target := range []string{plainHost, plainAddr} {
		if code := tunnelGet(t, p.Addr, target); code != http.StatusOK {
			t.Fatalf("GET through a tunnel to %s = %d", target, code)
		}
	}
	if code := proxyGet(t, c, "http://"+testnet.ClosedAddr(t)+"/", false); code != http.StatusBadGateway {
		t.Fatalf("GET to a closed port = %d, want 502", code)
	}
}

// Issue 15: Debian's prometheus scrapes the binary's /metrics every
// second; after plain, https-by-header, HTTP/2, CONNECT and DNS-cache
// traffic, every PromQL expression of every panel of
// deploy/grafana-dashboard.json returns a non-empty result through the
// HTTP API, and promtool check metrics finds nothing to lint in /metrics.
func TestDashboardAgainstPrometheus(t *testing.T) {
	promBin := requireProgram(t, "prometheus")
	promtool := requireProgram(t, "promtool")
	hello := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }
	plain := newOrigin(t, false, hello)
	h1 := newOrigin(t, true, hello)
	h2 := newOriginCert(t, true, nil, hello, func(o *origin) { o.EnableHTTP2 = true })
	dns := testnet.DNS(t, map[string][]string{"plain.test": {"127.0.0.1"}})
	p := startProxy(t, "-admin-listen", "127.0.0.1:0", "-ca-file", h1.caFile, "-dns-server", dns, "-connect-ports", "*")
	admin := p.adminAddr(t)
	prom := startPrometheus(t, promBin, admin)

	// rate() needs a sample from before the traffic and one after.
	deadline := time.Now().Add(60 * time.Second)
	if ok, raw := prom.waitNonEmpty(t, `up{job="warmproxy"} == 1`, deadline); !ok {
		t.Fatalf("prometheus did not scrape warmproxy within 60s: %s\n%s", raw, prom.log)
	}
	dashboardTraffic(t, p, "plain.test:"+port(plain), plain.Listener.Addr().String(), h1.Listener.Addr().String(), h2.Listener.Addr().String())
	deadline = time.Now().Add(60 * time.Second)
	if ok, raw := prom.waitNonEmpty(t, `warmproxy_tunnels_total{kind="connect"} >= 2`, deadline); !ok {
		t.Fatalf("prometheus did not scrape the traffic within 60s: %s\n%s", raw, prom.log)
	}

	exprs := dashboardExprs(t)
	for _, e := range exprs {
		ok, raw := prom.waitNonEmpty(t, e[1], deadline)
		if !ok {
			t.Errorf("panel %s: %s\n  = %s, want status success and a non-empty result", e[0], e[1], raw)
			continue
		}
		t.Logf("panel %s: %.160s", e[0], raw)
	}
	t.Logf("%d dashboard expressions queried", len(exprs))

	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	lint := command(t, 60*time.Second, promtool, "check", "metrics")
	lint.Stdin = bytes.NewReader(body)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
