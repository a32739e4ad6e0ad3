package parentproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/headlimit"
)

// pair returns both ends of a loopback TCP connection: the client's and
// the fake parent's.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []net.Conn{client, server} {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// Issue 8: the CONNECT request carries the credentials, and bytes the
// target sent along with the parent's 200 are not lost.
func TestConnectKeepsEarlyBytes(t *testing.T) {
	c, s := pair(t)
	p := New(&url.URL{Scheme: HTTP, User: url.UserPassword("u", "p w"), Host: s.LocalAddr().String()})
	got := make(chan *http.Request, 1)
	go func() {
		req, err := http.ReadRequest(bufio.NewReader(s))
		if err != nil {
			close(got)
			return
		}
		got <- req
		io.WriteString(s, "HTTP/1.1 200 Connection established\r\n\r\n220 smtp.test ready\r\n")
	}()
	tc, err := p.Handshake(c, "smtp.test:25", "smtp.test:25")
	if err != nil {
		t.Fatalf("Handshake: %v", err)
	}
	req := <-got
	if req == nil || req.Method != http.MethodConnect || req.Host != "smtp.test:25" {
		t.Fatalf("parent got %+v, want CONNECT smtp.test:25", req)
	}
	if u, pw, ok := (&http.Request{Header: http.Header{"Authorization": req.Header["Proxy-Authorization"]}}).BasicAuth(); !ok || u != "u" || pw != "p w" {
		t.Errorf("Proxy-Authorization %q, want Basic u:p w", req.Header.Get("Proxy-Authorization"))
	}
	line, err := bufio.NewReader(tc).ReadString('\n')
	if err != nil || line != "220 smtp.test ready\r\n" {
		t.Errorf("first bytes through the tunnel %q, %v; want the banner", line, err)
	}
	if _, ok := tc.(interface{ CloseWrite() error }); !ok {
		t.Error("the tunnel conn lost CloseWrite")
	}
}

// Issue 8: answers that break the protocol are typed, not strings.
func TestBadReplies(t *testing.T) {
	tests := []struct {
		name, scheme, reply string
		want                func(*Error) bool
	}{
		{"http garbage", HTTP, "SSH-2.0-OpenSSH\r\n\r\n", func(e *Error) bool { return e.BadReply }},
		{"http 407", HTTP, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", func(e *Error) bool { return e.AuthFailed && e.HTTPStatus == 407 }},
		{"http closed", HTTP, "", func(e *Error) bool { return errors.Is(e, io.EOF) || errors.Is(e, io.ErrUnexpectedEOF) }},
		{"socks4 server", SOCKS5H, "\x00\x5a", func(e *Error) bool { return e.BadReply }},
		{"socks reply 1", SOCKS5H, "\x05\x00\x05\x01\x00\x01\x00\x00\x00\x00\x00\x00", func(e *Error) bool {
			return e.SOCKSReply == 1 && strings.Contains(e.Error(), "general SOCKS server failure")
		}},
		{"socks wants auth", SOCKS5H, "\x05\x02", func(e *Error) bool { return e.AuthFailed }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := pair(t)
			p := New(&url.URL{Scheme: tt.scheme, Host: s.LocalAddr().String()})
			go func() {
				buf := make([]byte, 512)
				s.Read(buf)
				io.WriteString(s, tt.reply)
				if tt.scheme != HTTP {
					s.Read(buf)
				}
				s.(*net.TCPConn).CloseWrite()
			}()
			_, err := p.Handshake(c, "target.test:443", "target.test:443")
			var pe *Error
			if !errors.As(err, &pe) || !tt.want(pe) {
				t.Errorf("Handshake = %#v, want a matching *Error", err)
			}
			if pe != nil && (pe.Target != "target.test:443" || pe.Parent == "") {
				t.Errorf("error %q: want the parent and target named", pe)
			}
		})
	}
}

// hostileParent serves one CONNECT on s: it reads the request head, then
// writes head and pad repeated until the client closes the connection or
// limit bytes are written. It sends the bytes it wrote on the channel.
func hostileParent(s net.Conn, head, pad string, limit int64) <-chan int64 {
	written := make(chan int64, 1)
	go func() {
		var n int64
		defer func() { written <- n }()
		if _, err := http.ReadRequest(bufio.NewReader(s)); err != nil {
			return
		}
		bw := bufio.NewWriterSize(s, 64<<10)
		m, err := bw.WriteString(head)
		n += int64(m)
		for err == nil && n < limit {
			m, err = bw.WriteString(pad)
			n += int64(m)
		}
		bw.Flush()
	}()
	return written
}

// Issue 12: a parent that answers CONNECT with a reply head that never
// ends, or refuses it with a body that never ends, cannot make the proxy
// read more than headlimit.MaxResponseBytes of head or maxDrain of body:
// what it manages to write is that plus the socket buffers, not its own
// limit.
func TestConnectHostileParent(t *testing.T) {
	const (
		parentLimit = 256 << 20 // what the parent writes if nobody stops it
		// The bounds plus what loopback socket buffers can hold (tcp_rmem
		// max 32 MiB here), with room to spare.
		wantBelow = 64 << 20
	)
	line := "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"
	body := strings.Repeat("b", 64<<10)
	tests := []struct {
		name, head, pad string
		want            func(*Error) bool
	}{
		{"endless head after 200", "HTTP/1.1 200 Connection established\r\n", line, func(e *Error) bool {
			var tl *headlimit.TooLargeError
			return errors.As(e, &tl) && tl.Limit == headlimit.MaxResponseBytes
		}},
		{"endless head after 407", "HTTP/1.1 407 Proxy Authentication Required\r\n", line, func(e *Error) bool {
			var tl *headlimit.TooLargeError
			return errors.As(e, &tl)
		}},
		{"403 with endless body", "HTTP/1.1 403 Forbidden\r\nContent-Length: 100000000000\r\n\r\n", body, func(e *Error) bool {
			return e.HTTPStatus == 403
		}},
		{"502 with body until close", "HTTP/1.1 502 Bad Gateway\r\n\r\n", body, func(e *Error) bool {
			return e.HTTPStatus == 502
		}},
		{"chunked 407", "HTTP/1.1 407 Proxy Authentication Required\r\nTransfer-Encoding: chunked\r\n\r\n", "10000\r\n" + body + "\r\n", func(e *Error) bool {
			return e.AuthFailed
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := pair(t)
			p := New(&url.URL{Scheme: HTTP, Host: s.LocalAddr().String()})
			written := hostileParent(s, tt.head, tt.pad, parentLimit)
			_, err := p.Handshake(c, "target.test:443", "target.test:443")
			c.Close() // as the caller does on an error
			var pe *Error
			if !errors.As(err, &pe) || !tt.want(pe) {
				t.Errorf("Handshake = %v, want a matching *Error", err)
			}
			n := <-written // bounded by pair's deadline
			t.Logf("parent wrote %d bytes before the connection closed", n)
			if n >= wantBelow {
				t.Errorf("parent wrote %d bytes before Handshake let go, want < %d", n, wantBelow)
			}
		})
	}
}
