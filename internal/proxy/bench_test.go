package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/proxy"
)

var kib = bytes.Repeat([]byte("x"), 1024)

// BenchmarkForward1KiB sends GETs for a 1 KiB body through the proxy over
// real loopback sockets, keep-alive on both sides. Client, proxy and
// origin share the process, so allocations count all three.
func BenchmarkForward1KiB(b *testing.B) {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		w.Write(kib)
	}))
	defer o.Close()
	p := startProxy(b, testConfig())
	tr := &http.Transport{Proxy: http.ProxyURL(p.url), MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	target := o.URL + "/bench"
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(target)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkHandler1KiB runs the proxy handler alone: a canned
// RoundTripper and a ResponseRecorder, no sockets, so its allocations
// are the handler's own.
func BenchmarkHandler1KiB(b *testing.B) {
	cfg := testConfig()
	h := proxy.New(proxy.Options{Transport: cannedRT{}, Config: config.MustParse(cfg)})
	req := httptest.NewRequest("GET", "http://origin.test/bench", nil)
	req.RequestURI = "http://origin.test/bench"
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		r := req.Clone(req.Context())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

type cannedRT struct{}

func (cannedRT) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, ContentLength: 1024, Request: r,
		Header: http.Header{"Content-Length": {"1024"}, "Content-Type": {"text/plain"}},
		Body:   io.NopCloser(strings.NewReader(string(kib))),
	}, nil
}
