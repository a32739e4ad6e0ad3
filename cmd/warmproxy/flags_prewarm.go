package main

import (
	"flag"

	"github.com/warmproxy/warmproxy/internal/config"
)

// prewarmFlags defines the connection-lifetime flags. It returns -prewarm's
// value, whose newLayer parseArgs calls before each layer it applies.
func prewarmFlags(fs *flag.FlagSet, cfg *config.Config) *listFlag {
	pw := &listFlag{p: &cfg.Prewarm}
	fs.Var(pw, "prewarm", "open and hold connections to an `origin` from the start, scheme://host[:port][*N] (N connections, default 1); repeatable or comma-separated")
	fs.BoolVar(&cfg.HonorKeepAliveTimeout, "honor-keepalive-timeout", cfg.HonorKeepAliveTimeout, "retire pooled connections shortly before the idle limit an origin announces in Keep-Alive: timeout=N")
	return pw
}

// listFlag is a repeatable flag over a comma-separated string. Values given
// within one layer (the command line) add up; the next layer (the
// environment, then the flags applied again) replaces the list, as it does
// any other setting.
type listFlag struct {
	p   *string
	add bool
}

func (f *listFlag) String() string {
	if f == nil || f.p == nil {
		return ""
	}
	return *f.p
}

func (f *listFlag) Set(s string) error {
	if f.add && *f.p != "" {
		*f.p += "," + s
	} else {
		*f.p = s
	}
	f.add = true
	return nil
}

// newLayer makes the next Set replace the list instead of adding to it.
func (f *listFlag) newLayer() { f.add = false }
