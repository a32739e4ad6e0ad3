package server_test

// Issue 14: behaviours pinned through a real listener (server.Run on
// 127.0.0.1:0), so that they hold whatever serves the client connection:
// today's net/http server and handler, or the data path that replaces
// them. Each was caught before only by handler-level tests, or by nothing.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// pinConn opens a client connection to the proxy at addr, with a deadline
// that bounds the whole exchange.
func pinConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	return c, bufio.NewReader(c)
}

// pinResp is a response read off a raw connection, its body read in full.
type pinResp struct {
	*http.Response
	body string
}

// pinRead reads one response (for a request of method) and its body.
func pinRead(t *testing.T, br *bufio.Reader, method string) pinResp {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response to %s: %v", method, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body of %d: %v", resp.StatusCode, err)
	}
	return pinResp{resp, string(b)}
}

// pinRaw writes raw on a fresh client connection and reads one response.
func pinRaw(t *testing.T, addr, raw string) pinResp {
	t.Helper()
	c, br := pinConn(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(raw, " ")
	return pinRead(t, br, method)
}

// pinLog is a list of what an origin saw, safe for its serve goroutines.
type pinLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *pinLog) add(s string) {
	l.mu.Lock()
	l.seen = append(l.seen, s)
	l.mu.Unlock()
}

func (l *pinLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen
	l.seen = nil
	return s
}

// pinEchoOrigin is an HTTP/1.1 origin on a raw socket: for each request
// it records "METHOD PATH" and answers with what echo returns for it.
func pinEchoOrigin(t *testing.T, echo func(r *http.Request, body []byte) string) (string, *pinLog) {
	t.Helper()
	var l pinLog
	addr := testnet.ServeRequests(t, func(c net.Conn, r *http.Request, body []byte) bool {
		l.add(r.Method + " " + r.URL.Path)
		out := echo(r, body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(out), out)
		return true
	})
	return addr, &l
}

// Issue 14: a request whose Via already names the proxy's pseudonym is a
// loop: 508 proxy_loop_detected, and the origin never sees it. Another
// proxy's entry passes, with this hop appended.
func TestPinViaLoop(t *testing.T) {
	origin, seen := pinEchoOrigin(t, func(r *http.Request, _ []byte) string {
		return "via=" + strings.Join(r.Header.Values("Via"), "|")
	})
	for _, tt := range []struct {
		name, viaName, via string
		loop               bool
		wantVia            string // what the origin sees, when no loop
	}{
		{name: "own name", via: "1.1 warmproxy", loop: true},
		{name: "own name among others", via: "1.0 edge, 1.1 WarmProxy (warmproxy/dev)", loop: true},
		{name: "own name in a second field", via: "1.1 edge\r\nVia: 2 warmproxy", loop: true},
		{name: "configured name", viaName: "relay7", via: "1.1 relay7", loop: true},
		{name: "default name under another", viaName: "relay7", via: "1.1 warmproxy", wantVia: "1.1 warmproxy|1.1 relay7"},
		{name: "other proxy", via: "1.1 edge", wantVia: "1.1 edge|1.1 warmproxy"},
		{name: "name as comment only", via: "1.1 edge (warmproxy)", wantVia: "1.1 edge (warmproxy)|1.1 warmproxy"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			if tt.viaName != "" {
				cfg.ViaName = tt.viaName
			}
			p := start(t, cfg)
			r := pinRaw(t, p.addr, "GET http://"+origin+"/v HTTP/1.1\r\nHost: "+origin+"\r\nVia: "+tt.via+"\r\n\r\n")
			got := seen.take()
			if !tt.loop {
				if r.StatusCode != 200 || r.body != "via="+tt.wantVia {
					t.Errorf("Via %q: %d %q, want 200 via=%s", tt.via, r.StatusCode, r.body, tt.wantVia)
				}
				return
			}
			if r.StatusCode != http.StatusLoopDetected || !strings.Contains(r.Header.Get("Proxy-Status"), "error=proxy_loop_detected") {
				t.Errorf("Via %q: %d %q Proxy-Status %q, want 508 proxy_loop_detected", tt.via, r.StatusCode, r.body, r.Header.Get("Proxy-Status"))
			}
			if len(got) != 0 {
				t.Errorf("Via %q: origin saw %v, want nothing", tt.via, got)
			}
			if f := p.accessLine(t, 1, 0); f[4] != "508" {
				t.Errorf("access line %q: status %s, want 508", f, f[4])
			}
		})
	}
}

// pinTrailers answers with a chunked body and trailers: X-Sum announced
// in the head, X-Late not.
func pinTrailers(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Trailer", "X-Sum")
	io.WriteString(w, "part one,")
	w.(http.Flusher).Flush()
	io.WriteString(w, "part two")
	w.Header().Set("X-Sum", "42")
	w.Header().Set(http.TrailerPrefix+"X-Late", "7")
}

// Issue 14: response trailers reach the client: the announced one is
// named in the head's Trailer field and sent exactly once (also when the
// origin sent the same field in its head), an undeclared one is sent too,
// on plain and HTTPS-via-protocol-header requests alike.
func TestPinResponseTrailers(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(pinTrailers))
	t.Cleanup(plain.Close)
	tlsO, cfg, _ := tlsOrigin(t, http.HandlerFunc(pinTrailers))
	// An origin that also sends the announced field in the head: its
	// value there must not come out again as a trailer.
	repeat := testnet.ServeRequests(t, func(c net.Conn, _ *http.Request, _ []byte) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nX-Sum: head\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"9\r\npart one,\r\n8\r\npart two\r\n0\r\nX-Sum: 42\r\nX-Late: 7\r\n\r\n")
		return true
	})
	p := start(t, cfg)
	for _, tt := range []struct {
		name, target, extra string
		inHead              bool
	}{
		{"http", plain.Listener.Addr().String(), "", false},
		{"https via protocol header", tlsO.Listener.Addr().String(), "X-Real-Protocol: https\r\n", false},
		{"field also in the head", repeat, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, br := pinConn(t, p.addr)
			fmt.Fprintf(c, "GET http://%s/t HTTP/1.1\r\nHost: %s\r\nTE: trailers\r\n%s\r\n", tt.target, tt.target, tt.extra)
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			// ReadResponse moves the head's Trailer field into resp.Trailer,
			// keys only, before the body is read.
			if _, ok := resp.Trailer["X-Sum"]; !ok || len(resp.Trailer) != 1 {
				t.Errorf("head announces trailers %v, want exactly [X-Sum]", resp.Trailer)
			}
			if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
				t.Errorf("Transfer-Encoding %q, want chunked", resp.TransferEncoding)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != "part one,part two" {
				t.Fatalf("body %q, %v", b, err)
			}
			if got := resp.Trailer["X-Sum"]; len(got) != 1 || got[0] != "42" {
				t.Errorf("trailer X-Sum = %q, want exactly one 42", got)
			}
			if got := resp.Trailer["X-Late"]; len(got) != 1 || got[0] != "7" {
				t.Errorf("undeclared trailer X-Late = %q, want exactly one 7", got)
			}
			if v, ok := resp.Header["X-Sum"]; ok && !tt.inHead {
				t.Errorf("trailer X-Sum also in the head: %q", v)
			}
		})
	}
}

// Issue 14: request trailers reach the origin, declared in a Trailer
// field or not.
func TestPinRequestTrailers(t *testing.T) {
	origin, _ := pinEchoOrigin(t, func(r *http.Request, body []byte) string {
		return fmt.Sprintf("body=%s sum=%q decl=%q", body, r.Trailer.Values("X-Sum"), r.Trailer.Values("X-Decl"))
	})
	p := start(t, config.Default())
	for _, tt := range []struct{ name, head, trailers, want string }{
		{"undeclared", "", "X-Sum: 7\r\n", `body=hello sum=["7"] decl=[]`},
		{"declared", "Trailer: X-Decl\r\n", "X-Decl: 9\r\n", `body=hello sum=[] decl=["9"]`},
		{"declared and undeclared", "Trailer: X-Decl\r\n", "X-Decl: 9\r\nX-Sum: 7\r\n", `body=hello sum=["7"] decl=["9"]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := pinRaw(t, p.addr, "POST http://"+origin+"/r HTTP/1.1\r\nHost: "+origin+"\r\n"+tt.head+
				"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"+tt.trailers+"\r\n")
			if r.StatusCode != 200 || r.body != tt.want {
				t.Errorf("%d %q, want 200 %q", r.StatusCode, r.body, tt.want)
			}
		})
	}
}

// Issue 14: Go's own User-Agent never reaches the origin: a request
// without one goes without one, and a client's goes as it came.
func TestPinNoGoUserAgent(t *testing.T) {
	origin, _ := pinEchoOrigin(t, func(r *http.Request, _ []byte) string {
		return fmt.Sprintf("ua=%q", r.Header.Values("User-Agent"))
	})
	tlsO, cfg, _ := tlsOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ua=%q", r.Header.Values("User-Agent"))
	}))
	p := start(t, cfg)
	for _, tt := range []struct{ name, target, head, want string }{
		{"none", origin, "", `ua=[]`},
		{"client's", origin, "User-Agent: php-curl/8.2\r\n", `ua=["php-curl/8.2"]`},
		{"none over https", tlsO.Listener.Addr().String(), "X-Real-Protocol: https\r\n", `ua=[]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := pinRaw(t, p.addr, "GET http://"+tt.target+"/ua HTTP/1.1\r\nHost: "+tt.target+"\r\n"+tt.head+"\r\n")
			if r.StatusCode != 200 || r.body != tt.want {
				t.Errorf("%d %q, want 200 %s", r.StatusCode, r.body, tt.want)
			}
		})
	}
}

// pinInterimOrigin answers every request with n 103 Early Hints
// responses, each with head as extra fields, then 200 "ok".
func pinInterimOrigin(t *testing.T, n int, head string) string {
	t.Helper()
	return testnet.ServeRequests(t, func(c net.Conn, _ *http.Request, _ []byte) bool {
		var b bytes.Buffer
		for range n {
			b.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n" + head + "\r\n")
		}
		b.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_, err := c.Write(b.Bytes())
		return err == nil
	})
}

// pinReadFinal reads interim responses until a final one, and returns
// the interim ones' headers and the final response.
func pinReadFinal(t *testing.T, br *bufio.Reader) ([]http.Header, pinResp) {
	t.Helper()
	var interim []http.Header
	for range 100 {
		r := pinRead(t, br, "GET")
		if r.StatusCode >= 200 {
			return interim, r
		}
		if r.StatusCode != 103 {
			t.Fatalf("interim status %d, want 103", r.StatusCode)
		}
		interim = append(interim, r.Header)
	}
	t.Fatal("more than 100 interim responses")
	return nil, pinResp{}
}

// Issue 14: interim responses are relayed, at most 16 for one request:
// an origin that sends more gets the request failed with 502.
func TestPinInterimCap(t *testing.T) {
	p := start(t, config.Default())
	for _, tt := range []struct {
		sent, relayed, status int
	}{
		{sent: 3, relayed: 3, status: 200},
		{sent: 16, relayed: 16, status: 200},
		{sent: 17, relayed: 16, status: 502},
		{sent: 60, relayed: 16, status: 502},
	} {
		t.Run(fmt.Sprint(tt.sent), func(t *testing.T) {
			origin := pinInterimOrigin(t, tt.sent, "")
			c, br := pinConn(t, p.addr)
			fmt.Fprintf(c, "GET http://%s/hints HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin)
			interim, final := pinReadFinal(t, br)
			if len(interim) != tt.relayed || final.StatusCode != tt.status {
				t.Errorf("origin sent %d 103s: client got %d and then %d %q; want %d and %d",
					tt.sent, len(interim), final.StatusCode, final.body, tt.relayed, tt.status)
			}
		})
	}
}

// Issue 14: a relayed interim response carries none of the origin's
// hop-by-hop fields.
func TestPinInterimHopByHop(t *testing.T) {
	origin := pinInterimOrigin(t, 2, "Connection: X-Hop, Keep-Alive\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\nUpgrade: h3\r\nProxy-Authenticate: Basic\r\n")
	p := start(t, config.Default())
	c, br := pinConn(t, p.addr)
	fmt.Fprintf(c, "GET http://%s/hints HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin)
	interim, final := pinReadFinal(t, br)
	if len(interim) != 2 || final.StatusCode != 200 || final.body != "ok" {
		t.Fatalf("client got %d 103s then %d %q, want 2 and 200 ok", len(interim), final.StatusCode, final.body)
	}
	for i, h := range interim {
		if h.Get("Link") != "</s.css>; rel=preload" {
			t.Errorf("103 #%d: Link %q, want the origin's", i, h.Get("Link"))
		}
		for _, k := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Connection", "Upgrade", "Proxy-Authenticate"} {
			if v, ok := h[k]; ok {
				t.Errorf("103 #%d carries hop-by-hop %s: %q", i, k, v)
			}
		}
	}
}
