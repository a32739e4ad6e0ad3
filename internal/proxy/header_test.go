package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// Issue 2: hop-by-hop fields are dropped both ways (RFC 9110 section
// 7.6.1), "TE: trailers" survives, Via is added, repeated fields keep their
// order and Host comes from the request target.
func TestHopByHop(t *testing.T) {
	var seen atomic.Pointer[http.Request]
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r)
		h := w.Header()
		h["Connection"] = []string{"X-Resp-Hop"}
		h["X-Resp-Hop"] = []string{"1"}
		h["Keep-Alive"] = []string{"timeout=5"}
		h["Proxy-Authenticate"] = []string{"Basic realm=x"}
		h["Proxy-Connection"] = []string{"keep-alive"}
		h["Upgrade"] = []string{"h2c"}
		h["Set-Cookie"] = []string{"a=1", "b=2", "c=3"}
		h["X-End"] = []string{"kept"}
		io.WriteString(w, "ok")
	})
	p := startProxy(t, testConfig())

	tests := []struct {
		name    string
		headers string
		want    map[string][]string // nil value: must be absent
	}{
		{
			name: "connection-named and fixed",
			headers: "Connection: X-Hop, keep-alive\r\nX-Hop: 1\r\nProxy-Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n" +
				"Upgrade: h2c\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\nX-End: kept\r\n",
			want: map[string][]string{
				"Connection": nil, "X-Hop": nil, "Proxy-Connection": nil, "Keep-Alive": nil,
				"Upgrade": nil, "Proxy-Authorization": nil, "X-End": {"kept"},
			},
		},
		{
			name:    "TE trailers kept",
			headers: "TE: trailers, deflate\r\n",
			want:    map[string][]string{"Te": {"trailers"}},
		},
		{
			name:    "TE other dropped",
			headers: "TE: deflate\r\n",
			want:    map[string][]string{"Te": nil},
		},
		{
			name:    "Via appended",
			headers: "Via: 1.0 upstream-cache\r\n",
			want:    map[string][]string{"Via": {"1.0 upstream-cache", "1.1 warmproxy"}},
		},
		{
			name:    "repeated fields in order",
			headers: "X-Multi: 1\r\nX-Multi: 2\r\nX-Multi: 3\r\n",
			want:    map[string][]string{"X-Multi": {"1", "2", "3"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "GET " + o.httpURL("/") + " HTTP/1.1\r\nHost: spoofed.test\r\n" + tt.headers + "\r\n"
			resp, body := rawRoundTrip(t, p.addr, "GET", raw)
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("status %d %q", resp.StatusCode, body)
			}
			r := seen.Load()
			if r.Host != o.hostPort() {
				t.Errorf("origin saw Host %q, want %q from the target", r.Host, o.hostPort())
			}
			for k, want := range tt.want {
				if got := r.Header[k]; !slices.Equal(got, want) {
					t.Errorf("origin saw %s %q, want %q", k, got, want)
				}
			}
			if got := r.Header["Via"]; len(got) == 0 || got[len(got)-1] != "1.1 warmproxy" {
				t.Errorf("origin saw Via %q, want it to end with 1.1 warmproxy", got)
			}

			for _, k := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Upgrade"} {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("client got hop-by-hop %s %q", k, v)
				}
			}
			if c := resp.Header.Get("Connection"); strings.Contains(strings.ToLower(c), "x-resp-hop") {
				t.Errorf("client got Connection %q", c)
			}
			if got := resp.Header["Set-Cookie"]; !slices.Equal(got, []string{"a=1", "b=2", "c=3"}) {
				t.Errorf("client got Set-Cookie %q, want a, b, c in order", got)
			}
			if got := resp.Header.Get("Via"); got != "1.1 warmproxy" {
				t.Errorf("client got Via %q, want 1.1 warmproxy", got)
			}
			if got := resp.Header.Get("X-End"); got != "kept" {
				t.Errorf("client got X-End %q, want kept", got)
			}
		})
	}
}

// Issue 2: Max-Forwards is honoured for TRACE and OPTIONS (RFC 9110
// section 7.6.2): at 0 the proxy answers itself, above 0 it is decremented;
// other methods pass it on untouched.
func TestMaxForwards(t *testing.T) {
	var hits atomic.Int64
	var got atomic.Value
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		got.Store(r.Header.Get("Max-Forwards"))
		io.WriteString(w, "origin")
	})
	p := startProxy(t, testConfig())
	tests := []struct {
		method, mf string
		originHit  bool
		originMF   string
		wantInBody string
		wantHeader string
	}{
		{method: "TRACE", mf: "0", wantInBody: "TRACE " + o.httpURL("/") + " HTTP/1.1"},
		{method: "OPTIONS", mf: "0", wantHeader: "Allow"},
		{method: "OPTIONS", mf: "3", originHit: true, originMF: "2"},
		{method: "TRACE", mf: "1", originHit: true, originMF: "0"},
		{method: "GET", mf: "0", originHit: true, originMF: "0"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.mf, func(t *testing.T) {
			hits.Store(0)
			raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nMax-Forwards: %s\r\nCookie: secret=1\r\n\r\n", tt.method, o.httpURL("/"), o.hostPort(), tt.mf)
			resp, body := rawRoundTrip(t, p.addr, tt.method, raw)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %q", resp.StatusCode, body)
			}
			if hit := hits.Load() > 0; hit != tt.originHit {
				t.Fatalf("origin hit = %v, want %v", hit, tt.originHit)
			}
			if tt.originHit && got.Load() != tt.originMF {
				t.Errorf("origin saw Max-Forwards %q, want %q", got.Load(), tt.originMF)
			}
			if tt.wantInBody != "" && (!strings.Contains(body, tt.wantInBody) || strings.Contains(body, "secret")) {
				t.Errorf("TRACE echo %q, want the request line and no Cookie", body)
			}
			if tt.wantHeader != "" && resp.Header.Get(tt.wantHeader) == "" {
				t.Errorf("no %s header in %v", tt.wantHeader, resp.Header)
			}
		})
	}
}
