package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/warmproxy/warmproxy/internal/config"
)

// Issue 6: FuzzCheckAuthority: authority parsing never panics, never lets
// through a port outside 1-65535 or an authority with no host, and agrees
// with net/url where net/url reads the same authority.
func FuzzCheckAuthority(f *testing.F) {
	for _, s := range []string{
		"example.com", "example.com:80", "example.com:0", "example.com:65536", "example.com:", ":80",
		"[::1]:443", "[::1]", "[::1", "::1", "[fe80::1%25eth0]:80", "1.2.3.4:+80", "a:b:c", "example.com:08080",
		"example.com:-1", "[]:80", "user@example.com", "%31.com:80", "example.com:99999999999999999999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, hostport string) {
		perr := checkAuthority(hostport)
		if perr != nil {
			if perr.Status != http.StatusBadRequest {
				t.Fatalf("checkAuthority(%q) status %d, want 400", hostport, perr.Status)
			}
			return
		}
		if hostport == "" {
			t.Fatal("checkAuthority(\"\") accepted")
		}
		if host, port, err := net.SplitHostPort(hostport); err == nil {
			if host == "" {
				t.Fatalf("checkAuthority(%q) accepted an empty host", hostport)
			}
			if port != "" {
				if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
					t.Fatalf("checkAuthority(%q) accepted port %q", hostport, port)
				}
			}
		}
		// Differential: where net/url parses the same authority, a missing
		// host or a bad port must have been refused.
		u, err := url.Parse("http://" + hostport + "/")
		if err != nil || u.Host != hostport {
			return
		}
		if u.Hostname() == "" {
			t.Fatalf("checkAuthority(%q) accepted; net/url finds no host", hostport)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				t.Fatalf("checkAuthority(%q) accepted; net/url finds port %q", hostport, p)
			}
		}
	})
}

// fuzzHeader builds a header from "Name: value" lines, keeping only valid
// field names and values (what net/http's server would let through).
func fuzzHeader(s string) http.Header {
	h := http.Header{}
	for _, line := range strings.Split(s, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || !tokenOnly(name) || strings.ContainsAny(value, "\r\n\x00\x7f") {
			continue
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(name), textproto.TrimString(value))
	}
	return h
}

func tokenOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// rpOutHeader returns the header httputil.ReverseProxy would send for an
// inbound request with header h, or ok false when it refuses the request.
func rpOutHeader(h http.Header) (http.Header, bool) {
	var out http.Header
	rp := &httputil.ReverseProxy{
		Director: func(r *http.Request) { r.URL.Scheme, r.URL.Host = "http", "origin.test" },
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			out = r.Header.Clone()
			return nil, errors.New("stop")
		}),
		ErrorHandler: func(http.ResponseWriter, *http.Request, error) {},
		ErrorLog:     nil,
	}
	req := httptest.NewRequest("GET", "http://origin.test/", nil)
	req.RemoteAddr = "" // no X-Forwarded-For
	req.Header = h.Clone()
	rp.ServeHTTP(httptest.NewRecorder(), req)
	return out, out != nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Issue 6: FuzzHeaderHygiene: no hop-by-hop field, and no field the
// Connection header names, survives cleanRequestHeader, except "TE:
// trailers" and an upgrade's Connection/Upgrade pair; nothing panics; and
// the surviving field names match httputil.ReverseProxy's.
func FuzzHeaderHygiene(f *testing.F) {
	for _, s := range []string{
		"Connection: keep-alive, X-Secret\nX-Secret: 1\nKeep-Alive: 5\nX-Ok: 2",
		"Connection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Key: k",
		"Connection: upgrade, te\nUpgrade: h2c\nTe: trailers, gzip",
		"Te: gzip\nTrailer: X-T\nTransfer-Encoding: chunked",
		"Proxy-Authorization: Basic eDp5\nProxy-Connection: keep-alive\nProxy-Authenticate: x",
		"Connection: ,,, ,Te\nConnection: proxy-authorization, X-A\nX-A: 1",
		"Connection: Connection\nConnection: close",
		"Upgrade: websocket\nConnection: keep-alive",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		orig := fuzzHeader(s)
		h := orig.Clone()
		up := upgradeType(h)
		cleanRequestHeader(h, up)
		trailers := hasToken(orig, "Te", "trailers")
		named := map[string]bool{}
		connectionTokens(orig, func(tok string) { named[textproto.CanonicalMIMEHeaderKey(tok)] = true })
		for k, vv := range h {
			switch {
			case k == "Te":
				if !trailers || len(vv) != 1 || vv[0] != "trailers" {
					t.Fatalf("Te %q survived (trailers asked: %v)", vv, trailers)
				}
			case k == "Connection":
				if up == "" || len(vv) != 1 || vv[0] != "Upgrade" {
					t.Fatalf("Connection %q survived (upgrade %q)", vv, up)
				}
			case k == "Upgrade":
				if up == "" || len(vv) != 1 || vv[0] != up {
					t.Fatalf("Upgrade %q survived (upgrade %q)", vv, up)
				}
			case named[k]:
				t.Fatalf("%s survived though Connection names it (%q)", k, orig["Connection"])
			}
			for _, hop := range hopHeaders {
				if k == hop && k != "Te" && k != "Connection" && k != "Upgrade" {
					t.Fatalf("hop-by-hop %s survived", k)
				}
			}
		}
		// removeHopByHop (responses) leaves no hop field at all.
		r := orig.Clone()
		removeHopByHop(r)
		for _, hop := range hopHeaders {
			if _, ok := r[hop]; ok {
				t.Fatalf("removeHopByHop left %s", hop)
			}
		}
		for k := range named {
			if _, ok := r[k]; ok {
				t.Fatalf("removeHopByHop left %s, named by Connection", k)
			}
		}
		// Differential: the same field names as httputil.ReverseProxy.
		rp, ok := rpOutHeader(orig)
		if !ok {
			return
		}
		for k := range h {
			if _, ok := rp[k]; !ok {
				t.Fatalf("we keep %s, ReverseProxy drops it (in %q)", k, orig)
			}
		}
		for k := range rp {
			if _, ok := h[k]; !ok && k != "X-Forwarded-For" && k != "User-Agent" {
				t.Fatalf("ReverseProxy keeps %s, we drop it (in %q)", k, orig)
			}
		}
	})
}

// Issue 6: FuzzRequestTarget drives the whole handler with a request
// line: nothing panics, and whatever reaches the transport has an http or
// https scheme and an authority checkAuthority accepts.
func FuzzRequestTarget(f *testing.F) {
	for _, s := range []string{
		"GET http://example.com/ HTTP/1.1", "GET http://example.com:0/ HTTP/1.1", "GET http://[::1]:80/ HTTP/1.1",
		"CONNECT example.com:443 HTTP/1.1", "CONNECT [::1]:443 HTTP/1.1", "CONNECT example.com HTTP/1.1",
		"GET / HTTP/1.1", "OPTIONS * HTTP/1.1", "GET ftp://example.com/ HTTP/1.1", "GET http:///path HTTP/1.1",
		"GET HTTP://EXAMPLE.COM:8080/a?b#c HTTP/1.1", "TRACE http://example.com/ HTTP/1.1",
		"GET http://user:pw@example.com/ HTTP/1.1", "GET //example.com/ HTTP/1.1",
	} {
		f.Add(s, "")
	}
	f.Add("GET http://example.com/ HTTP/1.1", "X-Real-Protocol: https")
	f.Add("GET http://example.com/ HTTP/1.1", "X-Real-Protocol: gopher")
	f.Add("OPTIONS http://example.com/ HTTP/1.1", "Max-Forwards: 0")
	f.Add("GET http://example.com/ HTTP/1.1", "Connection: Upgrade\r\nUpgrade: websocket")
	f.Fuzz(func(t *testing.T, line, extra string) {
		if strings.ContainsAny(line, "\r\n") {
			return
		}
		raw := line + "\r\nHost: example.com\r\n"
		if extra != "" {
			raw += extra + "\r\n"
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n")))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:1234"
		h := New(Options{
			Config: config.MustParse(config.Default()),
			Transport: roundTripFunc(func(out *http.Request) (*http.Response, error) {
				if out.URL.Scheme != "http" && out.URL.Scheme != "https" {
					t.Fatalf("%q reached the transport with scheme %q", line, out.URL.Scheme)
				}
				if perr := checkAuthority(out.URL.Host); perr != nil {
					t.Fatalf("%q reached the transport with authority %q: %v", line, out.URL.Host, perr)
				}
				for _, hop := range []string{"Proxy-Authorization", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding"} {
					if _, ok := out.Header[hop]; ok {
						t.Fatalf("%q reached the transport with %s", line, hop)
					}
				}
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), ContentLength: 2, Request: out}, nil
			}),
			Dial: func(context.Context, string, string) (net.Conn, error) {
				return nil, errors.New("fuzz: no dialing")
			},
		})
		w := httptest.NewRecorder()
		func() {
			defer func() {
				if r := recover(); r != nil && r != http.ErrAbortHandler {
					t.Fatalf("%q: panic %v", raw, r)
				}
			}()
			h.ServeHTTP(w, req)
		}()
		if w.Code < 100 || w.Code > 599 {
			t.Fatalf("%q: status %d", raw, w.Code)
		}
	})
}
