package proxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/testnet"
	"github.com/warmproxy/warmproxy/internal/tunnel"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// Helpers of the tunnel tests are prefixed "tunnel": other test files of
// this package are written in parallel.

// tunnelLeakCheck fails the test if it leaves goroutines or file
// descriptors behind. Call it first, so that its cleanup runs last.
func tunnelLeakCheck(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	testnet.CheckNoFDLeak(t)
	// Registered after the descriptor check, so it runs before it.
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// tunnelRig is a proxy Handler on a real listener, built like the server
// builds it, with its access records and tracked conns exposed.
type tunnelRig struct {
	addr    string
	records chan accesslog.Entry
	mu      sync.Mutex
	tracked []net.Conn
	// closeTracked makes the test's cleanup close the tracked conns
	// (set by the interception rig; the tunnel tests close their own).
	closeTracked bool
}

func (r *tunnelRig) Track(c net.Conn) func() {
	r.mu.Lock()
	r.tracked = append(r.tracked, c)
	r.mu.Unlock()
	return func() {}
}

// record waits for the next access record.
func (r *tunnelRig) record(t *testing.T) accesslog.Entry {
	t.Helper()
	select {
	case e := <-r.records:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no access record within 5s")
		return accesslog.Entry{}
	}
}

// noMoreRecords fails if another record shows up soon.
func (r *tunnelRig) noMoreRecords(t *testing.T) {
	t.Helper()
	select {
	case e := <-r.records:
		t.Errorf("unexpected extra access record %+v", e)
	case <-time.After(100 * time.Millisecond):
	}
}

// tunnelStartProxy starts the handler on 127.0.0.1:0. edit, if set,
// adjusts the config.
func tunnelStartProxy(t *testing.T, edit func(*config.Config)) *tunnelRig {
	t.Helper()
	return tunnelServe(t, tunnelConfig(t, edit), nil, 16)
}

// tunnelConfig is the default config on 127.0.0.1:0 with every CONNECT
// port allowed, adjusted by edit if set, and validated.
func tunnelConfig(t *testing.T, edit func(*config.Config)) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.ConnectPorts = "*"
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tunnelServe builds the handler for cfg as the server builds it, with
// icpt (nil: no interception) and room for records access records, and
// serves it on cfg.Listen until the test ends.
func tunnelServe(t *testing.T, cfg config.Config, icpt proxy.Interceptor, records int) *tunnelRig {
	t.Helper()
	up, err := upstream.New(config.MustParse(cfg))
	if err != nil {
		t.Fatal(err)
	}
	rig := &tunnelRig{records: make(chan accesslog.Entry, records)}
	h := proxy.New(proxy.Options{
		Transport: up.Transport(),
		Dial:      proxy.DialFunc(up.Dial),
		DialTLS:   up.DialTLS,
		Config:    config.MustParse(cfg),
		Record:    func(e *accesslog.Entry) { rig.records <- *e },
		Tunnels:   rig,
		Intercept: icpt,
	})
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: cfg.ClientHeaderTimeout}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		srv.Close()
		if rig.closeTracked {
			rig.mu.Lock()
			for _, c := range rig.tracked {
				c.Close()
			}
			rig.mu.Unlock()
		}
		<-done
		up.Transport().CloseIdleConnections()
	})
	rig.addr = ln.Addr().String()
	return rig
}

// tunnelOrigin is a raw TCP origin; serve runs once per accepted conn.
func tunnelOrigin(t *testing.T, serve func(c *net.TCPConn)) string {
	t.Helper()
	return rawOrigin(t, func(c net.Conn, _ *bufio.Reader) { serve(c.(*net.TCPConn)) })
}

// tunnelDial opens a raw client connection to the proxy.
func tunnelDial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// tunnelConnect sends "CONNECT target" plus extra bytes in one write and
// reads the response head. The reader holds whatever followed the head.
func tunnelConnect(t *testing.T, proxyAddr, target string, extra string) (*net.TCPConn, *bufio.Reader, *http.Response) {
	t.Helper()
	c := tunnelDial(t, proxyAddr)
	host := target
	if strings.HasPrefix(host, "/") {
		host = "example.invalid" // a path is no Host; net/http checks Host
	}
	head := "CONNECT " + target + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
	if _, err := io.WriteString(c, head+extra); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: reading the response: %v", target, err)
	}
	return c, br, resp
}

func tunnelReadAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read until EOF: %v (got %q)", err, b)
	}
	return string(b)
}

// tunnelCheckTCP fails unless every conn the handler tracked is, or
// unwraps to, a *net.TCPConn: the relay then splices.
func (r *tunnelRig) checkTCP(t *testing.T, want int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.tracked) != want {
		t.Errorf("tracked %d conns, want %d (client and origin per tunnel)", len(r.tracked), want)
	}
	for _, c := range r.tracked {
		if _, ok := c.(*net.TCPConn); !ok {
			t.Errorf("tunnel conn is a %T, want *net.TCPConn so that the relay splices", c)
		}
	}
}

// Issue 3: CONNECT dials the target, answers "200 Connection
// established" with no framing fields, and relays both ways with
// half-close; bytes pipelined behind the CONNECT head are not lost.
func TestConnectTunnel(t *testing.T) {
	tests := []struct {
		name string
		// extra is sent in the same write as the CONNECT head.
		extra string
		// origin serves the tunnel's far end.
		origin func(t *testing.T, c *net.TCPConn)
		// client drives the tunnel after the 200.
		client  func(t *testing.T, c *net.TCPConn, br *bufio.Reader)
		up, dn  int64
		wantEnd string
	}{
		{
			name: "client half-closes first",
			origin: func(t *testing.T, c *net.TCPConn) {
				if got := tunnelReadAll(t, c); got != "ping" {
					t.Errorf("origin read %q, want %q", got, "ping")
				}
				io.WriteString(c, "pong after FIN")
				c.CloseWrite()
			},
			client: func(t *testing.T, c *net.TCPConn, br *bufio.Reader) {
				io.WriteString(c, "ping")
				c.CloseWrite()
				if got := tunnelReadAll(t, br); got != "pong after FIN" {
					t.Errorf("client read %q, want %q", got, "pong after FIN")
				}
			},
			up: 4, dn: 14, wantEnd: tunnel.EndEOF,
		},
		{
			name: "origin half-closes first",
			origin: func(t *testing.T, c *net.TCPConn) {
				io.WriteString(c, "banner")
				c.CloseWrite()
				if got := tunnelReadAll(t, c); got != "late request" {
					t.Errorf("origin read %q, want %q", got, "late request")
				}
			},
			client: func(t *testing.T, c *net.TCPConn, br *bufio.Reader) {
				if got := tunnelReadAll(t, br); got != "banner" {
					t.Errorf("client read %q, want %q", got, "banner")
				}
				io.WriteString(c, "late request")
				c.CloseWrite()
			},
			up: 12, dn: 6, wantEnd: tunnel.EndEOF,
		},
		{
			name:  "bytes pipelined behind the head",
			extra: "\x16\x03\x01 pretend ClientHello",
			origin: func(t *testing.T, c *net.TCPConn) {
				if got := tunnelReadAll(t, c); got != "\x16\x03\x01 pretend ClientHello, then more" {
					t.Errorf("origin read %q, want the pipelined bytes first", got)
				}
				c.CloseWrite()
			},
			client: func(t *testing.T, c *net.TCPConn, br *bufio.Reader) {
				io.WriteString(c, ", then more")
				c.CloseWrite()
				if got := tunnelReadAll(t, br); got != "" {
					t.Errorf("client read %q, want nothing", got)
				}
			},
			up: 34, dn: 0, wantEnd: tunnel.EndEOF,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tunnelLeakCheck(t)
			rig := tunnelStartProxy(t, nil)
			originDone := make(chan struct{})
			target := tunnelOrigin(t, func(c *net.TCPConn) {
				defer close(originDone)
				tt.origin(t, c)
			})
			c, br, resp := tunnelConnect(t, rig.addr, target, tt.extra)
			if resp.StatusCode != http.StatusOK || resp.Status != "200 Connection established" {
				t.Fatalf("CONNECT status = %q, want %q", resp.Status, "200 Connection established")
			}
			for _, k := range []string{"Content-Length", "Transfer-Encoding"} {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("200 to CONNECT carries %s: %q; RFC 9110 forbids it", k, v)
				}
			}
			if len(resp.TransferEncoding) > 0 {
				t.Errorf("200 to CONNECT carries Transfer-Encoding %q; RFC 9110 forbids it", resp.TransferEncoding)
			}
			tt.client(t, c, br)
			<-originDone

			e := rig.record(t)
			if e.Kind != accesslog.KindConnect || e.URL != target || e.Status != 200 ||
				e.BytesIn != tt.up || e.BytesOut != tt.dn || e.End != tt.wantEnd || e.Duration <= 0 {
				t.Errorf("access record = kind %q url %q status %d in %d out %d end %q duration %v; want connect %s 200 in %d out %d end %s",
					e.Kind, e.URL, e.Status, e.BytesIn, e.BytesOut, e.End, e.Duration, target, tt.up, tt.dn, tt.wantEnd)
			}
			rig.noMoreRecords(t)
			rig.checkTCP(t, 2)
		})
	}
}

// Issue 3: -connect-ports (443 by default, a list, or *), refused
// targets, and malformed CONNECT targets.
func TestConnectRefusals(t *testing.T) {
	tunnelLeakCheck(t)
	origin := tunnelOrigin(t, func(c *net.TCPConn) { io.Copy(c, c) })
	_, originPort, _ := net.SplitHostPort(origin)
	closed := testnet.ClosedAddr(t)

	tests := []struct {
		name        string
		ports       string
		target      string
		status      int
		proxyStatus string // substring of Proxy-Status
		body        string // substring of the body
	}{
		{"default ports deny", "443", origin, 403, "error=http_request_denied", "-connect-ports"},
		{"list deny", "443,8443", origin, 403, "error=http_request_denied", "-connect-ports (now 443,8443)"},
		{"list allows", "443," + originPort, origin, 200, "", ""},
		{"star allows", "*", origin, 200, "", ""},
		{"closed port", "*", closed, 502, "error=connection_refused", "refused"},
		{"path, not authority", "*", "/x", 400, "error=http_request_error", "want host:port"},
		{"no port", "*", "example.invalid", 400, "error=http_request_error", "want host:port"},
		{"empty host", "*", ":" + originPort, 400, "error=http_request_error", "want host:port"},
		{"port 0", "*", "127.0.0.1:0", 400, "error=http_request_error", "want host:port"},
		{"port too big", "*", "127.0.0.1:70000", 400, "error=http_request_error", "want host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := tunnelStartProxy(t, func(c *config.Config) { c.ConnectPorts = tt.ports })
			c, br, resp := tunnelConnect(t, rig.addr, tt.target, "")
			if resp.StatusCode != tt.status {
				t.Fatalf("CONNECT %s with -connect-ports %s: status %d, want %d", tt.target, tt.ports, resp.StatusCode, tt.status)
			}
			if tt.status == 200 {
				io.WriteString(c, "echo")
				c.CloseWrite()
				if got := tunnelReadAll(t, br); got != "echo" {
					t.Errorf("tunnel echoed %q, want %q", got, "echo")
				}
				rig.record(t)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			if ps := resp.Header.Get("Proxy-Status"); !strings.Contains(ps, tt.proxyStatus) {
				t.Errorf("Proxy-Status = %q, want it to contain %q", ps, tt.proxyStatus)
			}
			if !strings.Contains(string(body), tt.body) {
				t.Errorf("body = %q, want it to contain %q", body, tt.body)
			}
			if e := rig.record(t); e.Status != tt.status || e.Kind != accesslog.KindConnect || e.End != "" {
				t.Errorf("access record status %d kind %q end %q, want %d connect and no tunnel end", e.Status, e.Kind, e.End, tt.status)
			}
		})
	}
}

// Issue 3: a reset on either side mid-tunnel ends the tunnel: the other
// side is closed, the record says "reset", nothing leaks.
func TestConnectReset(t *testing.T) {
	for _, side := range []string{"client", "origin"} {
		t.Run(side, func(t *testing.T) {
			tunnelLeakCheck(t)
			rig := tunnelStartProxy(t, nil)
			originConn := make(chan *net.TCPConn, 1)
			originDone := make(chan struct{})
			target := tunnelOrigin(t, func(c *net.TCPConn) {
				defer close(originDone)
				originConn <- c
				io.Copy(c, c) // echo until the tunnel goes
			})
			c, br, resp := tunnelConnect(t, rig.addr, target, "")
			if resp.StatusCode != 200 {
				t.Fatalf("CONNECT status %d", resp.StatusCode)
			}
			io.WriteString(c, "mid-stream")
			buf := make([]byte, len("mid-stream"))
			if _, err := io.ReadFull(br, buf); err != nil {
				t.Fatal(err)
			}
			tunnelReset(t, side, c, <-originConn, br, originDone)
			e := rig.record(t)
			if e.End != tunnel.EndReset || e.BytesIn != 10 || e.BytesOut != 10 {
				t.Errorf("access record end %q in %d out %d (detail %q), want reset 10 10", e.End, e.BytesIn, e.BytesOut, e.Detail)
			}
		})
	}
}

// tunnelReset resets one side ("client" or "origin") of a relay between
// c, the client's conn read through br, and oc, the origin's, and checks
// that the other side is closed: originDone closes, or the client's read
// fails.
func tunnelReset(t *testing.T, side string, c, oc *net.TCPConn, br *bufio.Reader, originDone <-chan struct{}) {
	t.Helper()
	if side == "client" {
		c.SetLinger(0)
		c.Close()
		select {
		case <-originDone:
		case <-time.After(5 * time.Second):
			t.Fatal("origin conn still open 5s after the client reset")
		}
		return
	}
	oc.SetLinger(0)
	oc.Close()
	if n, err := br.Read(make([]byte, 16)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read %d bytes, %v; want its conn closed after the origin reset", n, err)
	}
}

// Issue 3: -tunnel-idle-timeout closes a silent tunnel and says so.
func TestConnectIdleTimeout(t *testing.T) {
	tunnelLeakCheck(t)
	const idle = 300 * time.Millisecond
	rig := tunnelStartProxy(t, func(c *config.Config) { c.TunnelIdleTimeout = idle })
	target := tunnelOrigin(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	start := time.Now()
	_, br, resp := tunnelConnect(t, rig.addr, target, "")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT status %d", resp.StatusCode)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("client read: %v, want EOF once the tunnel idles out", err)
	}
	// Only a lower bound: a busy machine may close it late, and the
	// client conn's deadline is the hang guard.
	if took := time.Since(start); took < idle {
		t.Errorf("tunnel closed after %v, before the idle timeout %v", took, idle)
	}
	if e := rig.record(t); e.End != tunnel.EndIdle {
		t.Errorf("access record end %q, want %q", e.End, tunnel.EndIdle)
	}
}
