package e2e_test

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 12: a download still running when -shutdown-grace runs out is cut
// with an access-log line that says so (end=shutdown), stderr says at Warn
// how many requests and tunnels were cut, and the process exits 0 (the
// shutdown was asked for and went as configured).
func TestShutdownCutDownloadLogged(t *testing.T) {
	origin := newOrigin(t, false, func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for i := 0; i < 1500; i++ { // 30s at most
			if _, err := io.WriteString(w, "0123456789"); err != nil {
				return
			}
			rc.Flush()
			select {
			case <-time.After(20 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	})
	p := startProxy(t, "-shutdown-grace", "300ms")
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(mustURL(p.URL()))}, Timeout: 30 * time.Second}
	resp, err := c.Get(origin.httpURL("/download"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
		t.Fatalf("download: %v", err)
	}
	p.signal(t, syscall.SIGTERM)
	code, ok := p.wait(t, 15*time.Second)
	if !ok || code != 0 {
		t.Fatalf("warmproxy after SIGTERM: exited %v, code %d; want exit 0\nstderr:\n%s", ok, code, p.stderr)
	}
	var line string
	for _, l := range strings.Split(p.stdout.String(), "\n") {
		if strings.Contains(l, "\t"+origin.httpURL("/download")+"\t") {
			line = l
		}
	}
	// Field 15 of the TSV line is end.
	if f := strings.Split(line, "\t"); len(f) < 16 || f[15] != "shutdown" {
		t.Errorf("access line for the cut download = %q, want end=shutdown\nstdout:\n%s", line, p.stdout)
	}
	if !strings.Contains(p.stderr.String(), `level=WARN msg="shutdown grace ran out, cut what was left" requests=1 tunnels=0`) {
		t.Errorf("stderr says nothing of the cut request:\n%s", p.stderr)
	}
}
