package testnet

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"sync"
	"testing"
)

// A client that trusts CertPEM completes a TLS handshake on loopback with
// a server presenting the certificate.
func TestSelfSignedOnLoopback(t *testing.T) {
	cert := SelfSigned(t, Cert{CommonName: "testnet", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if len(KeyPEM(t, cert)) == 0 {
		t.Fatal("KeyPEM is empty")
	}
	addr := Serve(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		io.WriteString(tc, "hello")
		tc.Close()
	})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(CertPEM(cert)) {
		t.Fatal("CertPEM does not parse")
	}
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatalf("tls.Dial(%s) = %v", addr, err)
	}
	defer c.Close()
	if b, _ := io.ReadAll(c); string(b) != "hello" {
		t.Errorf("read %q, want hello", b)
	}
}

func TestBufferConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				io.WriteString(&b, "line\n")
			}
		})
	}
	wg.Wait()
	if n := b.Count("line\n"); n != 800 {
		t.Errorf("Count = %d after 800 writes, want 800", n)
	}
}

// OnHello counts each handshake; CAFile is a root a client can load.
func TestOnHelloAndCAFile(t *testing.T) {
	var hellos int
	var mu sync.Mutex
	cert := SelfSigned(t, Cert{CommonName: "testnet", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, GetConfigForClient: OnHello(func() { mu.Lock(); hellos++; mu.Unlock() })}
	addr := Serve(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		tc.Handshake()
		io.Copy(io.Discard, tc)
	})
	pemBytes, err := os.ReadFile(CAFile(t, cert.Leaf))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("CAFile holds no certificate")
	}
	for range 2 {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if hellos != 2 {
		t.Errorf("OnHello counted %d handshakes, want 2", hellos)
	}
}

// A leaf Issue made verifies against its CA for its use, and the files
// KeyPairFiles wrote load back as the same pair.
func TestIssueAndKeyPairFiles(t *testing.T) {
	ca := SelfSigned(t, Cert{CommonName: "testnet CA", Use: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Leaf)
	for _, tt := range []struct {
		name string
		c    Cert
		use  x509.ExtKeyUsage
	}{
		{"server", Cert{CommonName: "origin", DNSNames: []string{"origin.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, x509.ExtKeyUsageServerAuth},
		{"client", Cert{CommonName: "client", Use: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, x509.ExtKeyUsageClientAuth},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leaf := Issue(t, ca, tt.c)
			opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tt.use}}
			if len(tt.c.DNSNames) > 0 {
				opts.DNSName = tt.c.DNSNames[0]
			}
			if _, err := leaf.Leaf.Verify(opts); err != nil {
				t.Errorf("Verify(%s leaf) = %v, want nil", tt.name, err)
			}
			if leaf.Leaf.IsCA {
				t.Errorf("Issue(%s).Leaf.IsCA = true, want false", tt.name)
			}
			certFile, keyFile := KeyPairFiles(t, leaf)
			got, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatalf("LoadX509KeyPair(KeyPairFiles) = %v, want nil", err)
			}
			if string(got.Certificate[0]) != string(leaf.Certificate[0]) {
				t.Error("KeyPairFiles wrote another certificate")
			}
		})
	}
}
