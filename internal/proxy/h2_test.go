package proxy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// Issue 8: concurrent requests to an origin that speaks HTTP/2 share one
// connection, and every response reaches the HTTP/1.1 clients whole.
// (Before the first connection's handshake has finished, the transport
// cannot know the origin speaks HTTP/2, so a cold burst may dial several
// connections and keep one; the test warms the pool first.)
func TestH2OriginMultiplexes(t *testing.T) {
	const n = 8
	var bar atomic.Pointer[barrier]
	bar.Store(newBarrier(1))
	var h2reqs atomic.Int64
	o := newTLSOriginWith(t, func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			h2reqs.Add(1)
		}
		if !bar.Load().wait() {
			http.Error(w, "barrier timed out", 500)
			return
		}
		fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
	}, true)
	cfg := testConfig()
	cfg.CAFile = o.caFile
	p := startProxy(t, cfg)
	hdr := http.Header{"X-Real-Protocol": {"https"}}
	if resp, body := p.get(t, o.httpURL("/warm"), hdr); resp.StatusCode != 200 {
		t.Fatalf("warm-up GET = %d %q", resp.StatusCode, body)
	}
	bar.Store(newBarrier(n))
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			path := fmt.Sprintf("/r%d", i)
			resp, body := p.get(t, o.httpURL(path), hdr)
			if resp.StatusCode != 200 || body != "HTTP/2.0 "+path {
				t.Errorf("GET %s = %d %q, want 200 %q", path, resp.StatusCode, body, "HTTP/2.0 "+path)
			}
		})
	}
	wg.Wait()
	if got := o.newConns.Load(); got != 1 {
		t.Errorf("origin connections = %d, want 1 for %d concurrent requests over HTTP/2", got, n)
	}
	if got := h2reqs.Load(); got != n+1 {
		t.Errorf("HTTP/2 requests at the origin = %d, want %d", got, n+1)
	}
	st := p.up.Tracker().Totals(upstream.SchemeHTTPS)
	if st.HTTP2 != 1 {
		t.Errorf("pool stats HTTP2 = %d, want 1 (%+v)", st.HTTP2, st)
	}
}

// Issue 8: -upstream-http2=false keeps every origin on HTTP/1.1.
func TestH2OriginDisabled(t *testing.T) {
	o := newTLSOriginWith(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}, true)
	cfg := testConfig()
	cfg.CAFile = o.caFile
	cfg.UpstreamHTTP2 = false
	p := startProxy(t, cfg)
	resp, body := p.get(t, o.httpURL("/"), http.Header{"X-Real-Protocol": {"https"}})
	if resp.StatusCode != 200 || body != "HTTP/1.1" {
		t.Errorf("GET = %d %q, want 200 HTTP/1.1", resp.StatusCode, body)
	}
}

// Issue 8 (seed 003): a response from an HTTP/2 origin has no
// connection-level framing of its own, so the proxy frames it for its
// HTTP/1.1 client: Content-Length when the origin gave one, chunked (with
// the trailers) when it did not, never close-delimited on a kept
// connection; HTTP/1.0 clients get a close-delimited body and
// Connection: close.
func TestH2OriginReframed(t *testing.T) {
	o := newTLSOriginWith(t, func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "want HTTP/2, got "+r.Proto, 500)
			return
		}
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		case "/stream":
			w.Header().Set("Trailer", "X-Sum")
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", "3")
		}
	}, true)
	cfg := testConfig()
	cfg.CAFile = o.caFile
	p := startProxy(t, cfg)
	c, br := rawConn(t, p.addr)
	send := func(path, proto string) {
		t.Helper()
		fmt.Fprintf(c, "GET %s %s\r\nHost: %s\r\nX-Real-Protocol: https\r\nTE: trailers\r\n\r\n", o.httpURL(path), proto, o.hostPort())
	}
	// Two requests on one client connection: the first body must end
	// exactly where its framing says, or the second response is garbage.
	send("/length", "HTTP/1.1")
	resp, body := readResponse(t, br, "GET")
	if resp.StatusCode != 200 || body != "hello" || resp.ContentLength != 5 || resp.Close {
		t.Fatalf("/length: %d %q length %d close %v; want 200 hello 5 false", resp.StatusCode, body, resp.ContentLength, resp.Close)
	}
	send("/stream", "HTTP/1.1")
	resp, body = readResponse(t, br, "GET")
	if resp.StatusCode != 200 || body != "part0;part1;part2;" {
		t.Fatalf("/stream: %d %q", resp.StatusCode, body)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || resp.Close {
		t.Errorf("/stream framing: Transfer-Encoding %v close %v; want [chunked] false", resp.TransferEncoding, resp.Close)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "3" {
		t.Errorf("/stream trailer X-Sum = %q, want 3", got)
	}
	// The connection is still good for a third exchange.
	send("/length", "HTTP/1.1")
	if resp, body := readResponse(t, br, "GET"); body != "hello" {
		t.Fatalf("third request: %d %q", resp.StatusCode, body)
	}

	// HTTP/1.0: no chunked coding exists, so the body ends at close.
	c10, br10 := rawConn(t, p.addr)
	fmt.Fprintf(c10, "GET %s HTTP/1.0\r\nHost: %s\r\nX-Real-Protocol: https\r\n\r\n", o.httpURL("/stream"), o.hostPort())
	resp, body = readResponse(t, br10, "GET")
	if body != "part0;part1;part2;" || len(resp.TransferEncoding) != 0 || !resp.Close {
		t.Errorf("HTTP/1.0 /stream: %q Transfer-Encoding %v close %v; want the body, none, true", body, resp.TransferEncoding, resp.Close)
	}
}

// freezer is a TCP relay in front of an origin that can stop passing bytes
// without closing anything: an origin that died without a FIN.
type freezer struct {
	addr     string
	frozen   atomic.Bool
	accepted atomic.Int64
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	f := &freezer{}
	f.addr = testnet.Serve(t, func(c net.Conn) {
		f.accepted.Add(1)
		o, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer o.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.pipe(o, c)
			o.Close()
		}()
		f.pipe(c, o)
		c.Close()
		<-done
	})
	return f
}

// pipe copies src to dst, dropping everything while the relay is frozen.
func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !f.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Issue 8: an idle HTTP/2 origin connection is pinged, and one whose ping
// goes unanswered is closed before a request can use it.
func TestH2PingClosesDeadConnection(t *testing.T) {
	o := newTLSOriginWith(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}, true)
	relay := newFreezer(t, o.hostPort())
	cfg := testConfig()
	cfg.CAFile = o.caFile
	cfg.UpstreamH2PingInterval = 200 * time.Millisecond
	p := startProxy(t, cfg)
	// The origin's certificate names 127.0.0.1, so the relay's address
	// verifies too.
	target := "http://" + relay.addr + "/"
	hdr := http.Header{"X-Real-Protocol": {"https"}}
	if resp, body := p.get(t, target, hdr); body != "HTTP/2.0" {
		t.Fatalf("first GET = %d %q, want HTTP/2.0", resp.StatusCode, body)
	}
	relay.frozen.Store(true)
	// Ping after 200 ms of silence, close 2 s (the floor) later.
	waitFor(t, "the pool to close the silent HTTP/2 connection", func() bool {
		return p.up.Tracker().Totals(upstream.SchemeHTTPS).Closed == 1
	})
	relay.frozen.Store(false)
	if resp, body := p.get(t, target, hdr); body != "HTTP/2.0" {
		t.Fatalf("GET after the dead connection = %d %q, want HTTP/2.0", resp.StatusCode, body)
	}
	if got := relay.accepted.Load(); got != 2 {
		t.Errorf("relay connections = %d, want 2 (the dead one replaced)", got)
	}
}

// Issue 8: request bodies reach an HTTP/2 origin byte-exact, with a
// Content-Length or chunked from the client, and with Expect: 100-continue.
func TestH2OriginRequestBodies(t *testing.T) {
	o := newTLSOriginWith(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%s %d %s", r.Proto, r.ContentLength, b)
	}, true)
	cfg := testConfig()
	cfg.CAFile = o.caFile
	p := startProxy(t, cfg)
	for _, tc := range []struct{ name, head, body, want string }{
		{"content-length", "Content-Length: 5\r\n", "hello", "HTTP/2.0 5 hello"},
		{"chunked", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "HTTP/2.0 -1 hello world"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRoundTrip(t, p.addr, "POST", fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nX-Real-Protocol: https\r\n%s\r\n%s",
				o.httpURL("/"), o.hostPort(), tc.head, tc.body))
			if resp.StatusCode != 200 || body != tc.want {
				t.Errorf("POST = %d %q, want 200 %q", resp.StatusCode, body, tc.want)
			}
		})
	}
	t.Run("expect-continue", func(t *testing.T) {
		c, br := rawConn(t, p.addr)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nX-Real-Protocol: https\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", o.httpURL("/"), o.hostPort())
		line, err := br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("first line = %q, %v; want 100 Continue", line, err)
		}
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "abc")
		resp, body := readResponse(t, br, "POST")
		if resp.StatusCode != 200 || body != "HTTP/2.0 3 abc" {
			t.Errorf("POST = %d %q, want 200 %q", resp.StatusCode, body, "HTTP/2.0 3 abc")
		}
	})
}
