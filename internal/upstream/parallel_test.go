package upstream

import (
	"sync"
	"testing"
)

// Issue 16: a leak check (goleak, as newTestUpstream's) sees every
// goroutine in the process, so a test that makes one runs alone, except
// for one: the parallel tests that check no leaks of their own register
// in quietTests (parallelQuiet), and the one parallel test that does
// (parallelLeakChecked) waits for all of them to end before it looks.
// At most one test may call parallelLeakChecked: two would see each
// other's goroutines.
var (
	quietTests   sync.WaitGroup
	leakParallel sync.Map // *testing.T → struct{}: waits out quietTests
)

// parallelQuiet runs t in parallel as one whose goroutines the leak check
// of a parallelLeakChecked test waits out; t itself must count no
// goroutines. It registers before t.Parallel, while the tests still run
// one by one, so that every such test is counted before the parallel
// ones start.
func parallelQuiet(t *testing.T) {
	t.Helper()
	quietTests.Add(1)
	t.Cleanup(quietTests.Done)
	t.Parallel()
}

// parallelLeakChecked runs t in parallel with the parallelQuiet tests; its
// leak check (newTestUpstream's) waits until they have ended.
func parallelLeakChecked(t *testing.T) {
	t.Helper()
	leakParallel.Store(t, struct{}{})
	t.Cleanup(func() { leakParallel.Delete(t) })
	t.Parallel()
}

// waitQuiet waits, for a parallelLeakChecked t, until every
// parallelQuiet test has ended; for any other t it returns at once (a
// test that runs alone must not wait for the parallel ones, which wait
// for it).
func waitQuiet(t *testing.T) {
	if _, ok := leakParallel.Load(t); ok {
		quietTests.Wait()
	}
}
