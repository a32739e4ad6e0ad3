package main

import (
	"flag"
	"strings"

	"github.com/warmproxy/warmproxy/internal/config"
)

// clientFlags defines the client-side listener, request body and route
// flags. The
// returned func ends the command line's parse: until then each -route
// adds to the list; after it (the environment and the re-applied flags)
// a value replaces the list, so each layer overrides the one below.
func clientFlags(fs *flag.FlagSet, cfg *config.Config) (endParse func()) {
	fs.StringVar(&cfg.ListenMode, "listen-mode", cfg.ListenMode, "octal file `mode` of a unix: listener's socket; it decides who may connect")
	fs.BoolVar(&cfg.ClientH2C, "client-h2c", cfg.ClientH2C, "accept HTTP/2 with prior knowledge (h2c) from clients, next to HTTP/1.1")
	fs.IntVar(&cfg.ClientH2CMaxStreams, "client-h2c-max-streams", cfg.ClientH2CMaxStreams, "concurrent streams one h2c client connection may open (they count in -max-requests-in-flight too)")
	fs.DurationVar(&cfg.ClientBodyTimeout, "client-body-timeout", cfg.ClientBodyTimeout, "longest wait for the next bytes of a request body; a body that stalls longer gets 408 (or, once the response started, an aborted connection)")
	r := &routesValue{p: &cfg.Routes, appending: true}
	fs.Var(r, "route", "base-URL `route` /prefix/=https://host[:port][/basepath/]: GET /prefix/x on the proxy's address goes to https://host/basepath/x; repeat or separate with commas")
	return func() { r.appending = false }
}

// routesValue is the -route flag: a comma-separated list in cfg.Routes.
type routesValue struct {
	p *string
	// appending is set while the command line is parsed: each -route
	// then adds to what earlier ones set.
	appending bool
	started   bool
}

func (v *routesValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return *v.p
}

func (v *routesValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if v.appending && v.started && *v.p != "" && s != "" {
		s = *v.p + "," + s
	}
	v.started = true
	*v.p = s
	return nil
}
