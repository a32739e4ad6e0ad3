package e2e_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 12: the parent proxy's password can be kept out of argv, where
// ps, /proc/PID/cmdline and pprof's cmdline show it: in
// -parent-proxy-auth-file (a file others cannot read; a warning
// otherwise) or in WARMPROXY_PARENT_PROXY. Either way the parent accepts
// the credentials, and neither the command line, pprof's cmdline,
// -check-config nor the log shows the password.
func TestParentSecretsNotInArgv(t *testing.T) {
	const secret = "s3cret-pw"
	parent := parStartParent(t, "corp", secret)
	origin := newOrigin(t, false, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	dir := t.TempDir()
	private, shared := filepath.Join(dir, "parent.auth"), filepath.Join(dir, "shared.auth")
	os.WriteFile(private, []byte("corp:"+secret+"\n"), 0o600)
	os.WriteFile(shared, []byte("corp:"+secret+"\n"), 0o644)
	parentAddr := parent.Listener.Addr().String()
	tests := []struct {
		name     string
		env      []string
		args     []string
		wantWarn bool
	}{
		{"auth file", nil, []string{"-parent-proxy", "http://" + parentAddr, "-parent-proxy-auth-file", private}, false},
		{"auth file others may read", nil, []string{"-parent-proxy", "http://" + parentAddr, "-parent-proxy-auth-file", shared}, true},
		{"environment", []string{"WARMPROXY_PARENT_PROXY=http://corp:" + secret + "@" + parentAddr}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-admin-listen", "127.0.0.1:0", "-pprof"}, tt.args...)
			p := startProxyEnv(t, tt.env, args...)
			if out := curlProxy(t, p.URL(), origin.httpURL("/")); out != "ok" {
				t.Fatalf("curl through the parent = %q, want ok (the parent took the credentials)", out)
			}
			m := adminRE.FindStringSubmatch(p.stderr.String())
			if m == nil {
				t.Fatalf("no admin listening line:\n%s", p.stderr)
			}
			resp, err := http.Get("http://" + m[1] + "/debug/pprof/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			cmdline, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Contains(cmdline, []byte("-pprof")) {
				t.Fatalf("pprof cmdline = %d %q, want 200 and the command line", resp.StatusCode, cmdline)
			}
			proc, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			check := exec.Command(proxyBinary, append(args, "-check-config")...)
			check.Env = append(cleanEnv(), tt.env...)
			checked, err := check.CombinedOutput()
			if err != nil {
				t.Fatalf("-check-config: %v\n%s", err, checked)
			}
			time.Sleep(100 * time.Millisecond) // let stderr catch up
			for what, s := range map[string]string{"pprof cmdline": string(cmdline), "/proc/PID/cmdline": string(proc),
				"-check-config": string(checked), "stderr": p.stderr.String()} {
				if strings.Contains(s, secret) {
					t.Errorf("%s shows the parent's password:\n%s", what, s)
				}
			}
			if warned := strings.Contains(p.stderr.String(), "chmod 600"); warned != tt.wantWarn {
				t.Errorf("warning about the file's mode: %v, want %v\n%s", warned, tt.wantWarn, p.stderr)
			}
		})
	}
}

// Issue 12: -pprof without -admin-listen is refused at start with the fix
// in the message, and exit code 2.
func TestPprofNeedsAdminListen(t *testing.T) {
	cmd := exec.Command(proxyBinary, "-listen", "127.0.0.1:0", "-pprof")
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "pprof needs admin-listen") {
		t.Errorf("warmproxy -pprof = %v\n%s\nwant exit 2 saying pprof needs admin-listen", err, out)
	}
}
