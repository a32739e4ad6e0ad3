package e2e_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// Helpers of the hostile-peer tests are prefixed "hostile".

// hostilePeer is a raw loopback server that reads one request head per
// connection, then writes head and pad repeated until the proxy closes
// the connection or limit bytes are written. It sends the bytes it wrote
// on the returned channel.
func hostilePeer(t *testing.T, head, pad string, limit int64) (string, <-chan int64) {
	t.Helper()
	written := make(chan int64, 4)
	addr := testnet.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		var n int64
		defer func() { written <- n }()
		bw := bufio.NewWriterSize(c, 64<<10)
		m, err := bw.WriteString(head)
		n += int64(m)
		for err == nil && n < limit {
			m, err = bw.WriteString(pad)
			n += int64(m)
		}
		bw.Flush()
	})
	return addr, written
}

// Issue 12: an origin answering an upgrade with 101 and header lines
// without end, and a parent proxy answering CONNECT with 200 and header
// lines without end or with a refusal whose body has no end, get the
// client a 502 and cost the proxy a bounded amount of memory: what the
// peer gets to write is the 1 MiB head bound (4 KiB of drained body) plus
// socket buffers, not the peer's own limit.
func TestHostilePeersBoundedMemory(t *testing.T) {
	const (
		peerLimit = 256 << 20
		wantBelow = 64 << 20 // the bound plus loopback socket buffers, with room
	)
	line := "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"
	tests := []struct {
		name, head, pad string
		parent          bool   // the peer is the parent proxy; else the origin
		ptype           string // the Proxy-Status error type
	}{
		{"upgrade answered 101 then endless head", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n", line, false, "http_response_header_size"},
		{"parent answers 200 then endless head", "HTTP/1.1 200 Connection established\r\n", line, true, "http_response_header_size"},
		{"parent refuses with endless body", "HTTP/1.1 403 Forbidden\r\nContent-Length: 100000000000\r\n\r\n", strings.Repeat("b", 64<<10), true, "http_request_denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer, written := hostilePeer(t, tt.head, tt.pad, peerLimit)
			var p *proxyProc
			var req string
			if tt.parent {
				p = startProxy(t, "-parent-proxy", "http://"+peer)
				req = "CONNECT target.test:443 HTTP/1.1\r\nHost: target.test:443\r\n\r\n"
			} else {
				p = startProxy(t)
				req = "GET http://" + peer + "/ws HTTP/1.1\r\nHost: " + peer + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
			}
			before := vmHWM(t, p.cmd.Process.Pid)
			c, err := net.DialTimeout("tcp", p.Addr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			io.WriteString(c, req)
			method := http.MethodGet
			if tt.parent {
				method = http.MethodConnect
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
			if err != nil {
				t.Fatalf("reading the proxy's answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ps := resp.Header.Get("Proxy-Status"); resp.StatusCode != http.StatusBadGateway || !strings.Contains(ps, "error="+tt.ptype) {
				t.Errorf("status %d Proxy-Status %q body %q, want 502 %s", resp.StatusCode, ps, body, tt.ptype)
			}
			var n int64
			select {
			case n = <-written:
			case <-time.After(2 * time.Minute):
				t.Fatal("the peer was still writing two minutes after the proxy answered")
			}
			after := vmHWM(t, p.cmd.Process.Pid)
			t.Logf("peer wrote %d bytes; proxy VmHWM %.1f MiB -> %.1f MiB", n, float64(before)/(1<<20), float64(after)/(1<<20))
			if n >= wantBelow {
				t.Errorf("peer wrote %d bytes before the proxy stopped reading, want < %d", n, wantBelow)
			}
			if grew := after - before; grew >= wantBelow {
				t.Errorf("proxy VmHWM grew by %d bytes, want < %d", grew, wantBelow)
			}
		})
	}
}
