// Command warmproxy is a keep-alive HTTP forward proxy: short-lived clients
// send it ordinary proxy requests and it forwards them over a pool of
// persistent origin connections, TLS included.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main with its inputs and outputs explicit, and an exit code out.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "ca" {
		return runCA(args[1:], getenv, stdout, stderr)
	}
	cfg, act, err := parseArgs(args, getenv, stderr)
	var settingsErr *settingsError
	if err != nil && !errors.As(err, &settingsErr) {
		fmt.Fprintf(stderr, "warmproxy: %v; see warmproxy -h\n", err)
		return 2
	}
	switch act {
	case actionHelp:
		return 0
	case actionVersion:
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	// Every problem at once: the file's, the environment's and Validate's.
	parsed, perr := cfg.Parse()
	if err := errors.Join(err, perr); err != nil {
		fmt.Fprintf(stderr, "warmproxy: bad configuration:\n%v\n", err)
		return 2
	}
	if act == actionCheckConfig {
		out, err := config.FileFrom(cfg.Redacted()).Marshal()
		if err != nil {
			fmt.Fprintf(stderr, "warmproxy: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "# warmproxy: configuration ok; effective settings:\n%s", out)
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	// SIGHUP re-reads the configuration; register before serving so that
	// an early one does not kill the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	term := make(chan os.Signal, 2)
	signal.Notify(term, syscall.SIGINT, syscall.SIGTERM)
	go exitOnSecondSignal(term, stop)

	reloads := make(chan config.Parsed)
	load := func() (config.Parsed, error) {
		c, _, err := parseArgs(args, getenv, io.Discard)
		p, perr := c.Parse()
		return p, errors.Join(err, perr)
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { watchReload(watchCtx, hup, load, reloads, log) })
	err = server.Run(ctx, parsed, log, stdout, server.WithReload(reloads))
	stopWatch()
	wg.Wait()
	if err != nil {
		log.Error("exiting", "err", err)
		return 1
	}
	return 0
}

// exitOnSecondSignal cancels the server's context (a graceful drain) on
// the first signal from term, and gives the second the default action:
// exit at once. term stays subscribed until the second arrives and is
// buffered for both, so a second signal sent right after the first is
// never lost, however late this goroutine runs.
func exitOnSecondSignal(term chan os.Signal, drain func()) {
	<-term
	drain()
	s := <-term
	signal.Stop(term)
	signal.Reset(s)
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		p.Signal(s)
	}
}

// watchReload loads the configuration again on each signal from hup and
// hands it to the server; a configuration that does not load or validate
// is logged and dropped, so the running one stays. It returns when ctx is
// done.
func watchReload(ctx context.Context, hup <-chan os.Signal, load func() (config.Parsed, error), reloads chan<- config.Parsed, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := load()
		if err != nil {
			log.Error("reload failed, keeping the old configuration", "err", err)
			continue
		}
		select {
		case reloads <- cfg:
		case <-ctx.Done():
			return
		}
	}
}

// version and commit are set at link time, as make build does:
// -ldflags "-X main.version=v1.2.3 -X main.commit=0123abc".
var version, commit = "", ""

// versionString reports the version and the commit of this binary.
func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return formatVersion(version, commit, bi)
}

// formatVersion prefers what the linker set (make build), then the build
// info a plain go build stamps from the VCS. Without either, as under go
// run or a build with -buildvcs=false, it says (devel) and names no commit.
func formatVersion(linkVersion, linkCommit string, bi *debug.BuildInfo) string {
	v, rev, dirty := linkVersion, linkCommit, ""
	if bi != nil {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && rev == "":
				rev = s.Value
			case s.Key == "vcs.modified" && s.Value == "true" && linkCommit == "":
				dirty = "-dirty"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if rev == "" {
		return "warmproxy " + v
	}
	return "warmproxy " + v + " commit " + rev + dirty
}
