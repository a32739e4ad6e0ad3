package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/server"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// recordsHandler keeps the message and string attributes of every record.
type recordsHandler struct {
	slog.Handler
	mu   sync.Mutex
	recs map[string]map[string]string
}

func (h *recordsHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordsHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	h.recs[r.Message] = attrs
	h.mu.Unlock()
	return nil
}

// wait returns the attributes of the record with message msg.
func (h *recordsHandler) wait(t *testing.T, msg string) map[string]string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h.mu.Lock()
		a, ok := h.recs[msg]
		h.mu.Unlock()
		if ok {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q record within 10s", msg)
		}
	}
}

var (
	proxyFlagRE  = regexp.MustCompile(`^curl -x (http://\S+) `)
	headerFlagRE = regexp.MustCompile(` -H '([^':]+): ([^']+)' `)
)

// Issue 15: after "listening", the startup log prints a request to paste
// (curl without and with the protocol header) and where /metrics, /stats
// and /debug/pool are. The test sends the printed request, to a local
// origin instead of example.com, and fetches the printed metrics URL.
func TestStartHints(t *testing.T) {
	for _, separateAdmin := range []bool{false, true} {
		name := "admin on the proxy address"
		if separateAdmin {
			name = "admin-listen"
		}
		t.Run(name, func(t *testing.T) {
			origin, cfg, _ := tlsOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			cfg.Listen = "127.0.0.1:0"
			if separateAdmin {
				cfg.AdminListen = "127.0.0.1:0"
			}
			h := &recordsHandler{Handler: slog.DiscardHandler, recs: map[string]map[string]string{}}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- server.Run(ctx, config.MustParse(cfg), slog.New(h), &testnet.Buffer{}) }()
			t.Cleanup(func() {
				cancel()
				select {
				case <-done:
				case <-time.After(15 * time.Second):
					t.Error("Run did not return 15s after cancel")
				}
			})
			addr := h.wait(t, "listening")["addr"]
			try := h.wait(t, "try it")
			admin := h.wait(t, "admin endpoints")

			if want := "curl -x http://" + addr + " http://example.com/"; try["plain"] != want {
				t.Errorf("plain example %q, want %q", try["plain"], want)
			}
			m, hm := proxyFlagRE.FindStringSubmatch(try["tls_pooled"]), headerFlagRE.FindStringSubmatch(try["tls_pooled"])
			if m == nil || hm == nil || !strings.HasSuffix(try["tls_pooled"], " http://example.com/") {
				t.Fatalf("tls_pooled example %q, want curl -x PROXY -H 'X-Real-Protocol: https' http://example.com/", try["tls_pooled"])
			}
			proxyURL, err := url.Parse(m[1])
			if err != nil {
				t.Fatal(err)
			}
			c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 10 * time.Second}
			req, _ := http.NewRequest(http.MethodGet, "http://"+origin.Listener.Addr().String()+"/", nil)
			req.Header.Set(hm[1], hm[2])
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("the printed request, to a local origin: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("the printed request, to a local origin: %d, want 200", resp.StatusCode)
			}

			base := "http://" + addr
			if separateAdmin {
				base = "http://" + h.wait(t, "admin listening")["addr"]
			}
			for k, path := range map[string]string{"metrics": "/metrics", "stats": "/stats", "pool": "/debug/pool"} {
				if admin[k] != base+path {
					t.Errorf("admin endpoints %s=%q, want %q", k, admin[k], base+path)
				}
			}
			for _, u := range []string{admin["metrics"], admin["pool"]} {
				resp, err := http.Get(u)
				if err != nil {
					t.Fatalf("GET %s: %v", u, err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("GET %s: %d, want 200", u, resp.StatusCode)
				}
			}
		})
	}
}
