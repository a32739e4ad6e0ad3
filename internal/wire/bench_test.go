package wire

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"testing"
)

// Issue 14: heads and bodies as the benchmarks relay them. The request is
// what PHP's curl sends through the proxy; the response is a typical
// origin's.
var (
	benchRequest = []byte("GET http://origin.example:8080/api/v1/items?id=42&lang=en HTTP/1.1\r\n" +
		"Host: origin.example:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n" +
		"X-Real-Protocol: https\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n" +
		"Cookie: session=0123456789abcdef; theme=dark\r\n\r\n")
	benchResponse = []byte("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 07:00:00 GMT\r\n" +
		"Content-Type: application/json\r\nContent-Length: 1024\r\nConnection: keep-alive\r\n" +
		"Cache-Control: no-cache\r\nETag: \"abc123\"\r\nVary: Accept-Encoding\r\n\r\n")
)

// chunkedBody is n bytes of data in chunks of size, then an empty trailer.
func chunkedBody(n, size int) []byte {
	var b bytes.Buffer
	chunk := strings.Repeat("x", size)
	for n > 0 {
		c := min(n, size)
		b.WriteString(strconv.FormatInt(int64(c), 16) + "\r\n" + chunk[:c] + "\r\n")
		n -= c
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

func TestParseAllocs(t *testing.T) {
	var rq RequestHead
	var rs ResponseHead
	var hs HeadScanner
	var cs ChunkedScanner
	body := chunkedBody(64<<10, 8<<10)
	withTrailer := []byte("0\r\nX-Sum: 1\r\nSet-Cookie: a\r\n\r\n")
	out := make([]byte, 0, 256)
	cases := []struct {
		name string
		fn   func()
	}{
		{"RequestHead.Parse", func() { _ = rq.Parse(benchRequest) }},
		{"ResponseHead.Parse", func() { _ = rs.Parse(benchResponse, []byte("GET")) }},
		{"HeadScanner.Scan", func() { hs.Reset(); _, _ = hs.Scan(benchRequest) }},
		{"ChunkedScanner.Scan", func() { cs.Reset(); _, _ = scanAll(&cs, body) }},
		{"ChunkedScanner trailer", func() {
			cs.Reset()
			_, _ = scanAll(&cs, withTrailer)
			out = cs.AppendTrailer(out[:0], AllowedInTrailer)
		}},
	}
	for _, c := range cases {
		c.fn() // grow the reused structures
		if n := testing.AllocsPerRun(100, c.fn); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", c.name, n)
		}
	}
}

func BenchmarkRequestHead(b *testing.B) {
	b.Run("wire", func(b *testing.B) {
		var h RequestHead
		var s HeadScanner
		b.ReportAllocs()
		b.SetBytes(int64(len(benchRequest)))
		for b.Loop() {
			s.Reset()
			n, _ := s.Scan(benchRequest)
			if err := h.Parse(benchRequest[:n]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("net-http", func(b *testing.B) {
		rd := bytes.NewReader(benchRequest)
		br := bufio.NewReader(rd)
		b.ReportAllocs()
		b.SetBytes(int64(len(benchRequest)))
		for b.Loop() {
			rd.Reset(benchRequest)
			br.Reset(rd)
			if _, err := http.ReadRequest(br); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkResponseHead(b *testing.B) {
	b.Run("wire", func(b *testing.B) {
		var h ResponseHead
		b.ReportAllocs()
		b.SetBytes(int64(len(benchResponse)))
		for b.Loop() {
			if err := h.Parse(benchResponse, []byte("GET")); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("net-http", func(b *testing.B) {
		req, _ := http.NewRequest("GET", "http://a/", nil)
		rd := bytes.NewReader(benchResponse)
		br := bufio.NewReader(rd)
		b.ReportAllocs()
		b.SetBytes(int64(len(benchResponse)))
		for b.Loop() {
			rd.Reset(benchResponse)
			br.Reset(rd)
			if _, err := http.ReadResponse(br, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkChunked validates a 1 MiB body in 16 KiB chunks fed in 256
// KiB reads (the relay's read size), against decoding it with net/http's
// chunked reader into a 256 KiB buffer.
func BenchmarkChunked(b *testing.B) {
	body := chunkedBody(1<<20, 16<<10)
	b.Run("wire", func(b *testing.B) {
		var s ChunkedScanner
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			s.Reset()
			for p := body; len(p) > 0 && !s.Done(); {
				q := p[:min(len(p), 256<<10)]
				n, err := s.Scan(q)
				if err == nil && s.InTrailer() {
					var m int
					m, err = s.ScanTrailer(q[n:])
					n += m
				}
				if err != nil {
					b.Fatal(err)
				}
				p = p[n:]
			}
		}
	})
	b.Run("net-http", func(b *testing.B) {
		buf := make([]byte, 256<<10)
		rd := bytes.NewReader(body)
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			rd.Reset(body)
			if _, err := io.CopyBuffer(io.Discard, httputil.NewChunkedReader(rd), buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
