// Package e2e_test drives the warmproxy binary, built once (by make test
// or by TestMain), with real clients (curl, raw sockets) against origins
// on loopback.
package e2e_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// plainBinary is warmproxy built without the race detector: the one make
// test built (WARMPROXY_TEST_BIN, see scripts/test.sh), or else one
// TestMain builds. proxyBinary is the one most tests run: plainBinary,
// unless WARMPROXY_E2E_RACE=1 asks for a -race build.
var plainBinary, proxyBinary string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "warmproxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// A plain build by default: the RSS measurement needs one, and the
	// handler runs under -race in the in-process tests.
	plainBinary = os.Getenv("WARMPROXY_TEST_BIN")
	if plainBinary == "" {
		plainBinary = filepath.Join(dir, "warmproxy")
		if err := buildWarmproxy(ctx, plainBinary); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: building warmproxy:", err)
			return 1
		}
	}
	proxyBinary = plainBinary
	if os.Getenv("WARMPROXY_E2E_RACE") != "" {
		proxyBinary = filepath.Join(dir, "warmproxy-race")
		if err := buildWarmproxy(ctx, proxyBinary, "-race"); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: building warmproxy -race:", err)
			return 1
		}
	}
	return m.Run()
}

// buildWarmproxy builds ./cmd/warmproxy into bin, with extra build flags.
func buildWarmproxy(ctx context.Context, bin string, flags ...string) error {
	args := append([]string{"build", "-o", bin}, flags...)
	build := exec.CommandContext(ctx, "go", append(args, "../cmd/warmproxy")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	return build.Run()
}

// requireProgram returns the path of an outside program, skipping the
// test when it is missing, unless CI is set: then a missing program fails.
func requireProgram(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required with CI set: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return path
}

// proxyProc is one running warmproxy process.
type proxyProc struct {
	// Addr is the address it listens on, HOST:PORT.
	Addr   string
	cmd    *exec.Cmd
	stdout *testnet.Buffer
	stderr *testnet.Buffer
	done   chan struct{} // closed once the process was waited for
	err    error         // Wait's result, set before done closes
}

// listeningRE matches the ready line: msg=listening ... addr=HOST:PORT.
var listeningRE = regexp.MustCompile(`msg=listening .*addr=(\S+)`)

// startProxy runs warmproxy with args, listening on a free loopback port
// unless args name one, and waits for its ready line. Cleanup stops it
// with SIGTERM and checks it exited 0 (unless a test stopped it already).
func startProxy(t *testing.T, args ...string) *proxyProc {
	t.Helper()
	return startProxyEnv(t, nil, args...)
}

// startProxyEnv is startProxy with extra environment variables, KEY=VALUE.
// The process never inherits WARMPROXY_* or proxy variables from the test.
func startProxyEnv(t *testing.T, env []string, args ...string) *proxyProc {
	t.Helper()
	// -listen 127.0.0.1:0 goes first unless the args name a listen
	// address, as a flag or in the positional form (127.0.0.1:PORT).
	named := false
	for _, a := range args {
		flagName := strings.TrimLeft(a, "-")
		named = named || flagName == "listen" || strings.HasPrefix(flagName, "listen=") || strings.HasPrefix(a, "127.0.0.1:")
	}
	if !named {
		args = append([]string{"-listen", "127.0.0.1:0"}, args...)
	}
	p := &proxyProc{stdout: &testnet.Buffer{}, stderr: &testnet.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(proxyBinary, args...)
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout = p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting warmproxy: %v", err)
	}
	addrc := make(chan string, 1)
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.Write([]byte(line + "\n"))
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		readers.Wait() // the pipe must be drained before Wait
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case p.Addr = <-addrc:
	case <-p.done:
		t.Fatalf("warmproxy %q exited before listening: %v\nstderr:\n%s", args, p.err, p.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("warmproxy %q printed no listening line in 30s\nstderr:\n%s", args, p.stderr)
	}
	return p
}

// cleanEnv is the test's environment less WARMPROXY_* and proxy settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		if strings.HasPrefix(k, "WARMPROXY_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// URL is the proxy URL for clients.
func (p *proxyProc) URL() string { return "http://" + p.Addr }

// signal sends sig to the process.
func (p *proxyProc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Errorf("signal %v: %v", sig, err)
	}
}

// wait waits up to d for the process to exit and returns its exit code.
func (p *proxyProc) wait(t *testing.T, d time.Duration) (int, bool) {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return -1, false
	}
}

// stop sends SIGTERM and checks that the process exits 0 within 15s. A
// process that already exited is left alone.
func (p *proxyProc) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	p.signal(t, syscall.SIGTERM)
	code, ok := p.wait(t, 15*time.Second)
	if !ok {
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("warmproxy did not exit within 15s of SIGTERM\nstderr:\n%s", p.stderr)
		return
	}
	if code != 0 {
		t.Errorf("warmproxy exited %d after SIGTERM, want 0\nstderr:\n%s", code, p.stderr)
	}
}

// accessLines returns the access log lines written so far. Records are
// flushed on a 200ms timer, so this waits until at least n are there.
func (p *proxyProc) accessLines(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := strings.TrimSuffix(p.stdout.String(), "\n")
		var lines []string
		if out != "" {
			lines = strings.Split(out, "\n")
		}
		if len(lines) >= n || time.Now().After(deadline) {
			if len(lines) < n {
				t.Fatalf("got %d access lines, want %d:\n%s", len(lines), n, out)
			}
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// command returns an exec.Cmd for an outside program tied to the test's
// deadline, killed if it outlives it, with a bounded wait for its output.
func command(t *testing.T, timeout time.Duration, name string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = cleanEnv()
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// origin is an httptest origin on loopback counting its TCP connections,
// TLS handshakes and resumed sessions.
type origin struct {
	*httptest.Server
	conns, handshakes, resumed atomic.Int64
	caFile                     string
}

func newOrigin(t *testing.T, useTLS bool, h http.HandlerFunc) *origin {
	t.Helper()
	return newOriginCert(t, useTLS, nil, h)
}

// newOriginCert is newOrigin with its own certificate (nil: httptest's,
// which every httptest origin shares); setup runs before it starts.
func newOriginCert(t *testing.T, useTLS bool, cert *tls.Certificate, h http.HandlerFunc, setup ...func(*origin)) *origin {
	t.Helper()
	o := &origin{}
	o.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && r.TLS.DidResume {
			o.resumed.Add(1)
		}
		h(w, r)
	}))
	o.Config.ErrorLog = log.New(io.Discard, "", 0)
	o.Config.ConnState = testnet.OnNew(func() { o.conns.Add(1) })
	for _, f := range setup {
		f(o)
	}
	if !useTLS {
		o.Start()
		t.Cleanup(o.Close)
		return o
	}
	o.TLS = &tls.Config{GetConfigForClient: testnet.OnHello(func() { o.handshakes.Add(1) })}
	if cert != nil {
		o.TLS.Certificates = []tls.Certificate{*cert}
	}
	o.StartTLS()
	t.Cleanup(o.Close)
	o.caFile = testnet.CAFile(t, o.Certificate())
	return o
}

// httpURL is the origin's address as an http:// URL: with the protocol
// header the proxy speaks TLS to it anyway.
func (o *origin) httpURL(path string) string { return "http://" + o.Listener.Addr().String() + path }

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// selfSigned makes a certificate for 127.0.0.1 that is its own root.
func selfSigned(t *testing.T, name string) *tls.Certificate {
	t.Helper()
	return selfSignedFor(t, name, x509.ExtKeyUsageServerAuth)
}

// selfSignedFor is selfSigned for the given use (server or client auth).
func selfSignedFor(t *testing.T, name string, use x509.ExtKeyUsage) *tls.Certificate {
	t.Helper()
	c := testnet.SelfSigned(t, testnet.Cert{CommonName: name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Use: []x509.ExtKeyUsage{use}})
	return &c
}
