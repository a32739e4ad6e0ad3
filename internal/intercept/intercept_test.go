package intercept

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// newTestCA makes a CA for patterns in a temp dir and loads it.
func newTestCA(t testing.TB, patterns string) (*CA, string) {
	t.Helper()
	ps, err := ParsePatterns(patterns)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ca")
	if err := Init(dir, ps, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

// needOpenSSL returns openssl's path; missing, it skips, or fails under CI.
func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("openssl is required with CI set: %v", err)
		}
		t.Skipf("openssl not installed: %v", err)
	}
	return p
}

// Issue 13: the CA's Name Constraints permit only the -intercept names.
// A leaf the CA's key signs for any other name (a stolen key's use) is
// rejected by crypto/x509 and by `openssl verify`; leaves for the listed
// names verify with both.
func TestNameConstraints(t *testing.T) {
	openssl := needOpenSSL(t)
	ca, dir := newTestCA(t, "api.test,*.example.com,127.0.0.1")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	m := NewMinter(ca, MinterOptions{})
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"api.test", true},
		{"a.example.com", true},
		{"127.0.0.1", true},
		{"evil.test", false},
		{"example.com", false}, // *.example.com is the subdomains only
		{"api.test.evil.test", false},
		{"www.google.com", false},
		{"127.0.0.2", false},
		{"10.0.0.1", false},
		{"::1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, err := m.Certificate(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			_, err = leaf.Leaf.Verify(x509.VerifyOptions{DNSName: tc.name, Roots: roots})
			var inv x509.CertificateInvalidError
			if tc.ok && err != nil {
				t.Errorf("crypto/x509: leaf for listed %s: %v, want it to verify", tc.name, err)
			}
			if !tc.ok && !(errors.As(err, &inv) && inv.Reason == x509.CANotAuthorizedForThisName) {
				t.Errorf("crypto/x509: leaf for unlisted %s: %v, want CANotAuthorizedForThisName", tc.name, err)
			}
			leafFile := filepath.Join(t.TempDir(), "leaf.pem")
			os.WriteFile(leafFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}), 0o644)
			out, err := exec.Command(openssl, "verify", "-CAfile", filepath.Join(dir, CertFile), leafFile).CombinedOutput()
			if tc.ok && err != nil {
				t.Errorf("openssl verify: leaf for listed %s: %v\n%s", tc.name, err, out)
			}
			if !tc.ok && (err == nil || !strings.Contains(string(out), "subtree violation")) {
				t.Errorf("openssl verify: leaf for unlisted %s: %v\n%s\nwant a subtree violation", tc.name, err, out)
			}
		})
	}
}

// Issue 13: when the -intercept patterns grow past the CA's constraints,
// New refuses, naming the patterns and the command that makes a new CA;
// a CA supplied without constraints is taken with a warning; a catch-all
// needs the flag that names the risk.
func TestNewChecksCA(t *testing.T) {
	_, dir := newTestCA(t, "api.test,*.example.com")
	if _, err := New(Options{Patterns: mustPatterns(t, "api.test,b.example.com"), Dir: dir}); err != nil {
		t.Errorf("patterns within the CA's constraints: %v", err)
	}
	_, err := New(Options{Patterns: mustPatterns(t, "api.test,other.test,10.1.0.0/16"), Dir: dir})
	if !errors.Is(err, ErrNotCovered) || !strings.Contains(err.Error(), "other.test,10.1.0.0/16") || !strings.Contains(err.Error(), "warmproxy ca init -force") {
		t.Errorf("New with patterns past the CA = %v, want ErrNotCovered naming other.test,10.1.0.0/16 and warmproxy ca init -force", err)
	}
	if _, err := New(Options{Patterns: mustPatterns(t, "*"), Dir: dir}); err == nil || !strings.Contains(err.Error(), "-intercept-any-host-i-know") {
		t.Errorf("New with * = %v, want a refusal naming -intercept-any-host-i-know", err)
	}
	if _, err := New(Options{Patterns: mustPatterns(t, "*"), AnyHost: true, Dir: dir}); !errors.Is(err, ErrNotCovered) {
		t.Errorf("New with * and a constrained CA = %v, want ErrNotCovered", err)
	}

	// A CA without constraints (made for "*").
	any, err := ParsePatterns("*")
	if err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := Init(open, any, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	i, err := New(Options{Patterns: mustPatterns(t, "api.test"), Dir: open})
	if err != nil || !strings.Contains(i.Warning, "no name constraints") {
		t.Errorf("New with an unconstrained CA = %v, warning %q; want it taken with a warning", err, i.Warning)
	}
}

// Issue 13: ca init writes the key with mode 0600 and will not replace a
// CA without force; LoadCA refuses a key others can read.
func TestKeyFile(t *testing.T) {
	ps, _ := ParsePatterns("api.test")
	dir := filepath.Join(t.TempDir(), "ca")
	if err := Init(dir, ps, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	if err := Init(dir, ps, false, time.Now()); err == nil || !strings.Contains(err.Error(), "-force") {
		t.Errorf("second Init = %v, want a refusal naming -force", err)
	}
	if err := Init(dir, ps, true, time.Now()); err != nil {
		t.Errorf("Init with force: %v", err)
	}
	os.Chmod(filepath.Join(dir, KeyFile), 0o644)
	if _, err := LoadCA(dir, time.Now()); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadCA of a world-readable key = %v, want a refusal saying chmod 600", err)
	}
}

// Issue 13: leaves are cached per host, renewed once two thirds of their
// lifetime passed, and the cache is bounded.
func TestLeafCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca, _ := newTestCA(t, "*.example.com")
		m := NewMinter(ca, MinterOptions{Lifetime: 3 * time.Hour, CacheSize: 2})
		a1, _ := m.Certificate("a.example.com")
		if a2, _ := m.Certificate("A.example.com."); a2 != a1 || m.Mints() != 1 {
			t.Errorf("second Certificate for the same host minted again (mints %d)", m.Mints())
		}
		if got := a1.Leaf.NotAfter.Sub(time.Now()); got != 3*time.Hour {
			t.Errorf("leaf valid for %v, want 3h", got)
		}
		time.Sleep(2*time.Hour + time.Second)
		a3, _ := m.Certificate("a.example.com")
		if a3 == a1 || m.Mints() != 2 {
			t.Errorf("leaf past two thirds of its life not renewed (mints %d)", m.Mints())
		}
		m.Certificate("b.example.com")
		m.Certificate("c.example.com")
		if n := m.Len(); n != 2 {
			t.Errorf("cache holds %d leaves, want its bound 2", n)
		}
		m.Certificate("a.example.com") // evicted: minted again
		if m.Mints() != 5 {
			t.Errorf("mints %d, want 5", m.Mints())
		}
	})
}

// BenchmarkMint is the cost of minting a leaf (key and signature).
func BenchmarkMint(b *testing.B) {
	ca, _ := newTestCA(b, "*.example.com")
	m := NewMinter(ca, MinterOptions{})
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.mint("a.example.com", now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCachedHit is the cost of a handshake's certificate from the
// cache.
func BenchmarkCachedHit(b *testing.B) {
	ca, _ := newTestCA(b, "*.example.com")
	m := NewMinter(ca, MinterOptions{})
	m.Certificate("a.example.com")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Certificate("a.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

// mustPatterns parses an -intercept list as config.Parse does.
func mustPatterns(t *testing.T, s string) []Pattern {
	t.Helper()
	ps, err := ParsePatterns(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}
