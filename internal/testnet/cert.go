package testnet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Cert describes a certificate that SelfSigned or Issue makes.
type Cert struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	// Use is what the certificate is for; nil means server auth.
	Use []x509.ExtKeyUsage
}

// SelfSigned makes an ECDSA P-256 certificate that is its own root
// (a CA, so a client may trust it as one), valid from an hour ago for a
// day. Its Leaf is set.
func SelfSigned(t testing.TB, c Cert) tls.Certificate {
	t.Helper()
	return makeCert(t, c, nil)
}

// Issue makes an ECDSA P-256 leaf certificate for c that ca signed (ca
// as SelfSigned made it, with a Use that covers c's), valid from an hour
// ago for a day. Its Leaf is set.
func Issue(t testing.TB, ca tls.Certificate, c Cert) tls.Certificate {
	t.Helper()
	return makeCert(t, c, &ca)
}

// makeCert makes the certificate c describes: a CA signed by itself when
// ca is nil, else a leaf that ca signed.
func makeCert(t testing.TB, c Cert, ca *tls.Certificate) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	use := c.Use
	if use == nil {
		use = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	// A random serial: leaves of one CA must not share one.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: c.CommonName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: use,
		DNSNames:    c.DNSNames,
		IPAddresses: c.IPs,
	}
	parent, signer := tmpl, any(key)
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		parent, signer = ca.Leaf, ca.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// CertPEM is c's certificate, PEM-encoded.
func CertPEM(c tls.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
}

// KeyPEM is the private key of a certificate SelfSigned or Issue made,
// PEM-encoded.
func KeyPEM(t testing.TB, c tls.Certificate) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// CAFile writes cert, PEM-encoded, to a file in a temporary directory
// and returns its path: a -ca-file that trusts a test origin.
func CAFile(t testing.TB, cert *x509.Certificate) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// KeyPairFiles writes c's certificate and key, PEM-encoded, to files in a
// temporary directory and returns their paths: a cert= and key= pair.
func KeyPairFiles(t testing.TB, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, CertPEM(c), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, KeyPEM(t, c), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// OnHello returns a tls.Config GetConfigForClient hook that calls fn for
// each ClientHello and keeps the config as it is: how a test counts the
// TLS handshakes (full and resumed) an origin sees.
func OnHello(fn func()) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	return func(*tls.ClientHelloInfo) (*tls.Config, error) {
		fn()
		return nil, nil
	}
}
