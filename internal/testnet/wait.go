package testnet

import (
	"testing"
	"time"
)

// WaitUntil polls cond every 5 ms until it holds, failing t if it still
// does not after timeout, a hang guard: what names what is awaited ("the
// lookup to end").
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
