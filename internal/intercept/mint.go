package intercept

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of MinterOptions.
const (
	// DefaultLeafLifetime is how long a minted leaf is valid.
	DefaultLeafLifetime = 24 * time.Hour
	// DefaultLeafCacheSize is how many leaves the cache keeps.
	DefaultLeafCacheSize = 1024
)

// MinterOptions tune a Minter; zero fields take the defaults.
type MinterOptions struct {
	// Lifetime of a leaf; it is renewed once two thirds of it passed.
	// Default DefaultLeafLifetime.
	Lifetime time.Duration
	// CacheSize bounds the cached leaves, least recently used out first.
	// Default DefaultLeafCacheSize.
	CacheSize int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Minter mints leaf certificates from a CA, one per host, and caches them.
type Minter struct {
	ca       *CA
	lifetime time.Duration
	size     int
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]*list.Element // of *leaf
	lru   list.List                // front: most recently used

	mints atomic.Int64
}

type leaf struct {
	host    string
	cert    *tls.Certificate
	renewAt time.Time
}

// NewMinter returns a Minter for ca.
func NewMinter(ca *CA, o MinterOptions) *Minter {
	m := &Minter{ca: ca, lifetime: o.Lifetime, size: o.CacheSize, now: o.Now, cache: map[string]*list.Element{}}
	if m.lifetime <= 0 {
		m.lifetime = DefaultLeafLifetime
	}
	if m.size <= 0 {
		m.size = DefaultLeafCacheSize
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// Mints is how many leaves were minted so far.
func (m *Minter) Mints() int64 { return m.mints.Load() }

// Certificate returns the leaf for host, a DNS name or an IP literal:
// cached until two thirds of its lifetime passed, minted otherwise.
func (m *Minter) Certificate(host string) (*tls.Certificate, error) {
	host = normalHost(host)
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.cache[host]; ok {
		l := el.Value.(*leaf)
		if now.Before(l.renewAt) {
			m.lru.MoveToFront(el)
			return l.cert, nil
		}
		m.lru.Remove(el)
		delete(m.cache, host)
	}
	// Minted under the lock: a burst of handshakes for one new host
	// mints once. A mint costs tens of microseconds (BenchmarkMint).
	cert, err := m.mint(host, now)
	if err != nil {
		return nil, err
	}
	m.cache[host] = m.lru.PushFront(&leaf{host: host, cert: cert, renewAt: now.Add(m.lifetime * 2 / 3)})
	for m.lru.Len() > m.size {
		old := m.lru.Back()
		m.lru.Remove(old)
		delete(m.cache, old.Value.(*leaf).host)
	}
	return cert, nil
}

// Len is how many leaves are cached.
func (m *Minter) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

// normalHost lowercases a name, drops a trailing dot and the brackets of
// an IPv6 literal.
func normalHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// mint makes a leaf for host, signed by the CA: its SAN is exactly host
// (an IP SAN for an IP literal), server auth only, valid for the
// lifetime but never past the CA.
func (m *Minter) mint(host string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mint %s: key: %v", host, err)
	}
	serial, err := randSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(m.lifetime)
	if ca := m.ca.Cert.NotAfter; notAfter.After(ca) {
		notAfter = ca
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// Clients a little behind the proxy's clock still accept it.
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		// No common name: OpenSSL checks a name-like CN against the DNS
		// constraints too.
		tmpl.IPAddresses = []net.IP{ip.AsSlice()}
	} else {
		tmpl.Subject.CommonName = host
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.ca.Cert, &key.PublicKey, m.ca.key)
	if err != nil {
		return nil, fmt.Errorf("mint %s: %v", host, err)
	}
	leafCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mint %s: %v", host, err)
	}
	m.mints.Add(1)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leafCert}, nil
}

// verify mints a leaf for name (uncached) and verifies it against roots
// as a TLS client would.
func (m *Minter) verify(name string, roots *x509.CertPool, now time.Time) error {
	c, err := m.mint(normalHost(name), now)
	if err != nil {
		return err
	}
	_, err = c.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now})
	return err
}
