package proxy

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Issue 2: the connection scan flags a head carrying both Content-Length
// and Transfer-Encoding, however the bytes are split across reads.
func TestFramingScan(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"cl and te", "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"te then cl, odd case, bare LF", "POST / HTTP/1.1\nTRANSFER-ENCODING: chunked\ncontent-LENGTH:3\n\n", true},
		{"second request", "GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", true},
		{"cl only", "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", false},
		{"te only", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
		{"in separate heads", "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"not at line start", "GET / HTTP/1.1\r\nX-A: Content-Length: 1\r\nX-B: Transfer-Encoding: chunked\r\n\r\n", false},
		{"longer name", "GET / HTTP/1.1\r\nContent-Lengthy: 1\r\nTransfer-Encodings: chunked\r\n\r\n", false},
		{"long lines", "GET /" + strings.Repeat("x", 5000) + " HTTP/1.1\r\nX-Long: " + strings.Repeat("y", 5000) + "\r\nContent-Length: 1\r\n\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{1, 2, 3, 7, 17, 18, 19, 4096} {
				c := &framingConn{}
				for rest := tt.in; rest != ""; {
					n := min(size, len(rest))
					c.scan([]byte(rest[:n]))
					rest = rest[n:]
				}
				if got := c.ambiguous.Load(); got != tt.want {
					t.Errorf("scan in reads of %d bytes: flagged = %v, want %v", size, got, tt.want)
				}
			}
		})
	}
}

// The wrapper keeps the connection reachable for splice and half-close.
func TestFramingConnUnwrap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- nil
			return
		}
		done <- WatchFraming(c)
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c := <-done
	if c == nil {
		t.Fatal("accept failed")
	}
	defer c.Close()
	fc, ok := c.(*framingConn)
	if !ok {
		t.Fatalf("WatchFraming returned %T, want *framingConn", c)
	}
	if _, ok := fc.NetConn().(*net.TCPConn); !ok {
		t.Errorf("NetConn() = %T, want *net.TCPConn", fc.NetConn())
	}
	head := "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	io.WriteString(client, head)
	fc.SetReadDeadline(time.Now().Add(5 * time.Second))
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 128)
	total := 0
	for total < len(head) {
		n, err := fc.Read(buf[total:])
		total += n
		if err != nil {
			break
		}
	}
	if !fc.ambiguous.Load() {
		t.Errorf("Read did not flag %q", buf[:total])
	}
	if err := fc.CloseWrite(); err != nil {
		t.Errorf("CloseWrite: %v", err)
	}
	if n, err := client.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("client read after CloseWrite = %d, %v; want 0, EOF", n, err)
	}
}

func BenchmarkFramingScan(b *testing.B) {
	head := []byte("POST http://a.test/upload HTTP/1.1\r\nHost: a.test\r\nUser-Agent: curl/8\r\nAccept: */*\r\nContent-Length: 32768\r\n\r\n")
	body := make([]byte, 32<<10)
	for i := range body {
		body[i] = byte(i * 7)
	}
	b.SetBytes(int64(len(head) + len(body)))
	c := &framingConn{}
	for b.Loop() {
		c.scan(head)
		c.scan(body)
	}
}
