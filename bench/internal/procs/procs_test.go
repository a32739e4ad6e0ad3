package procs

import (
	"strings"
	"testing"
	"time"
)

func TestStartWaitStop(t *testing.T) {
	p, err := Start("sh", t.TempDir()+"/log", []string{"sh", "-c", "echo starting; echo ready addr=x; exec sleep 300"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	line, err := p.WaitLine(5*time.Second, func(l string) bool { return strings.Contains(l, "ready") })
	if err != nil || !strings.Contains(line, "addr=x") {
		t.Fatalf("WaitLine = %q, %v, want the ready line", line, err)
	}
	// Stop fails when it had to kill the process after the grace period,
	// so no error means it went on SIGTERM (issue 12: not a wall-clock
	// bound; the grace period is a hang guard).
	if err := p.Stop(30 * time.Second); err != nil {
		t.Errorf("Stop: %v, want an exit on SIGTERM", err)
	}
	if !p.Exited() {
		t.Error("process still running after Stop")
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
