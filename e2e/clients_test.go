package e2e_test

// The real-client suite (issue 7): PHP (curl extension and stream wrapper),
// curl, Node (fetch through undici's ProxyAgent), Python (urllib) and Go
// (net/http), each run as one short-lived process per request, the way a
// PHP-FPM pool runs them, against the warmproxy binary and a local HTTPS
// origin.
//
// Helpers here are prefixed cli so they cannot clash with the package's
// other files; the binary is built once per test binary.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
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

	"golang.org/x/crypto/bcrypt"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// cliProcesses is how many client processes each client runs through the
// protocol header; together they must cause at most one TLS handshake.
const cliProcesses = 50

// cliNeed returns the path of program, or skips the test when it is
// missing; under CI=true a missing program fails the test instead, so the
// suite cannot pass by skipping.
func cliNeed(t *testing.T, program string, extra ...string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	for _, alt := range extra {
		if err == nil {
			break
		}
		if _, serr := os.Stat(alt); serr == nil {
			path, err = alt, nil
		}
	}
	if err != nil {
		cliMissing(t, "%s not found (scripts/install-test-deps.sh installs it): %v", program, err)
	}
	return path
}

// cliMissing skips the test, or fails it under CI.
func cliMissing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and a test dependency is missing: "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// cliRepoRoot is the module root: the tests run in e2e/.
func cliRepoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

var (
	goClientOnce sync.Once
	goClientPath string
	goClientErr  error
)

// cliGoClient builds the Go test client (e2e/testdata/goclient) once per
// test binary, into a directory of the temp dir named for this checkout,
// and returns its path. It is written under a temporary name and renamed,
// so concurrent runs never see half a file. (warmproxy itself is
// plainBinary, which TestMain provides.)
func cliGoClient(t *testing.T) string {
	t.Helper()
	goClientOnce.Do(func() {
		root, err := filepath.Abs("..")
		if err != nil {
			goClientErr = err
			return
		}
		sum := sha256.Sum256([]byte(root))
		dir := filepath.Join(os.TempDir(), "warmproxy-e2e-cli-"+hex.EncodeToString(sum[:6]))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			goClientErr = err
			return
		}
		const pkg = "./e2e/testdata/goclient"
		tmp := filepath.Join(dir, fmt.Sprintf(".goclient.%d", os.Getpid()))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			goClientErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
			return
		}
		goClientPath = filepath.Join(dir, "goclient")
		goClientErr = os.Rename(tmp, goClientPath)
	})
	if goClientErr != nil {
		t.Fatal(goClientErr)
	}
	return goClientPath
}

// cliEnv is the environment for child processes: cleanEnv's (no proxy
// settings: NO_PROXY=127.0.0.1 in a CI environment would make curl bypass
// warmproxy; no WARMPROXY_* settings), less NODE_OPTIONS, plus extra.
func cliEnv(extra ...string) []string {
	var env []string
	for _, kv := range cleanEnv() {
		if k, _, _ := strings.Cut(kv, "="); !strings.EqualFold(k, "node_options") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// cliProxy is a running warmproxy process.
type cliProxy struct {
	Addr   string          // host:port it listens on
	Access *testnet.Buffer // its stdout: the access log
	Log    *testnet.Buffer // its stderr
	cmd    *exec.Cmd
}

var cliListeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// cliStartProxy starts the warmproxy binary on 127.0.0.1:0 with args and
// waits for its ready line. At the end of the test it is sent SIGTERM and
// must exit 0 within its grace period.
func cliStartProxy(t *testing.T, args ...string) *cliProxy {
	t.Helper()
	args = append([]string{"-listen", "127.0.0.1:0", "-shutdown-grace", "2s"}, args...)
	cmd := exec.Command(plainBinary, args...)
	cmd.Env = cliEnv()
	cmd.WaitDelay = 10 * time.Second
	p := &cliProxy{Access: &testnet.Buffer{}, Log: &testnet.Buffer{}, cmd: cmd}
	cmd.Stdout = p.Access
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	addr := make(chan string, 1)
	go func() { // owner: this proxy; ends at the process's EOF
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.Log.Write([]byte(line + "\n"))
			if m := cliListeningRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("warmproxy %q exited with %v after SIGTERM; stderr:\n%s", args, err, p.Log)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("warmproxy %q did not exit within 20s of SIGTERM", args)
		}
	})
	select {
	case p.Addr = <-addr:
	case err := <-exited:
		t.Fatalf("warmproxy %q exited before listening: %v\n%s", args, err, p.Log)
	case <-time.After(15 * time.Second):
		t.Fatalf("warmproxy %q printed no listening line within 15s:\n%s", args, p.Log)
	}
	return p
}

// cliAccessRecords waits until the access log holds at least n records
// matching match (the log is flushed every 200ms) and returns them as TSV
// fields.
func (p *cliProxy) cliAccessRecords(t *testing.T, n int, match string) [][]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var recs [][]string
		for _, line := range strings.Split(p.Access.String(), "\n") {
			if line != "" && strings.Contains(line, match) {
				recs = append(recs, strings.Split(line, "\t"))
			}
		}
		if len(recs) >= n || time.Now().After(deadline) {
			if len(recs) < n {
				t.Fatalf("access log has %d records matching %q within 10s, want %d:\n%s", len(recs), match, n, p.Access)
			}
			return recs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TSV access-log fields (accesslog.TSVHeader).
const (
	cliFieldURL     = 3
	cliFieldStatus  = 4
	cliFieldReused  = 8
	cliFieldResumed = 10
	cliFieldKind    = 13
	cliFieldError   = 14
)

// cliOrigin is an HTTPS origin on loopback that counts TCP connections and
// TLS handshakes.
type cliOrigin struct {
	URL        *url.URL
	CAFile     string       // its certificate, PEM
	Conns      atomic.Int64 // TCP connections accepted
	Handshakes atomic.Int64 // TLS ClientHellos seen
}

// cliStartOrigin starts an HTTPS origin that answers "origin METHOD PATH"
// and 400 if the protocol header reached it.
func cliStartOrigin(t *testing.T) *cliOrigin {
	t.Helper()
	o := &cliOrigin{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get("X-Real-Protocol"); v != "" {
			http.Error(w, "protocol header reached the origin: "+v, http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "origin %s %s", r.Method, r.URL.Path)
	}))
	srv.Config.ConnState = testnet.OnNew(func() { o.Conns.Add(1) })
	srv.TLS = &tls.Config{GetConfigForClient: testnet.OnHello(func() { o.Handshakes.Add(1) })}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	o.URL, _ = url.Parse(srv.URL)
	o.CAFile = filepath.Join(t.TempDir(), "origin.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(o.CAFile, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	return o
}

// cliRun runs argv once with a 30s bound and returns its stdout; a failure
// fails the test with its stderr.
func cliRun(t *testing.T, argv []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = cliEnv()
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%q: %v\nstdout: %s\nstderr: %s", argv, err, &stdout, &stderr)
	}
	if cmd.ProcessState == nil || !cmd.ProcessState.Exited() {
		t.Fatalf("%q did not exit", argv)
	}
	return stdout.String()
}

// cliParse splits a client's output into body and status.
func cliParse(out string) (body string, status int, err error) {
	i := strings.LastIndex(out, "\nSTATUS ")
	if i < 0 {
		return "", 0, fmt.Errorf("no STATUS line in %q", out)
	}
	if _, err := fmt.Sscanf(out[i+1:], "STATUS %d", &status); err != nil {
		return "", 0, fmt.Errorf("bad STATUS line in %q: %v", out, err)
	}
	return out[:i], status, nil
}

// cliClient is one real client: argv makes the command line for one
// request (proxy host:port, URL, header line or "", CA file or "").
type cliClient struct {
	name string
	argv func(t *testing.T, proxy, url, header, cafile string) []string
}

// cliClients returns the clients, each resolving its program (or skipping
// when it is missing) only when its subtest runs.
func cliClients() []cliClient {
	script := func(rel string) string { return filepath.Join("testdata", rel) }
	return []cliClient{
		{"php-curl", func(t *testing.T, proxy, u, h, ca string) []string {
			php := cliNeed(t, "php")
			cliNeedPHPCurl(t, php)
			return []string{php, script("php/curl.php"), proxy, u, h, ca}
		}},
		{"php-stream", func(t *testing.T, proxy, u, h, ca string) []string {
			return []string{cliNeed(t, "php"), script("php/stream.php"), proxy, u, h, ca}
		}},
		{"curl", func(t *testing.T, proxy, u, h, ca string) []string {
			argv := []string{cliNeed(t, "curl"), "-sS", "--max-time", "10", "-x", "http://" + proxy, "-w", `\nSTATUS %{http_code}\n`}
			if h != "" {
				argv = append(argv, "-H", h)
			}
			if ca != "" {
				argv = append(argv, "--cacert", ca)
			}
			return append(argv, u)
		}},
		{"node-undici", func(t *testing.T, proxy, u, h, ca string) []string {
			node := cliNeed(t, "node", "/usr/bin/nodejs")
			if _, err := os.Stat(script("node/node_modules/undici/package.json")); err != nil {
				cliMissing(t, "undici is not installed: run npm ci --prefix e2e/testdata/node (scripts/install-test-deps.sh does): %v", err)
			}
			return []string{node, script("node/client.js"), proxy, u, h, ca}
		}},
		{"python-urllib", func(t *testing.T, proxy, u, h, ca string) []string {
			return []string{cliPython(t), script("python/client.py"), proxy, u, h, ca}
		}},
		{"go-nethttp", func(t *testing.T, proxy, u, h, ca string) []string {
			return []string{cliGoClient(t), proxy, u, h, ca}
		}},
	}
}

func cliNeedPHPCurl(t *testing.T, php string) {
	t.Helper()
	out, err := exec.Command(php, "-r", `echo extension_loaded("curl") ? "yes" : "no";`).Output()
	if err != nil || string(out) != "yes" {
		cliMissing(t, "PHP's curl extension is not loaded (package php-curl): %q %v", out, err)
	}
}

var (
	cliPythonOnce sync.Once
	cliPythonPath string
)

// cliPython returns the python3 interpreter itself: a version manager's
// shim (pyenv) costs half a second a process, which 50 processes feel.
func cliPython(t *testing.T) string {
	t.Helper()
	shim := cliNeed(t, "python3")
	cliPythonOnce.Do(func() {
		cliPythonPath = shim
		out, err := exec.Command(shim, "-c", "import sys; print(sys.executable)").Output()
		if p := strings.TrimSpace(string(out)); err == nil && p != "" {
			cliPythonPath = p
		}
	})
	return cliPythonPath
}

// Issue 7: each real client, run as 50 separate processes, gets the
// origin's answer through warmproxy, and with the protocol header the 50
// processes cause at most one TLS handshake at the origin: warmproxy keeps
// the TLS connection that the processes cannot.
func TestCLIClientsReuseTLS(t *testing.T) {
	for _, c := range cliClients() {
		t.Run(c.name, func(t *testing.T) {
			// Clients run side by side, each with its own origin and
			// proxy; each client's processes run one after another.
			t.Parallel()
			origin := cliStartOrigin(t)
			proxy := cliStartProxy(t, "-ca-file", origin.CAFile)
			// http:// to the proxy; the header makes warmproxy speak TLS.
			target := "http://" + origin.URL.Host + "/cli/" + c.name
			argv := c.argv(t, proxy.Addr, target, "X-Real-Protocol: https", "")

			start := time.Now()
			for i := range cliProcesses {
				body, status, err := cliParse(cliRun(t, argv))
				if err != nil {
					t.Fatalf("process %d: %v", i, err)
				}
				if want := "origin GET /cli/" + c.name; status != http.StatusOK || body != want {
					t.Fatalf("process %d: status %d body %q, want 200 %q", i, status, body, want)
				}
			}
			elapsed := time.Since(start)

			if hs, conns := origin.Handshakes.Load(), origin.Conns.Load(); hs != 1 || conns != 1 {
				t.Errorf("%d %s processes caused %d TLS handshakes on %d connections at the origin, want 1 on 1", cliProcesses, c.name, hs, conns)
			}
			// The access log shows it too: every request went out over
			// TLS, and all but the first on a pooled connection.
			https := "https://" + origin.URL.Host + "/cli/" + c.name
			recs := proxy.cliAccessRecords(t, cliProcesses, https)
			reused := 0
			for _, r := range recs {
				if r[cliFieldStatus] != "200" || r[cliFieldURL] != https || r[cliFieldKind] != "request" {
					t.Errorf("access record %q: want status 200, url %s, kind request", r, https)
				}
				if r[cliFieldReused] == "yes" {
					reused++
				}
			}
			if reused < cliProcesses-1 {
				t.Errorf("access log: %d of %d requests reused a connection, want %d", reused, len(recs), cliProcesses-1)
			}
			t.Logf("%d %s processes in %v (%v each); origin saw %d TLS handshake(s); %d/%d reused",
				cliProcesses, c.name, elapsed.Round(time.Millisecond), (elapsed / cliProcesses).Round(time.Millisecond), origin.Handshakes.Load(), reused, len(recs))
		})
	}
}

// cliConnectProcesses is how many processes each client runs through
// CONNECT.
const cliConnectProcesses = 3

// Issue 7: an https:// URL goes through CONNECT: it works with each client,
// and, the TLS session being the client's own end to end, each process
// makes its own handshake: what the docs say about CONNECT.
func TestCLIClientsConnect(t *testing.T) {
	for _, c := range cliClients() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			origin := cliStartOrigin(t)
			proxy := cliStartProxy(t, "-connect-ports", origin.URL.Port())
			target := "https://" + origin.URL.Host + "/cli/" + c.name + "/connect"
			argv := c.argv(t, proxy.Addr, target, "", origin.CAFile)
			for i := range cliConnectProcesses {
				body, status, err := cliParse(cliRun(t, argv))
				if err != nil {
					t.Fatalf("process %d: %v", i, err)
				}
				if want := "origin GET /cli/" + c.name + "/connect"; status != http.StatusOK || body != want {
					t.Fatalf("process %d: status %d body %q, want 200 %q", i, status, body, want)
				}
			}
			if hs := origin.Handshakes.Load(); hs != cliConnectProcesses {
				t.Errorf("%d CONNECT processes made %d TLS handshakes at the origin, want %d: one each", cliConnectProcesses, hs, cliConnectProcesses)
			}
			for _, r := range proxy.cliAccessRecords(t, cliConnectProcesses, "\tCONNECT\t") {
				if r[cliFieldStatus] != "200" || r[cliFieldKind] != "connect" || r[cliFieldError] != "-" {
					t.Errorf("access record %q: want a clean CONNECT with status 200", r)
				}
			}
		})
	}
}

// Issue 7: CONNECT is refused to a port -connect-ports does not allow (the
// default allows 443 only), with a message saying how to allow it.
func TestCLIConnectPortDenied(t *testing.T) {
	curl := cliNeed(t, "curl")
	origin := cliStartOrigin(t)
	proxy := cliStartProxy(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sS", "-x", "http://"+proxy.Addr, "--cacert", origin.CAFile, "https://"+origin.URL.Host+"/")
	cmd.Env = cliEnv()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "403") {
		t.Errorf("curl through CONNECT to a port not allowed: %v %s, want a 403 failure", err, out)
	}
	if origin.Conns.Load() != 0 {
		t.Errorf("origin saw %d connections, want none", origin.Conns.Load())
	}
}

// Issue 7: SIGHUP re-reads the configuration file: a new log-format applies
// without dropping client connections, and a bad file keeps the old
// configuration and says why.
func TestCLIReload(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "plain origin")
	}))
	t.Cleanup(origin.Close)
	conf := filepath.Join(t.TempDir(), "warmproxy.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("log-format: tsv\n")
	proxy := cliStartProxy(t, "-config", conf)

	// One client keep-alive connection for the whole test.
	proxyURL := &url.URL{Scheme: "http", Host: proxy.Addr}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var conns atomic.Int64
	get := func(path string) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if !i.Reused {
				conns.Add(1)
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", origin.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "plain origin" {
			t.Fatalf("GET %s = %d %q", path, resp.StatusCode, b)
		}
	}
	hup := func(wantLog string, n int) {
		t.Helper()
		if err := proxy.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); strings.Count(proxy.Log.String(), wantLog) < n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log within 10s of SIGHUP:\n%s", wantLog, proxy.Log)
			}
		}
	}

	get("/before")
	proxy.cliAccessRecords(t, 1, "\t"+origin.URL+"/before\t")

	write("log-format: json\nmax-idle: 7\n")
	hup("configuration reloaded", 1)
	if l := proxy.Log.String(); !strings.Contains(l, "applied=[log-format] needs_restart=[max-idle]") {
		t.Errorf("reload log = %q, want log-format applied and max-idle needing a restart", l)
	}
	get("/after")
	proxy.cliAccessRecords(t, 1, `"url":"`+origin.URL+`/after"`)

	write("log-format: xml\nno-such-key: 1\n")
	hup("reload failed, keeping the old configuration", 1)
	if l := proxy.Log.String(); !strings.Contains(l, `unknown key \"no-such-key\"`) || !strings.Contains(l, `log-format \"xml\"`) {
		t.Errorf("failed reload log = %q, want both problems", l)
	}
	get("/bad")
	proxy.cliAccessRecords(t, 1, `"url":"`+origin.URL+`/bad"`)

	if n := conns.Load(); n != 1 {
		t.Errorf("client opened %d connections to warmproxy across two reloads, want 1", n)
	}
}

// Issue 7: SIGHUP reloads the access rules and the credentials: a new deny
// rule applies to the very next request (pooled connections opened under
// the old rules are closed), a credentials file is read again even when
// only its contents changed, and a file that does not parse is refused
// while the running rules stay.
func TestCLIReloadAccess(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "plain origin")
	}))
	t.Cleanup(origin.Close)
	dir := t.TempDir()
	conf, users := filepath.Join(dir, "warmproxy.yaml"), filepath.Join(dir, "users")
	write := func(path, s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	htpasswd := func(user, pass string) string {
		t.Helper()
		h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return user + ":" + string(h) + "\n"
	}
	write(conf, "log-format: tsv\n")
	proxy := cliStartProxy(t, "-config", conf)
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxy.Addr}), DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	status := func(user, pass string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", origin.URL+"/x", nil)
		if user != "" {
			req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET through warmproxy: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	reloads := 0
	hup := func(wantLog string) {
		t.Helper()
		reloads++
		n := strings.Count(proxy.Log.String(), wantLog) + 1
		if err := proxy.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); strings.Count(proxy.Log.String(), wantLog) < n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d: no %q in the log within 10s of SIGHUP:\n%s", reloads, wantLog, proxy.Log)
			}
		}
	}
	steps := []struct {
		name       string
		conf, auth string // new file contents; "" leaves the file alone
		log        string
		want       map[[2]string]int // {user, pass} -> status
	}{
		{name: "start", want: map[[2]string]int{{"", ""}: 200}},
		{
			name: "deny the origin", conf: "deny: 127.0.0.1\n", log: "configuration reloaded",
			want: map[[2]string]int{{"", ""}: http.StatusForbidden},
		},
		{
			name: "allow it again, require credentials", conf: "proxy-auth-file: " + users + "\n", auth: htpasswd("php", "old"),
			log:  "configuration reloaded",
			want: map[[2]string]int{{"", ""}: http.StatusProxyAuthRequired, {"php", "old"}: 200, {"php", "new"}: http.StatusProxyAuthRequired},
		},
		{
			name: "rotate the password in the same file", auth: htpasswd("php", "new"), log: "configuration reloaded",
			want: map[[2]string]int{{"php", "old"}: http.StatusProxyAuthRequired, {"php", "new"}: 200},
		},
		{
			name: "a broken credentials file is refused", auth: "php:not-a-hash\n", log: "reload failed, keeping the old configuration",
			want: map[[2]string]int{{"php", "new"}: 200, {"", ""}: http.StatusProxyAuthRequired},
		},
	}
	for _, st := range steps {
		if st.conf != "" {
			write(conf, st.conf)
		}
		if st.auth != "" {
			write(users, st.auth)
		}
		if st.log != "" {
			hup(st.log)
		}
		for cred, want := range st.want {
			if got := status(cred[0], cred[1]); got != want {
				t.Errorf("%s: request as %q = %d, want %d\n%s", st.name, cred[0], got, want, proxy.Log)
			}
		}
	}
}

// Issue 7: -version prints the version and the commit from build info when
// built in a git checkout with VCS stamping.
func TestCLIVersion(t *testing.T) {
	git := cliNeed(t, "git")
	root := cliRepoRoot(t)
	if _, err := exec.Command(git, "-C", root, "rev-parse", "HEAD").Output(); err != nil {
		cliMissing(t, "not a git checkout: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	// The go command stamps VCS information only where .git is a
	// directory; in a linked worktree (.git is a file) build a clone.
	if fi, err := os.Stat(filepath.Join(root, ".git")); err != nil || !fi.IsDir() {
		clone := filepath.Join(t.TempDir(), "clone")
		if out, err := exec.CommandContext(ctx, git, "clone", "--quiet", "--no-hardlinks", root, clone).CombinedOutput(); err != nil {
			t.Fatalf("git clone: %v\n%s", err, out)
		}
		root = clone
	}
	head, err := exec.Command(git, "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "warmproxy")
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=true", "-o", bin, "./cmd/warmproxy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "-version").Output()
	if err != nil {
		t.Fatalf("warmproxy -version: %v", err)
	}
	re := regexp.MustCompile(`^warmproxy \S+ commit ([0-9a-f]{40})(-dirty)?\n$`)
	m := re.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("warmproxy -version = %q, want %q", out, re)
	}
	if want := strings.TrimSpace(string(head)); m[1] != want {
		t.Errorf("warmproxy -version commit = %s, want HEAD %s", m[1], want)
	}
}
