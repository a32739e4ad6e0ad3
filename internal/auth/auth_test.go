package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func hashOf(t testing.TB, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func basic(user, pass string) []string {
	return []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

// Issue 6: Basic credentials are checked against bcrypt hashes.
func TestCheck(t *testing.T) {
	file := "# users\nalice:" + hashOf(t, "s3cret") + "\n\nbob:" + strings.Replace(hashOf(t, "pw:with:colons"), "$2a$", "$2y$", 1) + "\n"
	b, err := Parse(strings.NewReader(file), "test")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		values []string
		want   bool
	}{
		{"good", basic("alice", "s3cret"), true},
		{"2y hash and colons", basic("bob", "pw:with:colons"), true},
		{"lowercase scheme", []string{"basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))}, true},
		{"wrong password", basic("alice", "nope"), false},
		{"unknown user", basic("mallory", "s3cret"), false},
		{"empty", nil, false},
		{"two fields", append(basic("alice", "s3cret"), basic("alice", "s3cret")...), false},
		{"bearer", []string{"Bearer abc"}, false},
		{"bad base64", []string{"Basic !!!"}, false},
		{"no colon", []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("alice"))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := b.Check(tt.values); got != tt.want {
				t.Errorf("Check(%q) = %v, want %v", tt.values, got, tt.want)
			}
		})
	}
}

func TestCheckCaches(t *testing.T) {
	b, err := Parse(strings.NewReader("alice:"+hashOf(t, "s3cret")+"\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	if _, ok := b.Check(basic("alice", "s3cret")); !ok {
		t.Fatal("first check failed")
	}
	// With the hash gone, only the cache can say yes.
	good := b.users["alice"]
	b.users["alice"] = []byte(hashOf(t, "other"))
	if _, ok := b.Check(basic("alice", "s3cret")); !ok {
		t.Error("cached check failed")
	}
	if _, ok := b.Check(basic("alice", "wrong")); ok {
		t.Error("wrong password passed while the right one is cached")
	}
	now = now.Add(cacheTTL + time.Second)
	if _, ok := b.Check(basic("alice", "s3cret")); ok {
		t.Error("expired cache entry still accepted")
	}
	b.users["alice"] = good
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, file, want string }{
		{"md5", "alice:$apr1$abc$def\n", "htpasswd -B"},
		{"sha", "alice:{SHA}abc\n", "htpasswd -B"},
		{"no colon", "alice\n", "user:bcrypt-hash"},
		{"empty", "# nothing\n", "no users"},
		{"dup", "a:" + hashOf(t, "x") + "\na:" + hashOf(t, "y") + "\n", "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.file), "f")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error %v, want one saying %q", tt.file, err, tt.want)
			}
		})
	}
}

// Issue 12: a failed value costs one bcrypt comparison, however often and
// however concurrently it is sent; distinct wrong values cost one each; a
// cached good value costs none, and comparisons run at most compareSlots
// at a time.
func TestFailedChecksAreCached(t *testing.T) {
	b, err := Parse(strings.NewReader("alice:"+hashOf(t, "s3cret")+"\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Check(basic("alice", "s3cret")); !ok {
		t.Fatal("good check failed")
	}
	const goroutines, tries, distinct = 20, 10, 5
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range tries {
				if _, ok := b.Check(basic("alice", "s3cret")); !ok {
					t.Error("cached good check failed")
				}
				if _, ok := b.Check(basic("alice", "wrong")); ok {
					t.Error("wrong password passed")
				}
				if _, ok := b.Check(basic("alice", fmt.Sprint("x", (g+i)%distinct))); ok {
					t.Error("distinct wrong password passed")
				}
				if _, ok := b.Check(basic("mallory", "s3cret")); ok {
					t.Error("unknown user passed")
				}
			}
		})
	}
	wg.Wait()
	// 1 good + 1 wrong + 1 unknown user + the distinct wrong values.
	if got, want := b.compares.Load(), int64(1+1+1+distinct); got != want {
		t.Errorf("bcrypt comparisons = %d, want %d (one per distinct value)", got, want)
	}
	if n := cap(b.slots); n != max(1, runtime.GOMAXPROCS(0)/2) {
		t.Errorf("compare slots = %d, want GOMAXPROCS/2 (at least 1)", n)
	}
}

// Issue 12: past maxWaiting checks waiting for a bcrypt slot, a check
// fails with ErrBusy at once instead of queueing without bound.
func TestCheckBusy(t *testing.T) {
	b, err := Parse(strings.NewReader("alice:"+hashOf(t, "s3cret")+"\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	for range cap(b.slots) {
		b.slots <- struct{}{} // every slot taken
	}
	b.waiting.Store(maxWaiting)
	if _, ok, err := b.CheckContext(context.Background(), basic("alice", "s3cret")); ok || !errors.Is(err, ErrBusy) {
		t.Errorf("CheckContext with the queue full = %v, %v; want false, ErrBusy", ok, err)
	}
	b.waiting.Store(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok, err := b.CheckContext(ctx, basic("alice", "s3cret")); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("CheckContext with no slot and ctx done = %v, %v; want false, context.Canceled", ok, err)
	}
	// Neither outcome is cached: with a slot free the value is checked.
	for range cap(b.slots) {
		<-b.slots
	}
	if _, ok := b.Check(basic("alice", "s3cret")); !ok {
		t.Error("good check after busy failed")
	}
}
