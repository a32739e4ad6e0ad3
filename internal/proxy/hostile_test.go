package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// hintsOrigin is a raw origin that answers every request on a connection
// with bursts of 103 Early Hints, a little apart, then a final 200. A
// burst goes out in one write, so the proxy's transport finds all but the
// first already buffered: it hands them on one after another, even after
// the request was abandoned.
func hintsOrigin(t *testing.T, bursts, perBurst int, gap time.Duration) string {
	t.Helper()
	hint := "HTTP/1.1 103 Early Hints\r\n" +
		strings.Repeat("Link: </style.css>; rel=preload; as=style\r\n", 300) + "\r\n"
	burst := strings.Repeat(hint, perBurst)
	return rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			for range bursts {
				if _, err := io.WriteString(c, burst); err != nil {
					return
				}
				time.Sleep(gap)
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"); err != nil {
				return
			}
		}
	})
}

// getHead is the raw head of a GET for target through a proxy, with extra
// header lines.
func getHead(target, extra string) string {
	host, _, _ := strings.Cut(strings.TrimPrefix(target, "http://"), "/")
	return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "\r\n"
}

// abortingClients sends n requests (raw heads) through proxyAddr, conc at
// a time, each on a fresh connection. With abort, each client closes its
// connection after a random 0-60 ms; otherwise it closes it as soon as
// it has read the final response head.
// It returns how many connections could not be opened.
func abortingClients(proxyAddr, raw string, n, conc int, abort bool) (dialFails int64) {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		fails atomic.Int64
	)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				c, err := net.DialTimeout("tcp", proxyAddr, testTimeout)
				if err != nil {
					fails.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(testTimeout))
				io.WriteString(c, raw)
				if abort {
					time.Sleep(rand.N(60 * time.Millisecond))
				} else {
					readFinalHead(c)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	return fails.Load()
}

// readFinalHead reads response heads from c until a final (non-1xx) one.
func readFinalHead(c net.Conn) {
	br := bufio.NewReader(c)
	for range 32 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode >= 200 {
			return
		}
	}
}

// Issue 12: an origin that keeps sending 103 Early Hints while clients
// abort (or -response-header-timeout fires) must not crash the proxy: a
// late interim response, handed over by the transport's read goroutine
// after the handler returned or answered, is dropped, not written. Before
// the fix this panicked in bufio.(*Writer).Write under
// response.WriteHeader, and the race detector saw got1xx and writeError
// write the same header map.
func TestLateInterimResponses(t *testing.T) {
	for _, tt := range []struct {
		name    string
		n       int
		abort   bool
		timeout time.Duration
	}{
		{"clients abort", 2000, true, 0},
		{"response header timeout", 1000, false, 15 * time.Millisecond},
		{"both", 1000, true, 15 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			target := "http://" + hintsOrigin(t, 3, 5, 5*time.Millisecond) + "/hints"
			cfg := testConfig()
			if tt.timeout > 0 {
				cfg.ResponseHeaderTimeout = tt.timeout
			}
			p := startProxy(t, cfg)
			if fails := abortingClients(p.addr, getHead(target, ""), tt.n, 50, tt.abort); fails > 0 {
				t.Errorf("%d of %d client connections could not be opened", fails, tt.n)
			}
			// The proxy survived and still serves: a client that waits
			// gets the final response, or with the short header timeout
			// maybe the 504.
			resp, body := p.get(t, target, nil)
			ok := resp.StatusCode == 200 && body == "final" ||
				tt.timeout > 0 && resp.StatusCode == http.StatusGatewayTimeout
			if !ok {
				t.Errorf("after the flood: %d %q, want 200 final", resp.StatusCode, body)
			}
		})
	}
	t.Run("http2 origin", func(t *testing.T) {
		// The HTTP/2 transport hands on interim responses from its
		// connection's read loop, which a canceled stream outlives too.
		o := newTLSOriginWith(t, func(w http.ResponseWriter, r *http.Request) {
			// Set once: net/http's HTTP/2 server may still encode this
			// map for a reset stream after WriteHeader returned.
			w.Header().Set("Link", "</style.css>; rel=preload; as=style")
			for range 3 {
				for range 5 {
					w.WriteHeader(http.StatusEarlyHints)
				}
				time.Sleep(5 * time.Millisecond)
			}
			io.WriteString(w, "final")
		}, true)
		cfg := testConfig()
		cfg.CAFile = o.caFile
		p := startProxy(t, cfg)
		raw := getHead(o.httpURL("/hints"), "X-Real-Protocol: https\r\n")
		if fails := abortingClients(p.addr, raw, 1000, 50, true); fails > 0 {
			t.Errorf("%d of 1000 client connections could not be opened", fails)
		}
		resp, body := p.get(t, o.httpURL("/hints"), http.Header{"X-Real-Protocol": {"https"}})
		if resp.StatusCode != 200 || body != "final" {
			t.Errorf("after the flood: %d %q, want 200 final", resp.StatusCode, body)
		}
	})
	t.Run("h2c clients abort", func(t *testing.T) {
		// An HTTP/2 client resets its stream; net/http's HTTP/2 server
		// then returns from WriteHeader(103) while it may still encode
		// the header map it was given.
		target := "http://" + hintsOrigin(t, 3, 5, 5*time.Millisecond) + "/hints"
		addr, _ := runServer(t, testConfig())
		c := h2cClient(t, addr)
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= 1000 {
					ctx, cancel := context.WithTimeout(context.Background(), rand.N(60*time.Millisecond))
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
					if resp, err := c.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					cancel()
				}
			}()
		}
		wg.Wait()
		var hints atomic.Int64
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if code == http.StatusEarlyHints && h.Get("Link") != "" && h["Content-Length"] == nil {
				hints.Add(1)
			}
			return nil
		}}
		// A fresh connection: the flood's may rightly have been closed by
		// the rapid-reset rule (most of its streams reset early, item 3).
		req := mustRequest(t, http.MethodGet, target, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp, body := do(t, h2cClient(t, addr), req)
		if resp.StatusCode != 200 || body != "final" || hints.Load() != 15 {
			t.Errorf("after the flood: %d %q after %d hints, want 200 final after 15 (each with its Link)", resp.StatusCode, body, hints.Load())
		}
	})
}

// headerSet reads the header fields of a response head in raw, by name,
// values in order.
func headerSet(t *testing.T, raw string) (status string, h map[string][]string) {
	t.Helper()
	head, _, _ := strings.Cut(raw, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	h = map[string][]string{}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			t.Fatalf("bad header line %q in %q", l, head)
		}
		k = http.CanonicalHeaderKey(k)
		h[k] = append(h[k], strings.TrimSpace(v))
	}
	return lines[0], h
}

// Issue 12: the proxy adds no field the origin did not send, beyond Via,
// the framing of the client's hop (Content-Length, Transfer-Encoding,
// Connection) and a Date where the origin sent none (RFC 9110 section
// 6.6.1 asks a forwarding recipient to add one). Before the fix a
// response without Content-Type reached the client as
// "text/html; charset=utf-8": net/http's server sniffed the body.
func TestNoInventedResponseFields(t *testing.T) {
	const html = "<!DOCTYPE html><html><body>hi</body></html>"
	date := "Date: Mon, 01 Dec 2025 10:00:00 GMT\r\n"
	cl := fmt.Sprintf("Content-Length: %d\r\n", len(html))
	responses := map[string]string{
		"/length": "HTTP/1.1 200 OK\r\n" + date + "X-Content-Type-Options: nosniff\r\n" + cl + "\r\n" + html,
		"/chunked": "HTTP/1.1 200 OK\r\n" + date + "X-Custom: 1\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n", len(html)) + html + "\r\n0\r\n\r\n",
		"/close":   "HTTP/1.1 200 OK\r\n" + date + "Connection: close\r\n\r\n" + html,
		"/empty":   "HTTP/1.1 200 OK\r\n" + date + "Content-Length: 0\r\n\r\n",
		"/nodate":  "HTTP/1.1 200 OK\r\n" + cl + "\r\n" + html,
		"/typed":   "HTTP/1.1 200 OK\r\n" + date + "Content-Type: application/x-thing\r\n" + cl + "\r\n" + html,
		"/404":     "HTTP/1.1 404 Not Found\r\n" + date + cl + "\r\n" + html,
		"/encoded": "HTTP/1.1 200 OK\r\n" + date + "Content-Encoding: identity\r\n" + cl + "\r\n" + html,
	}
	addr := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, responses[req.URL.Path])
	})
	p := startProxy(t, testConfig())
	framing := map[string]bool{"Content-Length": true, "Transfer-Encoding": true, "Connection": true}
	for path, sent := range responses {
		t.Run(strings.TrimPrefix(path, "/"), func(t *testing.T) {
			c, _ := rawConn(t, p.addr)
			fmt.Fprintf(c, "GET http://%s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr, path, addr)
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			_, want := headerSet(t, sent)
			status, have := headerSet(t, string(got))
			if !strings.HasPrefix(sent, status) {
				t.Errorf("status line %q, origin sent %q", status, sent)
			}
			for k, vv := range have {
				switch {
				case k == "Via", framing[k]:
				case k == "Date" && want["Date"] == nil:
					// Added, as RFC 9110 section 6.6.1 asks.
				case want[k] == nil:
					t.Errorf("client got %s: %q, which the origin did not send", k, vv)
				case strings.Join(vv, ",") != strings.Join(want[k], ","):
					t.Errorf("client got %s: %q, origin sent %q", k, vv, want[k])
				}
			}
			for k, vv := range want {
				if !framing[k] && have[k] == nil {
					t.Errorf("origin's %s: %q did not reach the client", k, vv)
				}
			}
			if have["Date"] == nil {
				t.Errorf("no Date reached the client")
			}
		})
	}
	t.Run("h2c client", func(t *testing.T) {
		// net/http's HTTP/2 server sniffs the same way.
		srvAddr, _ := runServer(t, testConfig())
		c := h2cClient(t, srvAddr)
		for _, path := range []string{"/length", "/chunked", "/close"} {
			resp, err := c.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || string(body) != html {
				t.Fatalf("%s: %s %q, want HTTP/2 and the page", path, resp.Proto, body)
			}
			if v, ok := resp.Header["Content-Type"]; ok {
				t.Errorf("%s over h2c: Content-Type %q, which the origin did not send", path, v)
			}
		}
	})
}

// Issue 12: the request the origin gets carries the client's fields, less
// the hop-by-hop ones, plus Via and the framing of the origin's hop: the
// transport adds no User-Agent, Accept-Encoding or other field of its own.
func TestNoInventedRequestFields(t *testing.T) {
	heads := make(chan string, 1)
	addr := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		var head strings.Builder
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(l)
			if l == "\r\n" {
				break
			}
		}
		heads <- head.String()
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	p := startProxy(t, testConfig())
	for _, tt := range []struct{ name, fields string }{
		{"minimal", ""},
		{"some", "Accept: */*\r\nX-Custom: a\r\nX-Custom: b\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw := "GET http://" + addr + "/ HTTP/1.1\r\nHost: " + addr + "\r\n" + tt.fields + "\r\n"
			resp, _ := rawRoundTrip(t, p.addr, "GET", raw)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d", resp.StatusCode)
			}
			_, want := headerSet(t, raw)
			_, got := headerSet(t, <-heads)
			for k, vv := range got {
				if k != "Via" && strings.Join(vv, ",") != strings.Join(want[k], ",") {
					t.Errorf("origin got %s: %q, client sent %q", k, vv, want[k])
				}
			}
			for k, vv := range want {
				if got[k] == nil {
					t.Errorf("client's %s: %q did not reach the origin", k, vv)
				}
			}
		})
	}
}

// trailerSection returns the trailer lines of a chunked message in raw:
// what follows the last chunk, up to the blank line.
func trailerSection(t *testing.T, raw string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(raw, "\r\n0\r\n")
	if !ok {
		t.Fatalf("no last chunk in %q", raw)
	}
	section, _, ok := strings.Cut(rest, "\r\n\r\n")
	if !ok && rest != "\r\n" {
		t.Fatalf("trailer section not ended in %q", rest)
	}
	if section == "" || !ok {
		return nil
	}
	return strings.Split(section, "\r\n")
}

// metricValue scrapes the proxy's /metrics and returns the value of the
// sample whose line starts with series.
func metricValue(t *testing.T, proxyAddr, series string) string {
	t.Helper()
	resp, body := rawRoundTrip(t, proxyAddr, "GET", "GET /metrics HTTP/1.1\r\nHost: "+proxyAddr+"\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

// Issue 12: trailer fields that RFC 9110 section 6.5.1 keeps out of
// trailers (framing, routing, credentials, cookies, conditionals,
// response controls, content format) are dropped both ways, declared or
// not, and counted; other trailers pass. Before the fix the request
// trailers Content-Length: 99 and Host: evil reached the origin, and the
// response trailers Content-Length: 99 and Set-Cookie the client.
func TestTrailerFieldsDropped(t *testing.T) {
	// The origin's request trailer map holds the fields the proxy
	// announced (Trailer) and those it sent.
	got := make(chan http.Header, 1)
	const respTrailers = "X-Good: g\r\nContent-Length: 99\r\nSet-Cookie: s=1\r\nDate: Mon, 01 Dec 2025 10:00:00 GMT\r\n" +
		"Location: /elsewhere\r\nContent-Type: text/evil\r\nX-Late: l\r\n"
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		if req.Method == http.MethodPost {
			got <- req.Trailer
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Good, Set-Cookie, Location\r\n\r\n"+
			"4\r\nbody\r\n0\r\n"+respTrailers+"\r\n")
	})
	addr, _ := runServer(t, testConfig())

	t.Run("request", func(t *testing.T) {
		raw := "POST http://" + origin + "/ HTTP/1.1\r\nHost: " + origin + "\r\nTransfer-Encoding: chunked\r\n" +
			"Trailer: X-Good, Host, Set-Cookie\r\n\r\n" +
			"4\r\nbody\r\n0\r\nX-Good: g\r\nContent-Length: 99\r\nHost: evil\r\nSet-Cookie: a=b\r\n" +
			"Authorization: Basic eDp5\r\nCookie: c=d\r\nIf-Match: *\r\nX-Late: l\r\n\r\n"
		resp, _ := rawRoundTrip(t, addr, "POST", raw)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status %d, want the origin's 204", resp.StatusCode)
		}
		want := http.Header{"X-Good": {"g"}, "X-Late": {"l"}}
		if tr := <-got; fmt.Sprint(tr) != fmt.Sprint(want) {
			t.Errorf("origin got trailers %v, want %v", tr, want)
		}
		if v := metricValue(t, addr, `warmproxy_trailer_fields_dropped_total{direction="request"}`); v != "6" {
			t.Errorf("request trailer fields dropped = %q, want 6", v)
		}
	})
	t.Run("response", func(t *testing.T) {
		c, _ := rawConn(t, addr)
		fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\nTE: trailers\r\nConnection: close\r\n\r\n", origin, origin)
		all, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		_, head := headerSet(t, string(all))
		if d := strings.Join(head["Trailer"], ","); d != "X-Good" {
			t.Errorf("client got Trailer: %q, want X-Good only", d)
		}
		if lines := trailerSection(t, string(all)); strings.Join(lines, "|") != "X-Good: g|X-Late: l" &&
			strings.Join(lines, "|") != "X-Late: l|X-Good: g" {
			t.Errorf("client got trailers %q, want X-Good and X-Late only", lines)
		}
		if v := metricValue(t, addr, `warmproxy_trailer_fields_dropped_total{direction="response"}`); v != "5" {
			t.Errorf("response trailer fields dropped = %q, want 5", v)
		}
	})
}

// accessRecord waits for a JSON access record of the server whose url
// ends with suffix, and returns it.
func accessRecord(t *testing.T, access *testnet.Buffer, suffix string) map[string]any {
	t.Helper()
	var rec map[string]any
	waitFor(t, "the access record of "+suffix, func() bool {
		for _, l := range strings.Split(access.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil {
				if u, _ := m["url"].(string); strings.HasSuffix(u, suffix) {
					rec = m
					return true
				}
			}
		}
		return false
	})
	return rec
}

// trickle writes pieces to c, one every gap, until the test ends or a
// write fails: a client sending its body at a crawl.
func trickle(t *testing.T, c net.Conn, gap time.Duration, pieces ...string) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped })
	go func() {
		defer close(stopped)
		for _, p := range pieces {
			if _, err := io.WriteString(c, p); err != nil {
				return
			}
			select {
			case <-done:
				return
			case <-time.After(gap):
			}
		}
	}()
}

// Issue 12: a request body that stalls longer than -client-body-timeout
// ends the request: 408 (with Connection: close) while nothing was
// answered yet, an aborted connection once the response started; the
// access log records both. The client here sends a byte every 2.5 s
// against a timeout of 300 ms. Before the fix the request held its
// client slot and upstream connection for as long as the client liked.
func TestClientBodyTimeout(t *testing.T) {
	bodies := make(chan error, 8)
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.URL.Path == "/early" {
			// Answer before reading the body, as an origin streaming
			// its response to an upload does.
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nstart\r\n")
		}
		_, err = io.Copy(io.Discard, req.Body)
		bodies <- err
		if err == nil {
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	cfg := testConfig()
	cfg.ClientBodyTimeout = 300 * time.Millisecond
	cfg.LogFormat = "json"
	addr, access := runServer(t, cfg)
	const crawl = 2500 * time.Millisecond

	for _, tt := range []struct {
		name, path, framing string
		pieces              []string
	}{
		{"chunked", "/chunked", "Transfer-Encoding: chunked", []string{"1\r\na\r\n", "1\r\nb\r\n", "1\r\nc\r\n"}},
		// A small body with a Content-Length is read up front (for a
		// replay), by the handler itself.
		{"content-length", "/length", "Content-Length: 10", []string{"a", "b", "c"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, br := rawConn(t, addr)
			fmt.Fprintf(c, "POST http://%s%s HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n", origin, tt.path, origin, tt.framing)
			trickle(t, c, crawl, tt.pieces...)
			resp, body := readResponse(t, br, "POST")
			if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
				t.Errorf("status %d, close %v, want 408 and Connection: close", resp.StatusCode, resp.Close)
			}
			if ps := resp.Header.Get("Proxy-Status"); !strings.Contains(ps, "error=http_request_error") {
				t.Errorf("Proxy-Status %q, want error=http_request_error", ps)
			}
			if !strings.Contains(body, "client-body-timeout") {
				t.Errorf("body %q does not name -client-body-timeout", body)
			}
			rec := accessRecord(t, access, tt.path)
			if rec["status"] != 408.0 || rec["error"] != "http_request_error" || !strings.Contains(rec["detail"].(string), "stalled") {
				t.Errorf("access record %v, want status 408, error http_request_error, a detail saying the body stalled", rec)
			}
		})
	}
	t.Run("after the response started", func(t *testing.T) {
		c, br := rawConn(t, addr)
		fmt.Fprintf(c, "POST http://%s/early HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n", origin, origin)
		trickle(t, c, crawl, "1\r\na\r\n", "1\r\nb\r\n", "1\r\nc\r\n")
		resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "start" || err != io.ErrUnexpectedEOF {
			t.Errorf("got %d %q, %v; want 200, the origin's first chunk, then the connection cut (unexpected EOF)", resp.StatusCode, body, err)
		}
		rec := accessRecord(t, access, "/early")
		if rec["status"] != 200.0 || rec["error"] != "http_request_error" || !strings.Contains(rec["detail"].(string), "aborted") {
			t.Errorf("access record %v, want status 200, error http_request_error, a detail saying the connection was aborted", rec)
		}
	})
	t.Run("h2c", func(t *testing.T) {
		c := h2cClient(t, addr)
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		go io.WriteString(pw, "a")
		req, _ := http.NewRequest(http.MethodPost, "http://"+origin+"/h2c", pr)
		resp, body := do(t, c, req)
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "client-body-timeout") {
			t.Errorf("got %s %d %q, want HTTP/2 408 naming -client-body-timeout", resp.Proto, resp.StatusCode, body)
		}
		// The stream ended, not the connection: the next request on it
		// works.
		resp, _ = do(t, c, mustRequest(t, http.MethodPost, "http://"+origin+"/h2c-next", strings.NewReader("whole")))
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("next request on the h2c connection: %d, want 204", resp.StatusCode)
		}
		if rec := accessRecord(t, access, "/h2c"); rec["status"] != 408.0 {
			t.Errorf("access record %v, want status 408", rec)
		}
		<-bodies // the whole one
	})
	// The origin saw each body it got (the chunked ones; the small one
	// never left) end in an error, not at its end.
	for range 2 {
		select {
		case err := <-bodies:
			if err == nil {
				t.Error("origin read a whole body, want it cut")
			}
		case <-time.After(testTimeout):
			t.Fatal("origin still reading a body")
		}
	}
}

// h2cClient speaks HTTP/2 with prior knowledge to the proxy at addr,
// whatever the request URL names, over one connection.
func h2cClient(t *testing.T, addr string) *http.Client {
	t.Helper()
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

func mustRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// Issue 12: while the transport still sends a request body upstream, the
// origin's response may already come back (an origin streaming its answer
// to an upload); the whole body still reaches the origin, and the
// response reaches a client that waits for it before sending the rest.
// Before the fix net/http's server read and discarded the rest of the
// body itself when the response head went out: the origin got 52224 of
// 103424 bytes, ending as if whole, and a client that waited for the
// head before sending more waited forever.
func TestUploadWhileResponding(t *testing.T) {
	got := make(chan string, 1)
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nstart\r\n")
			b, err := io.ReadAll(req.Body)
			got <- fmt.Sprintf("%d bytes, %v", len(b), err)
			io.WriteString(c, "3\r\nend\r\n0\r\n\r\n")
		}
	})
	p := startProxy(t, testConfig())
	chunk := "400\r\n" + strings.Repeat("b", 1024) + "\r\n"
	const chunks = 101
	want := fmt.Sprintf("%d bytes, <nil>", chunks*1024)

	for _, waitForHead := range []bool{false, true} {
		t.Run(fmt.Sprintf("client waits for the head: %v", waitForHead), func(t *testing.T) {
			c, br := rawConn(t, p.addr)
			fmt.Fprintf(c, "POST http://%s/ HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n%s", origin, origin, chunk)
			var resp *http.Response
			read := func() {
				var err error
				if resp, err = http.ReadResponse(br, &http.Request{Method: "POST"}); err != nil {
					t.Fatalf("reading the response head: %v", err)
				}
			}
			if waitForHead {
				read()
			}
			for range chunks - 1 {
				// A little apart, as a client's writes are, so the
				// response head goes out while the body still arrives.
				time.Sleep(time.Millisecond)
				io.WriteString(c, chunk)
			}
			io.WriteString(c, "0\r\n\r\n")
			if !waitForHead {
				read()
			}
			body, err := io.ReadAll(resp.Body)
			if string(body) != "startend" || err != nil {
				t.Errorf("client got %q, %v; want startend", body, err)
			}
			if g := <-got; g != want {
				t.Errorf("origin got %s, want %s", g, want)
			}
		})
	}
}

// Issue 12: an origin that answers (413) before the body ended: the client
// gets the answer at once with Connection: close, and the connection is
// closed after it, though the client's body stalls. Before the fix
// net/http's server held the answer back to read and discard the rest of
// the body first, for as long as the client stalled.
func TestClientBodyTimeoutAfterAnswer(t *testing.T) {
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			// Read on until the proxy closes: closing with the body's bytes
			// unread would send a reset, which can destroy the 413 before
			// the proxy reads it (a 502 then, 2 runs in 20 under load).
			c.SetReadDeadline(time.Now().Add(testTimeout))
			io.Copy(io.Discard, br)
		}
	})
	cfg := testConfig()
	cfg.ClientBodyTimeout = 300 * time.Millisecond
	p := startProxy(t, cfg)
	c, br := rawConn(t, p.addr)
	fmt.Fprintf(c, "POST http://%s/ HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n", origin, origin)
	trickle(t, c, 2500*time.Millisecond, "1\r\nb\r\n", "1\r\nc\r\n")
	resp, _ := readResponse(t, br, "POST")
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want the origin's 413", resp.StatusCode)
	}
	if rest, err := io.ReadAll(br); len(rest) > 0 || err != nil {
		t.Errorf("after the 413: read %q, %v; want the proxy to close the connection (EOF)", rest, err)
	}
}
