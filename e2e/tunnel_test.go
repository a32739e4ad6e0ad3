package e2e_test

// The e2e test of issue 3 is self-contained: its helpers are prefixed
// "tunnel" so as not to clash with the package's shared ones.

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// tunnelNeed returns the path of program, or skips the test when it is
// missing (fails under CI=true).
func tunnelNeed(t *testing.T, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required under CI: %v", program, err)
		}
		t.Skipf("%s not installed: %v", program, err)
	}
	return p
}

// tunnelCtx is bound to the test's deadline, less a margin for cleanup.
func tunnelCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-5*time.Second))
	}
	t.Cleanup(cancel)
	return ctx
}

// tunnelBuild returns the warmproxy binary TestMain built.
func tunnelBuild(t *testing.T) string {
	t.Helper()
	return proxyBinary
}

var tunnelListeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// tunnelProxy is a running warmproxy binary.
type tunnelProxy struct {
	addr   string
	cmd    *exec.Cmd
	stdout *testnet.Buffer // the access log
	exited chan error
}

// tunnelStart runs bin with args on 127.0.0.1:0 and waits for its ready
// line. The cleanup makes sure it has exited.
func tunnelStart(t *testing.T, bin string, args ...string) *tunnelProxy {
	t.Helper()
	cmd := exec.CommandContext(tunnelCtx(t), bin, append([]string{"-listen", "127.0.0.1:0"}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	p := &tunnelProxy{cmd: cmd, stdout: &testnet.Buffer{}, exited: make(chan error, 1)}
	cmd.Stdout = p.stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	var logs testnet.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			if m := tunnelListeningRE.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Errorf("warmproxy did not exit within 15s of SIGTERM\n%s", logs.String())
		}
	})
	select {
	case p.addr = <-addrc:
	case <-time.After(15 * time.Second):
		t.Fatalf("warmproxy printed no ready line within 15s\n%s", logs.String())
	}
	return p
}

// tunnelLines waits up to 3s (the access log flushes on a timer) for n
// access-log lines containing match, and returns them split into fields.
func (p *tunnelProxy) tunnelLines(t *testing.T, n int, match string) [][]string {
	t.Helper()
	var got [][]string
	for i := 0; i < 60; i++ {
		got = got[:0]
		for _, l := range strings.Split(p.stdout.String(), "\n") {
			if strings.Contains(l, match) {
				got = append(got, strings.Split(l, "\t"))
			}
		}
		if len(got) >= n {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d access lines matching %q, want %d:\n%s", len(got), match, n, p.stdout.String())
	return nil
}

// tunnelEnv is the environment for a client: no proxy settings of the
// machine's, no NO_PROXY exemption for loopback, plus extra.
func tunnelEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// Issue 3: real curl with https_proxy (and with -x) reaches an HTTPS
// origin through a CONNECT tunnel of the warmproxy binary; each tunnel
// gets its access-log line; SIGTERM then ends the process cleanly.
func TestTunnelCurlHTTPS(t *testing.T) {
	curl := tunnelNeed(t, "curl")
	bin := tunnelBuild(t)

	const body = "hello through the tunnel\n"
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	t.Cleanup(origin.Close)
	originAddr := origin.Listener.Addr().String()
	_, originPort, _ := net.SplitHostPort(originAddr)
	ca := testnet.CAFile(t, origin.Certificate())

	p := tunnelStart(t, bin, "-connect-ports", "443,"+originPort, "-tunnel-idle-timeout", "30s", "-shutdown-grace", "5m")
	url := "https://" + originAddr + "/hello"
	tests := []struct {
		name string
		args []string
		env  []string
	}{
		{"https_proxy", nil, []string{"https_proxy=http://" + p.addr}},
		{"HTTPS_PROXY", nil, []string{"HTTPS_PROXY=http://" + p.addr}},
		{"-x", []string{"-x", "http://" + p.addr}, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-sS", "--fail", "--max-time", "10", "--cacert", ca, "-w", "\n%{http_connect} %{http_code}"}, tt.args...)
			cmd := exec.CommandContext(tunnelCtx(t), curl, append(args, url)...)
			cmd.Env = tunnelEnv(tt.env...)
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("curl %v: %v\n%s", args, err, out)
			}
			// %{http_connect} is the proxy's CONNECT status: proof that
			// curl tunnelled rather than fetched directly.
			if want := body + "\n200 200"; string(out) != want {
				t.Fatalf("curl printed %q, want %q", out, want)
			}
			lines := p.tunnelLines(t, i+1, "\tconnect\t")
			f := lines[i]
			// Fields: time client method url status bytes_out seconds
			// requested_url reused connect_s tls_resumed retries bytes_in
			// kind error end.
			if len(f) != 17 || f[2] != "CONNECT" || f[3] != originAddr || f[4] != "200" || f[5] == "0" || f[12] == "0" || (f[15] != "eof" && f[15] != "reset") {
				// curl may close its end with unread bytes (a TLS
				// close_notify in flight), which the kernel turns into an
				// RST: "reset" is then the honest end.
				t.Errorf("access line %q: want CONNECT %s 200, bytes both ways, end eof or reset", strings.Join(f, "\t"), originAddr)
			}
		})
	}

	// A graceful stop with no tunnel open exits 0 at once: well before
	// the 5m grace period, which the hang guard tells from "at once"
	// without a tight wall-clock bound (issue 12).
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err // for the cleanup
		if err != nil {
			t.Errorf("warmproxy exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("warmproxy still running a minute after SIGTERM with nothing open: it waited for the grace period")
	}
}
