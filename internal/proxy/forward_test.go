package proxy_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Issue 2: an upload with Content-Length goes upstream with that
// Content-Length, not re-chunked; a chunked upload stays chunked and is
// streamed, not buffered.
func TestUploadFraming(t *testing.T) {
	type seen struct {
		cl   int64
		te   []string
		hdr  string
		sum  [32]byte
		size int
	}
	got := make(chan seen, 1)
	firstPart := make(chan struct{}, 1)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		buf := make([]byte, 4096)
		n, signaled := 0, false
		for {
			m, err := r.Body.Read(buf)
			h.Write(buf[:m])
			n += m
			if n >= 1000 && !signaled {
				signaled = true
				firstPart <- struct{}{}
			}
			if err != nil {
				break
			}
		}
		var s seen
		s.cl, s.te, s.hdr, s.size = r.ContentLength, r.TransferEncoding, r.Header.Get("Content-Length"), n
		copy(s.sum[:], h.Sum(nil))
		got <- s
	})
	p := startProxy(t, testConfig())

	for _, size := range []int{1000, 1 << 20} {
		t.Run(fmt.Sprintf("content-length %d", size), func(t *testing.T) {
			body := randomBytes(size)
			req, _ := http.NewRequest("PUT", o.httpURL("/up"), bytes.NewReader(body))
			resp, _ := do(t, p.client(t), req)
			<-firstPart
			s := <-got
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if s.cl != int64(size) || len(s.te) != 0 || s.hdr != strconv.Itoa(size) {
				t.Errorf("origin saw ContentLength %d, TransferEncoding %q, Content-Length %q; want %d, none, %d", s.cl, s.te, s.hdr, size, size)
			}
			if s.sum != sha256.Sum256(body) || s.size != size {
				t.Errorf("origin got %d bytes with another hash, want the %d sent", s.size, size)
			}
		})
	}

	t.Run("chunked streamed", func(t *testing.T) {
		body := randomBytes(300 << 10)
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", o.httpURL("/up"), pr)
		go func() {
			pw.Write(body[:1000])
			// The rest follows only once the origin has the first part:
			// a proxy that buffers the body would wait forever.
			select {
			case <-firstPart:
			case <-time.After(testTimeout):
				pw.CloseWithError(fmt.Errorf("origin never got the first part"))
				return
			}
			pw.Write(body[1000:])
			pw.Close()
		}()
		resp, _ := do(t, p.client(t), req)
		s := <-got
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if s.cl != -1 || len(s.te) != 1 || s.te[0] != "chunked" {
			t.Errorf("origin saw ContentLength %d, TransferEncoding %q; want -1, [chunked]", s.cl, s.te)
		}
		if s.sum != sha256.Sum256(body) {
			t.Errorf("origin got %d bytes with another hash, want the %d sent", s.size, len(body))
		}
	})
}

// Issue 2: HTTPS to the origin when the protocol header says https (any
// case) or the target is https://; the header never reaches the origin; a
// value other than http or https is a 400 naming the allowed values.
func TestHTTPSToOrigin(t *testing.T) {
	var leaked atomic.Value
	o := newTLSOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		for k := range r.Header {
			if strings.EqualFold(k, "X-Real-Protocol") || strings.EqualFold(k, "X-Proto") {
				leaked.Store(k)
			}
		}
		if r.TLS == nil {
			http.Error(w, "not tls", 500)
			return
		}
		io.WriteString(w, "tls ok")
	})
	cfg := testConfig()
	cfg.CAFile = o.caFile
	p := startProxy(t, cfg)

	for _, v := range []string{"https", "HTTPS", "hTtPs", " https "} {
		t.Run("header "+v, func(t *testing.T) {
			resp, body := p.get(t, o.httpURL("/"), http.Header{"X-Real-Protocol": {v}})
			if resp.StatusCode != 200 || body != "tls ok" {
				t.Errorf("X-Real-Protocol %q = %d %q, want 200 tls ok", v, resp.StatusCode, body)
			}
		})
	}
	t.Run("https target", func(t *testing.T) {
		raw := fmt.Sprintf("GET https://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", o.hostPort(), o.hostPort())
		resp, body := rawRoundTrip(t, p.addr, "GET", raw)
		if resp.StatusCode != 200 || body != "tls ok" {
			t.Errorf("GET https://... = %d %q, want 200 tls ok", resp.StatusCode, body)
		}
	})
	t.Run("bad value", func(t *testing.T) {
		resp, body := p.get(t, o.httpURL("/"), http.Header{"X-Real-Protocol": {"ftp"}})
		if resp.StatusCode != 400 || !strings.Contains(body, "want http or https") || !strings.Contains(body, "ftp") {
			t.Errorf("X-Real-Protocol ftp = %d %q, want 400 naming http and https", resp.StatusCode, body)
		}
	})
	t.Run("configured header name", func(t *testing.T) {
		cfg := cfg
		cfg.ProtocolHeader = "x-proto"
		p := startProxy(t, cfg)
		resp, body := p.get(t, o.httpURL("/"), http.Header{"X-Proto": {"https"}})
		if resp.StatusCode != 200 || body != "tls ok" {
			t.Errorf("X-Proto https = %d %q, want 200 tls ok", resp.StatusCode, body)
		}
	})
	if k := leaked.Load(); k != nil {
		t.Errorf("origin received the protocol header %v", k)
	}
}

// Issue 2: bodies pass byte for byte, whatever their framing: Content-Length,
// chunked, and delimited by the origin closing the connection.
func TestStreamingByteExact(t *testing.T) {
	body := randomBytes(3<<20 + 12345)
	want := sha256.Sum256(body)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cl" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 100_000)
			w.Write(rest[:n])
			rest = rest[n:]
			w.(http.Flusher).Flush()
		}
	})
	closeDelimited := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
		c.Write(body)
	})
	p := startProxy(t, testConfig())
	tests := []struct {
		name, target string
		te           string
	}{
		{"content-length", o.httpURL("/cl"), ""},
		{"chunked", o.httpURL("/chunked"), "chunked"},
		{"close-delimited", "http://" + closeDelimited + "/", "chunked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, got := p.get(t, tt.target, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if sha256.Sum256([]byte(got)) != want || len(got) != len(body) {
				t.Errorf("got %d bytes with another hash, want the origin's %d", len(got), len(body))
			}
			if tt.te == "" && resp.ContentLength != int64(len(body)) {
				t.Errorf("ContentLength = %d, want %d", resp.ContentLength, len(body))
			}
			if tt.te != "" && (len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != tt.te) {
				t.Errorf("TransferEncoding = %q, want [%s]", resp.TransferEncoding, tt.te)
			}
		})
	}
}

// Issue 2: trailers pass both ways, announced in the head or not.
func TestTrailers(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			io.Copy(io.Discard, r.Body)
			for _, k := range []string{"X-Req-Declared", "X-Req-Late"} {
				w.Header().Set("Got-"+k, r.Trailer.Get(k))
			}
			return
		}
		q := r.URL.Query()
		if q.Has("declared") {
			w.Header().Set("Trailer", "X-Declared")
		}
		io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		if q.Has("declared") {
			w.Header().Set("X-Declared", "d")
		}
		if q.Has("late") {
			w.Header().Set(http.TrailerPrefix+"X-Late", "l")
		}
	})
	p := startProxy(t, testConfig())

	for _, tt := range []struct {
		query string
		want  map[string]string
	}{
		{"declared", map[string]string{"X-Declared": "d"}},
		{"late", map[string]string{"X-Late": "l"}},
		{"declared&late", map[string]string{"X-Declared": "d", "X-Late": "l"}},
	} {
		t.Run("response "+tt.query, func(t *testing.T) {
			resp, body := p.get(t, o.httpURL("/?"+tt.query), nil)
			if body != "body" {
				t.Fatalf("body %q", body)
			}
			for k, v := range tt.want {
				if got := resp.Trailer.Get(k); got != v {
					t.Errorf("trailer %s = %q, want %q (trailers %v)", k, got, v, resp.Trailer)
				}
			}
		})
	}

	t.Run("request declared and late", func(t *testing.T) {
		raw := "POST " + o.httpURL("/") + " HTTP/1.1\r\nHost: " + o.hostPort() + "\r\n" +
			"Transfer-Encoding: chunked\r\nTrailer: X-Req-Declared\r\n\r\n" +
			"4\r\nbody\r\n0\r\nX-Req-Declared: d\r\nX-Req-Late: l\r\n\r\n"
		resp, _ := rawRoundTrip(t, p.addr, "POST", raw)
		if got := resp.Header.Get("Got-X-Req-Declared"); got != "d" {
			t.Errorf("origin got request trailer X-Req-Declared %q, want d", got)
		}
		if got := resp.Header.Get("Got-X-Req-Late"); got != "l" {
			t.Errorf("origin got request trailer X-Req-Late %q, want l", got)
		}
	})
}

// Issue 2: 100-continue works end to end, and 103 Early Hints reach the
// client (an HTTP/1.1 one only) before the final response.
func TestInterimResponses(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/continue":
			if r.Header.Get("Expect") != "100-continue" {
				http.Error(w, "no expect", 500)
				return
			}
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		case "/reject":
			http.Error(w, "too big", http.StatusRequestEntityTooLarge)
		case "/hints":
			w.Header().Add("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "final")
		}
	})
	p := startProxy(t, testConfig())

	t.Run("100-continue", func(t *testing.T) {
		c, br := rawConn(t, p.addr)
		fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", o.httpURL("/continue"), o.hostPort())
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("first line %q, %v; want a 100 Continue before the body is sent", line, err)
		}
		if blank, _ := br.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("100 Continue followed by %q", blank)
		}
		io.WriteString(c, "hello")
		resp, body := readResponse(t, br, "PUT")
		if resp.StatusCode != 200 || body != "hello" {
			t.Errorf("final = %d %q, want 200 hello", resp.StatusCode, body)
		}
	})
	t.Run("expectation refused", func(t *testing.T) {
		c, br := rawConn(t, p.addr)
		fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", o.httpURL("/reject"), o.hostPort())
		resp, _ := readResponse(t, br, "PUT")
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want 413 with no 100 Continue first", resp.StatusCode)
		}
	})
	t.Run("103 early hints", func(t *testing.T) {
		var hints []string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		}}
		req, _ := http.NewRequest("GET", o.httpURL("/hints"), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp, body := do(t, p.client(t), req)
		if len(hints) != 1 || hints[0] != "103 </a.css>; rel=preload" {
			t.Errorf("interim responses %q, want one 103 with the Link", hints)
		}
		if resp.StatusCode != 200 || body != "final" {
			t.Errorf("final = %d %q", resp.StatusCode, body)
		}
	})
	t.Run("no 1xx to HTTP/1.0", func(t *testing.T) {
		c, br := rawConn(t, p.addr)
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\n\r\n", o.httpURL("/hints"))
		all, _ := io.ReadAll(br)
		if !bytes.HasPrefix(all, []byte("HTTP/1.0 200 ")) || !bytes.HasSuffix(all, []byte("final")) {
			t.Errorf("HTTP/1.0 client got %q, want only the final response", all)
		}
	})
}

// Issue 2: HEAD, 204 and 304 answers carry no body and keep the framing
// of the next response on the same connection.
func TestNoBodyFraming(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Content-Length", "1234")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		default:
			io.WriteString(w, "last")
		}
	})
	p := startProxy(t, testConfig())
	c, br := rawConn(t, p.addr)
	var raw strings.Builder
	reqs := []struct{ method, path string }{{"HEAD", "/head"}, {"GET", "/204"}, {"GET", "/304"}, {"GET", "/last"}}
	for _, r := range reqs {
		fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", r.method, o.httpURL(r.path), o.hostPort())
	}
	io.WriteString(c, raw.String())
	for _, tt := range []struct {
		method string
		status int
		cl     string
		body   string
	}{
		{"HEAD", 200, "1234", ""},
		{"GET", 204, "", ""},
		{"GET", 304, "", ""},
		{"GET", 200, "4", "last"},
	} {
		resp, body := readResponse(t, br, tt.method)
		if resp.StatusCode != tt.status || resp.Header.Get("Content-Length") != tt.cl || body != tt.body {
			t.Errorf("%s -> %d, Content-Length %q, body %q; want %d, %q, %q",
				tt.method, resp.StatusCode, resp.Header.Get("Content-Length"), body, tt.status, tt.cl, tt.body)
		}
	}
}

// Issue 2: a streamed response's first chunk reaches the client before the
// origin finishes.
func TestStreamFlushedPromptly(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.URL.Query().Get("type"))
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(testTimeout):
		}
		io.WriteString(w, "data: two\n\n")
	})
	p := startProxy(t, testConfig())
	for _, ct := range []string{"text/event-stream", "application/octet-stream"} {
		t.Run(ct, func(t *testing.T) {
			resp, err := p.client(t).Get(o.httpURL("/?type=" + ct))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			first := make(chan string, 1)
			go func() {
				b := make([]byte, len("data: one\n\n"))
				n, _ := io.ReadFull(resp.Body, b)
				first <- string(b[:n])
			}()
			select {
			case got := <-first:
				if got != "data: one\n\n" {
					t.Errorf("first chunk %q", got)
				}
			case <-time.After(testTimeout): // a hang guard: the origin waits for release
				t.Fatal("first chunk did not arrive while the origin was still sending")
			}
			release <- struct{}{}
			rest, _ := io.ReadAll(resp.Body)
			if string(rest) != "data: two\n\n" {
				t.Errorf("rest %q", rest)
			}
		})
	}
}

// Issue 2: compressed bodies pass untouched, and the proxy adds no
// Accept-Encoding of its own.
func TestCompressedUntouched(t *testing.T) {
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(bytes.Repeat([]byte("warmproxy "), 1000))
	zw.Close()
	gotAE := make(chan []string, 1)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		gotAE <- r.Header["Accept-Encoding"]
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(zipped.Bytes())
	})
	p := startProxy(t, testConfig())
	for _, ae := range []string{"", "gzip"} {
		t.Run("accept-encoding "+ae, func(t *testing.T) {
			var h http.Header
			if ae != "" {
				h = http.Header{"Accept-Encoding": {ae}}
			}
			resp, body := p.get(t, o.httpURL("/"), h)
			got := <-gotAE
			if ae == "" && got != nil || ae != "" && (len(got) != 1 || got[0] != ae) {
				t.Errorf("origin saw Accept-Encoding %q, want %q", got, ae)
			}
			if body != zipped.String() || resp.Header.Get("Content-Encoding") != "gzip" {
				t.Errorf("client got %d bytes, Content-Encoding %q; want the %d gzip bytes untouched", len(body), resp.Header.Get("Content-Encoding"), zipped.Len())
			}
		})
	}
}

// Issue 2: pipelined requests are answered in order on one connection.
func TestPipelined(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	p := startProxy(t, testConfig())
	c, br := rawConn(t, p.addr)
	paths := []string{"/a", "/b", "/c"}
	var raw strings.Builder
	for _, path := range paths {
		fmt.Fprintf(&raw, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", o.httpURL(path), o.hostPort())
	}
	io.WriteString(c, raw.String())
	for _, want := range paths {
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != want {
			t.Errorf("pipelined response = %d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
}

// Issue 2: HTTP/1.0 clients get a complete response, close-delimited when
// its length is unknown, and keep-alive when they ask and the length is
// known.
func TestHTTP10Client(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			io.WriteString(w, "part1,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			return
		}
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "fixed")
	})
	p := startProxy(t, testConfig())

	t.Run("close-delimited", func(t *testing.T) {
		c, br := rawConn(t, p.addr)
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\n\r\n", o.httpURL("/chunked"))
		resp, body := readResponse(t, br, "GET")
		if resp.ProtoMinor != 0 || body != "part1,part2" || len(resp.TransferEncoding) != 0 {
			t.Errorf("got HTTP/1.%d %q TE %q, want HTTP/1.0 part1,part2 with no chunking", resp.ProtoMinor, body, resp.TransferEncoding)
		}
		if via := resp.Header.Get("Via"); !strings.Contains(via, "warmproxy") {
			t.Errorf("Via %q", via)
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		c, br := rawConn(t, p.addr)
		for i := range 2 {
			fmt.Fprintf(c, "GET %s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", o.httpURL("/fixed"))
			resp, body := readResponse(t, br, "GET")
			if body != "fixed" {
				t.Fatalf("request %d on one HTTP/1.0 keep-alive connection: %d %q", i, resp.StatusCode, body)
			}
		}
	})
}

// Issue 2: a redirect is passed to the client, never followed, and no
// cookie is kept between requests.
func TestNoRedirectsNoCookies(t *testing.T) {
	var followed, cookies atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Cookie") != "" {
			cookies.Add(1)
		}
		switch r.URL.Path {
		case "/redirect":
			http.SetCookie(w, &http.Cookie{Name: "s", Value: "1", Path: "/"})
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/final":
			followed.Add(1)
		}
	})
	p := startProxy(t, testConfig())
	resp, _ := p.get(t, o.httpURL("/redirect"), nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/final" {
		t.Errorf("got %d Location %q, want 302 /final", resp.StatusCode, resp.Header.Get("Location"))
	}
	p.get(t, o.httpURL("/other"), nil)
	if followed.Load() != 0 || cookies.Load() != 0 {
		t.Errorf("origin saw %d followed redirects and %d requests with cookies, want 0 and 0", followed.Load(), cookies.Load())
	}
}
