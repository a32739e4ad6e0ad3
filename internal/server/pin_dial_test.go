package server_test

// Issue 14: framing, replay and dial-time policy pinned through
// server.Run. Every packet stays on loopback: names resolve through a DNS
// stub on 127.0.0.1, 127.0.0.2 stands in for a denied address, and the
// metadata address is only ever named to a SOCKS5 parent on loopback that
// refuses it, never dialed.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// dropOrigin is an origin whose first connection answers its first
// request, then takes the next one (head and body read) and closes
// without an answer, as an origin timing the connection out just then
// does. Later connections answer everything. It records each request as
// "METHOD PATH BODYLEN" and counts the connections it accepted.
func dropOrigin(t *testing.T) (string, *pinLog, *atomic.Int32) {
	t.Helper()
	var (
		l     pinLog
		conns atomic.Int32
	)
	addr := testnet.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(15 * time.Second))
		first := conns.Add(1) == 1
		br := bufio.NewReader(c)
		for n := 0; ; n++ {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			l.add(fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, len(body)))
			if first && n == 1 {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return addr, &l, &conns
}

// pinReplay warms the pool with one GET, then sends method with the
// extra header fields and a body of size bytes on the pooled connection
// that dropOrigin drops. It returns the response, what the origin saw
// of that request, and its access log line.
func pinReplay(t *testing.T, cfg config.Config, method, extra string, size int) (pinResp, []string, []string) {
	t.Helper()
	origin, seen, _ := dropOrigin(t)
	p := start(t, cfg)
	c, br := pinConn(t, p.addr)
	fmt.Fprintf(c, "GET http://%s/warm HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin)
	if r := pinRead(t, br, "GET"); r.StatusCode != 200 {
		t.Fatalf("warm-up GET = %d %q", r.StatusCode, r.body)
	}
	body := bytes.Repeat([]byte("b"), size)
	fmt.Fprintf(c, "%s http://%s/r HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s", method, origin, origin, extra, size, body)
	r := pinRead(t, br, method)
	got := seen.take()
	if len(got) == 0 || got[0] != "GET /warm 0" {
		t.Fatalf("origin saw %v, want the warm-up GET first", got)
	}
	return r, got[1:], p.accessLine(t, 2, 1)
}

// pinCheckSends checks what pinReplay returned: the origin saw the
// request (method, /r, size bytes) sends times, and the access line counts
// sends-1 retries.
func pinCheckSends(t *testing.T, sent, line []string, method string, size, sends int) {
	t.Helper()
	want := fmt.Sprintf("%s /r %d", method, size)
	if len(sent) != sends || sent[0] != want {
		t.Errorf("origin saw %v, want %q %d times", sent, want, sends)
	}
	if wantRetries := strconv.Itoa(sends - 1); line[11] != wantRetries {
		t.Errorf("access line retries = %s, want %s: %q", line[11], wantRetries, line)
	}
}

// Issue 14: a request body up to -retry-body-bytes is held, so a
// request that may be sent again (see TestPinReplayRule) goes again, body
// and all, on a fresh connection when the origin dropped its pooled one;
// a body over the limit is not held and the request is not replayed
// (502). 0 holds nothing.
func TestPinRetryBodyBytes(t *testing.T) {
	const key = "Idempotency-Key: 8e03978e\r\n"
	for _, tt := range []struct {
		name, method, extra string
		limit               int64
		size                int
		status              int
		sends               int
	}{
		{"under the limit", "POST", key, 1024, 512, 200, 2},
		{"at the limit", "POST", key, 1024, 1024, 200, 2},
		{"over the limit", "POST", key, 1024, 1025, 502, 1},
		{"far over the limit", "POST", key, 1024, 256 << 10, 502, 1},
		{"limit 0", "POST", key, 0, 16, 502, 1},
		{"get with a body", "GET", "", 1024, 512, 200, 2},
		{"get with a body over the limit", "GET", "", 1024, 1025, 502, 1},
		{"default limit", "OPTIONS", "", config.Default().RetryBodyBytes, int(config.Default().RetryBodyBytes), 200, 2},
		{"over the default limit", "OPTIONS", "", config.Default().RetryBodyBytes, int(config.Default().RetryBodyBytes) + 1, 502, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.RetryBodyBytes = tt.limit
			r, sent, line := pinReplay(t, cfg, tt.method, tt.extra, tt.size)
			if r.StatusCode != tt.status {
				t.Errorf("%s of %d bytes with -retry-body-bytes %d = %d %q, want %d", tt.method, tt.size, tt.limit, r.StatusCode, r.body, tt.status)
			}
			pinCheckSends(t, sent, line, tt.method, tt.size, tt.sends)
		})
	}
}

// Issue 14: the origin took a request on a pooled connection and closed
// it without an answer, so the request may have reached it. Only a
// request that is safe to repeat is sent again, once, on a fresh
// connection: GET, OPTIONS, or one with an Idempotency-Key (net/http's
// rule, which the proxy keeps); POST, PUT, DELETE and PATCH never are,
// though their small bodies are held (502). (A request that never left
// the proxy, on a connection dead before it was written to, is replayed
// whatever its method: only a dialer that fails the write can make that
// happen, see internal/proxy TestStaleConnectionRetry.)
func TestPinReplayRule(t *testing.T) {
	for _, tt := range []struct {
		method, extra string
		size          int
		status        int
		sends         int
	}{
		{"GET", "", 0, 200, 2},
		{"OPTIONS", "", 0, 200, 2},
		{"POST", "Idempotency-Key: 1\r\n", 16, 200, 2},
		{"POST", "", 16, 502, 1},
		{"POST", "", 0, 502, 1},
		{"PUT", "", 16, 502, 1},
		{"DELETE", "", 0, 502, 1},
		{"PATCH", "", 16, 502, 1},
	} {
		name := fmt.Sprintf("%s %d", tt.method, tt.size)
		if tt.extra != "" {
			name += " " + strings.TrimSpace(tt.extra)
		}
		t.Run(name, func(t *testing.T) {
			r, sent, line := pinReplay(t, config.Default(), tt.method, tt.extra, tt.size)
			if r.StatusCode != tt.status {
				t.Errorf("%s the origin took and dropped = %d %q, want %d", tt.method, r.StatusCode, r.body, tt.status)
			}
			pinCheckSends(t, sent, line, tt.method, tt.size, tt.sends)
		})
	}
}

// Issue 14: a request with both Content-Length and Transfer-Encoding
// reaches the origin once, chunked, without Content-Length; the client
// gets "Connection: close" and the connection ends after the response, so
// the request pipelined behind it is never read (RFC 9112 section 6.1).
// Plain chunked requests keep the connection.
func TestPinContentLengthWithTransferEncoding(t *testing.T) {
	origin, seen := pinEchoOrigin(t, func(r *http.Request, body []byte) string {
		return fmt.Sprintf("te=%q cl=%q body=%s", r.TransferEncoding, r.Header.Values("Content-Length"), body)
	})
	p := start(t, config.Default())
	smuggled := "GET http://" + origin + "/smuggled HTTP/1.1\r\nHost: " + origin + "\r\n\r\n"
	const chunked = "5\r\nhello\r\n0\r\n\r\n"
	for _, tt := range []struct{ name, fields string }{
		{"cl then te", "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"},
		{"te then cl", "Transfer-Encoding: chunked\r\nContent-Length: 100\r\n"},
		{"lower case", "content-length:16\r\ntransfer-encoding: chunked\r\n"},
		{"cl zero", "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, br := pinConn(t, p.addr)
			fmt.Fprintf(c, "POST http://%s/ HTTP/1.1\r\nHost: %s\r\n%s\r\n%s%s", origin, origin, tt.fields, chunked, smuggled)
			r := pinRead(t, br, "POST")
			if r.StatusCode != 200 || r.body != `te=["chunked"] cl=[] body=hello` {
				t.Errorf("%d %q, want 200 and one chunked body hello without Content-Length", r.StatusCode, r.body)
			}
			if !r.Close {
				t.Errorf("response without Connection: close: %v", r.Header)
			}
			// A hang guard: the proxy closes at once.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Errorf("after the response: %q, %v; want the connection closed", rest, err)
			}
			if got := seen.take(); len(got) != 1 || got[0] != "POST /" {
				t.Errorf("origin saw %v, want one POST /", got)
			}
		})
	}
	t.Run("chunked alone keeps the connection", func(t *testing.T) {
		c, br := pinConn(t, p.addr)
		for i := range 2 {
			fmt.Fprintf(c, "POST http://%s/ HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n%s", origin, origin, chunked)
			if r := pinRead(t, br, "POST"); r.StatusCode != 200 || r.Close {
				t.Fatalf("request %d: %d close=%v, want 200 on a kept connection", i, r.StatusCode, r.Close)
			}
		}
		seen.take()
	})
}

// pinTwinOrigins starts an origin on 127.0.0.1 and one on 127.0.0.2 on
// the same port, each counting the connections it accepts.
func pinTwinOrigins(t *testing.T) (port string, allowed, denied *atomic.Int32) {
	t.Helper()
	allowed, denied = new(atomic.Int32), new(atomic.Int32)
	serve := func(n *atomic.Int32) func(net.Conn) {
		return func(c net.Conn) {
			n.Add(1)
			c.SetDeadline(time.Now().Add(15 * time.Second))
			br := bufio.NewReader(c)
			for {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
	}
	for range 10 {
		ln1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ = net.SplitHostPort(ln1.Addr().String())
		ln2, err := net.Listen("tcp", "127.0.0.2:"+port)
		if err != nil {
			ln1.Close() // that port is taken on 127.0.0.2: another one
			continue
		}
		testnet.ServeListener(t, ln1, serve(allowed))
		testnet.ServeListener(t, ln2, serve(denied))
		return port, allowed, denied
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2 in 10 tries")
	return "", nil, nil
}

// Issue 14: a name that resolves to an allowed and a denied address is
// denied whatever the order of the answers (403 naming the rule): the
// proxy never picks the allowed one, and neither address sees a
// connection. Forwarded requests, HTTPS via the protocol header and
// CONNECT alike.
func TestPinMultiIPDeny(t *testing.T) {
	port, allowed, denied := pinTwinOrigins(t)
	dns := testnet.DNS(t, map[string][]string{
		"mixed.test":    {"127.0.0.1", "127.0.0.2"},
		"reversed.test": {"127.0.0.2", "127.0.0.1"},
		"good.test":     {"127.0.0.1"},
	})
	cfg := config.Default()
	cfg.DNSServer, cfg.Deny, cfg.ConnectPorts = dns, "127.0.0.2", "*"
	p := start(t, cfg)
	for _, name := range []string{"mixed.test", "reversed.test"} {
		target := name + ":" + port
		for _, tt := range []struct{ kind, raw string }{
			{"get", "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\n\r\n"},
			{"https via protocol header", "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\nX-Real-Protocol: https\r\n\r\n"},
			{"connect", "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n"},
		} {
			t.Run(name+" "+tt.kind, func(t *testing.T) {
				r := pinRaw(t, p.addr, tt.raw)
				if r.StatusCode != 403 || !strings.Contains(r.body, "deny 127.0.0.2") ||
					!strings.Contains(r.Header.Get("Proxy-Status"), "error=destination_ip_prohibited") {
					t.Errorf("%d %q Proxy-Status %q, want 403 destination_ip_prohibited naming deny 127.0.0.2",
						r.StatusCode, r.body, r.Header.Get("Proxy-Status"))
				}
			})
		}
	}
	if a, d := allowed.Load(), denied.Load(); a != 0 || d != 0 {
		t.Errorf("origins on 127.0.0.1 and 127.0.0.2 saw %d and %d connections, want 0 and 0", a, d)
	}
	// The same port by a name with the allowed address only: reachable.
	if r := pinRaw(t, p.addr, "GET http://good.test:"+port+"/ HTTP/1.1\r\nHost: good.test\r\n\r\n"); r.StatusCode != 200 || r.body != "ok" {
		t.Errorf("good.test: %d %q, want 200 ok", r.StatusCode, r.body)
	}
}

// pinSOCKS is a SOCKS5 parent on loopback that records the target of each
// CONNECT, relays those on 127.0.0.0/8 and refuses every other one (reply
// 2, not allowed by ruleset) without dialing it.
type pinSOCKS struct {
	addr    string
	mu      sync.Mutex
	targets []string
}

func startPinSOCKS(t *testing.T) *pinSOCKS {
	t.Helper()
	s := &pinSOCKS{}
	s.addr = testnet.Serve(t, s.serve)
	return s
}

func (s *pinSOCKS) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(c)
	hello := make([]byte, 2)
	if _, err := io.ReadFull(br, hello); err != nil || hello[0] != 5 {
		return
	}
	if _, err := io.ReadFull(br, make([]byte, hello[1])); err != nil {
		return
	}
	c.Write([]byte{5, 0}) // no authentication
	head := make([]byte, 4)
	if _, err := io.ReadFull(br, head); err != nil || head[1] != 1 {
		return
	}
	var ip []byte
	switch head[3] {
	case 1:
		ip = make([]byte, 4)
	case 4:
		ip = make([]byte, 16)
	default: // a name: this parent is for socks5://, which sends IPs
		return
	}
	port := make([]byte, 2)
	if _, err := io.ReadFull(br, ip); err != nil {
		return
	}
	if _, err := io.ReadFull(br, port); err != nil {
		return
	}
	addr, _ := netip.AddrFromSlice(ip)
	target := netip.AddrPortFrom(addr.Unmap(), binary.BigEndian.Uint16(port))
	s.mu.Lock()
	s.targets = append(s.targets, target.String())
	s.mu.Unlock()
	if !target.Addr().IsLoopback() {
		c.Write([]byte{5, 2, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	up, err := net.DialTimeout("tcp", target.String(), 5*time.Second)
	if err != nil {
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer up.Close()
	c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	c.SetDeadline(time.Time{})
	go io.Copy(up, br)
	io.Copy(c, up)
}

func (s *pinSOCKS) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targets
	s.targets = nil
	return t
}

// Issue 14: the cloud metadata address is denied without being dialed
// (403 naming the built-in rule), by name or as a literal, for forwarded
// requests, HTTPS via the protocol header, CONNECT and upgrades. Every
// origin is reached through a socks5:// parent on loopback, to which the
// proxy sends resolved IPs: a proxy that failed to deny would ask that
// parent for 169.254.169.254, which records and refuses it, so the test
// sees the failure without any packet leaving loopback.
func TestPinMetadataDenyNoDial(t *testing.T) {
	parent := startPinSOCKS(t)
	origin, seen := pinEchoOrigin(t, func(r *http.Request, _ []byte) string { return "ok" })
	_, oport, _ := net.SplitHostPort(origin)
	dns := testnet.DNS(t, map[string][]string{
		"meta.test":  {"169.254.169.254"},
		"mixed.test": {"127.0.0.1", "169.254.169.254"},
		"good.test":  {"127.0.0.1"},
	})
	cfg := config.Default()
	cfg.DNSServer, cfg.ParentProxy = dns, "socks5://"+parent.addr
	p := start(t, cfg)

	// The control: an allowed name goes through the parent.
	if r := pinRaw(t, p.addr, "GET http://good.test:"+oport+"/ HTTP/1.1\r\nHost: good.test\r\n\r\n"); r.StatusCode != 200 || r.body != "ok" {
		t.Fatalf("good.test through the socks5 parent: %d %q, want 200 ok", r.StatusCode, r.body)
	}
	if got := parent.take(); len(got) != 1 || got[0] != "127.0.0.1:"+oport {
		t.Fatalf("parent was asked for %v, want [127.0.0.1:%s]", got, oport)
	}
	seen.take()

	for _, tt := range []struct{ name, raw string }{
		{"name", "GET http://meta.test/latest/meta-data/ HTTP/1.1\r\nHost: meta.test\r\n\r\n"},
		{"literal", "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"},
		{"ecs literal", "GET http://169.254.170.2/v2/credentials HTTP/1.1\r\nHost: 169.254.170.2\r\n\r\n"},
		{"name with an allowed address too", "GET http://mixed.test:" + oport + "/ HTTP/1.1\r\nHost: mixed.test\r\n\r\n"},
		{"https via protocol header", "GET http://meta.test/ HTTP/1.1\r\nHost: meta.test\r\nX-Real-Protocol: https\r\n\r\n"},
		{"connect", "CONNECT meta.test:443 HTTP/1.1\r\nHost: meta.test:443\r\n\r\n"},
		{"upgrade", "GET http://meta.test/ws HTTP/1.1\r\nHost: meta.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := pinRaw(t, p.addr, tt.raw)
			if r.StatusCode != 403 || !strings.Contains(r.body, "metadata 169.254.0.0/16") ||
				!strings.Contains(r.Header.Get("Proxy-Status"), "error=destination_ip_prohibited") {
				t.Errorf("%d %q Proxy-Status %q, want 403 destination_ip_prohibited naming metadata 169.254.0.0/16",
					r.StatusCode, r.body, r.Header.Get("Proxy-Status"))
			}
			if got := parent.take(); len(got) != 0 {
				t.Errorf("the parent was asked to connect to %v, want nothing", got)
			}
		})
	}
	if got := seen.take(); len(got) != 0 {
		t.Errorf("origin on 127.0.0.1 saw %v, want nothing", got)
	}
}
