package e2e_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoHopOrigin answers with the request's path and Host and sets
// hop-by-hop response fields, which no client may get (curl's nghttp2
// refuses an HTTP/2 response carrying them).
func echoHopOrigin(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Keep-Alive", "timeout=5")
	h.Set("Connection", "X-Hop")
	h.Set("X-Hop", "1")
	h.Set("Proxy-Connection", "keep-alive")
	h.Set("Upgrade", "h3")
	fmt.Fprintf(w, "%s host=%s", r.URL.RequestURI(), r.Host)
}

// curl runs curl with args (cleanEnv drops the proxy variables) and returns
// its output.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	args = append([]string{"-sS", "--max-time", "10", "--noproxy", ""}, args...)
	out, err := command(t, 15*time.Second, "curl", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("curl %q: %v %s", args, err, stderr)
	}
	return string(out)
}

// checkNoHopByHop fails if a response head from curl -D - carries a
// hop-by-hop field.
func checkNoHopByHop(t *testing.T, head string) {
	t.Helper()
	for _, line := range strings.Split(head, "\n") {
		name, _, _ := strings.Cut(strings.ToLower(line), ":")
		switch name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "x-hop":
			t.Errorf("response carries hop-by-hop field %q", strings.TrimSpace(line))
		}
	}
}

// Issue 8 acceptance: curl speaking HTTP/2 with prior knowledge to the
// proxy (h2c) reaches the origin named in :authority, the protocol header
// makes it HTTPS over one pooled TLS connection, and no hop-by-hop field
// reaches curl. curl sends h2c to the proxy with --connect-to: with -x it
// speaks HTTP/1.1 to an http:// proxy even with --http2-prior-knowledge,
// and that keeps working too.
func TestCurlH2C(t *testing.T) {
	requireProgram(t, "curl")
	o := newOrigin(t, true, echoHopOrigin)
	p := startProxy(t, "-ca-file", o.caFile)
	oaddr := o.Listener.Addr().String()
	connectTo := oaddr + ":" + p.Addr // HOST1:PORT1:HOST2:PORT2

	const n = 10
	for i := range n {
		out := curl(t, "--http2-prior-knowledge", "--connect-to", connectTo, "-D", "-",
			"-w", "\nversion=%{http_version}", "-H", "X-Real-Protocol: https", "http://"+oaddr+"/h2?i=1")
		head, rest, _ := strings.Cut(out, "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/2 200") || rest != "/h2?i=1 host="+oaddr+"\nversion=2" {
			t.Fatalf("curl %d over h2c: %q", i, out)
		}
		checkNoHopByHop(t, head)
	}
	if c, h := o.conns.Load(), o.handshakes.Load(); c != 1 || h != 1 {
		t.Errorf("origin saw %d TCP connections and %d TLS handshakes for %d h2c curls, want 1 and 1", c, h, n)
	}
	lines := p.accessLines(t, n)
	if f := strings.Split(lines[n-1], "\t"); f[3] != "https://"+oaddr+"/h2?i=1" || f[4] != "200" || f[8] != "yes" {
		t.Errorf("access line %q: want https://%s/h2?i=1, 200, reused", f, oaddr)
	}

	// The proxy's own authority over h2c: admin paths.
	if out := curl(t, "--http2-prior-knowledge", "http://"+p.Addr+"/healthz"); out != "ok\n" {
		t.Errorf("curl h2c /healthz on the proxy = %q", out)
	}
	// -x with --http2-prior-knowledge: curl speaks HTTP/1.1 to the proxy.
	out := curl(t, "--http2-prior-knowledge", "-x", p.URL(), "-H", "X-Real-Protocol: https", "http://"+oaddr+"/x")
	if out != "/x host="+oaddr {
		t.Errorf("curl --http2-prior-knowledge -x = %q", out)
	}
}

// Issue 8 acceptance: -listen unix:/path serves curl --unix-socket and
// PHP's CURLOPT_UNIX_SOCKET_PATH, which send origin-form requests with the
// target in Host; the TLS connection to the origin is pooled across
// client processes; the socket file is removed at exit.
func TestUnixSocketClients(t *testing.T) {
	requireProgram(t, "curl")
	o := newOrigin(t, true, echoHopOrigin)
	dir, err := os.MkdirTemp("", "wpe2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "warmproxy.sock")
	p := startProxy(t, "-listen", "unix:"+sock, "-listen-mode", "0600", "-ca-file", o.caFile)
	if p.Addr != "unix:"+sock {
		t.Fatalf("listening on %q, want unix:%s", p.Addr, sock)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, mode %v; want 0600", sock, err, fi.Mode())
	}
	oaddr := o.Listener.Addr().String()
	target := "http://" + oaddr + "/u?q=1"
	want := "/u?q=1 host=" + oaddr

	for i := range 5 {
		out := curl(t, "--unix-socket", sock, "-D", "-", "-H", "X-Real-Protocol: https", target)
		head, body, _ := strings.Cut(out, "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 200") || body != want {
			t.Fatalf("curl --unix-socket %d: %q", i, out)
		}
		checkNoHopByHop(t, head)
	}
	out := curl(t, "--unix-socket", sock, "--http2-prior-knowledge", "-w", "\nversion=%{http_version}", "-H", "X-Real-Protocol: https", target)
	if out != want+"\nversion=2" {
		t.Errorf("curl --unix-socket --http2-prior-knowledge: %q", out)
	}
	if out := curl(t, "--unix-socket", sock, "http://localhost/healthz"); out != "ok\n" {
		t.Errorf("curl --unix-socket http://localhost/healthz = %q, want the proxy's ok", out)
	}
	n := 6

	if _, err := exec.LookPath("php"); err == nil || os.Getenv("CI") != "" {
		requireProgram(t, "php")
		script := filepath.Join(dir, "unix.php")
		code := `<?php
$ch = curl_init($argv[1]);
curl_setopt_array($ch, [
    CURLOPT_UNIX_SOCKET_PATH => $argv[2],
    CURLOPT_HTTPHEADER => ['X-Real-Protocol: https'],
    CURLOPT_RETURNTRANSFER => true,
    CURLOPT_TIMEOUT => 10,
]);
$body = curl_exec($ch);
echo curl_getinfo($ch, CURLINFO_RESPONSE_CODE), ' ', $body === false ? curl_error($ch) : $body;
`
		if err := os.WriteFile(script, []byte(code), 0o600); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			b, err := command(t, 20*time.Second, "php", script, target, sock).CombinedOutput()
			if err != nil || string(b) != "200 "+want {
				t.Fatalf("php CURLOPT_UNIX_SOCKET_PATH %d: %q %v", i, b, err)
			}
		}
		n += 3
	} else {
		t.Log("php not installed: PHP CURLOPT_UNIX_SOCKET_PATH not checked")
	}

	if c, h := o.conns.Load(), o.handshakes.Load(); c != 1 || h != 1 {
		t.Errorf("origin saw %d TCP connections and %d TLS handshakes for %d socket clients, want 1 and 1", c, h, n)
	}
	lines := p.accessLines(t, n) // /healthz is not logged
	if f := strings.Split(lines[0], "\t"); !strings.HasPrefix(f[1], "unix:pid=") || f[3] != "https://"+oaddr+"/u?q=1" {
		t.Errorf("access line %q: want client unix:pid=...,uid=... and https://%s/u?q=1", f, oaddr)
	}

	p.signal(t, syscall.SIGTERM)
	if code, ok := p.wait(t, 15*time.Second); !ok || code != 0 {
		t.Fatalf("warmproxy exit %d (exited %v) after SIGTERM, want 0", code, ok)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file after exit: %v, want it removed", err)
	}
}

// Issue 8 acceptance: -route serves SDKs that take a base URL: curl to
// the proxy's own address reaches the route's target through the pool,
// and no path (curl --path-as-is, raw sockets) climbs out of the base.
func TestCurlRoutes(t *testing.T) {
	requireProgram(t, "curl")
	o := newOrigin(t, true, echoHopOrigin)
	oaddr := o.Listener.Addr().String()
	p := startProxy(t, "-ca-file", o.caFile, "-route", "/api/=https://"+oaddr+"/v1/", "-route", "/other/=http://127.0.0.1:1/")

	for i := range 3 {
		if out := curl(t, "http://"+p.Addr+"/api/charges?limit=3"); out != "/v1/charges?limit=3 host="+oaddr {
			t.Fatalf("curl route %d: %q", i, out)
		}
	}
	if c, h := o.conns.Load(), o.handshakes.Load(); c != 1 || h != 1 {
		t.Errorf("origin saw %d TCP connections and %d TLS handshakes for 3 route requests, want 1 and 1", c, h)
	}
	for _, path := range []string{"/api/../metrics", "/api/x/../../y", "/api/%2e%2e/x", "/api/%2E./x", "/api/..%2Fx", "/api/.%2e%5cx"} {
		out := curl(t, "--path-as-is", "-w", "\n%{http_code}", "http://"+p.Addr+path)
		if !strings.HasSuffix(out, "\n400") || !strings.Contains(out, "cannot leave") {
			t.Errorf("curl --path-as-is %s = %q, want 400", path, out)
		}
	}
	// A raw request line, as no client library would normalize it.
	conn, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /api/..\\..\\x HTTP/1.1\r\nHost: "+p.Addr+"\r\nConnection: close\r\n\r\n")
	if b, _ := io.ReadAll(conn); !strings.HasPrefix(string(b), "HTTP/1.1 400") {
		t.Errorf("raw GET /api/..\\..\\x = %q, want 400", b)
	}
	if o.handshakes.Load() != 1 {
		t.Errorf("a refused path reached the origin")
	}
	lines := p.accessLines(t, 1)
	if f := strings.Split(lines[0], "\t"); f[3] != "https://"+oaddr+"/v1/charges?limit=3" || f[7] != "/api/charges?limit=3" {
		t.Errorf("access line %q: want url https://%s/v1/charges?limit=3, requested /api/charges?limit=3", f, oaddr)
	}
}
