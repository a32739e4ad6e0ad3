package proxy_test

import (
	"os"
	"testing"
)

// skipUnlessCI skips the test for a missing piece of the environment (no
// /proc, a port taken), or fails it when CI is set: there every test
// must run. Issue 14.
func skipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and the test cannot run: "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}
