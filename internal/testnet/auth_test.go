package testnet

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Htpasswd writes one user:bcrypt-hash line that the password matches.
func TestHtpasswd(t *testing.T) {
	b, err := os.ReadFile(Htpasswd(t, "u", "pw", bcrypt.MinCost))
	if err != nil {
		t.Fatal(err)
	}
	user, hash, ok := strings.Cut(strings.TrimSuffix(string(b), "\n"), ":")
	if !ok || user != "u" || bcrypt.CompareHashAndPassword([]byte(hash), []byte("pw")) != nil {
		t.Errorf("Htpasswd wrote %q, want u:<bcrypt of pw>", b)
	}
}
