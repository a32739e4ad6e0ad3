package upstream_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// testCA is a certificate authority made for one test.
type testCA struct {
	cert tls.Certificate
	pool *x509.CertPool
	file string // the CA certificate as PEM
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	// Any use: it signs both server and client certificates.
	cert := testnet.SelfSigned(t, testnet.Cert{CommonName: "warmproxy test CA", Use: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	ca := &testCA{cert: cert, pool: x509.NewCertPool(), file: testnet.CAFile(t, cert.Leaf)}
	ca.pool.AddCert(cert.Leaf)
	return ca
}

// issue makes a leaf certificate for cn: a server certificate for names
// (DNS names or IPs), or a client certificate when names is empty. It
// returns the certificate and the paths of its PEM certificate and key.
func (ca *testCA) issue(t *testing.T, cn string, names ...string) (tls.Certificate, string, string) {
	t.Helper()
	c := testnet.Cert{CommonName: cn}
	if len(names) == 0 {
		c.Use = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			c.IPs = append(c.IPs, ip)
		} else {
			c.DNSNames = append(c.DNSNames, n)
		}
	}
	cert := testnet.Issue(t, ca.cert, c)
	certFile, keyFile := testnet.KeyPairFiles(t, cert)
	return cert, certFile, keyFile
}

// tlsOrigin is an https origin on loopback that answers with the common
// name of the client's certificate and the server name it was asked for.
type tlsOrigin struct {
	*httptest.Server
	addr string
	port string
}

// startTLSOrigin serves cert; with clientCAs, it requires a client
// certificate they sign.
func startTLSOrigin(t *testing.T, cert *tls.Certificate, clientCAs *x509.CertPool) *tlsOrigin {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := "-"
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		io.WriteString(w, "client="+cn+" sni="+r.TLS.ServerName)
	}))
	srv.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)
	srv.TLS = &tls.Config{}
	if cert != nil {
		srv.TLS.Certificates = []tls.Certificate{*cert}
	}
	if clientCAs != nil {
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		srv.TLS.ClientCAs = clientCAs
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	return &tlsOrigin{Server: srv, addr: addr, port: port}
}

// testUpstream builds the upstream from cfg, with names resolved by
// names (host → 127.0.0.1 only) and warnings logged to the returned
// buffer.
func testUpstream(t *testing.T, cfg config.Config, names ...string) (*upstream.Upstream, *testnet.Buffer) {
	t.Helper()
	logs := &testnet.Buffer{}
	up, err := upstream.New(config.MustParse(cfg), upstream.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	up.Guard().SetLookup(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		for _, n := range names {
			if n == host {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			}
		}
		return nil, &net.DNSError{Err: "no such host (test resolver)", Name: host, IsNotFound: true}
	})
	t.Cleanup(up.Transport().CloseIdleConnections)
	return up, logs
}

func testConfig() config.Config {
	cfg := config.Default()
	cfg.DialTimeout = 3 * time.Second
	cfg.TLSHandshakeTimeout = 3 * time.Second
	cfg.ResponseHeaderTimeout = 5 * time.Second
	return cfg
}

// get sends GET url on rt and returns the body, failing the test on an
// error or a status other than 200.
func get(t *testing.T, rt http.RoundTripper, url string) string {
	t.Helper()
	body, err := tryGet(rt, url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return body
}

func tryGet(rt http.RoundTripper, url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), &statusError{resp.StatusCode}
	}
	return string(b), nil
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + http.StatusText(e.code) }

// tlsCounts returns the pool's full and resumed handshakes with origins.
func tlsCounts(up *upstream.Upstream) (full, resumed uint64) {
	st := up.Tracker().Totals(upstream.SchemeHTTPS)
	return st.TLSFull, st.TLSResumed
}

// Issue 8: a client certificate from an -upstream-tls rule reaches an
// origin that requires one (mTLS), verified with the rule's CA, and the
// session is resumed on the next connection.
func TestUpstreamTLSClientCert(t *testing.T) {
	ca := newTestCA(t)
	serverCert, _, _ := ca.issue(t, "origin", "127.0.0.1")
	_, certFile, keyFile := ca.issue(t, "warmproxy-client")
	origin := startTLSOrigin(t, &serverCert, ca.pool)
	url := "https://" + origin.addr + "/"

	// Without the rule: the origin's CA is unknown and no certificate is
	// offered.
	plain, _ := testUpstream(t, testConfig())
	if _, err := tryGet(plain.Transport(), url); err == nil {
		t.Fatal("GET without a rule succeeded, want a TLS failure (the test proves nothing)")
	}

	cfg := testConfig()
	cfg.UpstreamTLS = config.TLSRules("other.test,insecure; 127.0.0.1,ca=" + ca.file + ",cert=" + certFile + ",key=" + keyFile)
	up, _ := testUpstream(t, cfg)
	if got := get(t, up.Transport(), url); !strings.HasPrefix(got, "client=warmproxy-client ") {
		t.Errorf("origin saw %q, want client=warmproxy-client", got)
	}
	up.Transport().CloseIdleConnections()
	if got := get(t, up.Transport(), url); !strings.HasPrefix(got, "client=warmproxy-client ") {
		t.Errorf("second connection: origin saw %q, want client=warmproxy-client", got)
	}
	if full, resumed := tlsCounts(up); full != 1 || resumed != 1 {
		t.Errorf("TLS handshakes: %d full, %d resumed; want 1 full then 1 resumed", full, resumed)
	}
	// Upgrade requests dial with DialTLS: the rule applies there too.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := up.DialTLS(ctx, "tcp", origin.addr)
	if err != nil {
		t.Fatalf("DialTLS to the mTLS origin: %v", err)
	}
	c.Close()
}

// Issue 8: sni= sends and verifies another name than the host: a
// certificate for partner.test served on 127.0.0.1.
func TestUpstreamTLSServerName(t *testing.T) {
	ca := newTestCA(t)
	serverCert, _, _ := ca.issue(t, "partner", "partner.test")
	origin := startTLSOrigin(t, &serverCert, nil)
	url := "https://" + origin.addr + "/"

	cfg := testConfig()
	cfg.UpstreamTLS = config.TLSRules("127.0.0.1,ca=" + ca.file)
	noSNI, _ := testUpstream(t, cfg)
	if _, err := tryGet(noSNI.Transport(), url); err == nil {
		t.Fatal("GET with the CA but no sni= succeeded, want a name mismatch")
	}

	cfg.UpstreamTLS = config.TLSRules("127.0.0.1,ca=" + ca.file + ",sni=partner.test")
	up, _ := testUpstream(t, cfg)
	if got := get(t, up.Transport(), url); !strings.HasSuffix(got, " sni=partner.test") {
		t.Errorf("origin saw %q, want sni=partner.test", got)
	}
}

// Issue 8: insecure skips verification for a self-signed origin, is
// logged at start naming the hosts, and its sessions resume.
func TestUpstreamTLSInsecure(t *testing.T) {
	origin := startTLSOrigin(t, nil, nil) // httptest's own self-signed certificate
	url := "https://" + origin.addr + "/"
	plain, _ := testUpstream(t, testConfig())
	if _, err := tryGet(plain.Transport(), url); err == nil {
		t.Fatal("GET to a self-signed origin succeeded without a rule")
	}

	cfg := testConfig()
	cfg.UpstreamTLS = "127.0.0.1:" + config.TLSRules(origin.port) + ",insecure"
	up, logs := testUpstream(t, cfg)
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "hosts=127.0.0.1:"+origin.port) {
		t.Errorf("start log %q: want a warning naming the insecure hosts", l)
	}
	for range 3 {
		get(t, up.Transport(), url)
		up.Transport().CloseIdleConnections()
	}
	if full, resumed := tlsCounts(up); full != 1 || resumed != 2 {
		t.Errorf("TLS handshakes: %d full, %d resumed; want 1 full, 2 resumed", full, resumed)
	}
}

// Issue 8: each rule has its own session cache. Two rules send the same
// server name with different client certificates; a shared cache would
// resume the first identity's session for the second host.
func TestUpstreamTLSSessionsPerRule(t *testing.T) {
	ca := newTestCA(t)
	serverCert, _, _ := ca.issue(t, "partner", "partner.test")
	_, certA, keyA := ca.issue(t, "client-a")
	_, certB, keyB := ca.issue(t, "client-b")
	origin := startTLSOrigin(t, &serverCert, ca.pool)

	cfg := testConfig()
	cfg.UpstreamTLS = config.TLSRules("a.test,ca=" + ca.file + ",cert=" + certA + ",key=" + keyA + ",sni=partner.test; " +
		"b.test,ca=" + ca.file + ",cert=" + certB + ",key=" + keyB + ",sni=partner.test")
	up, _ := testUpstream(t, cfg, "a.test", "b.test")
	if got := get(t, up.Transport(), "https://a.test:"+origin.port+"/"); !strings.HasPrefix(got, "client=client-a ") {
		t.Fatalf("a.test: origin saw %q, want client-a", got)
	}
	if got := get(t, up.Transport(), "https://b.test:"+origin.port+"/"); !strings.HasPrefix(got, "client=client-b ") {
		t.Errorf("b.test: origin saw %q, want client-b (a session of client-a leaked)", got)
	}
	if full, resumed := tlsCounts(up); full != 2 || resumed != 0 {
		t.Errorf("TLS handshakes: %d full, %d resumed; want 2 full", full, resumed)
	}
}

// Issue 8: rule files are loaded at start; a problem names the rule.
func TestUpstreamTLSBadFiles(t *testing.T) {
	ca := newTestCA(t)
	_, certA, _ := ca.issue(t, "client-a")
	_, _, keyB := ca.issue(t, "client-b")
	for _, tt := range []struct {
		name, rules, want string
	}{
		{"missing ca", "x.test,ca=/nonexistent/ca.pem", `rule 1 "x.test,ca=/nonexistent/ca.pem"`},
		{"cert and key differ", "x.test,insecure; y.test,cert=" + certA + ",key=" + keyB, "rule 2"},
		{"not a ca", "x.test,ca=" + keyB, "no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.UpstreamTLS = config.TLSRules(tt.rules)
			// Parse reports the bad files too (checked below); New
			// loads them again at start.
			parsed, _ := cfg.Parse()
			if _, err := upstream.New(parsed); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%q) = %v, want an error with %q", tt.rules, err, tt.want)
			}
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate(%q) = %v, want an error with %q", tt.rules, err, tt.want)
			}
		})
	}
}

// Issue 8: a rule keeps the transport's ALPN offer, so an origin matched
// by a rule still gets HTTP/2, through an http parent too.
func TestUpstreamTLSRuleKeepsHTTP2(t *testing.T) {
	ca := newTestCA(t)
	serverCert, _, _ := ca.issue(t, "origin", "127.0.0.1")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	par := startHTTPParent(t, "", "")
	for _, parent := range []string{"", par.url()} {
		cfg := testConfig()
		cfg.UpstreamHTTP2 = true
		cfg.ParentProxy = parent
		cfg.UpstreamTLS = config.TLSRules("127.0.0.1,ca=" + ca.file)
		up, _ := testUpstream(t, cfg)
		if got := get(t, up.Transport(), srv.URL+"/"); got != "HTTP/2.0" {
			t.Errorf("parent %q: origin saw %s, want HTTP/2.0", parent, got)
		}
	}
	if n := par.connects.Load(); n != 1 {
		t.Errorf("parent saw %d CONNECTs, want 1", n)
	}
}
