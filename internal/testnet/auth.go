package testnet

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Htpasswd writes an htpasswd file in a temporary directory with one
// line, user and pass hashed by bcrypt at cost, and returns its path.
func Htpasswd(t testing.TB, user, pass string, cost int) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), cost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
