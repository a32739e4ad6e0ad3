package testnet

import (
	"testing"
	"time"
)

func TestWaitUntilPollsUntilTheConditionHolds(t *testing.T) {
	calls := 0
	WaitUntil(t, 5*time.Second, "the third call", func() bool {
		calls++
		return calls == 3
	})
	if calls != 3 {
		t.Errorf("WaitUntil called cond %d times, want 3", calls)
	}
}
