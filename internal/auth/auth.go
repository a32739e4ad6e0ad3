// Package auth checks proxy credentials: "Proxy-Authorization: Basic"
// against an htpasswd file of bcrypt hashes. Successful checks are cached
// for a short while, so a client that sends the same credentials on every
// request does not cost a bcrypt comparison (tens of milliseconds by
// design) each time.
package auth

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Challenge is the Proxy-Authenticate value sent with a 407.
const Challenge = `Basic realm="warmproxy"`

const (
	// cacheTTL is how long a successful check is remembered.
	cacheTTL = 5 * time.Minute
	// cacheMax bounds the cache; when full, it is emptied.
	cacheMax = 4096
)

// dummyHash is compared against when the user is unknown, so an unknown
// user costs as much time as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("warmproxy-dummy"), bcrypt.DefaultCost)
	return h
})

// Basic holds the users of an htpasswd file. It is safe for concurrent
// use.
type Basic struct {
	users map[string][]byte

	mu    sync.RWMutex
	cache map[[sha256.Size]byte]time.Time
	now   func() time.Time
}

// Load reads an htpasswd file.
func Load(path string) (*Basic, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("proxy-auth-file: %v", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads htpasswd lines, user:hash, from r; name is used in errors.
// Only bcrypt hashes ($2y$, $2b$, $2a$; htpasswd -B) are accepted.
func Parse(r io.Reader, name string) (*Basic, error) {
	b := &Basic{users: map[string][]byte{}, cache: map[[sha256.Size]byte]time.Time{}, now: time.Now}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%s:%d: want user:bcrypt-hash", name, line)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil || !strings.HasPrefix(hash, "$2") {
			return nil, fmt.Errorf("%s:%d: user %q: not a bcrypt hash; create entries with htpasswd -B", name, line, user)
		}
		if _, dup := b.users[user]; dup {
			return nil, fmt.Errorf("%s:%d: user %q listed twice", name, line, user)
		}
		b.users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if len(b.users) == 0 {
		return nil, fmt.Errorf("%s: no users", name)
	}
	return b, nil
}

// Check reports whether the Proxy-Authorization field values hold valid
// Basic credentials, and for whom.
func (b *Basic) Check(values []string) (user string, ok bool) {
	if len(values) != 1 {
		return "", false
	}
	v := values[0]
	const prefix = "Basic "
	if len(v) <= len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[len(prefix):]))
	if err != nil {
		return "", false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", false
	}
	key := sha256.Sum256([]byte(v))
	now := b.now()
	b.mu.RLock()
	exp, hit := b.cache[key]
	b.mu.RUnlock()
	if hit && now.Before(exp) {
		return user, true
	}
	hash, known := b.users[user]
	if !known {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(pass))
		return "", false
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return "", false
	}
	b.mu.Lock()
	if len(b.cache) >= cacheMax {
		clear(b.cache)
	}
	b.cache[key] = now.Add(cacheTTL)
	b.mu.Unlock()
	return user, true
}
