//go:build !linux

package rttrelay

import (
	"errors"
	"time"
)

// fdTimer is Linux-only; elsewhere waiter falls back to runtime timers.
type fdTimer struct{}

func newFDTimer() (*fdTimer, error)          { return nil, errors.New("timerfd: not on this OS") }
func (t *fdTimer) sleep(time.Duration) error { return errors.New("timerfd: not on this OS") }
func (t *fdTimer) close()                    {}
