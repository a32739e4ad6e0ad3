package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
)

// settingFlags defines a flag for every setting config declares, on its
// field in cfg, with the field's current value as the default. It returns
// the repeatable ones, whose layers parseArgs marks with newLayer.
func settingFlags(fs *flag.FlagSet, cfg *config.Config) []*listFlag {
	var lists []*listFlag
	for _, s := range config.Settings() {
		name, usage := s.Key, s.Usage()
		switch p := s.Ptr(cfg).(type) {
		case *string:
			if s.Repeat {
				l := &listFlag{p: p}
				lists = append(lists, l)
				fs.Var(l, name, usage)
				continue
			}
			fs.StringVar(p, name, *p, usage)
		case *bool:
			fs.BoolVar(p, name, *p, usage)
		case *int:
			fs.IntVar(p, name, *p, usage)
		case *int64:
			fs.Int64Var(p, name, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, name, *p, usage)
		case flag.Value:
			fs.Var(p, name, usage)
		default:
			panic(fmt.Sprintf("setting %s: no flag for a %T", name, p))
		}
	}
	return lists
}

// listFlag is a repeatable flag over a comma-separated string (-route,
// -prewarm). Values given within one layer (the command line) add up; the
// next layer (the environment, then the flags applied again) replaces the
// list, as it does any other setting. An empty value empties the list.
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
	s = strings.TrimSpace(s)
	if f.add && *f.p != "" && s != "" {
		s = *f.p + "," + s
	}
	*f.p = s
	f.add = true
	return nil
}

// newLayer makes the next Set of each list replace it instead of adding
// to it.
func newLayer(lists []*listFlag) {
	for _, l := range lists {
		l.add = false
	}
}
