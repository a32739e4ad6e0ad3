package rttrelay

import (
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// fdTimer sleeps on a Linux timerfd read through the runtime's netpoller.
// The poller wakes as soon as the fd is readable, so unlike a runtime timer
// (whose poller timeout is in whole milliseconds) it neither oversleeps by
// up to a millisecond nor needs spinning.
type fdTimer struct {
	fd int
	f  *os.File
}

const (
	clockMonotonic = 1
	tfdNonblock    = syscall.O_NONBLOCK
	tfdCloexec     = syscall.O_CLOEXEC
)

func newFDTimer() (*fdTimer, error) {
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, tfdNonblock|tfdCloexec, 0)
	if errno != 0 {
		return nil, fmt.Errorf("timerfd_create: %v", errno)
	}
	// A non-blocking fd gives a pollable *os.File. Never call f.Fd(): it
	// would switch the fd back to blocking mode.
	return &fdTimer{fd: int(fd), f: os.NewFile(fd, "timerfd")}, nil
}

// sleep blocks for d (d > 0).
func (t *fdTimer) sleep(d time.Duration) error {
	spec := struct{ interval, value syscall.Timespec }{value: syscall.NsecToTimespec(int64(d))}
	if _, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, uintptr(t.fd), 0,
		uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		return fmt.Errorf("timerfd_settime: %v", errno)
	}
	var buf [8]byte
	_, err := t.f.Read(buf[:])
	return err
}

func (t *fdTimer) close() { t.f.Close() }
