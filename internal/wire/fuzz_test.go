package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

// Issue 14: the differential fuzzers. Each feeds the same bytes to wire
// and to net/http and requires the same decision; oracle_test.go has the
// documented differences. Seeds are here and in testdata/fuzz.

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://a.example:8080/x?y HTTP/1.1\r\nHost: a.example\r\nUser-Agent: t\r\n\r\n",
	"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
	"CONNECT a.example:443 HTTP/1.1\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a?%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://[::1]:80/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET a.example HTTP/1.1\r\nHost: a\r\n\r\n",
	"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
}

func FuzzRequestHead(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	var h RequestHead
	f.Fuzz(func(t *testing.T, b []byte) {
		var sc HeadScanner
		sc.Max = len(b) + 1
		n, err := sc.Scan(b)
		if err != nil {
			t.Fatalf("Scan(%q) = %v with Max above the input length", b, err)
		}
		if n == 0 {
			if net := netReadRequest(b); net.err == nil {
				t.Fatalf("Scan(%q) found no head end; net/http read %v", b, net.req)
			}
			return
		}
		head := b[:n]
		werr := h.Parse(head)
		net := netReadRequest(head)
		if verdict(t, werr, net.err,
			func() bool { return requestDifference(head, net.req) },
			func() string { return fmt.Sprintf("Parse(%q)", head) }) {
			compareRequest(t, head, &h, net.req)
		}
	})
}

// verdict compares wire's decision on an input (werr) with net/http's
// (nerr). Both rejecting it agree; net/http alone rejecting it fails the
// test, and so does wire alone rejecting it unless differs says that is
// a documented difference. It reports whether both accepted it, so the
// caller goes on to compare what they parsed. call names the wire call
// in a failure.
func verdict(t *testing.T, werr, nerr error, differs func() bool, call func() string) bool {
	t.Helper()
	switch {
	case werr == nil && nerr != nil:
		t.Fatalf("%s accepted; net/http: %v", call(), nerr)
	case werr != nil && nerr == nil && !differs():
		t.Fatalf("%s = %v; net/http accepted it", call(), werr)
	}
	return werr == nil && nerr == nil
}

func compareRequest(t *testing.T, b []byte, h *RequestHead, req *http.Request) {
	t.Helper()
	if got := string(h.Method.In(b)); got != req.Method {
		t.Errorf("Parse(%q): method %q, net/http %q", b, got, req.Method)
	}
	if got := string(h.Target.In(b)); got != req.RequestURI {
		t.Errorf("Parse(%q): target %q, net/http %q", b, got, req.RequestURI)
	}
	if h.Minor != req.ProtoMinor {
		t.Errorf("Parse(%q): minor %d, net/http %d", b, h.Minor, req.ProtoMinor)
	}
	chunked := len(req.TransferEncoding) > 0
	if (h.Framing == BodyChunked) != chunked {
		t.Errorf("Parse(%q): framing %v, net/http TE %q", b, h.Framing, req.TransferEncoding)
	}
	none := h.Framing == BodyNone || h.Framing == BodyLength && h.ContentLength == 0
	if !chunked && (h.ContentLength != req.ContentLength && !(h.ContentLength == -1 && req.ContentLength == 0) ||
		none != (req.ContentLength == 0)) {
		t.Errorf("Parse(%q): framing %v length %d, net/http length %d", b, h.Framing, h.ContentLength, req.ContentLength)
	}
	if h.Close != req.Close {
		t.Errorf("Parse(%q): close %v, net/http %v", b, h.Close, req.Close)
	}
	if hosts := req.Header["Host"]; h.HasHost != (len(hosts) == 1) || h.HasHost && string(h.Host.In(b)) != hosts[0] {
		t.Errorf("Parse(%q): host %q, net/http %q", b, h.Host.In(b), hosts)
	}
	if want := headerOf(b, h.Fields); !headersEqual(want, req.Header) {
		t.Errorf("Parse(%q): fields %q, net/http %q", b, want, req.Header)
	}
}

var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 200 OK\r\n\r\n",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"HTTP/1.1 200\r\n\r\n",
	"HTTP/1.1  200 OK\r\n\r\n",
	"HTTP/1.1 +20 OK\r\n\r\n",
	"HTTP/1.1 099 OK\r\n\r\n",
	"HTTP/1.1 2000 OK\r\n\r\n",
	"HTTP/1.1 200 O\x01K\r\n\r\n",
	"HTTP/2.0 200 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 1\n\n",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
}

func FuzzResponseHead(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	var h ResponseHead
	f.Fuzz(func(t *testing.T, b []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		var sc HeadScanner
		sc.Max = len(b) + 1
		n, err := sc.Scan(b)
		if err != nil || n == 0 {
			return // the request fuzzer covers the scanner
		}
		b = b[:n]
		werr := h.Parse(b, []byte(method))
		resp, nerr := netReadResponse(b, method)
		if verdict(t, werr, nerr,
			func() bool { return responseDifference(b, resp) },
			func() string { return fmt.Sprintf("Parse(%q, %s)", b, method) }) {
			compareResponse(t, b, method, &h, resp)
		}
	})
}

func netReadResponse(b []byte, method string) (*http.Response, error) {
	req, _ := http.NewRequest(method, "http://a/", nil)
	return http.ReadResponse(bufioReader(b), req)
}

func compareResponse(t *testing.T, b []byte, method string, h *ResponseHead, resp *http.Response) {
	t.Helper()
	if h.Status != resp.StatusCode || h.Minor != resp.ProtoMinor {
		t.Errorf("Parse(%q): status %d minor %d, net/http %d %d", b, h.Status, h.Minor, resp.StatusCode, resp.ProtoMinor)
	}
	var want Framing
	switch {
	case resp.Body == http.NoBody:
		want = BodyNone
	case len(resp.TransferEncoding) > 0:
		want = BodyChunked
	case resp.ContentLength >= 0:
		want = BodyLength
	default:
		want = BodyClose
	}
	got := h.Framing
	if got == BodyLength && h.ContentLength == 0 {
		got = BodyNone // net/http gives NoBody for Content-Length: 0
	}
	if got != want || want == BodyLength && h.ContentLength != resp.ContentLength {
		t.Errorf("Parse(%q, %s): framing %v length %d, net/http %v length %d", b, method, h.Framing, h.ContentLength, want, resp.ContentLength)
	}
	if h.Close != resp.Close {
		t.Errorf("Parse(%q, %s): close %v, net/http %v", b, method, h.Close, resp.Close)
	}
	var drop []string
	if resp.Close {
		drop = []string{"Connection"} // ReadResponse deletes it then
	}
	if got := headerOf(b, h.Fields); !headersEqual(got, resp.Header, drop...) {
		t.Errorf("Parse(%q): fields %q, net/http %q", b, got, resp.Header)
	}
}

var chunkedSeeds = []string{
	"0\r\n\r\n",
	"5\r\nhello\r\n0\r\n\r\n",
	"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
	"5;ext=1\r\nhello\r\n0;x\r\n\r\n",
	"5 \r\nhello\r\n0\t\r\n\r\n",
	"5 ;x\r\nhello\r\n0\r\n\r\n",
	"5;\x01\r\nhello\r\n0\r\n\r\n",
	"+5\r\nhello\r\n0\r\n\r\n",
	"0x5\r\nhello\r\n0\r\n\r\n",
	"5\nhello\r\n0\r\n\r\n",
	"5\r\nhello0\r\n\r\n",
	"5\r\nhello\n0\r\n\r\n",
	"5\r\nhello\rx0\r\n\r\n",
	"5\r\nhelloXX0\r\n\r\n",
	"5\r\r\nhello\r\n0\r\n\r\n",
	"00000000000000005\r\nhello\r\n0\r\n\r\n",
	"0000000000000005\r\nhello\r\n0\r\n\r\n",
	"ffffffffffffffff\r\nx",
	"\r\n",
	"0\r\nX-T: 1\r\nETag: \"a\"\r\n\r\n",
	"0\r\nX-T: 1\nY: 2\r\n\r\n",
	"0\r\nX-T: 1\r\n continued\r\n\r\n",
	"0\r\nX-T : 1\r\n\r\n",
	"0\r\nContent-Length: 5\r\nSet-Cookie: a=b\r\nIf-Match: x\r\n\r\n",
	"0\r\n\n",
	"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n",
}

func FuzzChunked(f *testing.F) {
	for _, s := range chunkedSeeds {
		f.Add([]byte(s))
	}
	var s, one ChunkedScanner
	f.Fuzz(func(t *testing.T, b []byte) {
		s.Reset()
		n, werr := scanAll(&s, b)
		one.Reset()
		data, n1, err1 := scanBytewise(&one, b)
		if n1 != n || (err1 == nil) != (werr == nil) || one.Done() != s.Done() {
			t.Fatalf("Scan(%q) whole: %d %v done=%v; byte by byte: %d %v done=%v", b, n, werr, s.Done(), n1, err1, one.Done())
		}
		net := netReadChunked(b)
		if werr == nil && !s.Done() {
			if net.err == nil {
				t.Fatalf("Scan(%q) wants more bytes; net/http ended the body after %d", b, net.consumed)
			}
			return
		}
		if !verdict(t, werr, net.err,
			func() bool { return chunkedDifference(b, &s, werr) },
			func() string { return fmt.Sprintf("Scan(%q) of %d bytes", b, n) }) {
			return
		}
		if n != net.consumed {
			t.Errorf("Scan(%q) took %d bytes; net/http %d", b, n, net.consumed)
		}
		if !bytes.Equal(data, net.data) {
			t.Errorf("Scan(%q) data %q; net/http %q", b, data, net.data)
		}
		if d, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(b))); err != nil || !bytes.Equal(d, data) {
			t.Errorf("Scan(%q) data %q; httputil.NewChunkedReader %q, %v", b, data, d, err)
		}
		raw, fields := s.Trailer()
		if got := headerOf(raw, fields); len(got)+len(net.trailer) > 0 && !headersEqual(got, net.trailer) {
			t.Errorf("Scan(%q) trailer %q; net/http %q", b, got, net.trailer)
		}
	})
}

// scanAll runs b through s in one Scan and one ScanTrailer, as a relay
// with one large read does, and returns how many bytes the message took.
func scanAll(s *ChunkedScanner, b []byte) (int, error) {
	n, err := s.Scan(b)
	if err != nil || !s.InTrailer() {
		return n, err
	}
	m, err := s.ScanTrailer(b[n:])
	return n + m, err
}

// scanBytewise feeds b one byte at a time and collects the chunk data:
// a byte fed while Remaining > 0 is data.
func scanBytewise(s *ChunkedScanner, b []byte) (data []byte, n int, err error) {
	for n < len(b) && !s.Done() {
		isData := s.Remaining() > 0
		var k int
		if s.InTrailer() {
			k, err = s.ScanTrailer(b[n : n+1])
		} else {
			k, err = s.Scan(b[n : n+1])
		}
		if isData && k == 1 {
			data = append(data, b[n])
		}
		n += k
		if err != nil {
			return data, n, err
		}
		if k == 0 && !s.InTrailer() {
			break
		}
	}
	return data, n, nil
}

// The oracle's own pieces must keep working on the seeds: a seed net/http
// rejects in a way the oracle did not expect would hide a broken oracle.
func TestOracleSeedsParse(t *testing.T) {
	for _, s := range requestSeeds {
		if strings.HasPrefix(s, "GET / HTTP/1.1\r\nHost: a\r\n\r\n") {
			if net := netReadRequest([]byte(s)); net.err != nil {
				t.Fatalf("oracle rejects %q: %v", s, net.err)
			}
		}
	}
	if _, err := scanAll(new(ChunkedScanner), []byte("0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(ErrHeadTooLarge, ErrHeadTooLarge) {
		t.Fatal("unreachable")
	}
}
