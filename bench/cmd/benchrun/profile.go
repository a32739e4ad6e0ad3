package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// profileRun captures warmproxy CPU and alloc profiles under load for
// scenario sc and saves pprof top-lists as bench/profiles/SC-{cpu,allocs}.txt.
//
// HOOK(pprof): it starts a separate warmproxy with -pprof-flags (default
// "-pprof") so profiling never disturbs the measured runs, and fetches
// /debug/pprof/ from the admin address the proxy logs (a "listening" line
// mentioning admin, metrics or pprof), else from the proxy address. Until
// warmproxy offers that, it writes a note in place of each top-list.
func (b *bench) profileRun(ctx context.Context, sc string, load func(context.Context, *instance)) {
	note := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		b.problem("profile %s: %s", sc, msg)
		for _, kind := range []string{"cpu", "allocs"} {
			b.writeProfile(sc, kind, []byte("HOOK(pprof): no profile captured: "+msg+"\n"))
		}
	}
	in, err := b.start(ctx, "warmproxy", b.oi.HTTP, false, 1000, strings.Fields(b.c.pprofFlags)...)
	if err != nil && strings.Contains(err.Error(), "flag provided but not defined") {
		note("this warmproxy does not accept %q yet", b.c.pprofFlags)
		return
	}
	if err != nil {
		note("warmproxy did not start with %q: %v", b.c.pprofFlags, err)
		return
	}
	defer b.stop(in)
	base := in.admin
	if base == "" {
		base = in.addr
	}
	secs := max(1, int(b.c.duration/time.Second))
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		load(lctx, in)
	}()
	cpu, err := b.fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", base, secs), time.Duration(secs+30)*time.Second)
	var allocs []byte
	if err == nil {
		allocs, err = b.fetch(ctx, "http://"+base+"/debug/pprof/allocs", 30*time.Second)
	}
	cancel()
	<-done
	if err != nil {
		note("%v", err)
		return
	}
	raw := filepath.Join(b.c.workDir, "profiles")
	os.MkdirAll(raw, 0o755)
	for _, p := range []struct {
		kind string
		data []byte
		args []string
	}{
		{"cpu", cpu, nil},
		{"allocs", allocs, []string{"-sample_index=alloc_space"}},
	} {
		f := filepath.Join(raw, sc+"-"+p.kind+".pb.gz")
		if err := os.WriteFile(f, p.data, 0o644); err != nil {
			b.problem("profile %s: %v", sc, err)
			continue
		}
		// Flat top-list, then the same sorted by cumulative cost (which
		// shows the proxy's own call paths above the syscalls).
		var text []byte
		for _, order := range []string{"-top", "-cum"} {
			argv := append([]string{goTool(), "tool", "pprof", "-top", "-nodecount=40"}, p.args...)
			if order == "-cum" {
				argv = append(argv, "-cum")
			}
			argv = append(argv, b.c.warmproxy, f)
			out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
			if err != nil {
				b.problem("profile %s %s: pprof: %v: %s", sc, p.kind, err, out)
				break
			}
			text = append(text, "$ go tool pprof "+strings.Join(argv[4:], " ")+"\n"...)
			text = append(text, out...)
			text = append(text, '\n')
		}
		b.writeProfile(sc, p.kind, text)
	}
}

func (b *bench) writeProfile(sc, kind string, data []byte) {
	if err := os.MkdirAll(b.c.profileDir, 0o755); err != nil {
		b.problem("profile: %v", err)
		return
	}
	path := filepath.Join(b.c.profileDir, sc+"-"+kind+".txt")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.problem("profile: %v", err)
	}
}

// fetch GETs u and returns the body of a 200 response.
func (b *bench) fetch(ctx context.Context, u string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	res, err := (&http.Client{}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %v", u, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("get %s: %v", u, err)
	}
	if res.StatusCode != 200 {
		return nil, fmt.Errorf("get %s: status %d (no /debug/pprof there yet?)", u, res.StatusCode)
	}
	return body, nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}
