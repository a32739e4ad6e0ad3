// Package testnet holds the loopback plumbing that tests in several
// packages share: an accept loop whose connections are served, tracked and
// closed when the test ends, a DNS stub, self-signed certificates. It is
// for tests only.
package testnet

import (
	"bytes"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
)

// Serve listens on 127.0.0.1:0 and runs serve on its own goroutine for
// every connection accepted, until the test ends; then it closes the
// listener and every connection still open, and waits for the serve
// calls to return. It returns the listener's address.
func Serve(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ServeListener(t, ln, serve)
	return ln.Addr().String()
}

// ServeListener is Serve on a listener the test opened itself (on another
// loopback IP, say).
func ServeListener(t testing.TB, ln net.Listener, serve func(net.Conn)) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// Buffer is a bytes.Buffer that goroutines may write and read at once: a
// log sink for a server under test. Its zero value is ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Count returns how many times sub was written so far.
func (b *Buffer) Count(sub string) int {
	return strings.Count(b.String(), sub)
}

// SkipUnlessCI skips t for a missing piece of the environment (no /proc,
// a port taken), or fails it when CI is set: there every test must run.
func SkipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and the test cannot run: "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// ClosedAddr returns a loopback address (127.0.0.1:PORT) that nothing
// listened on a moment ago: a target that refuses connections, or a port
// for a program under test to listen on.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
