// Package procs starts the bench's servers as child processes, waits for
// their ready lines, and stops them by PID.
package procs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/warmproxy/warmproxy/bench/internal/procfs"
)

// Proc is a started child process. Its stdout and stderr are merged, kept
// in memory line by line for WaitLine, and copied to a log file.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on each new line or exit
	readers sync.WaitGroup
}

// Start runs argv with its output in logPath. extraEnv is added to the
// environment.
func Start(name, logPath string, argv []string, extraEnv ...string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, errors.New("start: empty command")
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %v", name, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %v", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.Env = append(os.Environ(), extraEnv...)
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		logf.Close()
		return nil, fmt.Errorf("start %s: %v", name, err)
	}
	pw.Close() // the child holds the write end now
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{}), changed: make(chan struct{})}
	p.readers.Add(1)
	go p.readLines(pr, logf)
	go func() {
		p.err = cmd.Wait()
		// Let the reader take the last lines before done says "exited",
		// but not forever: a grandchild may still hold the pipe.
		drained := make(chan struct{})
		go func() { p.readers.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(time.Second):
		}
		close(p.done)
		p.notify()
	}()
	return p, nil
}

// PID returns the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// readLines copies output to the log and the in-memory lines until every
// holder of the pipe's write end (the child and its children) closed it.
func (p *Proc) readLines(r io.ReadCloser, logf *os.File) {
	defer p.readers.Done()
	defer logf.Close()
	defer r.Close()
	br := bufio.NewReaderSize(r, 256<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			logf.WriteString(line)
			p.mu.Lock()
			if len(p.lines) < 100_000 {
				p.lines = append(p.lines, line)
			}
			p.mu.Unlock()
			p.notify()
		}
		if err != nil {
			return
		}
	}
}

func (p *Proc) notify() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// WaitLine waits up to timeout for an output line for which match is true
// and returns it. It fails early if the process exits.
func (p *Proc) WaitLine(timeout time.Duration, match func(string) bool) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	seen := 0
	for {
		p.mu.Lock()
		lines, changed := p.lines[seen:], p.changed
		seen = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			if match(l) {
				return l, nil
			}
		}
		select {
		case <-p.done:
			// One more look: lines may have landed with the exit.
			p.mu.Lock()
			rest := p.lines[seen:]
			p.mu.Unlock()
			for _, l := range rest {
				if match(l) {
					return l, nil
				}
			}
			return "", fmt.Errorf("%s exited before it was ready: %v; output: %s", p.Name, p.err, p.tail())
		case <-t.C:
			return "", fmt.Errorf("%s not ready after %v; output: %s", p.Name, timeout, p.tail())
		case <-changed:
		}
	}
}

// tail returns the last few output lines, for error messages.
func (p *Proc) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.lines[max(0, len(p.lines)-5):]
	var s string
	for _, x := range l {
		s += x
	}
	return s
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the PID, waits up to grace, then SIGKILLs the PID
// and any descendants it left. It is safe to call more than once.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	tree := procfs.Tree(p.PID())
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		for _, pid := range tree {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		<-p.done
		return fmt.Errorf("stop %s: killed after %v", p.Name, grace)
	}
	// Children of a server (nginx workers) go with their parent; make
	// sure, so the next scenario starts clean.
	for _, pid := range tree[1:] {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return nil
}

// Run runs a short command to completion within ctx and returns its stdout;
// stderr goes to the error on failure.
func Run(ctx context.Context, argv []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, fmt.Errorf("%s: %v: %s", argv[0], err, lastBytes(ee.Stderr, 500))
		}
		return out, fmt.Errorf("%s: %v", argv[0], err)
	}
	return out, nil
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
