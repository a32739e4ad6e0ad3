package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/intercept"
	"github.com/warmproxy/warmproxy/internal/proxystatus"
	"github.com/warmproxy/warmproxy/internal/server"
	"github.com/warmproxy/warmproxy/internal/testnet"
	"golang.org/x/net/http2"
)

// icptOrigin is an HTTPS origin on 127.0.0.1 with a certificate for
// localhost and 127.0.0.1 from its own root, counting TCP connections
// and full TLS handshakes.
type icptOrigin struct {
	srv        *httptest.Server
	caFile     string // its root, for -ca-file
	leaf       *x509.Certificate
	conns      atomic.Int64
	handshakes atomic.Int64 // ClientHellos
	resumed    atomic.Int64
}

func (o *icptOrigin) port() string { return fmt.Sprint(o.srv.Listener.Addr().(*net.TCPAddr).Port) }

// newICPTOrigin starts it; h2 offers HTTP/2 too.
func newICPTOrigin(t *testing.T, h http.Handler, h2 bool) *icptOrigin {
	t.Helper()
	o := &icptOrigin{}
	cert, rootPEM := icptOriginCert(t)
	o.leaf = cert.Leaf
	o.srv = httptest.NewUnstartedServer(h)
	o.srv.EnableHTTP2 = h2
	o.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	o.srv.Config.ConnState = testnet.OnNew(func() { o.conns.Add(1) })
	o.srv.TLS = &tls.Config{
		Certificates:       []tls.Certificate{cert},
		GetConfigForClient: testnet.OnHello(func() { o.handshakes.Add(1) }),
	}
	o.srv.StartTLS()
	t.Cleanup(o.srv.Close)
	o.caFile = filepath.Join(t.TempDir(), "origin-root.pem")
	if err := os.WriteFile(o.caFile, rootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return o
}

// icptOriginCert is a self-signed certificate for localhost and
// 127.0.0.1 that is its own root.
func icptOriginCert(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	c := testnet.SelfSigned(t, testnet.Cert{CommonName: "test origin", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	return c, testnet.CertPEM(c)
}

// icptRig is the proxy handler with an Interceptor, on a real listener.
type icptRig struct {
	*tunnelRig
	icpt  *intercept.Interceptor
	roots *x509.CertPool // the interception CA
	caPEM []byte
}

// icptStart makes a CA for patterns and starts the proxy intercepting
// them, trusting caFile for origins.
func icptStart(t *testing.T, patterns, caFile string) *icptRig {
	t.Helper()
	return icptStartWith(t, patterns, caFile, nil)
}

// icptStartWith is icptStart with edit applied to the config.
func icptStartWith(t *testing.T, patterns, caFile string, edit func(*config.Config)) *icptRig {
	t.Helper()
	dir, caPEM, roots := icptCA(t, patterns)
	cfg := tunnelConfig(t, func(cfg *config.Config) {
		cfg.CAFile = caFile
		cfg.Intercept, cfg.InterceptCA = patterns, dir
		if edit != nil {
			edit(cfg)
		}
	})
	icpt, err := intercept.New(intercept.Options{Patterns: config.MustParse(cfg).Intercept, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rig := &icptRig{tunnelRig: tunnelServe(t, cfg, icpt, 256), icpt: icpt, roots: roots, caPEM: caPEM}
	rig.closeTracked = true
	return rig
}

// icptCA makes an interception CA for patterns in a new directory and
// returns the directory, the CA certificate and a pool holding it.
func icptCA(t *testing.T, patterns string) (string, []byte, *x509.CertPool) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	ps, err := intercept.ParsePatterns(patterns)
	if err != nil {
		t.Fatal(err)
	}
	if err := intercept.Init(dir, ps, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, intercept.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	return dir, caPEM, roots
}

// client is a fresh client through the proxy, as one PHP process is: its
// own connection, trusting roots only, HTTP/2 offered when h2.
func (r *icptRig) client(t *testing.T, roots *x509.CertPool, h2 bool) (*http.Client, *http.Transport) {
	t.Helper()
	tr := &http.Transport{
		Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: r.addr}),
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: h2,
		DisableKeepAlives: !h2,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}, tr
}

// drain returns the access records written so far, waiting for n.
func (r *icptRig) drain(t *testing.T, n int) []accesslog.Entry {
	t.Helper()
	var out []accesslog.Entry
	for len(out) < n {
		out = append(out, r.record(t))
	}
	return out
}

func icptHello(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "hello %s %s via %s", r.Host, r.URL.Path, r.Header.Get("Via"))
}

// Issue 13: an https:// request through CONNECT to a host listed in
// -intercept is served through the pool: 20 clients, each with its own
// connection and its own TLS handshake to warmproxy, cause one TCP
// connection and one TLS handshake at the origin; each client sees a
// certificate from the interception CA with the host as its SAN, and the
// access log says "intercepted".
func TestInterceptPoolsTLS(t *testing.T) {
	for _, tc := range []struct {
		name, host string
		h2         bool
	}{
		{"dns name http1", "localhost", false},
		{"dns name h2", "localhost", true},
		{"ip literal", "127.0.0.1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			origin := newICPTOrigin(t, http.HandlerFunc(icptHello), true)
			rig := icptStart(t, tc.host, origin.caFile)
			target := "https://" + net.JoinHostPort(tc.host, origin.port()) + "/x"
			const clients = 20
			for i := range clients {
				c, tr := rig.client(t, rig.roots, tc.h2)
				resp, err := c.Get(target)
				if err != nil {
					t.Fatalf("client %d: GET %s: %v", i, target, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				tr.CloseIdleConnections() // the process exits
				want := "hello " + net.JoinHostPort(tc.host, origin.port()) + " /x via 1.1 warmproxy"
				if tc.h2 {
					want = strings.Replace(want, "1.1 warmproxy", "2 warmproxy", 1)
				}
				if resp.StatusCode != 200 || string(body) != want {
					t.Fatalf("client %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
				}
				if tc.h2 && resp.ProtoMajor != 2 {
					t.Errorf("client %d: response over %s, want HTTP/2 inside the tunnel", i, resp.Proto)
				}
				leaf := resp.TLS.PeerCertificates[0]
				if err := leaf.VerifyHostname(tc.host); err != nil || leaf.Issuer.String() == origin.leaf.Subject.String() {
					t.Errorf("client %d saw certificate of %v issued by %v (%v), want one minted for %s", i, leaf.Subject, leaf.Issuer, err, tc.host)
				}
				if n := len(leaf.DNSNames) + len(leaf.IPAddresses); n != 1 {
					t.Errorf("minted leaf has %d SANs (%v %v), want exactly the host", n, leaf.DNSNames, leaf.IPAddresses)
				}
			}
			if conns, hs := origin.conns.Load(), origin.handshakes.Load(); conns != 1 || hs != 1 {
				t.Errorf("%d intercepted clients caused %d TCP connections and %d TLS handshakes at the origin, want 1 and 1", clients, conns, hs)
			}
			if n := rig.icpt.Minter().Mints(); n != 1 {
				t.Errorf("%d leaves minted for one host, want 1 (cached)", n)
			}
			// Each client: its request, then its tunnel's record.
			recs := rig.drain(t, 2*clients)
			reused := 0
			for _, e := range recs {
				if e.Kind != accesslog.KindIntercepted {
					t.Errorf("access record %s %s kind %q, want intercepted", e.Method, e.URL, e.Kind)
				}
				if e.Method == http.MethodConnect && (e.BytesIn < 100 || e.BytesOut < 100) {
					t.Errorf("tunnel record bytes in %d out %d, want the TLS bytes both ways", e.BytesIn, e.BytesOut)
				}
				if e.Method == http.MethodGet {
					if e.URL != target || e.Status != 200 {
						t.Errorf("access record %s %d, want %s 200", e.URL, e.Status, target)
					}
					if e.Reused {
						reused++
					}
				}
			}
			if reused != clients-1 {
				t.Errorf("%d of %d intercepted requests reused a pooled connection, want %d", reused, clients, clients-1)
			}
		})
	}
}

// Issue 13: a client that keeps its TLS session (PHP's persistent curl
// share, Node's agent) resumes it with warmproxy on its next tunnel:
// session tickets are on and shared by every tunnel.
func TestInterceptResumes(t *testing.T) {
	origin := newICPTOrigin(t, http.HandlerFunc(icptHello), false)
	rig := icptStart(t, "localhost", origin.caFile)
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		c, tr := rig.client(t, rig.roots, false)
		tr.TLSClientConfig.ClientSessionCache = cache
		resp, err := c.Get("https://localhost:" + origin.port() + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resumed := resp.TLS.DidResume; resumed != (i == 1) {
			t.Errorf("tunnel %d resumed %v, want %v", i, resumed, i == 1)
		}
	}
}

// Issue 13: interception never weakens origin verification. An origin
// whose certificate warmproxy does not trust gets a 502 with
// Proxy-Status error=tls_certificate_error and the reason; the client,
// which trusts the interception CA, never gets the origin's answer.
func TestInterceptUntrustedOrigin(t *testing.T) {
	reached := make(chan struct{}, 1)
	origin := newICPTOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached <- struct{}{}
	}), false)
	rig := icptStart(t, "localhost", "") // origin's root not trusted
	c, _ := rig.client(t, rig.roots, false)
	resp, err := c.Get("https://localhost:" + origin.port() + "/secret")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ps := resp.Header.Get("Proxy-Status")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(ps, "error=tls_certificate_error") || !strings.Contains(ps, "unknown authority") {
		t.Errorf("untrusted origin: %d %q Proxy-Status %q, want 502 with error=tls_certificate_error and the reason", resp.StatusCode, body, ps)
	}
	select {
	case <-reached:
		t.Error("the origin got the request over a connection whose certificate was not verified")
	default:
	}
	e := rig.record(t)
	if e.Kind != accesslog.KindIntercepted || e.Status != 502 || e.Error != proxystatus.TLSCertificateError {
		t.Errorf("access record kind %q status %d error %q, want intercepted 502 %s", e.Kind, e.Status, e.Error, proxystatus.TLSCertificateError)
	}
}

// Issue 13: a host not in -intercept is tunneled as before: the client's
// TLS goes end to end and it sees the origin's own certificate.
func TestInterceptUnlistedHostTunneled(t *testing.T) {
	origin := newICPTOrigin(t, http.HandlerFunc(icptHello), false)
	rig := icptStart(t, "localhost", origin.caFile)
	originRoots := x509.NewCertPool()
	originRoots.AddCert(origin.leaf)
	c, _ := rig.client(t, originRoots, false)
	resp, err := c.Get("https://127.0.0.1:" + origin.port() + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.TLS.PeerCertificates[0]; !got.Equal(origin.leaf) {
		t.Errorf("unlisted host: client saw certificate %v, want the origin's own", got.Subject)
	}
	if e := rig.record(t); e.Kind != accesslog.KindConnect {
		t.Errorf("access record kind %q, want connect", e.Kind)
	}
	if n := rig.icpt.Minter().Mints(); n != 0 {
		t.Errorf("%d leaves minted for an unlisted host, want 0", n)
	}
}

// icptConnect opens a CONNECT tunnel to target through the rig and
// returns the raw conn after the 200.
func (r *icptRig) connect(t *testing.T, target string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", target, resp, err)
	}
	if br.Buffered() > 0 {
		t.Fatalf("bytes after the 200 to CONNECT")
	}
	return c
}

// Issue 13: no confused deputy. A client whose TLS server name is not
// the CONNECT host fails the handshake, and no leaf is minted for the
// name it asked.
func TestInterceptSNIMismatch(t *testing.T) {
	origin := newICPTOrigin(t, http.HandlerFunc(icptHello), false)
	rig := icptStart(t, "localhost,127.0.0.1", origin.caFile)
	for _, sni := range []string{"other.test", "localhost.evil.test", ""} {
		t.Run("sni "+sni, func(t *testing.T) {
			c := rig.connect(t, "localhost:"+origin.port())
			// InsecureSkipVerify: the refusal must be the server's, not this
			// client's check of the name.
			tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
			err := tc.Handshake()
			if err == nil {
				t.Fatalf("handshake with SNI %q in a tunnel to localhost succeeded, want it refused", sni)
			}
			e := rig.record(t)
			if e.Kind != accesslog.KindIntercepted || e.Error != proxystatus.TLSProtocolError || !strings.Contains(e.Detail, "server name") {
				t.Errorf("access record kind %q error %q detail %q, want intercepted %s naming the server name", e.Kind, e.Error, e.Detail, proxystatus.TLSProtocolError)
			}
		})
	}
	if n := rig.icpt.Minter().Mints(); n != 0 {
		t.Errorf("%d leaves minted, want 0", n)
	}
}

// Issue 13: every request inside an intercepted tunnel must target the
// tunnel's authority: one for another host gets 421 Misdirected Request,
// whether it names it in Host or in an absolute-form target, and never
// reaches any origin.
func TestInterceptMisdirected(t *testing.T) {
	var hits atomic.Int64
	origin := newICPTOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }), false)
	rig := icptStart(t, "localhost,127.0.0.1", origin.caFile)
	p := origin.port()
	for _, tc := range []struct{ name, line, host string }{
		{"other host", "GET / HTTP/1.1", "127.0.0.1:" + p},
		{"other port", "GET / HTTP/1.1", "localhost:1"},
		{"absolute form", "GET https://127.0.0.1:" + p + "/ HTTP/1.1", "localhost:" + p},
		{"absolute form and host", "GET https://127.0.0.1:" + p + "/ HTTP/1.1", "127.0.0.1:" + p},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rig.connect(t, "localhost:"+p)
			tc2 := tls.Client(c, &tls.Config{ServerName: "localhost", RootCAs: rig.roots})
			fmt.Fprintf(tc2, "%s\r\nHost: %s\r\n\r\n", tc.line, tc.host)
			resp, err := http.ReadResponse(bufio.NewReader(tc2), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusMisdirectedRequest || !strings.Contains(string(body), "localhost:"+p+" only") {
				t.Errorf("%s / Host %s in a tunnel to localhost: %d %q, want 421 naming the tunnel's authority", tc.line, tc.host, resp.StatusCode, body)
			}
			if e := rig.record(t); e.Status != http.StatusMisdirectedRequest || e.Kind != accesslog.KindIntercepted {
				t.Errorf("access record status %d kind %q, want 421 intercepted", e.Status, e.Kind)
			}
			tc2.Close()
			rig.record(t) // the tunnel's own
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("origin got %d misdirected requests, want 0", n)
	}
}

// Issue 13: a WebSocket inside an intercepted tunnel works, both ways,
// over a verified TLS connection to the origin.
func TestInterceptWebSocket(t *testing.T) {
	origin := newICPTOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}), false)
	rig := icptStart(t, "localhost", origin.caFile)
	client, _ := rig.client(t, rig.roots, false)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://localhost:"+origin.port()+"/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("websocket through an intercepted tunnel: %v", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	big := bytes.Repeat([]byte("abcdefgh"), 1<<14)
	for _, m := range [][]byte{[]byte("hello"), big} {
		if err := ws.Write(ctx, websocket.MessageBinary, m); err != nil {
			t.Fatal(err)
		}
		_, got, err := ws.Read(ctx)
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("echo of %d bytes: got %d, %v", len(m), len(got), err)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "done")
	// The upgrade's record and its tunnel's, in either order: both end
	// when the connection closes.
	recs := rig.drain(t, 2)
	if recs[0].Kind != accesslog.KindUpgrade {
		recs[0], recs[1] = recs[1], recs[0]
	}
	if e := recs[0]; e.Kind != accesslog.KindUpgrade || e.Status != 101 || !strings.HasPrefix(e.URL, "https://localhost:") {
		t.Errorf("access record kind %q status %d url %q, want upgrade 101 https://localhost:…", e.Kind, e.Status, e.URL)
	}
	if e := recs[1]; e.Kind != accesslog.KindIntercepted || e.Method != http.MethodConnect {
		t.Errorf("tunnel record kind %q method %q, want intercepted CONNECT", e.Kind, e.Method)
	}
}

// Issue 13: a host whose -upstream-tls rule turns verification off is
// never intercepted, even when -intercept lists it: the client would take
// an unverified origin for a verified one. It stays an end-to-end tunnel,
// and the client sees (and checks) the origin's own certificate.
func TestInterceptNeverUnverified(t *testing.T) {
	origin := newICPTOrigin(t, http.HandlerFunc(icptHello), false)
	dir, _, _ := icptCA(t, "localhost")
	cfg := testConfig()
	cfg.ConnectPorts = "*"
	cfg.Intercept, cfg.InterceptCA = "localhost", dir
	cfg.UpstreamTLS = "localhost,insecure"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	addr, access := runServer(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(origin.leaf)
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr}), TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: testTimeout}).Get("https://localhost:" + origin.port() + "/")
	if err != nil {
		t.Fatalf("GET through a host with an insecure -upstream-tls rule: %v (want an end-to-end tunnel)", err)
	}
	resp.Body.Close()
	if got := resp.TLS.PeerCertificates[0]; !got.Equal(origin.leaf) {
		t.Errorf("client saw %v, want the origin's own certificate", got.Subject)
	}
	waitFor(t, "the tunnel's access record", func() bool { return strings.Contains(access.String(), "\tconnect\t") })
}

// Issue 13: at shutdown, an idle keep-alive connection inside an
// intercepted tunnel is closed at once, as http.Server.Shutdown closes the
// proxy's own idle ones; it does not hold the drain for -shutdown-grace.
func TestInterceptShutdownClosesIdle(t *testing.T) {
	origin := newICPTOrigin(t, http.HandlerFunc(icptHello), false)
	dir, _, roots := icptCA(t, "localhost")
	cfg := testConfig()
	cfg.ConnectPorts = "*"
	cfg.CAFile = origin.caFile
	cfg.Intercept, cfg.InterceptCA = "localhost", dir
	cfg.ShutdownGrace = 10 * time.Minute
	addrc := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- server.Run(ctx, config.MustParse(cfg), slog.New(&addrHandler{addr: addrc}), io.Discard)
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatalf("server.Run: %v", err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr}), TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: testTimeout}).Get("https://localhost:" + origin.port() + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // the connection stays open, idle, in the pool
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("server.Run: %v", err)
		}
	case <-time.After(30 * time.Second): // a hang guard, far below the 10m grace
		t.Fatal("server.Run still draining 30s after cancel: the idle intercepted connection was not closed")
	}
}

// Issue 13: the requests inside an intercepted tunnel meet the same
// dial-time policy as absolute-form ones: with -deny-private, a listed
// host that resolves to loopback gets 403 destination_ip_prohibited, and
// the origin is never reached.
func TestInterceptDialPolicy(t *testing.T) {
	var hits atomic.Int64
	origin := newICPTOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }), false)
	rig := icptStartWith(t, "localhost", origin.caFile, func(c *config.Config) { c.DenyPrivate = true })
	c, _ := rig.client(t, rig.roots, false)
	resp, err := c.Get("https://localhost:" + origin.port() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ps := resp.Header.Get("Proxy-Status"); resp.StatusCode != http.StatusForbidden || !strings.Contains(ps, "error="+proxystatus.DestinationIPProhibited) {
		t.Errorf("intercepted request to a private address with -deny-private: %d %q, want 403 %s", resp.StatusCode, ps, proxystatus.DestinationIPProhibited)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("origin reached %d times, want 0", n)
	}
}

// Issue 13: a session ticket resumes only in a tunnel to the host it was
// issued for. A client that keys its session cache by the proxy's address
// (no SNI: IP literals) offers one host's ticket in another host's tunnel;
// that gets a full handshake, with the other host's leaf.
func TestInterceptTicketPerHost(t *testing.T) {
	origin := newICPTOrigin(t, http.HandlerFunc(icptHello), false)
	rig := icptStart(t, "127.0.0.1,127.0.0.2", origin.caFile)
	cache := tls.NewLRUClientSessionCache(4)
	tunnel := func(host string) (resumed bool, leaf *x509.Certificate) {
		t.Helper()
		target := net.JoinHostPort(host, origin.port())
		c := rig.connect(t, target)
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache, NextProtos: []string{"http/1.1"}})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("tunnel to %s: %v", host, err)
		}
		// A response, so the client has read the session ticket.
		fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target)
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		tc.Close()
		cs := tc.ConnectionState()
		return cs.DidResume, cs.PeerCertificates[0]
	}
	tunnel("127.0.0.1")
	if resumed, _ := tunnel("127.0.0.1"); !resumed {
		t.Errorf("second tunnel to the same host did not resume")
	}
	resumed, leaf := tunnel("127.0.0.2")
	if resumed || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 2)) {
		t.Errorf("tunnel to 127.0.0.2 with 127.0.0.1's ticket: resumed %v, leaf for %v; want a full handshake with 127.0.0.2's leaf", resumed, leaf.IPAddresses)
	}
}

// Issue 12 (item 3) and issue 13: the HTTP/2 server inside an intercepted
// tunnel announces the same stream bound as an h2c connection gets
// (-client-h2c-max-streams), not x/net's default of 250.
func TestInterceptH2StreamsBounded(t *testing.T) {
	origin := newICPTOrigin(t, http.HandlerFunc(icptHello), false)
	rig := icptStartWith(t, "localhost", origin.caFile, func(c *config.Config) { c.ClientH2CMaxStreams = 7 })
	c := rig.connect(t, "localhost:"+origin.port())
	tc := tls.Client(c, &tls.Config{ServerName: "localhost", RootCAs: rig.roots, NextProtos: []string{"h2"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(tc, tc)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != 7 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (sent %v), want 7", v, ok)
	}
}
