package limit

import (
	"testing"

	"go.uber.org/goleak"
)

// Issue 6: no goroutine outlives the tests (a waiter that gave up must not
// stay parked).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
