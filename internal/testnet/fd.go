package testnet

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// FDCount counts this process's open file descriptors. It collects
// garbage first: splice keeps pipes in a sync.Pool, whose finalizers
// close them. Without /proc/self/fd it skips the test (SkipUnlessCI).
func FDCount(t testing.TB) int {
	t.Helper()
	runtime.GC()
	runtime.GC()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		SkipUnlessCI(t, "no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// CheckNoFDLeak fails the test if, once it and its cleanups are done,
// more descriptors are open than at the call; it gives closes up to 2 s to
// land. Call it first, so its cleanup runs last.
func CheckNoFDLeak(t testing.TB) {
	t.Helper()
	before := FDCount(t)
	t.Cleanup(func() {
		var now int
		for i := 0; i < 40; i++ {
			if now = FDCount(t); now <= before {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("open fds after the test = %d, want <= %d (leak)", now, before)
	})
}
