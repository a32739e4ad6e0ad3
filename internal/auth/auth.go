// Package auth checks proxy credentials: "Proxy-Authorization: Basic"
// against an htpasswd file of bcrypt hashes. Checks are cached for a
// short while, the failed ones too, so a client that sends the same
// credentials on every request does not cost a bcrypt comparison (tens of
// milliseconds by design) each time, and neither does a client repeating a
// wrong password. The comparisons that remain run a few at a time, so a
// flood of distinct wrong passwords cannot take every CPU from the
// requests whose credentials are cached.
package auth

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Challenge is the Proxy-Authenticate value sent with a 407.
const Challenge = `Basic realm="warmproxy"`

const (
	// cacheTTL is how long a check is remembered, failed or not. A reload
	// (SIGHUP) builds a new Basic, so changed passwords apply at once.
	cacheTTL = 5 * time.Minute
	// cacheMax bounds each cache (the successful and the failed checks);
	// when one is full, it is emptied.
	cacheMax = 4096
	// maxWaiting bounds the checks waiting for a bcrypt slot; past it a
	// check fails with ErrBusy at once.
	maxWaiting = 64
)

// ErrBusy is returned when too many credential checks wait for a bcrypt
// comparison; the client should retry later (503 with Retry-After).
var ErrBusy = errors.New("auth: too many credential checks in progress")

// compareSlots is how many bcrypt comparisons run at once: half the CPUs
// Go may use, at least one, so a flood of wrong passwords leaves the other
// half to requests whose credentials are cached.
func compareSlots() int { return max(1, runtime.GOMAXPROCS(0)/2) }

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
	// key keys the hash the caches are indexed by (see hash), random per
	// Basic, so the index reveals nothing.
	key []byte

	mu sync.RWMutex
	// good and bad hold the expiry of successful and failed checks.
	good, bad map[cacheKey]time.Time
	// inflight shares one comparison among concurrent checks of the same
	// value.
	inflight map[cacheKey]*check
	now      func() time.Time

	// slots bound the bcrypt comparisons running at once; waiting counts
	// the checks waiting for one.
	slots   chan struct{}
	waiting atomic.Int32
	// compares counts the bcrypt comparisons made.
	compares atomic.Int64
}

type cacheKey [sha256.Size]byte

// check is a comparison in progress; done is closed when ok and err are
// set.
type check struct {
	done chan struct{}
	ok   bool
	err  error
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
	b := &Basic{
		users: map[string][]byte{}, key: make([]byte, 32),
		good: map[cacheKey]time.Time{}, bad: map[cacheKey]time.Time{}, inflight: map[cacheKey]*check{},
		now: time.Now, slots: make(chan struct{}, compareSlots()),
	}
	rand.Read(b.key)
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
// Basic credentials, and for whom. A check that could not be made (too
// many waiting) reports false.
func (b *Basic) Check(values []string) (user string, ok bool) {
	user, ok, _ = b.CheckContext(context.Background(), values)
	return user, ok
}

// CheckContext is Check waiting for a bcrypt slot at most until ctx is
// done. err is ErrBusy when too many checks wait already, or ctx's error;
// ok is then false and says nothing about the credentials.
func (b *Basic) CheckContext(ctx context.Context, values []string) (user string, ok bool, err error) {
	if len(values) != 1 {
		return "", false, nil
	}
	v := values[0]
	const prefix = "Basic "
	if len(v) <= len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", false, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[len(prefix):]))
	if err != nil {
		return "", false, nil
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", false, nil
	}
	key := b.hash(v)
	now := b.now()
	b.mu.RLock()
	good, bad := b.cached(key, now)
	b.mu.RUnlock()
	if good || bad {
		return hit(user, good)
	}
	// A comparison shared with a check whose client left before it got a
	// slot tells nothing; this one tries again, a few times at most.
	for range 3 {
		ok, err = b.shared(ctx, key, now, user, pass)
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			break
		}
	}
	if err != nil || !ok {
		return "", false, err
	}
	return user, true, nil
}

// shared answers from the cache, or from the comparison of key in
// progress, or starts that comparison and waits for it.
func (b *Basic) shared(ctx context.Context, key cacheKey, now time.Time, user, pass string) (bool, error) {
	b.mu.Lock()
	if good, bad := b.cached(key, now); good || bad {
		b.mu.Unlock()
		return good, nil
	}
	c, joined := b.inflight[key]
	if !joined {
		c = &check{done: make(chan struct{})}
		b.inflight[key] = c
	}
	b.mu.Unlock()
	if !joined {
		c.ok, c.err = b.compare(ctx, user, pass)
		b.finish(key, c, now)
	}
	select {
	case <-c.done:
		return c.ok, c.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Compares returns how many bcrypt comparisons were made.
func (b *Basic) Compares() int64 { return b.compares.Load() }

// hit is CheckContext's answer from the cache.
func hit(user string, good bool) (string, bool, error) {
	if !good {
		return "", false, nil
	}
	return user, true, nil
}

// cached reports whether key is remembered as good or as bad at now;
// b.mu is held.
func (b *Basic) cached(key cacheKey, now time.Time) (good, bad bool) {
	if exp, hit := b.good[key]; hit && now.Before(exp) {
		return true, false
	}
	exp, hit := b.bad[key]
	return false, hit && now.Before(exp)
}

// hash is the cache index of a header value: SHA-256 of the per-Basic
// random key followed by v, which no one without the key can predict or
// invert (length extension does not matter for an index). Usual values
// fit the stack buffer, so a cached check allocates nothing for it.
func (b *Basic) hash(v string) cacheKey {
	var buf [256]byte
	if len(b.key)+len(v) > len(buf) {
		return sha256.Sum256(append(slices.Clip(b.key), v...))
	}
	n := copy(buf[:], b.key)
	n += copy(buf[n:], v)
	return sha256.Sum256(buf[:n])
}

// compare runs one bcrypt comparison in a slot. An unknown user costs as
// much as a wrong password.
func (b *Basic) compare(ctx context.Context, user, pass string) (bool, error) {
	if b.waiting.Add(1) > maxWaiting {
		b.waiting.Add(-1)
		return false, ErrBusy
	}
	select {
	case b.slots <- struct{}{}:
		b.waiting.Add(-1)
	case <-ctx.Done():
		b.waiting.Add(-1)
		return false, ctx.Err()
	}
	defer func() { <-b.slots }()
	b.compares.Add(1)
	hash, known := b.users[user]
	if !known {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(pass))
		return false, nil
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil, nil
}

// finish remembers the outcome of c (not a check that could not be made)
// and wakes its waiters.
func (b *Basic) finish(key cacheKey, c *check, now time.Time) {
	b.mu.Lock()
	delete(b.inflight, key)
	if c.err == nil {
		cache := b.bad
		if c.ok {
			cache = b.good
		}
		if len(cache) >= cacheMax {
			clear(cache)
		}
		cache[key] = now.Add(cacheTTL)
	}
	b.mu.Unlock()
	close(c.done)
}
