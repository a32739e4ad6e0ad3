package upstream

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

func TestNewTransportSettings(t *testing.T) {
	cfg := config.Default()
	cfg.MaxIdlePerHost, cfg.MaxIdle, cfg.MaxConnsPerHost = 7, 70, 9
	cfg.IdleTimeout, cfg.ResponseHeaderTimeout, cfg.TLSHandshakeTimeout = 11*time.Second, 12*time.Second, 13*time.Second
	up, err := New(config.MustParse(cfg))
	if err != nil {
		t.Fatal(err)
	}
	tr := up.Transport()
	if tr.MaxIdleConnsPerHost != 7 || tr.MaxIdleConns != 70 || tr.MaxConnsPerHost != 9 {
		t.Errorf("pool limits %d/%d/%d, want 7/70/9", tr.MaxIdleConnsPerHost, tr.MaxIdleConns, tr.MaxConnsPerHost)
	}
	if tr.IdleConnTimeout != 11*time.Second || tr.ResponseHeaderTimeout != 12*time.Second || tr.TLSHandshakeTimeout != 13*time.Second {
		t.Errorf("timeouts %v/%v/%v", tr.IdleConnTimeout, tr.ResponseHeaderTimeout, tr.TLSHandshakeTimeout)
	}
	if tr.Proxy != nil {
		t.Error("transport follows a proxy from the environment, want none")
	}
	if !tr.DisableCompression {
		t.Error("DisableCompression off: the transport would add Accept-Encoding and decompress")
	}
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.ClientSessionCache == nil {
		t.Error("no TLS client session cache: new connections could not resume")
	}
	if tr.TLSClientConfig.RootCAs != nil {
		t.Error("RootCAs set without -ca-file: the system roots (and SSL_CERT_FILE) would be ignored")
	}
}

// writeCert writes a self-signed certificate as PEM and returns its path.
func writeCert(t *testing.T) (string, *x509.Certificate) {
	t.Helper()
	c := testnet.SelfSigned(t, testnet.Cert{CommonName: "warmproxy test root"})
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, testnet.CertPEM(c), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, c.Leaf
}

func TestCAFile(t *testing.T) {
	path, cert := writeCert(t)
	cfg := config.Default()
	cfg.CAFile = path
	up, err := New(config.MustParse(cfg))
	if err != nil {
		t.Fatal(err)
	}
	roots := up.Transport().TLSClientConfig.RootCAs
	if roots == nil {
		t.Fatal("RootCAs nil with -ca-file")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots}); err != nil {
		t.Errorf("the -ca-file root does not verify: %v", err)
	}
	for name, content := range map[string]string{"no pem": "not a certificate", "missing": ""} {
		cfg := config.Default()
		cfg.CAFile = filepath.Join(t.TempDir(), "bad.pem")
		if content != "" {
			os.WriteFile(cfg.CAFile, []byte(content), 0o600)
		}
		parsed, _ := cfg.Parse() // which reports the bad file too
		if _, err := New(parsed); err == nil {
			t.Errorf("%s: New accepted a bad -ca-file", name)
		}
	}
}

// WithResolver makes the dialer use the given resolver: here one whose
// server cannot be reached, so no real lookup happens.
func TestWithResolver(t *testing.T) {
	asked := make(chan string, 4)
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			select {
			case asked <- address:
			default:
			}
			return nil, errors.New("test resolver: no server")
		},
	}
	cfg := config.Default()
	cfg.DialTimeout = 2 * time.Second
	up, err := New(config.MustParse(cfg), WithResolver(r))
	if err != nil {
		t.Fatal(err)
	}
	_, err = up.Dial(context.Background(), "tcp", "origin.invalid:80")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		t.Fatalf("Dial = %v, want a *net.DNSError", err)
	}
	select {
	case <-asked:
	default:
		t.Error("the injected resolver was not asked")
	}
}
