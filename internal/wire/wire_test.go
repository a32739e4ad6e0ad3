package wire

import (
	"errors"
	"strings"
	"testing"
)

// Issue 14: unit tables for the wire package. Each rejected case names the
// rule it pins; the mutation list in the report maps deliberate bugs to
// these rows.

func TestHeadScanner(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want int
		err  error
	}{
		{"crlf", "GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", 0, 27, nil},
		{"bare lf", "GET / HTTP/1.1\nHost: a\n\nbody", 0, 24, nil},
		{"lf then crlf", "GET / HTTP/1.1\r\nHost: a\n\r\nX", 0, 26, nil},
		{"incomplete", "GET / HTTP/1.1\r\nHost: a\r\n", 0, 0, nil},
		{"incomplete cr", "GET / HTTP/1.1\r\nHost: a\r\n\r", 0, 0, nil},
		{"cr cr lf is no end", "GET / HTTP/1.1\r\n\r\r\nX", 0, 0, nil},
		{"too large", strings.Repeat("a", 100), 64, 0, ErrHeadTooLarge},
		{"end past max", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 20, 0, ErrHeadTooLarge},
		{"end at max", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, 27, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := HeadScanner{Max: tt.max}
			n, err := s.Scan([]byte(tt.in))
			if n != tt.want || !errors.Is(err, tt.err) {
				t.Errorf("Scan(%q) = %d, %v, want %d, %v", tt.in, n, err, tt.want, tt.err)
			}
			// Byte by byte, growing the buffer, gives the same answer.
			s.Reset()
			n, err = 0, nil
			for i := 1; i <= len(tt.in) && n == 0 && err == nil; i++ {
				n, err = s.Scan([]byte(tt.in[:i]))
			}
			if n != tt.want || !errors.Is(err, tt.err) {
				t.Errorf("Scan(%q) fed byte by byte = %d, %v, want %d, %v", tt.in, n, err, tt.want, tt.err)
			}
		})
	}
}

func TestRequestHeadParse(t *testing.T) {
	const host = "Host: a\r\n"
	tests := []struct {
		name    string
		in      string
		framing Framing
		cl      int64
		form    TargetForm
	}{
		{"origin get", "GET /x?y HTTP/1.1\r\n" + host + "\r\n", BodyNone, -1, OriginForm},
		{"absolute", "GET http://a.example:81/p HTTP/1.1\r\n" + host + "\r\n", BodyNone, -1, AbsoluteForm},
		{"connect no host", "CONNECT a.example:443 HTTP/1.1\r\n\r\n", BodyNone, -1, AuthorityForm},
		{"asterisk", "OPTIONS * HTTP/1.1\r\n" + host + "\r\n", BodyNone, -1, AsteriskForm},
		{"length", "POST / HTTP/1.1\r\n" + host + "Content-Length: 007\r\n\r\n", BodyLength, 7, OriginForm},
		{"same length twice", "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length:  5 \r\n\r\n", BodyLength, 5, OriginForm},
		{"chunked", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: Chunked \r\n\r\n", BodyChunked, -1, OriginForm},
		{"cl and te", "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", BodyChunked, -1, OriginForm},
		{"http/1.0 te ignored", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", BodyLength, 3, OriginForm},
		{"bare lf", "GET / HTTP/1.1\n" + "Host: a\n\n", BodyNone, -1, OriginForm},
		{"max length", "POST / HTTP/1.1\r\n" + host + "Content-Length: 9223372036854775807\r\n\r\n", BodyLength, 1<<63 - 1, OriginForm},
	}
	var h RequestHead
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := h.Parse([]byte(tt.in)); err != nil {
				t.Fatalf("Parse(%q) = %v, want nil", tt.in, err)
			}
			if h.Framing != tt.framing || h.ContentLength != tt.cl || h.Form != tt.form {
				t.Errorf("Parse(%q) = framing %v length %d form %d, want %v %d %d", tt.in, h.Framing, h.ContentLength, h.Form, tt.framing, tt.cl, tt.form)
			}
		})
	}
}

func TestRequestHeadFields(t *testing.T) {
	in := "GET http://A.example:8080/p HTTP/1.1\r\nhOST: a\r\nX-Mixed-Case:  v 1 \r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nExpect: 100-Continue\r\nTrailer: X-T\r\n\r\n"
	var h RequestHead
	if err := h.Parse([]byte(in)); err != nil {
		t.Fatal(err)
	}
	b := h.Bytes()
	var got []string
	for _, f := range h.Fields {
		got = append(got, string(f.Name.In(b))+"="+string(f.Value.In(b))+"|"+string(f.Line.In(b)))
	}
	want := []string{
		"hOST=a|hOST: a\r\n",
		"X-Mixed-Case=v 1|X-Mixed-Case:  v 1 \r\n",
		"Connection=Upgrade, close|Connection: Upgrade, close\r\n",
		"Upgrade=websocket|Upgrade: websocket\r\n",
		"Expect=100-Continue|Expect: 100-Continue\r\n",
		"Trailer=X-T|Trailer: X-T\r\n",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Parse(%q) fields =\n%s\nwant\n%s", in, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s, a := string(h.Scheme.In(b)), string(h.Authority.In(b)); s != "http" || a != "A.example:8080" {
		t.Errorf("Parse(%q) scheme, authority = %q, %q", in, s, a)
	}
	if !h.Close || !h.Upgrade || !h.ConnUpgrade || !h.ExpectContinue || h.ExpectOther || !h.Trailer || string(h.Host.In(b)) != "a" {
		t.Errorf("Parse(%q) flags = %+v", in, h.Transfer)
	}
	if v, ok := h.Get("x-mixed-case"); !ok || string(v) != "v 1" {
		t.Errorf("Get(x-mixed-case) = %q, %v", v, ok)
	}
}

func TestRequestHeadReject(t *testing.T) {
	const host = "Host: a\r\n"
	tests := []struct {
		name string
		in   string
		err  error // nil: any *SyntaxError
	}{
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", nil},
		{"space before colon, other field", "GET / HTTP/1.1\r\n" + host + "X-A : 1\r\n\r\n", nil},
		{"obs-fold", "GET / HTTP/1.1\r\n" + host + "X: a\r\n b\r\n\r\n", nil},
		{"leading whitespace", "GET / HTTP/1.1\r\n " + host + "\r\n", nil},
		{"no colon", "GET / HTTP/1.1\r\n" + host + "X\r\n\r\n", nil},
		{"empty name", "GET / HTTP/1.1\r\n" + host + ": x\r\n\r\n", nil},
		{"ctl in value", "GET / HTTP/1.1\r\n" + host + "X: a\x00b\r\n\r\n", nil},
		{"bare cr in value", "GET / HTTP/1.1\r\n" + host + "X: a\rb\r\n\r\n", nil},
		{"cr cr lf", "GET / HTTP/1.1\r\n" + host + "X: a\r\r\n\r\n", nil},
		{"plus length", "POST / HTTP/1.1\r\n" + host + "Content-Length: +5\r\n\r\n", nil},
		{"signed length", "POST / HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n", nil},
		{"empty length", "POST / HTTP/1.1\r\n" + host + "Content-Length:\r\n\r\n", nil},
		{"list length", "POST / HTTP/1.1\r\n" + host + "Content-Length: 5, 5\r\n\r\n", nil},
		{"differing lengths", "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", nil},
		{"length overflow", "POST / HTTP/1.1\r\n" + host + "Content-Length: 9223372036854775808\r\n\r\n", nil},
		{"te gzip chunked", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n", ErrTransferEncoding},
		{"te twice", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ErrTransferEncoding},
		{"te identity", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: identity\r\n\r\n", ErrTransferEncoding},
		{"trailer declares length", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTrailer: X, content-length\r\n\r\n", nil},
		{"no host", "GET / HTTP/1.1\r\n\r\n", nil},
		{"two hosts", "GET / HTTP/1.1\r\n" + host + host + "\r\n", nil},
		{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", nil},
		{"http/2", "GET / HTTP/2.0\r\n" + host + "\r\n", ErrVersion},
		{"http/1.1 lower", "GET / http/1.1\r\n" + host + "\r\n", nil},
		{"two spaces", "GET  / HTTP/1.1\r\n" + host + "\r\n", nil},
		{"trailing space", "GET / HTTP/1.1 \r\n" + host + "\r\n", nil},
		{"bad method", "G@T / HTTP/1.1\r\n" + host + "\r\n", nil},
		{"empty target", "GET  HTTP/1.1\r\n" + host + "\r\n", nil},
		{"ctl in target", "GET /\x01 HTTP/1.1\r\n" + host + "\r\n", nil},
		{"bad escape", "GET /%zz HTTP/1.1\r\n" + host + "\r\n", nil},
		{"short escape", "GET /%a HTTP/1.1\r\n" + host + "\r\n", nil},
		{"relative target", "GET a/b HTTP/1.1\r\n" + host + "\r\n", nil},
		{"bad port", "GET http://a:8x/ HTTP/1.1\r\n" + host + "\r\n", nil},
		{"bytes after end", "GET / HTTP/1.1\r\n" + host + "\r\nX", nil},
		{"no end", "GET / HTTP/1.1\r\n" + host, nil},
	}
	var h RequestHead
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.Parse([]byte(tt.in))
			var se *SyntaxError
			if tt.err != nil && !errors.Is(err, tt.err) || tt.err == nil && !errors.As(err, &se) {
				t.Errorf("Parse(%q) = %v, want %v", tt.in, err, tt.err)
			}
			if net := netReadRequest([]byte(tt.in)); net.err == nil && !requestDifference([]byte(tt.in), net.req) {
				t.Errorf("net/http accepts %q: the oracle disagrees with this row", tt.in)
			}
		})
	}
}

func TestResponseHeadParse(t *testing.T) {
	tests := []struct {
		name, in, method string
		framing          Framing
		cl               int64
		close            bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "GET", BodyLength, 2, false},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "HEAD", BodyNone, 2, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", BodyChunked, -1, false},
		{"close delimited", "HTTP/1.1 200 OK\r\n\r\n", "GET", BodyClose, -1, true},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", "GET", BodyNone, -1, false},
		{"304 chunked", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", BodyNone, -1, false},
		{"100", "HTTP/1.1 100 Continue\r\n\r\n", "POST", BodyNone, -1, false},
		{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "GET", BodyNone, -1, false},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET", BodyLength, 0, false},
		{"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", "GET", BodyLength, 1, false},
		{"1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET", BodyLength, 1, true},
	}
	var h ResponseHead
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := h.Parse([]byte(tt.in), []byte(tt.method)); err != nil {
				t.Fatalf("Parse(%q) = %v", tt.in, err)
			}
			if h.Framing != tt.framing || h.ContentLength != tt.cl || h.Close != tt.close {
				t.Errorf("Parse(%q, %s) = %v %d close=%v, want %v %d %v", tt.in, tt.method, h.Framing, h.ContentLength, h.Close, tt.framing, tt.cl, tt.close)
			}
		})
	}
}

func TestResponseHeadReject(t *testing.T) {
	tests := []struct{ name, in string }{
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"},
		{"signed code", "HTTP/1.1 +20 OK\r\n\r\n"},
		{"code below 100", "HTTP/1.1 099 OK\r\n\r\n"},
		{"four digits", "HTTP/1.1 2000 OK\r\n\r\n"},
		{"two digits", "HTTP/1.1 20 OK\r\n\r\n"},
		{"ctl in reason", "HTTP/1.1 200 O\x01K\r\n\r\n"},
		{"no code", "HTTP/1.1\r\n\r\n"},
		{"differing lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"},
		{"te identity", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n"},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"},
		{"http/2", "HTTP/2.0 200 OK\r\n\r\n"},
	}
	var h ResponseHead
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := h.Parse([]byte(tt.in), []byte("GET")); err == nil {
				t.Errorf("Parse(%q) = nil, want an error", tt.in)
			}
		})
	}
}

// Issue 14: the flags a proxy acts on to avoid smuggling: CL+TE (drop the
// Content-Length, close afterwards) and TE on HTTP/1.0 (never forward it).
func TestRequestHeadSmugglingFlags(t *testing.T) {
	tests := []struct {
		in               string
		clAndTE, ignored bool
	}{
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", true, false},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", false, false},
		{"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", false, true},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n", false, false},
	}
	var h RequestHead
	for _, tt := range tests {
		if err := h.Parse([]byte(tt.in)); err != nil {
			t.Fatalf("Parse(%q) = %v", tt.in, err)
		}
		if h.CLAndTE != tt.clAndTE || h.TEIgnored != tt.ignored {
			t.Errorf("Parse(%q) CLAndTE, TEIgnored = %v, %v, want %v, %v", tt.in, h.CLAndTE, h.TEIgnored, tt.clAndTE, tt.ignored)
		}
	}
}
