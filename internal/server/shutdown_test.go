package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
)

// Issue 12: a download and a tunnel still running when -shutdown-grace
// runs out are cut, and each gets its access-log line saying so
// (end=shutdown) before Run returns; the lifecycle log says, at Warn, how
// many requests and tunnels were cut.
func TestShutdownCutsAreLogged(t *testing.T) {
	origin := streamingOrigin(t)
	echo := tunnelEchoOrigin(t)
	cfg := config.Default()
	cfg.ShutdownGrace = 300 * time.Millisecond
	cfg.ConnectPorts = "*"
	p := start(t, cfg)

	resp, err := freshClient(t, p.addr).Get(origin + "/download")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
		t.Fatalf("download: %v", err)
	}
	tun, tunR := tunnelOpen(t, p.addr, echo)
	if err := tunnelEcho(tun, tunR, "hello"); err != nil {
		t.Fatal(err)
	}

	p.stop(t)
	var download, tunnel []string
	for _, line := range strings.Split(strings.TrimSpace(p.access.String()), "\n") {
		f := strings.Split(line, "\t")
		switch {
		case len(f) > 3 && f[3] == origin+"/download":
			download = f
		case len(f) > 3 && f[3] == echo:
			tunnel = f
		}
	}
	// Field 15 is end (accesslog.TSVHeader).
	if len(download) < 16 || download[15] != accesslog.EndShutdown {
		t.Errorf("download cut at shutdown: access line %q, want end=shutdown\n%s", download, p.access)
	}
	if len(tunnel) < 16 || tunnel[15] != accesslog.EndShutdown {
		t.Errorf("tunnel cut at shutdown: access line %q, want end=shutdown\n%s", tunnel, p.access)
	}
	if l := p.log.String(); !strings.Contains(l, `level=WARN msg="shutdown grace ran out, cut what was left" requests=1 tunnels=1`) {
		t.Errorf("lifecycle log:\n%s\nwant a WARN line with requests=1 tunnels=1", l)
	}
}

// streamingOrigin is an origin whose /download streams a few bytes every 20ms
// until the request ends (at most 30s).
func streamingOrigin(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		end := time.After(30 * time.Second)
		for {
			if _, err := io.WriteString(w, "0123456789"); err != nil {
				return
			}
			rc.Flush()
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			case <-end:
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
