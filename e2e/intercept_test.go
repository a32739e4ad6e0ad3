package e2e_test

// TLS interception (issue 13) through the binary: unchanged https://
// clients, each a separate process, reach a local HTTPS origin through
// CONNECT and warmproxy's pool.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// icptName is the origin's name; the test's DNS server resolves it to
// 127.0.0.1 for warmproxy (with a proxy, the client resolves nothing).
const icptName = "api.test"

// icptOrigin is an HTTPS origin on 127.0.0.1 with a certificate for
// api.test and 127.0.0.1 from a root of its own, counting TCP
// connections and TLS ClientHellos (full handshakes and resumptions).
type icptOrigin struct {
	Port       string
	RootFile   string // its root, for warmproxy's -ca-file
	Leaf       *x509.Certificate
	Conns      atomic.Int64
	Handshakes atomic.Int64
}

func icptStartOrigin(t *testing.T) *icptOrigin {
	t.Helper()
	o := &icptOrigin{}
	cert := testnet.SelfSigned(t, testnet.Cert{CommonName: "e2e origin root", DNSNames: []string{icptName}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	o.Leaf = cert.Leaf
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin %s %s", r.Method, r.URL.Path)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Config.ConnState = testnet.OnNew(func() { o.Conns.Add(1) })
	srv.TLS = &tls.Config{
		Certificates:       []tls.Certificate{cert},
		GetConfigForClient: testnet.OnHello(func() { o.Handshakes.Add(1) }),
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, o.Port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	o.RootFile = testnet.CAFile(t, cert.Leaf)
	return o
}

// icptCAInit runs "warmproxy ca init -intercept patterns DIR" and returns
// DIR; DIR/ca.pem is what clients trust.
func icptCAInit(t *testing.T, patterns string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	cliRun(t, []string{plainBinary, "ca", "init", "-intercept", patterns, dir})
	return dir
}

// icptProxy starts warmproxy intercepting patterns, trusting the origin's
// root and resolving api.test to 127.0.0.1.
func icptProxy(t *testing.T, o *icptOrigin, patterns, caDir string) *cliProxy {
	t.Helper()
	dns := testnet.DNS(t, map[string][]string{icptName: {"127.0.0.1"}})
	return cliStartProxy(t, "-intercept", patterns, "-intercept-ca", caDir, "-ca-file", o.RootFile,
		"-dns-server", dns, "-connect-ports", o.Port)
}

// icptClients are the real clients of issue 7 plus Python requests.
func icptClients() []cliClient {
	return append(cliClients(), cliClient{"python-requests", func(t *testing.T, proxy, u, h, ca string) []string {
		// Debian's interpreter, which python3-requests is installed for;
		// python3 on PATH may be a version manager's without it.
		py := cliNeed(t, "/usr/bin/python3")
		if err := exec.Command(py, "-c", "import requests").Run(); err != nil {
			cliMissing(t, "python3-requests is not installed for %s: %v", py, err)
		}
		return []string{py, filepath.Join("testdata", "python", "requests_client.py"), proxy, u, h, ca}
	}})
}

// Issue 13: each real client, run as 50 separate processes, requests
// https://api.test:PORT/ through CONNECT with warmproxy's CA trusted and
// no other change: every body is right, and the origin saw one TCP
// connection and one TLS handshake. The access log says intercepted.
func TestInterceptClients(t *testing.T) {
	for _, c := range icptClients() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			origin := icptStartOrigin(t)
			caDir := icptCAInit(t, icptName)
			proxy := icptProxy(t, origin, icptName, caDir)
			authority := icptName + ":" + origin.Port
			target := "https://" + authority + "/icpt/" + c.name
			argv := c.argv(t, proxy.Addr, target, "", filepath.Join(caDir, "ca.pem"))
			start := time.Now()
			for i := range cliProcesses {
				body, status, err := cliParse(cliRun(t, argv))
				if err != nil {
					t.Fatalf("process %d: %v", i, err)
				}
				if want := "origin GET /icpt/" + c.name; status != http.StatusOK || body != want {
					t.Fatalf("process %d: status %d body %q, want 200 %q", i, status, body, want)
				}
			}
			elapsed := time.Since(start)
			if conns, hs := origin.Conns.Load(), origin.Handshakes.Load(); conns != 1 || hs != 1 {
				t.Errorf("%d %s processes caused %d TCP connections and %d TLS handshakes at the origin, want 1 and 1", cliProcesses, c.name, conns, hs)
			}
			recs := proxy.cliAccessRecords(t, cliProcesses, "\t"+target+"\t")
			reused := 0
			for _, r := range recs {
				if r[cliFieldStatus] != "200" || r[cliFieldKind] != "intercepted" {
					t.Errorf("access record %q: want status 200, kind intercepted", r)
				}
				if r[cliFieldReused] == "yes" {
					reused++
				}
			}
			if reused < cliProcesses-1 {
				t.Errorf("access log: %d of %d intercepted requests reused a connection, want %d", reused, len(recs), cliProcesses-1)
			}
			t.Logf("%d %s processes in %v (%v each); origin: %d conn, %d TLS handshake; %d/%d reused",
				cliProcesses, c.name, elapsed.Round(time.Millisecond), (elapsed / cliProcesses).Round(time.Millisecond),
				origin.Conns.Load(), origin.Handshakes.Load(), reused, len(recs))
		})
	}
}

// icptSClient runs openssl s_client through the proxy's CONNECT to
// target with SNI servername ("" sends none) and returns what it printed.
func icptSClient(t *testing.T, proxy, target, servername string, extra ...string) string {
	t.Helper()
	openssl := cliNeed(t, "openssl")
	args := append([]string{"s_client", "-proxy", proxy, "-connect", target, "-brief"}, extra...)
	if servername == "" {
		args = append(args, "-noservername")
	} else {
		args = append(args, "-servername", servername)
	}
	cmd := command(t, 30*time.Second, openssl, args...)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// Issue 13: through the binary, an IP literal listed in -intercept is
// served with an IP SAN and no SNI; an unlisted host is tunneled, and the
// client sees the origin's own certificate; an SNI other than the
// CONNECT host is refused.
func TestInterceptIPAndUnlisted(t *testing.T) {
	curl := cliNeed(t, "curl")
	origin := icptStartOrigin(t)
	caDir := icptCAInit(t, icptName+",127.0.0.1")
	proxy := icptProxy(t, origin, icptName+",127.0.0.1", caDir)
	ca := filepath.Join(caDir, "ca.pem")

	// IP literal: curl sends no SNI to an IP.
	ipURL := "https://127.0.0.1:" + origin.Port + "/ip"
	for i := range 5 {
		body, status, err := cliParse(cliRun(t, []string{curl, "-sS", "--max-time", "10", "-x", "http://" + proxy.Addr, "--cacert", ca, "-w", `\nSTATUS %{http_code}\n`, ipURL}))
		if err != nil || status != 200 || body != "origin GET /ip" {
			t.Fatalf("curl %d %s: %d %q %v", i, ipURL, status, body, err)
		}
	}
	if hs := origin.Handshakes.Load(); hs != 1 {
		t.Errorf("5 curl processes to an intercepted IP caused %d origin TLS handshakes, want 1", hs)
	}
	if out := icptSClient(t, proxy.Addr, "127.0.0.1:"+origin.Port, "", "-CAfile", ca, "-verify_ip", "127.0.0.1", "-verify_return_error"); !strings.Contains(out, "Verification: OK") {
		t.Errorf("openssl s_client to the intercepted IP: want a certificate for 127.0.0.1 from the interception CA:\n%s", out)
	}

	// SNI must be the CONNECT host.
	if out := icptSClient(t, proxy.Addr, icptName+":"+origin.Port, "other.test"); strings.Contains(out, "warmproxy interception CA") || !strings.Contains(strings.ToLower(out), "alert") {
		t.Errorf("openssl s_client with SNI other.test in a tunnel to %s: want the handshake refused with an alert:\n%s", icptName, out)
	}

	// Unlisted: a second proxy intercepting api.test only; 127.0.0.1 is
	// tunneled end to end.
	other := icptProxy(t, origin, icptName, icptCAInit(t, icptName))
	out := icptSClient(t, other.Addr, "127.0.0.1:"+origin.Port, "", "-CAfile", origin.RootFile, "-verify_return_error")
	if !strings.Contains(out, "Peer certificate: CN = e2e origin root") || !strings.Contains(out, "Verification: OK") {
		t.Errorf("openssl s_client to an unlisted host: want the origin's own certificate:\n%s", out)
	}
	// And a client that trusts only warmproxy's CA refuses it.
	cmd := command(t, 30*time.Second, curl, "-sS", "--max-time", "10", "-x", "http://"+other.Addr, "--cacert", ca, "https://127.0.0.1:"+origin.Port+"/")
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("curl trusting only the interception CA reached an unlisted host: %s", b)
	}
}

// Issue 13: warmproxy ca print shows the CA, its constraints and how each
// client trusts it; the key never appears.
func TestCAPrint(t *testing.T) {
	caDir := icptCAInit(t, icptName+",*.example.test")
	st, err := os.Stat(filepath.Join(caDir, "ca-key.pem"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca-key.pem mode %v %v, want 0600", st.Mode().Perm(), err)
	}
	out := cliRun(t, []string{plainBinary, "ca", "print", caDir})
	for _, want := range []string{"BEGIN CERTIFICATE", "api.test, .example.test", "CURLOPT_CAINFO", "curl.cainfo", "openssl.cafile",
		"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "update-ca-certificates"} {
		if !strings.Contains(out, want) {
			t.Errorf("warmproxy ca print: no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "PRIVATE KEY") {
		t.Errorf("warmproxy ca print shows the key:\n%s", out)
	}
}
