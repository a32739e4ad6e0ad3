package e2e_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// walkStep is one fenced shell block of a walkthrough in the docs.
type walkStep struct {
	script string
	// until is the address a background step is ready on; "" for a step
	// that runs to its end.
	until string
	// skip is why the step is not run ("" to run it).
	skip string
	// output is what the step must print, from a fenced block marked
	// "<!-- walkthrough: output -->" right after it; "" for no check.
	output string
}

var (
	walkMarkRE  = regexp.MustCompile(`^<!-- walkthrough: (.*) -->$`)
	walkUntilRE = regexp.MustCompile(`^background until (\S+) accepts$`)
)

// walkSteps returns the fenced blocks of the markdown section titled
// heading: the ```sh ones as steps, each with the "<!-- walkthrough: ...
// -->" marker on the line before its fence, and the output a marked plain
// block after it must match.
func walkSteps(t *testing.T, markdown, heading string) []walkStep {
	t.Helper()
	_, sec, ok := strings.Cut(markdown, "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("no section %q", heading)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	var steps []walkStep
	lines := strings.Split(sec, "\n")
	for i := 0; i < len(lines); i++ {
		info, isFence := strings.CutPrefix(lines[i], "```")
		if !isFence {
			continue
		}
		mark := ""
		if i > 0 {
			if m := walkMarkRE.FindStringSubmatch(lines[i-1]); m != nil {
				mark = m[1]
			}
		}
		j := i + 1
		for j < len(lines) && lines[j] != "```" {
			j++
		}
		if j == len(lines) {
			t.Fatalf("section %q: unclosed fence at line %d", heading, i)
		}
		body := strings.Join(lines[i+1:j], "\n") + "\n"
		i = j
		switch {
		case info == "sh":
			s := walkStep{script: body}
			if m := walkUntilRE.FindStringSubmatch(mark); m != nil {
				s.until = m[1]
			} else if after, ok := strings.CutPrefix(mark, "skip"); ok {
				s.skip = strings.Trim(strings.TrimSpace(after), "()")
				if s.skip == "" {
					s.skip = "marked skip"
				}
			} else if mark != "" {
				t.Fatalf("section %q: unknown walkthrough marker %q", heading, mark)
			}
			steps = append(steps, s)
		case mark == "output":
			if len(steps) == 0 {
				t.Fatalf("section %q: output block before any command", heading)
			}
			steps[len(steps)-1].output = body
		}
	}
	return steps
}

// Issue 15: the "Five minutes" walkthrough of docs/integration.md works
// offline, and its commands run as written: a local HTTPS origin, then
// warmproxy (each in a terminal of its own, here in the background), then
// the PHP script twice and the curl checks. The only substitutions are the
// two fixed ports (the test picks free ones, so that it can run next to a
// real warmproxy on 9999 or another test run) and /tmp (a directory of the
// test's own). Steps that need the internet are marked in the markdown and
// skipped.
func TestWalkthroughFiveMinutes(t *testing.T) {
	for _, p := range []string{"go", "bash", "curl", "php"} {
		requireProgram(t, p)
	}
	if out, err := exec.Command("php", "-m").Output(); err != nil || !regexp.MustCompile(`(?mi)^curl$`).Match(out) {
		if os.Getenv("CI") != "" {
			t.Fatalf("php has no curl extension (php -m: %v)", err)
		}
		t.Skip("php has no curl extension")
	}
	md, err := os.ReadFile("../docs/integration.md")
	if err != nil {
		t.Fatal(err)
	}
	steps := walkSteps(t, string(md), "Five minutes")
	proxyAddr, originAddr, tmp := testnet.ClosedAddr(t), testnet.ClosedAddr(t), t.TempDir()
	sub := strings.NewReplacer("127.0.0.1:9999", proxyAddr, "127.0.0.1:8443", originAddr, "/tmp/", tmp+"/")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	var proxyOut *testnet.Buffer
	ran := 0
	for i, s := range steps {
		script := sub.Replace(s.script)
		if s.skip != "" {
			t.Logf("step %d skipped (%s):\n%s", i, s.skip, script)
			continue
		}
		ran++
		if s.until != "" {
			out := startWalkStep(ctx, t, root, script, sub.Replace(s.until))
			if s.until == "127.0.0.1:9999" {
				proxyOut = out
			}
			continue
		}
		cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
		cmd.Dir, cmd.Env, cmd.WaitDelay = root, cleanEnv(), 10*time.Second
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("step %d: %v\n%s\nstdout:\n%s\nstderr:\n%s", i, err, script, &stdout, &stderr)
		}
		if s.output != "" && stdout.String() != s.output {
			t.Errorf("step %d printed %q, want %q as the walkthrough says\n%s", i, stdout.String(), s.output, script)
		}
	}
	if ran < 4 || proxyOut == nil {
		t.Fatalf("ran %d steps (proxy started: %v); want the origin, warmproxy, the PHP script and curl", ran, proxyOut != nil)
	}

	// What the walkthrough says the access log shows: the first request
	// opened the connection, the second reused it.
	var reused []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		reused = reused[:0]
		for _, line := range strings.Split(proxyOut.String(), "\n") {
			if f := strings.Split(line, "\t"); len(f) > 9 && f[3] == "https://"+originAddr+"/bytes/1256" {
				reused = append(reused, f[8])
			}
		}
		if len(reused) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if strings.Join(reused, ",") != "no,yes" {
		t.Errorf("access log reused fields %q for the two PHP requests, want no,yes:\n%s", reused, proxyOut)
	}
}

// startWalkStep runs script in the background, in a process group of its
// own (go run starts a child), and waits until addr accepts connections.
// Cleanup stops the group with SIGTERM, then SIGKILL. It returns the
// step's stdout.
func startWalkStep(ctx context.Context, t *testing.T, dir, script, addr string) *testnet.Buffer {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir, cmd.Env = dir, cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, stderr := &testnet.Buffer{}, &testnet.Buffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Errorf("background step did not stop 15s after SIGTERM:\n%s", script)
		}
	})
	// go run compiles first: allow for a busy machine.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return stdout
		}
		select {
		case <-done:
			t.Fatalf("background step exited before %s accepted: %v\n%s\nstderr:\n%s", addr, waitErr, script, stderr)
		case <-ctx.Done():
			t.Fatalf("background step: %v", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept within 3 minutes\n%s\nstderr:\n%s", addr, script, stderr)
		}
	}
}
