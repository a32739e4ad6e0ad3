package e2e_test

// Issue 6: reliability and security of the built binary: who may use the
// proxy, where requests may go, limits, faults survived and bad input
// refused. Every packet stays on loopback: denied destinations are
// stand-ins on 127.0.0.2 or names a DNS stub on 127.0.0.1 maps to them;
// metadata and private ranges are proven by the acl and upstream unit
// tests, never by dialing them.

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// secBuild returns the warmproxy binary TestMain built.
func secBuild(t *testing.T) string {
	t.Helper()
	return proxyBinary
}

type secProxy struct {
	addr           string
	cmd            *exec.Cmd
	stdout, stderr *testnet.Buffer
	exited         chan struct{}
	exitErr        error
}

var secListeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// secStart runs the binary with args (and -listen 127.0.0.1:0 unless
// args set -listen), waits for its ready line and stops it at cleanup.
// With a non-empty prefix the binary runs under it (e.g. sh -c 'ulimit').
func secStart(t *testing.T, prefix []string, args ...string) *secProxy {
	t.Helper()
	bin := secBuild(t)
	hasListen := false
	for _, a := range args {
		if a == "-listen" || strings.HasPrefix(a, "-listen=") {
			hasListen = true
		}
	}
	if !hasListen {
		args = append([]string{"-listen", "127.0.0.1:0"}, args...)
	}
	argv := append(append(append([]string{}, prefix...), bin), args...)
	p := &secProxy{stdout: &testnet.Buffer{}, stderr: &testnet.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
			t.Errorf("warmproxy did not exit on SIGTERM; stderr:\n%s", p.stderr)
		}
		if t.Failed() {
			t.Logf("warmproxy stderr:\n%s", p.stderr)
		}
	})
	deadline := time.After(15 * time.Second)
	for {
		if m := secListeningRE.FindStringSubmatch(p.stderr.String()); m != nil {
			p.addr = m[1]
			if strings.HasPrefix(p.addr, "0.0.0.0:") || strings.HasPrefix(p.addr, "[::]:") {
				_, port, _ := net.SplitHostPort(p.addr)
				p.addr = "127.0.0.1:" + port
			}
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("warmproxy exited before listening: %v\nstderr:\n%s", p.exitErr, p.stderr)
		case <-deadline:
			t.Fatalf("warmproxy never printed its listening line; stderr:\n%s", p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// alive fails the test if the proxy process has exited.
func (p *secProxy) alive(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("warmproxy died: %v\nstderr:\n%s", p.exitErr, p.stderr)
	default:
	}
}

// client returns an http.Client that sends everything through the proxy.
func (p *secProxy) client(timeout time.Duration) *http.Client {
	u := &url.URL{Scheme: "http", Host: p.addr}
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableCompression: true},
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// secResp is a response read off a raw connection.
type secResp struct {
	status int
	header http.Header
	body   string
	err    error
}

// secRaw writes raw to a new connection to addr and reads one response.
func secRaw(t *testing.T, addr, raw string) secResp {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return secResp{err: err}
	}
	return secRead(bufio.NewReader(c), raw)
}

func secRead(br *bufio.Reader, raw string) secResp {
	method := "GET"
	if strings.HasPrefix(raw, "HEAD ") {
		method = "HEAD"
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return secResp{err: err}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return secResp{status: resp.StatusCode, header: resp.Header, body: string(body), err: err}
}

// secOrigin starts an HTTP origin on ip:0 counting the connections it
// accepts.
func secOrigin(t *testing.T, ip string, h http.Handler) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ConnState = testnet.OnNew(func() { conns.Add(1) })
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func secHello(w http.ResponseWriter, r *http.Request) {
	if v := r.Header.Get("Proxy-Authorization"); v != "" {
		w.Header().Set("X-Saw-Proxy-Authorization", v)
	}
	io.WriteString(w, "hello from "+r.Host)
}

func secPort(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Issue 6: a listener other machines can reach refuses to start unless
// clients are restricted, credentials are required, or the operator says
// -open-proxy-i-know, which is logged loudly.
func TestSecurityOpenProxyRefused(t *testing.T) {
	bin := secBuild(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, listen := range []string{"0.0.0.0:0", ":0"} {
		cmd := exec.CommandContext(ctx, bin, "-listen", listen)
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "open proxy") {
			t.Errorf("warmproxy -listen %s: err %v, output %q; want exit 2 naming the open proxy", listen, err, out)
		}
	}
	p := secStart(t, nil, "-listen", "0.0.0.0:0", "-open-proxy-i-know")
	if !strings.Contains(p.stderr.String(), "OPEN PROXY") {
		t.Errorf("-open-proxy-i-know: no loud warning in the log:\n%s", p.stderr)
	}
}

// Issue 6: a scan of the listener from a client address not in
// -allow-clients gets nothing: every connection is reset before a byte
// of HTTP is read or written.
func TestSecurityClientScanRefused(t *testing.T) {
	origin, originConns := secOrigin(t, "127.0.0.1", http.HandlerFunc(secHello))
	p := secStart(t, nil, "-listen", "0.0.0.0:0", "-allow-clients", "127.0.0.1/32", "-connect-ports", "*")
	target := origin.Listener.Addr().String()
	scan := []string{
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\n\r\n",
		"CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
	}
	for _, raw := range scan {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", p.addr)
		if err != nil {
			continue // refused at connect: fine
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw)
		got, err := io.ReadAll(c)
		c.Close()
		if len(got) > 0 {
			t.Errorf("client 127.0.0.2 sent %q and got %q, want nothing", raw, got)
		}
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client 127.0.0.2: read error %v, want EOF or reset", err)
		}
	}
	if n := originConns.Load(); n != 0 {
		t.Errorf("origin saw %d connections from the refused scan, want 0", n)
	}
	// The allowed client is served.
	resp, err := p.client(5 * time.Second).Get(origin.URL + "/")
	if err != nil {
		t.Fatalf("allowed client: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("allowed client got %d, want 200", resp.StatusCode)
	}
	p.alive(t)
}

// Issue 6: Proxy-Authorization: Basic against an htpasswd file of bcrypt
// hashes; 407 with a challenge otherwise; credentials never reach the
// origin or the logs.
func TestSecurityProxyAuth(t *testing.T) {
	file := testnet.Htpasswd(t, "alice", "s3cret-pw", bcrypt.MinCost)
	origin, _ := secOrigin(t, "127.0.0.1", http.HandlerFunc(secHello))
	p := secStart(t, nil, "-proxy-auth-file", file, "-connect-ports", "*")
	target := origin.Listener.Addr().String()
	good := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret-pw"))
	bad := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:wrong"))

	tests := []struct {
		name, raw  string
		wantStatus int
	}{
		{"no credentials", "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\n\r\n", 407},
		{"wrong password", "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: " + bad + "\r\n\r\n", 407},
		{"bearer", "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Bearer x\r\n\r\n", 407},
		{"connect without", "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n", 407},
		{"good", "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: " + good + "\r\n\r\n", 200},
		{"good again (cached)", "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: " + good + "\r\n\r\n", 200},
		{"named in Connection", "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\nConnection: Proxy-Authorization\r\nProxy-Authorization: " + good + "\r\n\r\n", 200},
		{"admin path needs none", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := secRaw(t, p.addr, tt.raw)
			if r.err != nil || r.status != tt.wantStatus {
				t.Fatalf("status %d err %v body %q, want %d", r.status, r.err, r.body, tt.wantStatus)
			}
			if tt.wantStatus == 407 {
				if got := r.header.Get("Proxy-Authenticate"); got != `Basic realm="warmproxy"` {
					t.Errorf("Proxy-Authenticate = %q, want the Basic challenge", got)
				}
			}
			if v := r.header.Get("X-Saw-Proxy-Authorization"); v != "" {
				t.Errorf("origin received Proxy-Authorization %q", v)
			}
		})
	}
	// CONNECT with credentials opens the tunnel.
	c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, good)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT with credentials: %v %v", resp, err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", target)
	if r := secRead(br, "GET"); r.status != 200 || r.header.Get("X-Saw-Proxy-Authorization") != "" {
		t.Errorf("request through the tunnel: %d %v %v", r.status, r.header, r.err)
	}
	c.Close()

	time.Sleep(400 * time.Millisecond) // the access log flushes every 200ms
	logs := p.stdout.String() + p.stderr.String()
	for _, secret := range []string{"s3cret-pw", good[len("Basic "):], bad[len("Basic "):]} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs hold the credential %q:\n%s", secret, logs)
		}
	}
}

// Issue 6: destinations are checked on the resolved IP at dial time, for
// forwarded requests, CONNECT and upgrades alike: 403 naming the rule with
// Proxy-Status destination_ip_prohibited, and the denied address never
// sees a connection. 127.0.0.2 stands in for a private or metadata
// address; evil.test resolves to it through a DNS stub.
func TestSecurityDestinationPolicy(t *testing.T) {
	denied, deniedConns := secOrigin(t, "127.0.0.2", http.HandlerFunc(secHello))
	ok, _ := secOrigin(t, "127.0.0.1", http.HandlerFunc(secHello))
	dport := secPort(t, denied.Listener.Addr().String())
	oport := secPort(t, ok.Listener.Addr().String())
	dns := testnet.DNS(t, map[string][]string{"evil.test": {"127.0.0.2"}, "good.test": {"127.0.0.1"}, "bad.example.test": {"127.0.0.1"}})
	p := secStart(t, nil, "-deny", "127.0.0.2,*.example.test", "-dns-server", dns, "-connect-ports", "*")

	tests := []struct {
		name, raw, wantRule, wantType string
		wantStatus                    int
	}{
		{"ip literal", "GET http://127.0.0.2:" + dport + "/ HTTP/1.1\r\nHost: 127.0.0.2\r\n\r\n", "deny 127.0.0.2", "destination_ip_prohibited", 403},
		{"name resolving to denied ip", "GET http://evil.test:" + dport + "/ HTTP/1.1\r\nHost: evil.test\r\n\r\n", "deny 127.0.0.2", "destination_ip_prohibited", 403},
		{"https via protocol header", "GET http://evil.test:" + dport + "/ HTTP/1.1\r\nHost: evil.test\r\nX-Real-Protocol: https\r\n\r\n", "deny 127.0.0.2", "destination_ip_prohibited", 403},
		{"connect", "CONNECT evil.test:" + dport + " HTTP/1.1\r\nHost: evil.test:" + dport + "\r\n\r\n", "deny 127.0.0.2", "destination_ip_prohibited", 403},
		{"upgrade", "GET http://evil.test:" + dport + "/ws HTTP/1.1\r\nHost: evil.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "deny 127.0.0.2", "destination_ip_prohibited", 403},
		{"host pattern", "GET http://bad.example.test:" + oport + "/ HTTP/1.1\r\nHost: bad.example.test\r\n\r\n", "deny *.example.test", "http_request_denied", 403},
		{"allowed name", "GET http://good.test:" + oport + "/ HTTP/1.1\r\nHost: good.test\r\n\r\n", "", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := secRaw(t, p.addr, tt.raw)
			if r.err != nil || r.status != tt.wantStatus {
				t.Fatalf("status %d err %v body %q, want %d", r.status, r.err, r.body, tt.wantStatus)
			}
			if tt.wantStatus != 403 {
				return
			}
			if !strings.Contains(r.body, tt.wantRule) {
				t.Errorf("body %q does not name rule %q", r.body, tt.wantRule)
			}
			if ps := r.header.Get("Proxy-Status"); !strings.Contains(ps, "error="+tt.wantType) {
				t.Errorf("Proxy-Status = %q, want error=%s", ps, tt.wantType)
			}
		})
	}
	if n := deniedConns.Load(); n != 0 {
		t.Errorf("the denied origin on 127.0.0.2 saw %d connections, want 0", n)
	}

	// -deny-private turns loopback away too (the stand-in for RFC 1918).
	p2 := secStart(t, nil, "-deny-private", "-dns-server", dns)
	r := secRaw(t, p2.addr, "GET http://good.test:"+oport+"/ HTTP/1.1\r\nHost: good.test\r\n\r\n")
	if r.status != 403 || !strings.Contains(r.body, "deny-private 127.0.0.0/8") {
		t.Errorf("-deny-private, good.test -> 127.0.0.1: %d %q, want 403 naming deny-private", r.status, r.body)
	}
}

// Issue 6: a request addressed to the proxy's own listener is a loop:
// 508, at once, whatever name or form reaches it.
func TestSecurityLoop(t *testing.T) {
	dns := testnet.DNS(t, map[string][]string{"me.test": {"127.0.0.1"}})
	p := secStart(t, nil, "-dns-server", dns, "-connect-ports", "*")
	port := secPort(t, p.addr)
	for _, raw := range []string{
		"GET http://" + p.addr + "/ HTTP/1.1\r\nHost: " + p.addr + "\r\n\r\n",
		"GET http://me.test:" + port + "/ HTTP/1.1\r\nHost: me.test\r\n\r\n",
		"GET http://0.0.0.0:" + port + "/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT " + p.addr + " HTTP/1.1\r\nHost: " + p.addr + "\r\n\r\n",
	} {
		r := secRaw(t, p.addr, raw)
		if r.status != http.StatusLoopDetected || !strings.Contains(r.header.Get("Proxy-Status"), "proxy_loop_detected") {
			t.Errorf("%q: %d %q %v, want 508 proxy_loop_detected", raw, r.status, r.body, r.err)
		}
	}
	p.alive(t)
}

// secKeepAlive opens a connection to the proxy and completes one request
// on it, leaving it open (keep-alive).
func secKeepAlive(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := secRead(bufio.NewReader(c), "GET"); r.status != 200 {
		t.Fatalf("keep-alive request: %d %v", r.status, r.err)
	}
	return c
}

// Issue 6: limits: concurrent client connections (tunnels included), head
// size, head and idle timeouts, and per-origin connections with a bounded
// wait queue, each answered with 503 + Retry-After or a close instead of
// unbounded memory or goroutines.
func TestSecurityLimits(t *testing.T) {
	release := make(chan struct{})
	var slowSeen atomic.Int32
	origin, _ := secOrigin(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			slowSeen.Add(1)
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		}
		io.WriteString(w, "done")
	}))
	target := origin.Listener.Addr().String()

	t.Run("max client conns", func(t *testing.T) {
		p := secStart(t, nil, "-max-client-conns", "3", "-connect-ports", "*")
		a := secKeepAlive(t, p.addr)
		secKeepAlive(t, p.addr)
		// A CONNECT tunnel counts too.
		tun, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer tun.Close()
		fmt.Fprintf(tun, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		tun.SetDeadline(time.Now().Add(5 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(tun), &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		r := secRaw(t, p.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.header.Get("Proxy-Status"), "connection_limit_reached") {
			t.Fatalf("4th connection: %d %v %q, want 503 with Retry-After", r.status, r.header, r.body)
		}
		a.Close()
		deadline := time.Now().Add(15 * time.Second)
		for {
			if r := secRaw(t, p.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); r.status == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no connection accepted after one closed")
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.alive(t)
	})

	t.Run("head size and timeouts", func(t *testing.T) {
		p := secStart(t, nil, "-max-header-bytes", "4096", "-client-header-timeout", "500ms", "-client-idle-timeout", "500ms")
		big := "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\nX-Big: " + strings.Repeat("a", 20000) + "\r\n\r\n"
		if r := secRaw(t, p.addr, big); r.status != 431 {
			t.Errorf("20 KB head: %d %v, want 431", r.status, r.err)
		}
		long := "GET http://" + target + "/" + strings.Repeat("a", 20000) + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
		if r := secRaw(t, p.addr, long); r.status != 431 && r.status != 414 {
			t.Errorf("20 KB request line: %d %v, want 431 or 414", r.status, r.err)
		}
		// closedByProxy reports whether the proxy closed c before the
		// hang guard's deadline (issue 12: not a wall-clock bound; only
		// the 500ms timeouts can close these conns that early).
		closedByProxy := func(c net.Conn) bool {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err := io.Copy(io.Discard, c)
			return err == nil
		}
		slow, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		io.WriteString(slow, "GET http://"+target+"/ HTTP/1.1\r\nHost:")
		if !closedByProxy(slow) {
			t.Error("half-sent head kept open for 30s, want it closed after the 500ms header timeout")
		}
		idle := secKeepAlive(t, p.addr)
		if !closedByProxy(idle) {
			t.Error("idle keep-alive kept open for 30s, want it closed after the 500ms idle timeout")
		}
	})

	t.Run("per-origin queue", func(t *testing.T) {
		p := secStart(t, nil, "-max-conns-per-host", "1", "-max-conns-per-host-queue", "1")
		slowReq := "GET http://" + target + "/slow HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
		results := make(chan secResp, 3)
		go func() { results <- secRaw(t, p.addr, slowReq) }()
		deadline := time.Now().Add(5 * time.Second)
		for slowSeen.Load() < 1 {
			if time.Now().After(deadline) {
				t.Fatal("first request never reached the origin")
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Two more: one takes the only queue slot and waits, the other
		// finds the queue full and gets a 503 at once (which is which
		// depends on who arrives first).
		go func() { results <- secRaw(t, p.addr, slowReq) }()
		go func() { results <- secRaw(t, p.addr, slowReq) }()
		select {
		case r := <-results:
			if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.header.Get("Proxy-Status"), "connection_limit_reached") {
				t.Errorf("request with one busy and one queued: %d %v %q, want 503 with Retry-After", r.status, r.header, r.body)
			}
		case <-time.After(15 * time.Second): // a hang guard, under the origin's 20s
			t.Error("no request was refused with one busy and the queue full")
		}
		close(release)
		for range 2 {
			if r := <-results; r.status != 200 {
				t.Errorf("slow request: %d %v, want 200", r.status, r.err)
			}
		}
		if slowSeen.Load() != 2 {
			t.Errorf("origin saw %d slow requests, want 2", slowSeen.Load())
		}
		p.alive(t)
	})
}

// secFaultOrigin is a raw-TCP origin whose behavior is picked by the
// request path. It records when a connection it streams to is closed by
// the proxy.
type secFaultOrigin struct {
	ln      net.Listener
	aborted chan time.Time
	conns   atomic.Int32
}

func secStartFaultOrigin(t *testing.T) *secFaultOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &secFaultOrigin{ln: ln, aborted: make(chan time.Time, 16)}
	done := make(chan struct{})
	testnet.ServeListener(t, ln, func(c net.Conn) {
		o.conns.Add(1)
		o.serve(c, done)
	})
	// Registered last, so it runs first: the stalled and streaming
	// answers return before ServeListener waits for them.
	t.Cleanup(func() { close(done) })
	return o
}

func (o *secFaultOrigin) serve(c net.Conn, done chan struct{}) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		switch req.URL.Path {
		case "/reset-mid-body":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 1000))
			time.Sleep(50 * time.Millisecond)
			c.(*net.TCPConn).SetLinger(0)
			return
		case "/stall":
			<-done
			return
		case "/close-idle":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			time.Sleep(30 * time.Millisecond)
			return // close the pooled conn while idle, without a word
		case "/stream":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			closed := make(chan struct{})
			go func() { io.Copy(io.Discard, br); close(closed) }()
			for i := 0; i < 1000; i++ {
				select {
				case <-closed:
					o.aborted <- time.Now()
					return
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := io.WriteString(c, "6\r\nchunk\n\r\n"); err != nil {
					o.aborted <- time.Now()
					return
				}
			}
			return
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}
}

// Issue 6: faults survived: the origin resets mid-body, stalls, closes
// idle pooled connections; the client aborts mid-stream; DNS fails; the
// origin's certificate is bad. Each gets the right status or an aborted
// response, and the proxy goes on serving.
func TestSecurityFaults(t *testing.T) {
	o := secStartFaultOrigin(t)
	dns := testnet.DNS(t, map[string][]string{"fail.test": {testnet.ServFail}, "fault.test": {"127.0.0.1"}})
	p := secStart(t, nil, "-response-header-timeout", "500ms", "-dns-server", dns)
	target := o.ln.Addr().String()
	get := func(path string) string {
		return "GET http://" + target + path + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
	}
	okAfter := func(t *testing.T) {
		t.Helper()
		if r := secRaw(t, p.addr, get("/ok")); r.status != 200 || r.body != "ok" {
			t.Errorf("request after the fault: %d %q %v, want 200 ok", r.status, r.body, r.err)
		}
	}

	t.Run("origin resets mid-body", func(t *testing.T) {
		r := secRaw(t, p.addr, get("/reset-mid-body"))
		if r.status == 200 && r.err == nil {
			t.Fatalf("client got a clean 200 with %d bytes of a 100000-byte body", len(r.body))
		}
		okAfter(t)
	})
	t.Run("origin stalls", func(t *testing.T) {
		// The 504 http_response_timeout says the 500ms
		// response-header-timeout ended it; its duration is not asserted
		// (issue 12).
		r := secRaw(t, p.addr, get("/stall"))
		if r.status != 504 || !strings.Contains(r.header.Get("Proxy-Status"), "http_response_timeout") {
			t.Errorf("stalled origin: %d %v %q, want 504 http_response_timeout", r.status, r.header, r.body)
		}
		okAfter(t)
	})
	t.Run("origin closes idle pooled conns", func(t *testing.T) {
		c := p.client(5 * time.Second)
		for i := range 8 {
			var resp *http.Response
			var err error
			if i%2 == 0 {
				resp, err = c.Get("http://" + target + "/close-idle")
			} else {
				resp, err = c.Post("http://"+target+"/close-idle", "text/plain", strings.NewReader("body"))
			}
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("request %d after the origin closed its idle conn: %d %q", i, resp.StatusCode, body)
			}
			time.Sleep(80 * time.Millisecond)
		}
	})
	t.Run("client aborts mid-stream", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, get("/stream"))
		buf := make([]byte, 200)
		if _, err := io.ReadAtLeast(c, buf, 100); err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		c.Close()
		// The origin streams for 20s unless cancelled: an abort seen
		// before the hang guard is the client's (issue 12: no tight
		// wall-clock bound).
		select {
		case <-o.aborted:
		case <-time.After(15 * time.Second):
			t.Fatal("origin stream not cancelled 15s after the client left")
		}
		okAfter(t)
	})
	t.Run("dns failure", func(t *testing.T) {
		for _, host := range []string{"fail.test", "nx.test"} {
			r := secRaw(t, p.addr, "GET http://"+host+"/ HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
			if r.status != 502 || !strings.Contains(r.header.Get("Proxy-Status"), "error=dns_error") {
				t.Errorf("%s: %d %v %q, want 502 dns_error", host, r.status, r.header, r.body)
			}
		}
		if r := secRaw(t, p.addr, "GET http://fault.test:"+secPort(t, target)+"/ok HTTP/1.1\r\nHost: fault.test\r\n\r\n"); r.status != 200 {
			t.Errorf("fault.test through the stub: %d %v", r.status, r.err)
		}
	})
	t.Run("bad origin certificate", func(t *testing.T) {
		tlsOrigin := httptest.NewTLSServer(http.HandlerFunc(secHello))
		defer tlsOrigin.Close()
		addr := tlsOrigin.Listener.Addr().String()
		r := secRaw(t, p.addr, "GET http://"+addr+"/ HTTP/1.1\r\nHost: "+addr+"\r\nX-Real-Protocol: https\r\n\r\n")
		if r.status != 502 || !strings.Contains(r.header.Get("Proxy-Status"), "error=tls_certificate_error") {
			t.Errorf("self-signed origin: %d %v %q, want 502 tls_certificate_error", r.status, r.header, r.body)
		}
		okAfter(t)
	})
	p.alive(t)
}

// secFDs counts the open file descriptors of process pid.
func secFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// Issue 6: file-descriptor exhaustion: under ulimit -n 64 a flood of
// client connections uses up the proxy's descriptors; the proxy keeps
// running, answers what it can (503 when it cannot open an upstream
// connection), and serves normally once the flood is gone.
func TestSecurityFDExhaustion(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		cliMissing(t, "no /proc: %v", err)
	}
	origin, _ := secOrigin(t, "127.0.0.1", http.HandlerFunc(secHello))
	p := secStart(t, []string{"sh", "-c", `ulimit -n 64 && exec "$0" "$@"`}, "-log-format", "off")
	target := origin.Listener.Addr().String()
	req := "GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\n\r\n"

	// A keep-alive connection accepted before the flood.
	a := secKeepAlive(t, p.addr)
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range 100 {
		c, err := net.DialTimeout("tcp", p.addr, 2*time.Second)
		if err != nil {
			break
		}
		flood = append(flood, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for secFDs(p.cmd.Process.Pid) < 62 {
		if time.Now().After(deadline) {
			t.Fatalf("proxy holds %d fds after the flood, want it near 64", secFDs(p.cmd.Process.Pid))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// With no descriptor left for an upstream connection: 503, not a crash.
	a.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(a, req)
	r := secRead(bufio.NewReader(a), req)
	if r.status != 503 && r.status != 502 {
		t.Errorf("request while out of fds: %d %v %q, want 503 or 502", r.status, r.err, r.body)
	}
	if r.status == 503 && r.header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	p.alive(t)
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	// Recovery: new connections are served again.
	deadline = time.Now().Add(10 * time.Second)
	for {
		r := secRaw(t, p.addr, req)
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy did not recover after the flood: last %d %v", r.status, r.err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.alive(t)
}

// secRecorder is a raw-TCP origin that parses what the proxy sends it. It
// answers each well-framed request with 200 "ok" and records every
// request it saw, and whether its body ended as framed.
type secRecorder struct {
	ln   net.Listener
	mu   sync.Mutex
	seen []string // "METHOD PATH ok" or "METHOD PATH truncated"
	junk int      // connections that sent bytes that were not a request
}

func secStartRecorder(t *testing.T) *secRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &secRecorder{ln: ln}
	secServeRaw(t, ln, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					o.mu.Lock()
					o.junk++
					o.mu.Unlock()
				}
				return
			}
			_, err = io.Copy(io.Discard, req.Body)
			state := "ok"
			if err != nil {
				state = "truncated"
			}
			o.mu.Lock()
			o.seen = append(o.seen, req.Method+" "+req.URL.Path+" "+state)
			o.mu.Unlock()
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return o
}

// secServeRaw runs serve on every connection ln accepts, each with a 10 s
// deadline and closed afterwards; the test's cleanup closes ln and waits
// for the handlers.
func secServeRaw(t *testing.T, ln net.Listener, serve func(c net.Conn, br *bufio.Reader)) {
	t.Helper()
	testnet.ServeListener(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		serve(c, bufio.NewReader(c))
	})
}

func (o *secRecorder) take() ([]string, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, j := o.seen, o.junk
	o.seen, o.junk = nil, 0
	return s, j
}

// Issue 6: request smuggling shapes sent by a client: the proxy answers
// 400 (501 for a transfer coding it does not implement, 502 when a bad
// chunked body is found mid-stream) and the origin sees no request, or
// one request whose body ends where its framing says, or one cut-off
// request on a connection that is then closed; never a second, smuggled
// request. The proxy keeps serving after each. (CL+TE together is left to
// the core tests.)
func TestSecuritySmugglingRequests(t *testing.T) {
	o := secStartRecorder(t)
	p := secStart(t, nil, "-log-format", "off")
	target := o.ln.Addr().String()
	head := "POST http://" + target + "/a HTTP/1.1\r\nHost: " + target + "\r\n"
	smuggled := "GET http://" + target + "/smuggled HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
	tests := []struct {
		name string
		raw  string
		// want lists the statuses allowed; origin what the origin may see:
		// "none", "ok" (one framed request) or "cut" (none or one cut off).
		want   []int
		origin string
	}{
		{"duplicate content-length", head + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd" + smuggled, []int{400}, "none"},
		{"content-length list", head + "Content-Length: 3, 4\r\n\r\nabcd" + smuggled, []int{400}, "none"},
		{"content-length sign", head + "Content-Length: +4\r\n\r\nabcd" + smuggled, []int{400}, "none"},
		{"content-length hex", head + "Content-Length: 0x4\r\n\r\nabcd" + smuggled, []int{400}, "none"},
		{"xchunked", head + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400, 501}, "none"},
		{"chunked not last", head + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, []int{400, 501}, "none"},
		{"gzip then chunked", head + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400, 501}, "none"},
		{"two te fields", head + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400, 501}, "none"},
		{"te with vertical tab", head + "Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400, 501}, "none"},
		{"bad chunk size", head + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabcd\r\n0\r\n\r\n" + smuggled, []int{400}, "cut"},
		{"chunk size overflow", head + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nabcd\r\n0\r\n\r\n" + smuggled, []int{400}, "cut"},
		{"negative chunk size", head + "Transfer-Encoding: chunked\r\n\r\n-1\r\nabcd\r\n0\r\n\r\n" + smuggled, []int{400}, "cut"},
		{"chunk data longer than size", head + "Transfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n" + smuggled, []int{400}, "cut"},
		{"obs-fold", head + "Content-Length: 0\r\nX-A: a\r\n b\r\n\r\n", []int{200, 400}, "ok"},
		{"obs-fold content-length", head + "Content-Length: 0\r\n 4\r\n\r\nabcd" + smuggled, []int{400}, "none"},
		{"space before colon", head + "Content-Length : 4\r\n\r\nabcd" + smuggled, []int{400}, "none"},
		{"space in name", head + "Content Length: 4\r\n\r\nabcd" + smuggled, []int{400}, "none"},
		{"nul in value", head + "X-A: a\x00b\r\nContent-Length: 0\r\n\r\n" + smuggled, []int{400}, "none"},
		{"cr in value", head + "X-A: a\rb\r\nContent-Length: 0\r\n\r\n" + smuggled, []int{400}, "none"},
		{"bare lf", "POST http://" + target + "/a HTTP/1.1\nHost: " + target + "\nContent-Length: 4\n\nabcd", []int{200, 400}, "ok"},
		{"bare cr", "POST http://" + target + "/a HTTP/1.1\rHost: " + target + "\rContent-Length: 4\r\r\nabcd" + smuggled, []int{400}, "none"},
		{"oversized header line", head + "X-A: " + strings.Repeat("a", 100<<10) + "\r\nContent-Length: 0\r\n\r\n" + smuggled, []int{400, 431}, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := secRaw(t, p.addr, tt.raw)
			okStatus := false
			for _, s := range tt.want {
				okStatus = okStatus || r.status == s
			}
			if !okStatus {
				t.Errorf("status %d (%v) body %q, want one of %v", r.status, r.err, r.body, tt.want)
			}
			time.Sleep(50 * time.Millisecond) // let the origin finish reading
			seen, junk := o.take()
			if junk > 0 {
				t.Errorf("origin got %d unparseable streams: %v", junk, seen)
			}
			for _, s := range seen {
				if strings.Contains(s, "smuggled") {
					t.Errorf("origin saw the smuggled request: %v", seen)
				}
			}
			switch tt.origin {
			case "none":
				if len(seen) != 0 {
					t.Errorf("origin saw %v, want nothing", seen)
				}
			case "ok":
				if r.status == 200 && (len(seen) != 1 || seen[0] != "POST /a ok") {
					t.Errorf("origin saw %v, want one framed POST /a", seen)
				}
			case "cut":
				if len(seen) > 1 || len(seen) == 1 && seen[0] != "POST /a truncated" {
					t.Errorf("origin saw %v, want nothing or one cut-off POST /a", seen)
				}
			}
			if r := secRaw(t, p.addr, "GET http://"+target+"/after HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); r.status != 200 || r.body != "ok" {
				t.Errorf("request after: %d %q %v", r.status, r.body, r.err)
			}
			o.take()
		})
	}
	p.alive(t)
}

// Issue 6: the same shapes coming back from a malicious origin: the
// client gets 502, or an aborted response, or a clean one re-framed by the
// proxy, and the leftover bytes never answer a later request (the pooled
// connection is not reused out of step).
func TestSecuritySmugglingResponses(t *testing.T) {
	const smuggledResp = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
	responses := map[string]string{
		"/cl-te":        "HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + smuggledResp,
		"/cl-extra":     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + smuggledResp,
		"/dup-cl":       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + smuggledResp,
		"/cl-list":      "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!" + smuggledResp,
		"/xchunked":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + smuggledResp,
		"/chunked-gzip": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + smuggledResp,
		"/bad-chunk":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + smuggledResp,
		"/overflow":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nhello\r\n0\r\n\r\n" + smuggledResp,
		"/obs-fold":     "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 5\r\n\r\nhello" + smuggledResp,
		"/space-colon":  "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello" + smuggledResp,
		"/nul":          "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello" + smuggledResp,
		"/cr":           "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 5\r\n\r\nhello" + smuggledResp,
		"/bare-lf":      "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello" + smuggledResp,
		"/huge-header":  "HTTP/1.1 200 OK\r\nX-A: " + strings.Repeat("a", 2<<20) + "\r\nContent-Length: 5\r\n\r\nhello",
	}
	// Responses without a usable length are read until the origin closes:
	// it does, right after them.
	closeAfter := map[string]bool{"/space-colon": true}
	target := testnet.ServeRequests(t, func(c net.Conn, req *http.Request, _ []byte) bool {
		raw, bad := responses[req.URL.Path]
		if !bad {
			raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		}
		_, err := io.WriteString(c, raw)
		return err == nil && !closeAfter[req.URL.Path]
	})
	p := secStart(t, nil, "-log-format", "off")
	for path := range responses {
		t.Run(path, func(t *testing.T) {
			desync := 0
			defer func() {
				// Issue 14: strict. Go's Transport returns a conn to the
				// pool a moment before its read loop notices unsolicited
				// bytes and closes it (golang/go#31259), and this once
				// tolerated 1-2 smuggled answers in 5 tries; 0 were seen in
				// 165 runs of this test (75 of them 3 at once on 2 cores),
				// so any is now a failure.
				if desync > 0 {
					t.Errorf("%d of 5 tries answered a later request with the smuggled response (golang/go#31259)", desync)
				}
			}()
			for i := range 5 {
				c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				fmt.Fprintf(c, "GET http://%s%s HTTP/1.1\r\nHost: %s\r\n\r\n", target, path, target)
				r := secRead(br, "GET")
				switch {
				case r.status == 502:
				case r.status == 200 && r.err != nil:
					// aborted mid-body: fine
				case r.status == 200 && r.body == "hello":
				case r.status == 0 && r.err != nil:
					// closed before any byte of the head: aborted
				case closeAfter[path] && r.status == 200 && r.body == "hello"+smuggledResp:
					// no length: read until the origin closed, not reused
				default:
					t.Errorf("try %d: %d %q %v, want 502, an aborted response or a clean hello", i, r.status, r.body, r.err)
				}
				for k, vv := range r.header {
					for _, v := range vv {
						if strings.ContainsAny(v, "\r\n\x00") {
							t.Errorf("header %s: %q holds CR, LF or NUL", k, v)
						}
					}
				}
				c.Close()
				// The next requests, on this client conn or a new one, get
				// their own answer, never the smuggled one.
				for j := range 2 {
					r := secRaw(t, p.addr, "GET http://"+target+"/ok HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
					if r.body == "smuggled" {
						desync++
						continue
					}
					if r.status != 200 || r.body != "ok" {
						t.Fatalf("try %d, request %d after: %d %q %v, want 200 ok", i, j, r.status, r.body, r.err)
					}
				}
			}
		})
	}
	p.alive(t)
}
