package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/headlimit"
)

// Helpers of the hostile-peer tests are prefixed "hostile".

// hostilePad is one header line of an endless head.
var hostilePad = "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"

// hostileHeadOrigin is a raw origin that reads a request head, writes
// first, then header lines until the proxy closes the connection or limit
// bytes are written. It sends the bytes it wrote on the returned channel.
func hostileHeadOrigin(t *testing.T, first string, limit int64) (string, <-chan int64) {
	t.Helper()
	written := make(chan int64, 1)
	addr := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		var n int64
		defer func() { written <- n }()
		bw := bufio.NewWriterSize(c, 64<<10)
		m, err := bw.WriteString(first)
		n += int64(m)
		for err == nil && n < limit {
			m, err = bw.WriteString(hostilePad)
			n += int64(m)
		}
		bw.Flush()
	})
	return addr, written
}

// Issue 12: an origin that answers an upgrade request with a head that
// never ends (after a 101, a final non-101 status, or interim 103s) gets
// a 502 http_response_header_size once the head passes
// headlimit.MaxResponseBytes, and the proxy stops reading: what the
// origin could write is the bound plus socket buffers, not its own limit.
func TestUpgradeEndlessResponseHead(t *testing.T) {
	const (
		originLimit = 256 << 20 // what the origin writes if nobody stops it
		// The bound plus what the loopback socket buffers can hold
		// (tcp_rmem max 32 MiB here), with room to spare.
		wantBelow = 64 << 20
	)
	early := "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
	tests := []struct{ name, first string }{
		{"after 101", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"},
		{"after 200", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"},
		{"after interim 103s", strings.Repeat(early, 3) + "HTTP/1.1 101 Switching Protocols\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, written := hostileHeadOrigin(t, tt.first, originLimit)
			rig := tunnelStartProxy(t, func(c *config.Config) {
				// Only the head bound can stop the read in time.
				c.ResponseHeaderTimeout = time.Minute
			})
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			c := tunnelDial(t, rig.addr)
			c.SetDeadline(time.Now().Add(time.Minute))
			io.WriteString(c, "GET http://"+host+"/ws HTTP/1.1\r\nHost: "+host+"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodGet})
			if err != nil {
				t.Fatalf("reading the proxy's answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ps := resp.Header.Get("Proxy-Status"); resp.StatusCode != http.StatusBadGateway || !strings.Contains(ps, "error=http_response_header_size") {
				t.Errorf("status %d Proxy-Status %q body %q, want 502 http_response_header_size", resp.StatusCode, ps, body)
			}
			e := rig.record(t)
			if e.Status != http.StatusBadGateway || e.Error != "http_response_header_size" {
				t.Errorf("access record status %d error %q, want 502 http_response_header_size", e.Status, e.Error)
			}
			var n int64
			select {
			case n = <-written:
			case <-time.After(time.Minute):
				t.Fatal("the origin was still writing a minute after the proxy answered")
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			t.Logf("origin wrote %d bytes before the proxy closed; %d bytes allocated meanwhile", n, after.TotalAlloc-before.TotalAlloc)
			if n >= wantBelow {
				t.Errorf("origin wrote %d bytes of head before the proxy stopped reading, want < %d (bound %d)", n, wantBelow, headlimit.MaxResponseBytes)
			}
		})
	}
}

// Issue 12: a parent proxy whose CONNECT reply head never ends gets the
// client a 502 http_response_header_size that names the parent.
func TestConnectParentEndlessReplyHead(t *testing.T) {
	parent, written := hostileHeadOrigin(t, "HTTP/1.1 200 Connection established\r\n", 256<<20)
	rig := tunnelStartProxy(t, func(c *config.Config) { c.ParentProxy = "http://" + parent })
	c, _, resp := tunnelConnect(t, rig.addr, "target.test:443", "")
	body, _ := io.ReadAll(resp.Body)
	c.Close()
	t.Logf("%d %s", resp.StatusCode, body)
	if ps := resp.Header.Get("Proxy-Status"); resp.StatusCode != http.StatusBadGateway || !strings.Contains(ps, "error=http_response_header_size") || !strings.Contains(string(body), parent) {
		t.Errorf("status %d Proxy-Status %q body %q, want 502 http_response_header_size naming the parent %s", resp.StatusCode, ps, body, parent)
	}
	if e := rig.record(t); e.Status != http.StatusBadGateway || e.Error != "http_response_header_size" {
		t.Errorf("access record status %d error %q, want 502 http_response_header_size", e.Status, e.Error)
	}
	if n := <-written; n >= 64<<20 {
		t.Errorf("parent wrote %d bytes of reply head, want < %d", n, 64<<20)
	}
}

// Issue 12: a status below 100 in answer to an upgrade request is a 502
// http_protocol_error at once, not an interim response to skip (reading
// the body behind it as the next head); the body is not read, and the
// client's connection serves the next request.
func TestUpgradeBadStatus(t *testing.T) {
	const originLimit = 256 << 20
	written := make(chan int64, 1)
	host := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		var n int64
		defer func() { written <- n }()
		m, err := io.WriteString(c, "HTTP/1.1 099 Odd\r\nContent-Length: 1000000000000\r\n\r\n")
		n += int64(m)
		pad := strings.Repeat("b", 64<<10)
		for err == nil && n < originLimit {
			m, err = io.WriteString(c, pad)
			n += int64(m)
		}
	})
	rig := tunnelStartProxy(t, nil)
	c := tunnelDial(t, rig.addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET http://"+host+"/ws HTTP/1.1\r\nHost: "+host+"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	resp, body := readResponse(t, br, http.MethodGet)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(resp.Header.Get("Proxy-Status"), "error=http_protocol_error") {
		t.Errorf("status %d Proxy-Status %q body %q, want 502 http_protocol_error", resp.StatusCode, resp.Header.Get("Proxy-Status"), body)
	}
	rig.record(t)
	// The handler has returned: the same connection answers again.
	io.WriteString(c, "GET /nothing HTTP/1.1\r\nHost: x.test\r\n\r\n")
	if resp, _ := readResponse(t, br, http.MethodGet); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("next request on the connection: %d, want the proxy's 400 for origin-form", resp.StatusCode)
	}
	rig.record(t)
	if n := <-written; n >= 64<<20 {
		t.Errorf("origin wrote %d bytes of body before the proxy let go, want < %d", n, 64<<20)
	}
}
