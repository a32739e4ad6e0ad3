package h1server

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// hangGuard bounds every blocking read of a test, so a bug fails the test
// instead of hanging it; no test asserts how long anything takes.
const hangGuard = 20 * time.Second

// dialProxy connects to the rig with a read guard.
func dialProxy(t testing.TB, r *rig) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(hangGuard))
	return c, bufio.NewReader(c)
}

// okOrigin answers every request with its path as the body, counting
// connections.
func okOrigin(t testing.TB, conns *atomic.Int32) string {
	return rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			body := req.URL.Path
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
	})
}

// Issue 14: two requests written at once (pipelining) are answered in
// order over one pooled origin connection, and the idle client
// connection then holds no buffer. Without the server's handling of the
// bytes after a request the second would be lost or answered twice.
func TestPipelinedOnPooledConnection(t *testing.T) {
	var conns atomic.Int32
	origin := okOrigin(t, &conns)
	r := newRig(t, config.Default())
	c, br := dialProxy(t, r)
	fmt.Fprintf(c, "GET http://%s/one HTTP/1.1\r\nHost: x\r\n\r\nGET http://%s/two HTTP/1.1\r\nHost: x\r\n\r\n", origin, origin)
	for _, want := range []string{"/one", "/two"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer for %s: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("answer = %d %q, want 200 %q", resp.StatusCode, body, want)
		}
		if via := resp.Header.Get("Via"); via != "1.1 warmproxy" {
			t.Errorf("Via = %q, want 1.1 warmproxy", via)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("origin saw %d connections, want 1", n)
	}
	if r.handed.Load() != 0 {
		t.Errorf("%d connections handed to net/http, want 0", r.handed.Load())
	}
	waitIdle(t, r)
	log := r.log()
	if len(log) != 2 || log[0].Reused || !log[1].Reused {
		t.Errorf("access entries %+v, want 2, the second reused", log)
	}
}

// waitIdle waits until the rig's connections are all idle and hold no
// buffer or exchange state; it fails when they still do after hangGuard.
func waitIdle(t *testing.T, r *rig) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for r.cs.Held() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("client connections hold %d buffers and exchange states, want 0 between requests", r.cs.Held())
		}
		time.Sleep(time.Millisecond)
	}
}

// Issue 14: a chunked response is relayed byte-exact (chunk extensions,
// sizes and data as the origin wrote them, not re-encoded); its trailer
// section loses the fields not allowed in trailers, and the Trailer
// announcement names only those kept. The origin's field order and case
// survive.
func TestChunkedRelayByteExact(t *testing.T) {
	chunks := "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n"
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nx-LOWER: a\r\nTrailer: X-Sum, Set-Cookie\r\nTransfer-Encoding: chunked\r\nB-Second: b\r\n\r\n"+
			chunks+"X-Sum: 42\r\nSet-Cookie: evil=1\r\n\r\n")
	})
	r := newRig(t, config.Default())
	c, br := dialProxy(t, r)
	fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: x\r\n\r\n", origin)
	head := readHead(t, br)
	for _, want := range []string{"x-LOWER: a\r\n", "Trailer: X-Sum\r\n", "Transfer-Encoding: chunked\r\n"} {
		if !strings.Contains(head, want) {
			t.Errorf("head lacks %q:\n%s", want, head)
		}
	}
	if strings.Index(head, "x-LOWER") > strings.Index(head, "B-Second") {
		t.Errorf("field order changed:\n%s", head)
	}
	rest := make([]byte, len(chunks)+len("X-Sum: 42\r\n\r\n"))
	if _, err := io.ReadFull(br, rest); err != nil {
		t.Fatal(err)
	}
	if want := chunks + "X-Sum: 42\r\n\r\n"; string(rest) != want {
		t.Errorf("body = %q, want %q", rest, want)
	}
	waitIdle(t, r)
	if log := r.log(); len(log) != 1 || log[0].BytesOut != 11 {
		t.Errorf("entries %+v, want one with 11 body bytes", log)
	}
}

// readHead reads a response head up to its empty line.
func readHead(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("head: %v after %q", err, b.String())
		}
		b.WriteString(line)
		if line == "\r\n" {
			return b.String()
		}
	}
}

// Issue 14: a body the origin ends by closing goes to an HTTP/1.1 client
// chunked, whole, and the client connection stays usable.
func TestCloseDelimitedBodyGoesChunked(t *testing.T) {
	body := strings.Repeat("z", 100<<10)
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\n"+body)
	})
	r := newRig(t, config.Default())
	c, br := dialProxy(t, r)
	for i := range 2 {
		fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: x\r\n\r\n", origin)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || string(got) != body || len(resp.TransferEncoding) != 1 || resp.Header.Get("Via") != "1.0 warmproxy" {
			t.Fatalf("request %d: %d bytes, %v, TE %v, Via %q; want the body whole, chunked, via 1.0", i, len(got), err, resp.TransferEncoding, resp.Header.Get("Via"))
		}
	}
}

// Issue 14: uploads over -retry-body-bytes (Content-Length) and chunked
// ones (with trailers, the forbidden one dropped) are sent on as they
// arrive and reach the origin byte-exact; the request after them on the
// same connection is served too.
func TestStreamedUploads(t *testing.T) {
	type seen struct {
		sum     [32]byte
		n       int
		trailer http.Header
	}
	got := make(chan seen, 4)
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			h := sha256.New()
			n, _ := io.Copy(h, req.Body)
			var s seen
			copy(s.sum[:], h.Sum(nil))
			s.n, s.trailer = int(n), req.Trailer
			got <- s
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	cfg := config.Default()
	cfg.RetryBodyBytes = 1024
	r := newRig(t, cfg)
	c, br := dialProxy(t, r)
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	fmt.Fprintf(c, "PUT http://%s/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", origin, len(big))
	go c.Write(big)
	expectOK(t, br)
	if s := <-got; s.n != len(big) || s.sum != sha256.Sum256(big) {
		t.Errorf("origin got %d bytes (sum match %v), want %d", s.n, s.sum == sha256.Sum256(big), len(big))
	}
	var chunked strings.Builder
	var whole []byte
	for i := range 50 {
		piece := strings.Repeat(strconv.Itoa(i%10), 1000+i)
		whole = append(whole, piece...)
		fmt.Fprintf(&chunked, "%x\r\n%s\r\n", len(piece), piece)
	}
	fmt.Fprintf(c, "POST http://%s/chunked HTTP/1.1\r\nHost: x\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\nX-Sum: 7\r\nContent-Type: evil\r\n\r\nGET http://%s/after HTTP/1.1\r\nHost: x\r\n\r\n", origin, chunked.String(), origin)
	expectOK(t, br)
	if s := <-got; s.n != len(whole) || s.sum != sha256.Sum256(whole) || s.trailer.Get("X-Sum") != "7" || s.trailer.Get("Content-Type") != "" {
		t.Errorf("origin got %d bytes (sum match %v), trailer %v; want %d, X-Sum only", s.n, s.sum == sha256.Sum256(whole), s.trailer, len(whole))
	}
	expectOK(t, br)
	<-got
	if r.handed.Load() != 0 {
		t.Errorf("%d connections handed to net/http, want 0", r.handed.Load())
	}
}

func expectOK(t *testing.T, br *bufio.Reader) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("answer %d %q, want 200 ok", resp.StatusCode, body)
	}
}

// Issue 14: what the connection server does not serve (here a CONNECT
// after a request it did serve) goes to net/http's side with the bytes
// already read, on the same connection.
func TestHandOverKeepsTheConnection(t *testing.T) {
	var conns atomic.Int32
	origin := okOrigin(t, &conns)
	_, port, _ := net.SplitHostPort(origin)
	cfg := config.Default()
	cfg.ConnectPorts = port
	r := newRig(t, cfg)
	c, br := dialProxy(t, r)
	fmt.Fprintf(c, "GET http://%s/first HTTP/1.1\r\nHost: x\r\n\r\nCONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin, origin)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %v, %v; want 200", resp, err)
	}
	fmt.Fprintf(c, "GET /in-tunnel HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "/in-tunnel" {
		t.Errorf("through the tunnel: %q, want /in-tunnel", body)
	}
	if r.handed.Load() != 1 {
		t.Errorf("%d connections handed over, want 1", r.handed.Load())
	}
}

// Issue 14: heads the wire parser refuses are judged by net/http's side,
// which answers as it always did (here 400 for a bad Host value).
func TestRefusedHeadGetsTodaysAnswer(t *testing.T) {
	r := newRig(t, config.Default())
	c, br := dialProxy(t, r)
	io.WriteString(c, "GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: a b\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("answer %v, %v; want 400", resp, err)
	}
	if r.handed.Load() != 1 {
		t.Errorf("%d connections handed over, want 1", r.handed.Load())
	}
}

// Issue 14: a chunked body of long chunks (spliced between the sockets
// in its data runs) reaches the client byte-exact.
func TestLongChunksByteExact(t *testing.T) {
	var want bytes.Buffer
	for i := range 4 {
		piece := bytes.Repeat([]byte{byte('a' + i)}, 200<<10+i)
		fmt.Fprintf(&want, "%x\r\n%s\r\n", len(piece), piece)
	}
	want.WriteString("0\r\n\r\n")
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		c.Write(want.Bytes())
	})
	r := newRig(t, config.Default())
	c, br := dialProxy(t, r)
	for i := range 2 {
		fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: x\r\n\r\n", origin)
		readHead(t, br)
		got := make([]byte, want.Len())
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("request %d: body differs from what the origin sent", i)
		}
	}
}

// Issue 14: bytes an origin sends after a response's Content-Length (a
// stray or an unsolicited response) read along with it make the
// connection unfit: it is closed, not pooled, so the next request never
// reads them as its answer.
func TestExtraBytesAfterBodyRetire(t *testing.T) {
	var conns atomic.Int32
	origin := cannedAnswers(t, &conns, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 Stray\r\n\r\n")
	r := newRig(t, config.Default())
	c, br := dialProxy(t, r)
	for range 2 {
		fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: x\r\n\r\n", origin)
		expectOK(t, br)
		waitIdle(t, r)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("origin saw %d connections, want 2 (the first one retired)", n)
	}
}

// Issue 14: the request head the origin gets: Host is the target's
// authority, the protocol header and every hop-by-hop field (those the
// Connection field names too) are gone, "TE: trailers" stays, Via names
// this hop. A client's "Connection: close" gets one back, and the
// connection closes after the answer.
func TestRequestHeadHygiene(t *testing.T) {
	got := make(chan *http.Request, 1)
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		got <- req
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	r := newRig(t, config.Default())
	c, br := dialProxy(t, r)
	fmt.Fprintf(c, "GET http://%s/p?q=1 HTTP/1.1\r\nHost: elsewhere\r\nX-Real-Protocol: http\r\nProxy-Connection: keep-alive\r\n"+
		"X-Hop: 1\r\nConnection: close, X-Hop\r\nTE: trailers, gzip\r\nProxy-Authorization: Basic eDp5\r\nX-Kept: yes\r\n\r\n", origin)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if !resp.Close {
		t.Errorf("answer to Connection: close lacks it: %v", resp.Header)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after the answer: %d bytes, %v; want the connection closed (EOF)", n, err)
	}
	req := <-got
	if req.Host != origin || req.RequestURI != "/p?q=1" {
		t.Errorf("origin got Host %q, target %q; want %q, /p?q=1", req.Host, req.RequestURI, origin)
	}
	for _, gone := range []string{"X-Real-Protocol", "Proxy-Connection", "X-Hop", "Connection", "Proxy-Authorization"} {
		if v, ok := req.Header[gone]; ok {
			t.Errorf("origin got %s: %q", gone, v)
		}
	}
	if req.Header.Get("Te") != "trailers" || req.Header.Get("X-Kept") != "yes" || req.Header.Get("Via") != "1.1 warmproxy" {
		t.Errorf("origin got TE %q, X-Kept %q, Via %q; want trailers, yes, 1.1 warmproxy", req.Header.Get("Te"), req.Header.Get("X-Kept"), req.Header.Get("Via"))
	}
}

// Issue 14: a request whose answer had begun to arrive when its reused
// connection broke reached the origin: it is never sent again, even a
// GET (502), as today's rule says.
func TestNoReplayAfterResponseStarted(t *testing.T) {
	var requests atomic.Int32
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for n := 0; ; n++ {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			requests.Add(1)
			if n == 1 {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Le")
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	r := newRig(t, config.Default())
	c, br := dialProxy(t, r)
	fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: x\r\n\r\n", origin)
	expectOK(t, br)
	waitIdle(t, r)
	fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: x\r\n\r\n", origin)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || requests.Load() != 2 {
		t.Errorf("got %d after %d origin requests; want 502 after 2 (no replay)", resp.StatusCode, requests.Load())
	}
}

// Issue 14: a response with both Content-Length and chunked framing is
// relayed as chunked without the Content-Length, and its connection is
// not pooled (RFC 9112 section 6.1).
func TestResponseCLAndTERetires(t *testing.T) {
	var conns atomic.Int32
	origin := cannedAnswers(t, &conns, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
	r := newRig(t, config.Default())
	c, br := dialProxy(t, r)
	for range 2 {
		fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: x\r\n\r\n", origin)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "ok" || resp.ContentLength != -1 {
			t.Fatalf("body %q, Content-Length %d; want ok, none", body, resp.ContentLength)
		}
		waitIdle(t, r)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("origin saw %d connections, want 2", n)
	}
}

// Issue 14 (issue 12, item 11): an origin's response head is read up to
// 1 MiB; past it the client gets 502 with
// error=http_response_header_size, and the proxy keeps serving.
func TestEndlessResponseHead(t *testing.T) {
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := []byte("X-Filler: " + strings.Repeat("f", 1000) + "\r\n")
		for range 2000 {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	})
	r := newRig(t, config.Default())
	c, br := dialProxy(t, r)
	fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: x\r\n\r\n", origin)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if ps := resp.Header.Get("Proxy-Status"); resp.StatusCode != http.StatusBadGateway || !strings.Contains(ps, "error=http_response_header_size") {
		t.Errorf("got %d, Proxy-Status %q; want 502 http_response_header_size", resp.StatusCode, ps)
	}
}

// Issue 14 (issue 2's rule): a client that leaves while the origin keeps
// its request waiting cancels the upstream request (the origin's
// connection is closed) and is recorded 499. Nothing but the client
// leaving can end the origin's wait here.
func TestClientGoneCancelsUpstream(t *testing.T) {
	arrived, canceled := make(chan struct{}), make(chan struct{})
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		close(arrived)
		c.SetReadDeadline(time.Now().Add(hangGuard))
		if _, err := br.ReadByte(); err == io.EOF {
			close(canceled)
		}
	})
	cfg := config.Default()
	cfg.ResponseHeaderTimeout = time.Hour
	r := newRig(t, cfg)
	c, _ := dialProxy(t, r)
	fmt.Fprintf(c, "GET http://%s/slow HTTP/1.1\r\nHost: x\r\n\r\n", origin)
	<-arrived
	c.Close()
	select {
	case <-canceled:
	case <-time.After(hangGuard):
		t.Fatal("the origin's connection stayed open after the client left")
	}
	waitIdle(t, r)
	if log := r.log(); len(log) != 1 || log[0].Status != 499 {
		t.Errorf("entries %+v, want one with status 499", log)
	}
}

// cannedAnswers is an origin that answers every request with answer,
// counting its connections in conns.
func cannedAnswers(t *testing.T, conns *atomic.Int32, answer string) string {
	return rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, answer)
		}
	})
}

// An error answer to HEAD says how long its body would be and sends
// none (RFC 9110 section 9.3.2): the connection stays usable, and the
// next response on it is read as sent. Before, the body went out and the
// client read it as the next status line.
func TestHeadErrorAnswerHasNoBody(t *testing.T) {
	var conns atomic.Int32
	origin := okOrigin(t, &conns)
	r := newRig(t, config.Default())
	c, br := dialProxy(t, r)
	closed := testnet.ClosedAddr(t)
	fmt.Fprintf(c, "HEAD http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", closed, closed)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
	if err != nil || resp.StatusCode != http.StatusBadGateway || resp.ContentLength <= 0 {
		t.Fatalf("HEAD to a closed port = %v, %v; want 502 with its Content-Length", resp, err)
	}
	fmt.Fprintf(c, "GET http://%s/next HTTP/1.1\r\nHost: x\r\n\r\n", origin)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the next response on the connection: %v", err)
	}
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(body) != "/next" {
		t.Errorf("next answer %d %q, want 200 /next", resp.StatusCode, body)
	}
	if r.handed.Load() != 0 {
		t.Errorf("%d connections handed over, want 0 (the connection server answers both)", r.handed.Load())
	}
}
