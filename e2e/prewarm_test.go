package e2e_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Issue 8: -prewarm through the binary: the origin sees the connections
// (TCP and TLS) before any request, /readyz answers 200 once they are up,
// and the first requests go out on them: no new connection, no handshake.
func TestCLIPrewarm(t *testing.T) {
	o := cliStartOrigin(t)
	proxy := cliStartProxy(t, "-ca-file", o.CAFile, "-prewarm", "https://"+o.URL.Host+"*2")
	ready := false
	for deadline := time.Now().Add(10 * time.Second); !ready && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + proxy.Addr + "/readyz")
		if err == nil {
			ready = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
	}
	if !ready {
		t.Fatalf("/readyz not 200 within 10s; log:\n%s", proxy.Log)
	}
	if c, h := o.Conns.Load(), o.Handshakes.Load(); c != 2 || h != 2 {
		t.Fatalf("before any request the origin saw %d connections, %d handshakes, want 2 and 2", c, h)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxy.Addr}), DisableKeepAlives: true}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := range 3 {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+o.URL.Host+"/p", nil)
		req.Header.Set("X-Real-Protocol", "https")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "origin GET /p") {
			t.Fatalf("request %d = %d %q", i, resp.StatusCode, b)
		}
	}
	if c, h := o.Conns.Load(), o.Handshakes.Load(); c != 2 || h != 2 {
		t.Errorf("after 3 requests the origin saw %d connections, %d handshakes, want still 2 and 2", c, h)
	}
	// The access log counts them as reused: no connect, no handshake.
	for i, rec := range proxy.cliAccessRecords(t, 3, "/p") {
		if len(rec) < 10 || rec[8] != "yes" || rec[9] != "0.000000" {
			t.Errorf("access record %d: reused %q connect_s %q, want yes 0.000000: %q", i, rec[8], rec[9], rec)
		}
	}
	if !strings.Contains(proxy.Log.String(), "msg=prewarmed") {
		t.Errorf("no 'prewarmed' log line:\n%s", proxy.Log)
	}
}
