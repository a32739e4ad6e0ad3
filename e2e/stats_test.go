package e2e_test

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "rewrite docs/stats.png from TestStatsPageInChromium")

// adminRE matches the admin ready line: msg="admin listening" addr=HOST:PORT.
var adminRE = regexp.MustCompile(`msg="admin listening" addr=(\S+)`)

// adminAddr is the -admin-listen address the proxy printed.
func (p *proxyProc) adminAddr(t *testing.T) string {
	t.Helper()
	m := adminRE.FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("no admin listening line:\n%s", p.stderr)
	}
	return m[1]
}

// proxyClient sends requests through the proxy at proxyURL, a new client
// connection each, as a PHP script does.
func proxyClient(t *testing.T, proxyURL string) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: http.ProxyURL(mustURL(proxyURL)), DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// proxyGet sends GET target through c, with X-Real-Protocol: https when
// tls is set, and returns the status code.
func proxyGet(t *testing.T, c *http.Client, target string, tls bool) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tls {
		req.Header.Set("X-Real-Protocol", "https")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// port is o's port.
func port(o *origin) string {
	_, p, _ := net.SplitHostPort(o.Listener.Addr().String())
	return p
}

// chromium runs headless Debian chromium on url with args (--dump-dom,
// --screenshot=...) and returns its stdout.
func chromium(t *testing.T, url string, args ...string) string {
	t.Helper()
	bin := requireProgram(t, "chromium")
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
	cmd := command(t, 90*time.Second, bin, append(append(base, args...), url)...)
	var stderr testnet.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %q: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// Issue 15: after plain, https-by-header and HTTP/2 traffic through the
// binary, the stats page on -admin-listen, loaded in a real headless
// Chromium, shows every origin with its protocol, and an origin's
// malformed response, markup in the error text, as text, not as an
// element. -update-screenshot rewrites docs/stats.png.
func TestStatsPageInChromium(t *testing.T) {
	requireProgram(t, "chromium")
	plain := newOrigin(t, false, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	h1 := newOrigin(t, true, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	h2 := newOriginCert(t, true, nil, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
		func(o *origin) { o.EnableHTTP2 = true })
	bad := testnet.Serve(t, func(c net.Conn) {
		c.Read(make([]byte, 4096))
		io.WriteString(c, "<script>document.title='pwned'</script>\r\n\r\n")
	})
	// Two origins by name (httptest's certificate is for example.com too),
	// resolved by a stub on loopback through the DNS cache.
	dns := testnet.DNS(t, map[string][]string{"plain.test": {"127.0.0.1"}, "example.com": {"127.0.0.1"}})
	p := startProxy(t, "-admin-listen", "127.0.0.1:0", "-ca-file", h1.caFile, "-dns-server", dns)
	admin := p.adminAddr(t)
	c := proxyClient(t, p.URL())
	plainHost := "plain.test:" + port(plain)
	h1Host := "example.com:" + port(h1)
	for i := range 12 {
		for _, o := range []struct {
			host string
			tls  bool
		}{{plainHost, false}, {h1Host, true}, {h2.Listener.Addr().String(), true}} {
			if code := proxyGet(t, c, fmt.Sprintf("http://%s/%d", o.host, i), o.tls); code != http.StatusOK {
				t.Fatalf("GET %s = %d, want 200", o.host, code)
			}
		}
	}
	if code := proxyGet(t, c, "http://"+bad+"/", false); code != http.StatusBadGateway {
		t.Fatalf("GET the malformed origin = %d, want 502", code)
	}

	dom := chromium(t, "http://"+admin+"/", "--dump-dom")
	for _, want := range []string{
		"<title>warmproxy stats</title>",
		`<td class="l host">` + plainHost + `</td>`,
		`<td class="l host">` + h1Host + `</td>`,
		`<td class="l host">` + h2.Listener.Addr().String() + `</td>`,
		`<td class="l host">` + bad + `</td>`,
		`<span class="proto">HTTP/2</span>`,
		`<span class="proto h1">HTTP/1.1</span>`,
		`id="total-requests">37<`,
		"malformed HTTP response \"&lt;script&gt;document.title='pwned'&lt;/script&gt;\"",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("Chromium's DOM lacks %q:\n%s", want, dom)
		}
	}
	if strings.Contains(dom, "<script") || strings.Contains(dom, "pwned</title>") {
		t.Errorf("Chromium's DOM has a script element from the origin's response:\n%s", dom)
	}

	shot := filepath.Join(t.TempDir(), "stats.png")
	chromium(t, "http://"+admin+"/", "--screenshot="+shot, "--window-size=1280,800", "--hide-scrollbars")
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("chromium screenshot: %v, %d bytes", err, len(png))
	}
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("..", "docs", "stats.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
