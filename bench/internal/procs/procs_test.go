package procs

import (
	"strings"
	"testing"
	"time"
)

func TestStartWaitStop(t *testing.T) {
	p, err := Start("sh", t.TempDir()+"/log", []string{"sh", "-c", "echo starting; echo ready addr=x; exec sleep 30"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	line, err := p.WaitLine(5*time.Second, func(l string) bool { return strings.Contains(l, "ready") })
	if err != nil || !strings.Contains(line, "addr=x") {
		t.Fatalf("WaitLine = %q, %v, want the ready line", line, err)
	}
	start := time.Now()
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if !p.Exited() || time.Since(start) > 3*time.Second {
		t.Errorf("Stop took %v, exited %v; want a prompt exit on SIGTERM", time.Since(start), p.Exited())
	}
}

func TestWaitLineExit(t *testing.T) {
	p, err := Start("false", t.TempDir()+"/log", []string{"sh", "-c", "echo oops; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.WaitLine(5*time.Second, func(l string) bool { return strings.Contains(l, "ready") })
	if err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("WaitLine on exiting process = %v, want error with its output", err)
	}
}
