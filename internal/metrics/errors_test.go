package metrics_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/metrics"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/testnet"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// Issue 16: a CONNECT that the parent proxy answers 502 fails with
// Proxy-Status destination_unavailable, and /metrics counts it under that
// type, not as "other" (the hand-copied list of types lacked it).
func TestErrorsCountDestinationUnavailable(t *testing.T) {
	parent := testnet.Serve(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
	})
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.ConnectPorts = "*"
	cfg.ParentProxy = "http://" + parent
	parsed := config.MustParse(cfg)
	up, err := upstream.New(parsed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Transport().CloseIdleConnections)
	m := metrics.New(metrics.Options{Tracker: up.Tracker()})
	px := httptest.NewServer(proxy.New(proxy.Options{
		Transport: up.Transport(),
		Dial:      proxy.DialFunc(up.Dial),
		Config:    parsed,
		Record:    m.Record(func(*accesslog.Entry) {}),
	}))
	t.Cleanup(px.Close)
	admin := httptest.NewServer(m.Handler())
	t.Cleanup(admin.Close)

	c, err := net.Dial("tcp", px.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT target.test:443 HTTP/1.1\r\nHost: target.test:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ps := resp.Header.Get("Proxy-Status"); resp.StatusCode != http.StatusBadGateway || !strings.Contains(ps, "error=destination_unavailable") {
		t.Fatalf("CONNECT through a parent answering 502 = %d, Proxy-Status %q, want 502 destination_unavailable", resp.StatusCode, ps)
	}

	const want = `warmproxy_errors_total{type="destination_unavailable"} 1`
	var page string
	// The record is written when the handler returns, which may be just
	// after the client read the response.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		page = scrape(t, admin.URL)
		if strings.Contains(page, want) || strings.Contains(page, `warmproxy_errors_total{type="other"} 1`) {
			break
		}
	}
	if !strings.Contains(page, want) {
		t.Errorf("/metrics lacks %s; its warmproxy_errors_total lines:\n%s", want, grepLines(page, "warmproxy_errors_total{"))
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasSuffix(l, " 0") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
