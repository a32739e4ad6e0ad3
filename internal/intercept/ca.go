package intercept

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside a CA directory (-intercept-ca DIR).
const (
	CertFile = "ca.pem"
	KeyFile  = "ca-key.pem"
)

// CALifetime is how long a CA made by Init is valid.
const CALifetime = 5 * 365 * 24 * time.Hour

// CA is an interception CA: its certificate and the key leaves are signed
// with. The key is never logged, printed or served.
type CA struct {
	Cert *x509.Certificate
	// PEM is the certificate as read, for printing.
	PEM []byte
	key crypto.Signer
}

// NewCA makes an ECDSA P-256 CA certificate whose Name Constraints permit
// only the names of patterns (none for a catch-all), valid from now for
// CALifetime, and returns it and its key as PEM.
func NewCA(patterns []Pattern, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: key: %v", err)
	}
	serial, err := randSerial()
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(patterns))
	for i, p := range patterns {
		names[i] = p.String()
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"warmproxy interception CA"},
			CommonName:   "warmproxy interception CA for " + abbreviate(strings.Join(names, ","), 40),
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		// Server certificates only: a leaf for client auth or code
		// signing does not chain to it.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	dns, ips, excluded, none := constraints(patterns)
	if !none {
		tmpl.PermittedDNSDomainsCritical = true
		tmpl.PermittedDNSDomains = dns
		tmpl.PermittedIPRanges = ips
		tmpl.ExcludedIPRanges = excluded
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func randSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("ca: serial: %v", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// Init makes a CA for patterns and writes it into dir: CertFile (mode
// 0644) and KeyFile (0600). dir is made (0700) if missing. Existing files
// are replaced only with force; the key is written to a new file first,
// so a reader never sees half of it.
func Init(dir string, patterns []Pattern, force bool, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ca init: %v", err)
	}
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if !force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("ca init: %s exists: pass -force to replace the CA (clients that trust the old one must be given the new ca.pem)", p)
			}
		}
	}
	certPEM, keyPEM, err := NewCA(patterns, now)
	if err != nil {
		return err
	}
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(certPath, certPEM, 0o644)
}

// writeFile writes data to a temporary file of mode perm beside path and
// renames it over path.
func writeFile(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("ca init: %v", err)
	}
	tmp := f.Name()
	// CreateTemp makes the file 0600; Chmod sets exactly perm, whatever
	// the umask.
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ca init: %v", err)
	}
	return nil
}

// LoadCA reads the CA in dir. The key file must not be readable by group
// or others; the key must match the certificate, which must be a CA that
// is valid now.
func LoadCA(dir string, now time.Time) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("intercept-ca: %v (make one with: warmproxy ca init %s)", err, dir)
	}
	st, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("intercept-ca: %v (make one with: warmproxy ca init %s)", err, dir)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("intercept-ca: %s is readable by group or others (mode %04o): chmod 600 %s", keyPath, st.Mode().Perm(), keyPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("intercept-ca: %v", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The error of X509KeyPair never quotes key material.
		return nil, fmt.Errorf("intercept-ca: %s and %s: %v", certPath, keyPath, err)
	}
	cert := pair.Leaf
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("intercept-ca: %s: key cannot sign", keyPath)
	}
	switch {
	case !cert.IsCA || !cert.BasicConstraintsValid:
		return nil, fmt.Errorf("intercept-ca: %s is not a CA certificate (basic constraints CA:TRUE missing)", certPath)
	case cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("intercept-ca: %s may not sign certificates (key usage keyCertSign missing)", certPath)
	case now.Before(cert.NotBefore) || now.After(cert.NotAfter):
		return nil, fmt.Errorf("intercept-ca: %s is valid from %s to %s, not now: make a new one with warmproxy ca init -force %s",
			certPath, cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339), dir)
	}
	return &CA{Cert: cert, PEM: certPEM, key: signer}, nil
}

// Constrained reports whether the CA carries Name Constraints: a CA
// supplied without them can sign for any name.
func (ca *CA) Constrained() bool {
	c := ca.Cert
	return len(c.PermittedDNSDomains)+len(c.ExcludedDNSDomains)+len(c.PermittedIPRanges)+len(c.ExcludedIPRanges) > 0
}

// ErrNotCovered is returned by Covers for patterns the CA's Name
// Constraints do not permit.
var ErrNotCovered = errors.New("the CA's name constraints do not cover them")

// Covers checks that a leaf minted for each pattern verifies against the
// CA, under its Name Constraints, at now. The error names the patterns
// that do not, and says how to make a CA that covers them.
func (ca *CA) Covers(patterns []Pattern, dir string, now time.Time) error {
	m := NewMinter(ca, MinterOptions{})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	var bad []string
	for _, p := range patterns {
		for _, name := range p.samples() {
			if err := m.verify(name, roots, now); err != nil {
				bad = append(bad, p.String())
				break
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("intercept: patterns %s: %w; make a CA for the new patterns with: warmproxy ca init -force -intercept '%s' %s, then give clients the new %s",
		strings.Join(bad, ","), ErrNotCovered, joinPatterns(patterns), dir, CertFile)
}

func joinPatterns(ps []Pattern) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
