package server_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/server"
	"github.com/warmproxy/warmproxy/internal/testnet"
	"golang.org/x/crypto/bcrypt"
)

// accessLine waits up to 5s for the access log to hold n lines and returns
// line i split into fields.
func (r *running) accessLine(t *testing.T, n, i int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := strings.Split(strings.TrimSuffix(r.access.String(), "\n"), "\n")
		if r.access.String() != "" && len(lines) >= n {
			return strings.Split(lines[i], "\t")
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log has %d lines, want %d:\n%s", len(lines), n, r.access)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countingOrigin is a plain HTTP origin counting its TCP connections; its
// handler echoes what it received and sets hop-by-hop response fields that
// must not reach the client.
func countingOrigin(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Connection", "X-Hop")
		h.Set("X-Hop", "1")
		h.Set("Proxy-Connection", "keep-alive")
		h.Set("Upgrade", "h3")
		fmt.Fprintf(w, "%s %s host=%s", r.Method, r.URL.RequestURI(), r.Host)
	}))
	o.Config.ConnState = testnet.OnNew(func() { conns.Add(1) })
	o.Start()
	t.Cleanup(o.Close)
	return o, &conns
}

// h2cClient speaks HTTP/2 with prior knowledge to the proxy at network,
// addr, whatever the request URL names: as a client configured with a
// proxy that speaks h2c would.
func h2cClient(t *testing.T, network, addr string) *http.Client {
	t.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &p,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// hopByHop lists the response fields an HTTP/2 client must never get.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "X-Hop"}

// Issue 8: clients that speak HTTP/2 with prior knowledge (h2c) reach
// origins through the proxy: ":authority" names the target, the protocol
// header still upgrades to https, the proxy's own authority serves admin
// paths, and no HTTP/1 hop-by-hop field reaches the client.
func TestH2CClient(t *testing.T) {
	o, originConns := countingOrigin(t)
	tlsO, cfg, tlsConns := tlsOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s", r.URL.Path)
	}))
	cfg.Listen = "127.0.0.1:0"
	r := startOn(t, cfg)
	c := h2cClient(t, "tcp", r.addr)

	t.Run("forward", func(t *testing.T) {
		for i := range 3 {
			resp, err := c.Get(o.URL + "/x?q=1")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(b) != "GET /x?q=1 host="+o.Listener.Addr().String() {
				t.Fatalf("request %d: %s %d %q, want HTTP/2 200 and the origin's echo", i, resp.Proto, resp.StatusCode, b)
			}
			for _, k := range hopByHop {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("HTTP/2 response carries %s: %q", k, v)
				}
			}
		}
		if n := originConns.Load(); n != 1 {
			t.Errorf("origin saw %d connections for 3 requests, want 1", n)
		}
		f := r.accessLine(t, 1, 0)
		if f[2] != "GET" || f[3] != o.URL+"/x?q=1" || f[4] != "200" || f[7] != o.URL+"/x?q=1" {
			t.Errorf("access line %q: want GET %s/x?q=1 200", f, o.URL)
		}
	})
	t.Run("protocol header", func(t *testing.T) {
		target := "http://" + tlsO.Listener.Addr().String() + "/secure"
		for range 2 {
			req, _ := http.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("X-Real-Protocol", "https")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "tls /secure" {
				t.Fatalf("GET %s with X-Real-Protocol: https = %d %q", target, resp.StatusCode, b)
			}
		}
		if n := tlsConns.Load(); n != 1 {
			t.Errorf("TLS origin saw %d connections, want 1", n)
		}
	})
	t.Run("own authority", func(t *testing.T) {
		for _, tt := range []struct {
			url  string
			code int
			body string
		}{
			{"http://" + r.addr + "/healthz", 200, "ok\n"},
			{"http://" + strings.Replace(r.addr, "127.0.0.1", "localhost", 1) + "/healthz", 200, "ok\n"},
			{"http://" + r.addr + "/nothing", 400, "names no target host"},
		} {
			resp, err := c.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.body) {
				t.Errorf("GET %s over h2c = %d %q, want %d %q", tt.url, resp.StatusCode, b, tt.code, tt.body)
			}
		}
	})
	t.Run("connect refused", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		req, _ := http.NewRequest(http.MethodConnect, "http://"+o.Listener.Addr().String(), pr)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(b), "over HTTP/2 is not supported") {
			t.Errorf("CONNECT over h2c = %d %q, want 501 naming HTTP/2", resp.StatusCode, b)
		}
	})
	t.Run("http1 unchanged", func(t *testing.T) {
		code, body := get(t, freshClient(t, r.addr), o.URL+"/h1", "")
		if code != 200 || !strings.HasPrefix(body, "GET /h1") {
			t.Errorf("HTTP/1.1 proxy request = %d %q", code, body)
		}
		code, body, _ = direct(t, r.addr, "/nothing")
		if code != 400 {
			t.Errorf("HTTP/1.1 origin-form request = %d %q, want 400 usage", code, body)
		}
	})
}

// Issue 8: -client-h2c=false turns HTTP/2 off; HTTP/1.1 stays.
func TestH2COff(t *testing.T) {
	o, _ := countingOrigin(t)
	cfg := config.Default()
	cfg.Listen, cfg.ClientH2C = "127.0.0.1:0", false
	r := startOn(t, cfg)
	if _, err := h2cClient(t, "tcp", r.addr).Get(o.URL + "/x"); err == nil {
		t.Error("h2c request with -client-h2c=false succeeded, want an error")
	}
	if code, _ := get(t, freshClient(t, r.addr), o.URL+"/x", ""); code != 200 {
		t.Errorf("HTTP/1.1 request with -client-h2c=false = %d, want 200", code)
	}
}

// sockDir returns a short temporary directory: socket paths are limited
// to 107 bytes, and t.TempDir's can be longer.
func sockDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// unixClient sends every request over a fresh connection to the socket at
// path, as curl --unix-socket or PHP's CURLOPT_UNIX_SOCKET_PATH do: in
// origin form, the target in Host.
func unixClient(t *testing.T, path string) *http.Client {
	t.Helper()
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Issue 8: -listen unix:/path serves clients on a Unix socket with the
// file mode asked for; an origin-form request is forwarded to its Host,
// Host localhost is the proxy itself, the access log names the peer
// process, and the socket file is removed at shutdown.
func TestUnixListener(t *testing.T) {
	o, originConns := countingOrigin(t)
	tlsO, cfg, tlsConns := tlsOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s", r.URL.Path)
	}))
	sock := filepath.Join(sockDir(t), "wp.sock")
	cfg.Listen, cfg.ListenMode, cfg.ConnectPorts = "unix:"+sock, "0600", "*"
	r := startOn(t, cfg)
	if r.addr != "unix:"+sock {
		t.Errorf("listening addr = %q, want unix:%s", r.addr, sock)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file %s: %v %v, want a socket with mode 0600", sock, fi.Mode(), err)
	}
	c := unixClient(t, sock)

	for i := range 3 {
		code, body := get(t, c, o.URL+"/u?q=1", "")
		if code != 200 || body != "GET /u?q=1 host="+o.Listener.Addr().String() {
			t.Fatalf("request %d over the socket = %d %q", i, code, body)
		}
	}
	if n := originConns.Load(); n != 1 {
		t.Errorf("origin saw %d connections for 3 socket clients, want 1", n)
	}
	f := r.accessLine(t, 1, 0)
	wantClient := fmt.Sprintf("unix:pid=%d,uid=%d", os.Getpid(), os.Getuid())
	if f[1] != wantClient || f[3] != o.URL+"/u?q=1" || f[4] != "200" {
		t.Errorf("access line %q: want client %s, url %s/u?q=1, 200", f, wantClient, o.URL)
	}

	tlsTarget := "http://" + tlsO.Listener.Addr().String() + "/s"
	for range 2 {
		if code, body := get(t, c, tlsTarget, "https"); code != 200 || body != "tls /s" {
			t.Fatalf("GET %s with X-Real-Protocol: https over the socket = %d %q", tlsTarget, code, body)
		}
	}
	if n := tlsConns.Load(); n != 1 {
		t.Errorf("TLS origin saw %d connections, want 1", n)
	}

	if code, body := get(t, c, "http://localhost/healthz", ""); code != 200 || body != "ok\n" {
		t.Errorf("GET http://localhost/healthz over the socket = %d %q, want the proxy's own 200 ok", code, body)
	}
	if code, _ := get(t, c, "http://localhost/nothing", ""); code != 400 {
		t.Errorf("GET http://localhost/nothing over the socket = %d, want 400 usage", code)
	}

	// h2c works on the socket too.
	resp, err := h2cClient(t, "unix", sock).Get(o.URL + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || !strings.HasPrefix(string(b), "GET /h2 ") {
		t.Errorf("h2c over the socket = %s %q", resp.Proto, b)
	}

	// CONNECT works on the socket as on TCP.
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\n\r\n", o.Listener.Addr())
	br := bufio.NewReader(conn)
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("CONNECT over the socket: %q", line)
	}
	br.ReadString('\n')
	fmt.Fprintf(conn, "GET /t HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")
	if all, _ := io.ReadAll(br); !strings.Contains(string(all), "GET /t host=o") {
		t.Errorf("through the CONNECT tunnel over the socket: %q", all)
	}
	conn.Close()

	r.stop(t)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file after shutdown: %v, want it removed", err)
	}
}

// Issue 8: a socket file left by a process that is gone is replaced; a
// live socket or a file that is not a socket is left alone.
func TestUnixListenerStaleFile(t *testing.T) {
	dir := sockDir(t)
	run := func(t *testing.T, sock string) error {
		t.Helper()
		cfg := config.Default()
		cfg.Listen = "unix:" + sock
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		addrs := make(chan [2]string, 1)
		log := slog.New(addrHandler{Handler: slog.DiscardHandler, addrs: addrs})
		done := make(chan error, 1)
		go func() { done <- server.Run(ctx, config.MustParse(cfg), log, io.Discard) }()
		select {
		case <-addrs:
			cancel()
			return <-done
		case err := <-done:
			return err
		}
	}

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if err := run(t, stale); err != nil {
		t.Errorf("Run on a stale socket file = %v, want it replaced", err)
	}

	live := filepath.Join(dir, "live.sock")
	ln2, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if err := run(t, live); err == nil || !strings.Contains(err.Error(), "another process listens") {
		t.Errorf("Run on a live socket = %v, want a refusal", err)
	}

	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(t, plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Run on a regular file = %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep" {
		t.Errorf("regular file now holds %q, want it untouched", b)
	}
}

// rawGet sends one HTTP/1.1 request line for target, as written, to addr
// over a fresh connection and returns the status line's code and the body.
func rawGet(t *testing.T, addr, target string, extra string) (string, string) {
	t.Helper()
	r := pinRaw(t, addr, fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", target, addr, extra))
	return r.Status[:3], r.body
}

// Issue 8: -route maps origin-form requests on the proxy's own address
// to a base URL, through the pool: longest prefix first, path joined on
// its escaped form, query kept, Host rewritten, the protocol header
// ignored, and no request leaves the base path.
func TestRoutes(t *testing.T) {
	var hits atomic.Int32
	var conns atomic.Int32
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintf(w, "%s host=%s", r.URL.EscapedPath()+"?"+r.URL.RawQuery, r.Host)
	}))
	o.Config.ConnState = testnet.OnNew(func() { conns.Add(1) })
	o.Start()
	t.Cleanup(o.Close)
	tlsO, cfg, tlsConns := tlsOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s host=%s", r.URL.RequestURI(), r.Host)
	}))
	oa, ta := o.Listener.Addr().String(), tlsO.Listener.Addr().String()
	cfg.Listen = "127.0.0.1:0"
	cfg.Routes = "/api/=" + o.URL + "/base/, /api/v2/=" + o.URL + "/two," + "/pay/=https://" + ta + "/v1"
	r := startOn(t, cfg)

	for _, tt := range []struct {
		name, target, code, body string
	}{
		{"joined", "/api/x/y?q=1&r=2", "200", "/base/x/y?q=1&r=2 host=" + oa},
		{"longest prefix", "/api/v2/z", "200", "/two/z? host=" + oa},
		{"bare prefix", "/api", "200", "/base/? host=" + oa},
		{"escapes kept", "/api/group%2Fproject/a%20b", "200", "/base/group%2Fproject/a%20b? host=" + oa},
		{"https target", "/pay/charges?limit=3", "200", "tls /v1/charges?limit=3 host=" + ta},
		{"dot dot", "/api/../metrics", "400", "cannot leave"},
		{"deep dot dot", "/api/x/../../y", "400", "cannot leave"},
		{"dot", "/api/./x", "400", "cannot leave"},
		{"encoded", "/api/%2e%2e/x", "400", "cannot leave"},
		{"mixed case", "/api/%2E./x", "400", "cannot leave"},
		{"encoded slash", "/api/..%2f..%2fx", "400", "cannot leave"},
		{"backslash", "/api/..%5cx", "400", "cannot leave"},
		{"not routed", "/apix", "400", "names no target host"},
		{"admin", "/healthz", "200", "ok\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := hits.Load()
			code, body := rawGet(t, r.addr, tt.target, "")
			if code != tt.code || !strings.Contains(body, tt.body) {
				t.Errorf("GET %s = %s %q, want %s %q", tt.target, code, body, tt.code, tt.body)
			}
			if tt.code != "200" && hits.Load() != before {
				t.Errorf("GET %s reached the origin", tt.target)
			}
		})
	}
	// The route names the scheme: X-Real-Protocol cannot downgrade it.
	if code, body := rawGet(t, r.addr, "/pay/x", "X-Real-Protocol: http\r\n"); code != "200" || !strings.HasPrefix(body, "tls /v1/x") {
		t.Errorf("route with X-Real-Protocol: http = %s %q, want the https target", code, body)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("plain origin saw %d connections, want 1 (pooled)", n)
	}
	if n := tlsConns.Load(); n != 1 {
		t.Errorf("TLS origin saw %d connections, want 1 (pooled)", n)
	}
	f := r.accessLine(t, 1, 0)
	if f[3] != o.URL+"/base/x/y?q=1&r=2" || f[7] != "/api/x/y?q=1&r=2" || f[4] != "200" {
		t.Errorf("access line %q: want url %s/base/x/y?q=1&r=2, requested /api/x/y?q=1&r=2", f, o.URL)
	}
}

// Issue 8: a route reaches past the proxy, so it needs the proxy
// credentials as a proxy request does.
func TestRouteNeedsCredentials(t *testing.T) {
	o, _ := countingOrigin(t)
	file := testnet.Htpasswd(t, "u", "pw", bcrypt.MinCost)
	cfg := config.Default()
	cfg.Listen, cfg.ProxyAuthFile, cfg.Routes = "127.0.0.1:0", file, "/api/="+o.URL+"/"
	r := startOn(t, cfg)
	if code, _ := rawGet(t, r.addr, "/api/x", ""); code != "407" {
		t.Errorf("route without credentials = %s, want 407", code)
	}
	auth := "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("u:pw")) + "\r\n"
	if code, body := rawGet(t, r.addr, "/api/x", auth); code != "200" || !strings.HasPrefix(body, "GET /x ") {
		t.Errorf("route with credentials = %s %q, want 200", code, body)
	}
	// The h2c and Unix-socket forms need them too: over h2c here.
	resp, err := h2cClient(t, "tcp", r.addr).Get(o.URL + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 407 {
		t.Errorf("h2c request without credentials = %d, want 407", resp.StatusCode)
	}
}
