// Command warmproxy is a keep-alive HTTP forward proxy: short-lived clients
// send it ordinary proxy requests and it forwards them over a pool of
// persistent origin connections, TLS included.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/warmproxy/warmproxy/internal/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main with its inputs and outputs explicit, and an exit code out.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, act, err := parseArgs(args, getenv, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "warmproxy: %v\nRun warmproxy -h for usage.\n", err)
		return 2
	}
	switch act {
	case actionHelp:
		return 0
	case actionVersion:
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "warmproxy: bad configuration:\n%v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// A second signal gets the default action: exit at once.
		stop()
	}()
	if err := server.Run(ctx, cfg, log, stdout); err != nil {
		log.Error("exiting", "err", err)
		return 1
	}
	return 0
}

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = ""

// versionString reports the version and the VCS commit from build info.
func versionString() string {
	v, commit, dirty := version, "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if commit == "" {
		commit = "unknown"
	}
	return "warmproxy " + v + " commit " + commit + dirty
}
