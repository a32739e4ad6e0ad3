package e2e_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// parParent is an HTTP parent proxy for the e2e tests: Basic credentials,
// CONNECT to loopback targets and absolute-form requests, with counts.
type parParent struct {
	*httptest.Server
	user, pass string
	conns      atomic.Int32 // TCP connections accepted
	connects   atomic.Int32 // CONNECTs let through
	requests   atomic.Int32 // absolute-form requests let through
	refused    atomic.Int32
	tr         *http.Transport

	mu     sync.Mutex
	tunnel []net.Conn
	wg     sync.WaitGroup
}

func parStartParent(t *testing.T, user, pass string) *parParent {
	t.Helper()
	p := &parParent{user: user, pass: pass, tr: &http.Transport{}}
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.Config.ConnState = testnet.OnNew(func() { p.conns.Add(1) })
	p.Start()
	t.Cleanup(func() {
		p.Close()
		p.mu.Lock()
		for _, c := range p.tunnel {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
		p.tr.CloseIdleConnections()
	})
	return p
}

// url is the -parent-proxy value, with the given password.
func (p *parParent) url(pass string) string {
	return "http://" + p.user + ":" + pass + "@" + p.Listener.Addr().String()
}

func (p *parParent) serve(w http.ResponseWriter, r *http.Request) {
	u, pw, ok := (&http.Request{Header: http.Header{"Authorization": r.Header["Proxy-Authorization"]}}).BasicAuth()
	if !ok || u != p.user || pw != p.pass {
		p.refused.Add(1)
		w.Header().Set("Proxy-Authenticate", `Basic realm="parent"`)
		w.WriteHeader(http.StatusProxyAuthRequired)
		return
	}
	host := r.Host
	if r.Method != http.MethodConnect {
		host = r.URL.Host
	}
	if h, _, err := net.SplitHostPort(host); err != nil || h != "127.0.0.1" {
		http.Error(w, "e2e parent: loopback targets only", http.StatusBadGateway)
		return
	}
	if r.Method != http.MethodConnect {
		p.requests.Add(1)
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.Header.Del("Proxy-Authorization")
		resp, err := p.tr.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return
	}
	target, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		target.Close()
		return
	}
	p.connects.Add(1)
	brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	brw.Flush()
	p.mu.Lock()
	p.tunnel = append(p.tunnel, c, target)
	p.wg.Add(2)
	p.mu.Unlock()
	go func() { defer p.wg.Done(); io.Copy(target, c); target.Close() }()
	go func() { defer p.wg.Done(); io.Copy(c, target); c.Close() }()
}

// parClientCert writes a self-signed client certificate and its key as
// PEM files and returns the certificate and the paths.
func parClientCert(t *testing.T, dir, cn string) (*x509.Certificate, string, string) {
	t.Helper()
	c := selfSignedFor(t, cn, x509.ExtKeyUsageClientAuth)
	der := c.Certificate[0]
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+".key")
	for path, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, certFile, keyFile
}

// parMTLSOrigin is an https origin that requires a client certificate
// signed by clientCAs, counting connections and handshakes as origin does.
func parMTLSOrigin(t *testing.T, cert *tls.Certificate, clientCAs *x509.CertPool, h http.HandlerFunc) *origin {
	t.Helper()
	o := &origin{}
	o.Server = httptest.NewUnstartedServer(h)
	o.Config.ErrorLog = log.New(io.Discard, "", 0)
	o.Config.ConnState = testnet.OnNew(func() { o.conns.Add(1) })
	o.TLS = &tls.Config{
		Certificates:       []tls.Certificate{*cert},
		ClientAuth:         tls.RequireAndVerifyClientCert,
		ClientCAs:          clientCAs,
		GetConfigForClient: testnet.OnHello(func() { o.handshakes.Add(1) }),
	}
	o.StartTLS()
	t.Cleanup(o.Close)
	o.caFile = testnet.CAFile(t, o.Certificate())
	return o
}

// Issue 8 acceptance, through the binary with curl as the client: an
// -upstream-tls rule gives a client certificate to an mTLS origin that is
// reached through an HTTP parent with credentials. Five curls take one
// CONNECT and one TLS handshake; plain-http requests share one pooled
// connection to the parent; a client CONNECT goes through the parent too;
// a wrong parent password gives a 502 with Proxy-Status.
func TestParentCurlMTLSThroughHTTPParent(t *testing.T) {
	requireProgram(t, "curl")
	dir := t.TempDir()
	clientCert, certFile, keyFile := parClientCert(t, dir, "warmproxy-e2e")
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(clientCert)
	hello := func(w http.ResponseWriter, r *http.Request) {
		cn := "none"
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		io.WriteString(w, "client="+cn)
	}
	mtls := parMTLSOrigin(t, selfSigned(t, "partner"), clientCAs, hello)
	plain := newOrigin(t, false, hello)
	parent := parStartParent(t, "corp", "pa:ss")

	_, mtlsPort, _ := net.SplitHostPort(mtls.Listener.Addr().String())
	p := startProxy(t,
		"-parent-proxy", parent.url("pa%3Ass"),
		"-upstream-tls", "127.0.0.1:"+mtlsPort+",ca="+mtls.caFile+",cert="+certFile+",key="+keyFile,
		"-connect-ports", "*")
	if !strings.Contains(p.stderr.String(), "parent=http://corp:xxxxx@") {
		t.Errorf("start log does not name the parent with the password redacted:\n%s", p.stderr)
	}

	const n = 5
	for i := range n {
		if out := curlProxy(t, p.URL(), "-H", "X-Real-Protocol: https", mtls.httpURL("/")); out != "client=warmproxy-e2e" {
			t.Fatalf("curl %d through the parent to the mTLS origin: %q", i, out)
		}
	}
	if c, h := parent.connects.Load(), mtls.handshakes.Load(); c != 1 || h != 1 {
		t.Errorf("%d curls: parent saw %d CONNECTs, origin %d TLS handshakes; want 1 and 1", n, c, h)
	}
	for i := range n {
		if out := curlProxy(t, p.URL(), plain.httpURL("/")); out != "client=none" {
			t.Fatalf("plain curl %d: %q", i, out)
		}
	}
	if r, c := parent.requests.Load(), parent.conns.Load(); r != n || c != 2 {
		t.Errorf("parent saw %d absolute-form requests over %d connections in all; want %d over 2 (one tunnel, one pooled)", r, c, n)
	}
	if out := curlProxy(t, p.URL(), "--proxytunnel", plain.httpURL("/")); out != "client=none" {
		t.Fatalf("curl CONNECT: %q", out)
	}
	if c := parent.connects.Load(); c != 2 {
		t.Errorf("parent saw %d CONNECTs after a client CONNECT, want 2", c)
	}
	if r := parent.refused.Load(); r != 0 {
		t.Errorf("parent refused %d requests with the right credentials", r)
	}

	bad := startProxy(t, "-parent-proxy", parent.url("wrong"))
	out := curlProxy(t, bad.URL(), "-i", "-H", "X-Real-Protocol: https", mtls.httpURL("/"))
	if !strings.HasPrefix(out, "HTTP/1.1 502") || !strings.Contains(out, "error=http_request_denied") || !strings.Contains(out, "credentials") {
		t.Errorf("wrong parent password: got\n%s\nwant a 502 with Proxy-Status error=http_request_denied", out)
	}
	if strings.Contains(out, "wrong") {
		t.Errorf("the parent password shows in the answer:\n%s", out)
	}
}

// Issue 8: an insecure rule reaches a self-signed origin and is logged
// at start as a warning naming its hosts.
func TestParentCurlInsecureRule(t *testing.T) {
	requireProgram(t, "curl")
	o := newOriginCert(t, true, selfSigned(t, "dev"), func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "dev") })
	_, port, _ := net.SplitHostPort(o.Listener.Addr().String())
	strict := startProxy(t)
	if out := curlProxy(t, strict.URL(), "-i", "-H", "X-Real-Protocol: https", o.httpURL("/")); !strings.HasPrefix(out, "HTTP/1.1 502") {
		t.Fatalf("self-signed origin without a rule: %q, want 502", out)
	}
	p := startProxy(t, "-upstream-tls", "127.0.0.1:"+port+",insecure")
	if out := curlProxy(t, p.URL(), "-H", "X-Real-Protocol: https", o.httpURL("/")); out != "dev" {
		t.Errorf("with the insecure rule: %q, want dev", out)
	}
	if l := p.stderr.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "hosts=127.0.0.1:"+port) {
		t.Errorf("start log has no warning naming the insecure hosts:\n%s", l)
	}
}
