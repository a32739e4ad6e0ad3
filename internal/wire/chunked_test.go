package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Issue 14: the chunked scanner's table. Every row is run whole, byte by
// byte, and in every two-way split, which must all agree.

func TestChunkedScanner(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int  // bytes of the message
		ok   bool // false: a *SyntaxError
		data string
	}{
		{"empty body", "0\r\n\r\n", 5, true, ""},
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", 15, true, "hello"},
		{"pipelined", "5\r\nhello\r\n0\r\n\r\nGET /", 15, true, "hello"},
		{"extensions", "5;a=b;c\r\nhello\r\n0;x=\"y\"\r\n\r\n", 27, true, "hello"},
		{"whitespace after size", "5 \t\r\nhello\r\n0\r\n\r\n", 17, true, "hello"},
		{"upper hex", "A\r\n0123456789\r\n0\r\n\r\n", 20, true, "0123456789"},
		{"sixteen digits", "0000000000000005\r\nhello\r\n0\r\n\r\n", 30, true, "hello"},
		{"trailer", "0\r\nX-T: 1\r\n\r\n", 13, true, ""},
		{"space before ext", "5 ;a\r\nhello\r\n0\r\n\r\n", 0, false, ""},
		{"plus sign", "+5\r\nhello\r\n0\r\n\r\n", 0, false, ""},
		{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", 0, false, ""},
		{"empty size", "\r\nhello\r\n0\r\n\r\n", 0, false, ""},
		{"seventeen digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", 0, false, ""},
		{"bare lf after size", "5\nhello\r\n0\r\n\r\n", 0, false, ""},
		{"bare cr after size", "5\rhello\r\n0\r\n\r\n", 0, false, ""},
		{"no crlf after data", "5\r\nhello0\r\n\r\n", 0, false, ""},
		{"lf after data", "5\r\nhello\n0\r\n\r\n", 0, false, ""},
		{"cr without lf after data", "5\r\nhello\rx0\r\n\r\n", 0, false, ""},
		{"data too long", "5\r\nhelloX\r\n0\r\n\r\n", 0, false, ""},
		{"ctl in extension", "5;\x01\r\nhello\r\n0\r\n\r\n", 0, false, ""},
		{"trailer bare lf", "0\r\nX: 1\n\r\n", 0, false, ""},
		{"trailer obs-fold", "0\r\nX: 1\r\n 2\r\n\r\n", 0, false, ""},
		{"trailer space before colon", "0\r\nX : 1\r\n\r\n", 0, false, ""},
		{"trailer no colon", "0\r\nX\r\n\r\n", 0, false, ""},
		{"too much framing", strings.Repeat("1;"+strings.Repeat("e", 200)+"\r\nx\r\n", 100) + "0\r\n\r\n", 0, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s ChunkedScanner
			n, err := scanAll(&s, []byte(tt.in))
			checkChunked(t, tt.in, "whole", n, err, s.Done(), tt.n, tt.ok)
			s.Reset()
			data, n, err := scanBytewise(&s, []byte(tt.in))
			checkChunked(t, tt.in, "byte by byte", n, err, s.Done(), tt.n, tt.ok)
			if tt.ok && string(data) != tt.data {
				t.Errorf("Scan(%q) data = %q, want %q", tt.in, data, tt.data)
			}
			s.Reset()
			_, err = scanAll(&s, []byte(tt.in))
			net := netReadChunked([]byte(tt.in))
			if tt.ok && (net.err != nil || net.consumed != tt.n) || !tt.ok && net.err == nil && !chunkedDifference([]byte(tt.in), &s, err) {
				t.Errorf("net/http on %q: %d bytes, %v: the oracle disagrees with this row", tt.in, net.consumed, net.err)
			}
			step := max(1, len(tt.in)/200)
			for i := 0; i < len(tt.in); i += step {
				s.Reset()
				n, err := scanSplit(&s, []byte(tt.in), i)
				checkChunked(t, tt.in, fmt.Sprintf("split at %d", i), n, err, s.Done(), tt.n, tt.ok)
			}
		})
	}
}

func checkChunked(t *testing.T, in, how string, n int, err error, done bool, wantN int, ok bool) {
	t.Helper()
	var se *SyntaxError
	switch {
	case ok && (err != nil || !done || n != wantN):
		t.Errorf("Scan(%q) %s = %d, %v, done=%v, want %d, nil, done", in, how, n, err, done, wantN)
	case !ok && !errors.As(err, &se):
		t.Errorf("Scan(%q) %s = %d, %v, want a *SyntaxError", in, how, n, err)
	}
}

// scanSplit feeds b in two reads, b[:i] and b[i:], as a relay would.
func scanSplit(s *ChunkedScanner, b []byte, i int) (int, error) {
	total := 0
	for _, p := range [][]byte{b[:i], b[i:]} {
		for len(p) > 0 && !s.Done() {
			var k int
			var err error
			if s.InTrailer() {
				k, err = s.ScanTrailer(p)
			} else {
				k, err = s.Scan(p)
			}
			total += k
			p = p[k:]
			if err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

func TestChunkedLimits(t *testing.T) {
	t.Run("size line", func(t *testing.T) {
		// 4096 bytes with the CRLF is the most net/http's buffer holds.
		ok := "1;" + strings.Repeat("e", 4096-4) + "\r\nx\r\n0\r\n\r\n"
		if _, err := scanAll(new(ChunkedScanner), []byte(ok)); err != nil {
			t.Errorf("Scan(4096-byte size line) = %v, want nil", err)
		}
		if net := netReadChunked([]byte(ok)); net.err != nil {
			t.Errorf("net/http rejects a 4096-byte size line: %v", net.err)
		}
		long := "1;" + strings.Repeat("e", 4096-3) + "\r\nx\r\n0\r\n\r\n"
		if _, err := scanAll(new(ChunkedScanner), []byte(long)); err == nil {
			t.Error("Scan(4097-byte size line) = nil, want an error")
		}
		if net := netReadChunked([]byte(long)); net.err == nil {
			t.Error("net/http accepts a 4097-byte size line")
		}
	})
	t.Run("trailer", func(t *testing.T) {
		s := ChunkedScanner{MaxTrailer: 16}
		if _, err := scanAll(&s, []byte("0\r\nX-Long: 0123456789\r\n\r\n")); !errors.Is(err, ErrHeadTooLarge) {
			t.Errorf("ScanTrailer(over MaxTrailer) = %v, want ErrHeadTooLarge", err)
		}
	})
	t.Run("skip", func(t *testing.T) {
		var s ChunkedScanner
		n, err := s.Scan([]byte("10\r\nabc"))
		if n != 7 || err != nil || s.Remaining() != 13 {
			t.Fatalf("Scan = %d, %v, Remaining %d, want 7, nil, 13", n, err, s.Remaining())
		}
		s.Skip(13) // relayed straight through, e.g. by splice
		if n, err := scanAll(&s, []byte("\r\n0\r\n\r\n")); n != 7 || err != nil || !s.Done() {
			t.Errorf("Scan after Skip = %d, %v, done=%v", n, err, s.Done())
		}
	})
}

func TestAppendTrailer(t *testing.T) {
	in := "0\r\nX-Good: 1\r\nSet-Cookie: a=b\r\ncontent-length: 5\r\nIf-Match: x\r\nETag: \"e\"\r\nServer-Timing: db;dur=5\r\n\r\n"
	var s ChunkedScanner
	if _, err := scanAll(&s, []byte(in)); err != nil || !s.Done() {
		t.Fatalf("Scan(%q) = %v", in, err)
	}
	want := "X-Good: 1\r\nETag: \"e\"\r\nServer-Timing: db;dur=5\r\n\r\n"
	if got := string(s.AppendTrailer(nil, AllowedInTrailer)); got != want {
		t.Errorf("AppendTrailer(AllowedInTrailer) = %q, want %q", got, want)
	}
	if got := string(s.AppendTrailer(nil, nil)); got != in[3:] {
		t.Errorf("AppendTrailer(nil) = %q, want %q", got, in[3:])
	}
}

func TestAllowedInTrailer(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"Content-Length", false}, {"transfer-encoding", false}, {"TRAILER", false},
		{"Host", false}, {"Authorization", false}, {"Proxy-Authorization", false},
		{"Set-Cookie", false}, {"Cookie", false}, {"Cache-Control", false},
		{"Content-Type", false}, {"If-None-Match", false}, {"if-x", false},
		{"Connection", false}, {"Te", false}, {"Keep-Alive", false},
		{"ETag", true}, {"Server-Timing", true}, {"Authentication-Info", true},
		{"Digest", true}, {"X-Checksum", true}, {"Iff", true}, {"", true},
		{"Proxy-Authorization-Extra", true},
	}
	for _, tt := range tests {
		if got := AllowedInTrailer([]byte(tt.name)); got != tt.want {
			t.Errorf("AllowedInTrailer(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// Issue 14: the scanner relays a real origin's chunked response, read from
// a loopback socket in small reads, byte-exact but for the trailer fields
// it drops; net/http reads the relayed bytes back to the same body.
func TestLoopbackChunkedRelay(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", 4096)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum, Set-Cookie")
		for i := 0; i < len(body); i += 1000 {
			io.WriteString(w, body[i:min(i+1000, len(body))])
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Sum", "ok")
		w.Header().Set("Set-Cookie", "smuggled=1")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard only
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")

	relayed, rest := relayResponse(t, c)
	if rest != 0 {
		t.Errorf("relay left %d bytes past the message", rest)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(relayed))), nil)
	if err != nil {
		t.Fatalf("net/http cannot read the relayed response: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || string(got) != body {
		t.Fatalf("relayed body: %d bytes, %v; want %d bytes", len(got), err, len(body))
	}
	if resp.Trailer.Get("X-Sum") != "ok" || resp.Trailer.Get("Set-Cookie") != "" {
		t.Errorf("relayed trailer = %q, want X-Sum kept and Set-Cookie dropped", resp.Trailer)
	}
}

// relayResponse reads one response from c with 777-byte reads, as the
// future connection server will, and returns the bytes it would forward
// and how many bytes it read past the message.
func relayResponse(t *testing.T, c net.Conn) ([]byte, int) {
	t.Helper()
	var (
		buf, out []byte
		hs       HeadScanner
		h        ResponseHead
		s        ChunkedScanner
		rd       = make([]byte, 777)
	)
	for {
		k, err := c.Read(rd)
		buf = append(buf, rd[:k]...)
		if n, serr := hs.Scan(buf); serr != nil {
			t.Fatal(serr)
		} else if n > 0 {
			if err := h.Parse(buf[:n], []byte("GET")); err != nil || h.Framing != BodyChunked {
				t.Fatalf("Parse(%q) = %v, framing %v", buf[:n], err, h.Framing)
			}
			out = append(out, buf[:n]...)
			buf = buf[n:]
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	p := buf
	for {
		n, err := s.Scan(p)
		out = append(out, p[:n]...)
		p = p[n:]
		if err != nil {
			t.Fatal(err)
		}
		if s.InTrailer() {
			m, err := s.ScanTrailer(p)
			if err != nil {
				t.Fatal(err)
			}
			p = p[m:]
		}
		if s.Done() {
			return s.AppendTrailer(out, AllowedInTrailer), len(p)
		}
		k, err := c.Read(rd)
		if err != nil {
			t.Fatal(err)
		}
		p = rd[:k]
	}
}
