package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// Issue 8 acceptance (with curl): curl processes, each a fresh HTTP/1.1
// client connection, reach an origin that speaks HTTP/2 through ALPN; the
// binary carries them all as streams of one TLS connection, concurrent
// ones included, and frames each response for curl.
func TestCurlThroughH2Origin(t *testing.T) {
	requireProgram(t, "curl")
	o := newOriginCert(t, true, nil, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			for i := range 3 {
				fmt.Fprintf(w, "%s part%d;", r.Proto, i)
				w.(http.Flusher).Flush()
			}
			return
		}
		fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
	}, func(o *origin) { o.EnableHTTP2 = true })
	p := startProxy(t, "-ca-file", o.caFile)
	hdr := []string{"-H", "X-Real-Protocol: https"}
	for i := range 5 {
		path := fmt.Sprintf("/seq%d", i)
		if out := curlProxy(t, p.URL(), append(hdr, o.httpURL(path))...); out != "HTTP/2.0 "+path {
			t.Fatalf("curl %s = %q, want %q", path, out, "HTTP/2.0 "+path)
		}
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			path := fmt.Sprintf("/par%d", i)
			if out := curlProxy(t, p.URL(), append(hdr, o.httpURL(path))...); out != "HTTP/2.0 "+path {
				t.Errorf("concurrent curl %s = %q", path, out)
			}
		})
	}
	wg.Wait()
	// An unknown-length body comes chunked, whole, and curl sees the
	// response as HTTP/1.1.
	out := curlProxy(t, p.URL(), append(hdr, "-i", o.httpURL("/stream"))...)
	head, body, _ := strings.Cut(out, "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200") || !strings.Contains(strings.ToLower(head), "transfer-encoding: chunked") {
		t.Errorf("streamed response head:\n%s\nwant HTTP/1.1 200 with Transfer-Encoding: chunked", head)
	}
	if want := "HTTP/2.0 part0;HTTP/2.0 part1;HTTP/2.0 part2;"; body != want {
		t.Errorf("streamed body = %q, want %q", body, want)
	}
	if c, h := o.conns.Load(), o.handshakes.Load(); c != 1 || h != 1 {
		t.Errorf("origin saw %d TCP connections and %d TLS handshakes for 14 curls, want 1 and 1", c, h)
	}

	// Every curl but the first went out on the pooled connection.
	reused := 0
	for _, line := range p.accessLines(t, 14) {
		if f := strings.Split(line, "\t"); len(f) > 8 && f[8] == "yes" {
			reused++
		}
	}
	if reused != 13 {
		t.Errorf("access log: %d of 14 requests reused a connection, want 13", reused)
	}

	// /debug/pool says the origin's connection speaks HTTP/2.
	resp, err := http.Get(p.URL() + "/debug/pool")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var pool struct {
		Upstreams []struct {
			Scheme string `json:"scheme"`
			HTTP2  int64  `json:"http2"`
		} `json:"upstreams"`
	}
	if err := json.Unmarshal(raw, &pool); err != nil {
		t.Fatalf("/debug/pool: %v\n%s", err, raw)
	}
	var h2 int64
	for _, o := range pool.Upstreams {
		if o.Scheme == "https" {
			h2 += o.HTTP2
		}
	}
	if h2 != 1 {
		t.Errorf("/debug/pool https http2 connections = %d, want 1:\n%s", h2, raw)
	}
	// And so does /metrics.
	mresp, err := http.Get(p.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	metrics, _ := io.ReadAll(mresp.Body)
	if !strings.Contains(string(metrics), "\nwarmproxy_upstream_http2_connections 1\n") {
		t.Errorf("/metrics has no warmproxy_upstream_http2_connections 1")
	}
}
