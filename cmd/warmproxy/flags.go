package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
)

// action is what main does after parsing the command line.
type action int

const (
	actionRun action = iota
	actionHelp
	actionVersion
	actionCheckConfig
)

const usageHead = `warmproxy: a keep-alive HTTP forward proxy for short-lived clients.

Usage:
  warmproxy [flags] [[host]:port [MaxIdleConnsPerHost [ProtocolHeader]]]

The positional form is the one of the original http_pool. Every flag can
also be set in the environment as WARMPROXY_<FLAG>, e.g.
WARMPROXY_MAX_IDLE_PER_HOST=32, and in the YAML file named by -config (or
WARMPROXY_CONFIG) under the flag's name, e.g. max-idle-per-host: 32.
Precedence, lowest first: defaults < config file < environment < flags and
positional arguments. SIGHUP re-reads the file (and -proxy-auth-file) and
applies what can change while running: log-format, allow-clients,
proxy-auth-file, allow, deny, deny-private.

Flags:
`

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return config.Setting{Key: name}.Env()
}

// settingsError holds the problems found in the configuration file and the
// environment. parseArgs returns it with the Config merged as far as it
// could be, so that main can list these problems together with Validate's.
type settingsError struct{ err error }

func (e *settingsError) Error() string { return e.err.Error() }
func (e *settingsError) Unwrap() error { return e.err }

// parseArgs builds a Config in layers, lowest first: defaults, the YAML
// file named by -config or WARMPROXY_CONFIG, the WARMPROXY_* environment,
// then the flags and positional arguments in args. It never exits; usage
// goes to out. A bad flag or argument is returned as a plain error; bad
// settings in the file or environment as a *settingsError.
func parseArgs(args []string, getenv func(string) string, out io.Writer) (config.Config, action, error) {
	cfg := config.Default()
	fs := flag.NewFlagSet("warmproxy", flag.ContinueOnError)
	// The flag package prints an error and the whole usage on a bad
	// flag; main prints one line instead (flagError), and -h the usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	lists := settingFlags(fs, &cfg)
	version := fs.Bool("version", false, "print the version and exit")
	configFile := fs.String("config", "", "YAML `file` of settings, keyed by flag name; the environment and flags override it")
	checkConfig := fs.Bool("check-config", false, "check the configuration (file, environment, flags), print the effective settings and exit: 0 if valid, 2 if not")
	notSettings := map[string]bool{"version": true, "config": true, "check-config": true}

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			fmt.Fprint(out, usageHead)
			fs.PrintDefaults()
			return cfg, actionHelp, nil
		}
		return cfg, actionRun, flagError(fs, err)
	}
	newLayer(lists)
	if *version {
		return cfg, actionVersion, nil
	}
	act := actionRun
	if *checkConfig {
		act = actionCheckConfig
	}

	// The flags are parsed, and written into cfg; note them, then build cfg
	// again layer by layer so each layer overrides the one below.
	type setting struct{ name, value string }
	var given []setting
	fs.Visit(func(f *flag.Flag) {
		if !notSettings[f.Name] {
			given = append(given, setting{f.Name, f.Value.String()})
		}
	})
	cfg = config.Default()
	var problems []error
	path := *configFile
	if path == "" {
		path = getenv(envName("config"))
	}
	if path != "" {
		file, err := config.LoadFile(path)
		if err != nil {
			problems = append(problems, err)
		}
		file.Apply(&cfg)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if notSettings[f.Name] {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			prev := f.Value.String()
			if err := fs.Set(f.Name, v); err != nil {
				problems = append(problems, fmt.Errorf("%s=%q: %s", name, v, valueHint(f, err)))
				fs.Set(f.Name, prev) // a failed Set may have zeroed it
			}
		}
	})
	newLayer(lists)
	for _, s := range given {
		if err := fs.Set(s.name, s.value); err != nil {
			return cfg, act, fmt.Errorf("-%s %q: %s", s.name, s.value, valueHint(fs.Lookup(s.name), err))
		}
	}

	// The original http_pool's positional form.
	pos := fs.Args()
	if len(pos) > 3 {
		return cfg, act, fmt.Errorf("too many arguments %q: want [host]:port [MaxIdleConnsPerHost [ProtocolHeader]]", pos)
	}
	// Only flags on the command line clash with positional arguments; the
	// file and environment are layers below both (fs.Visit would list
	// the environment's too).
	set := map[string]bool{}
	for _, s := range given {
		set[s.name] = true
	}
	positional := []struct {
		flag  string
		apply func(string) error
	}{
		{"listen", func(v string) error {
			if !strings.Contains(v, ":") {
				return fmt.Errorf("listen address %q: want [host]:port, e.g. :9999 or 127.0.0.1:9999", v)
			}
			cfg.Listen = v
			return nil
		}},
		{"max-idle-per-host", func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("MaxIdleConnsPerHost %q: want a whole number, e.g. 64", v)
			}
			cfg.MaxIdlePerHost = n
			return nil
		}},
		{"protocol-header", func(v string) error { cfg.ProtocolHeader = v; return nil }},
	}
	for i, v := range pos {
		p := positional[i]
		if set[p.flag] {
			return cfg, act, fmt.Errorf("argument %q repeats -%s", v, p.flag)
		}
		if err := p.apply(v); err != nil {
			return cfg, act, err
		}
	}
	if len(problems) > 0 {
		return cfg, act, &settingsError{errors.Join(problems...)}
	}
	return cfg, act, nil
}

// badValueRE matches the flag package's errors for a value its Set
// refused: `invalid value "5" for flag -dial-timeout: parse error`, and
// the boolean form `invalid boolean value "x" for -upstream-http2: ...`.
var badValueRE = regexp.MustCompile(`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-([^:]+): `)

// flagError rewrites a bad flag value from fs.Parse as "-name "value":
// want ..." with the hint the configuration file gives for the same
// mistake; other parse errors (an unknown flag) pass as they are.
func flagError(fs *flag.FlagSet, err error) error {
	m := badValueRE.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	f := fs.Lookup(m[2])
	if f == nil {
		return err
	}
	return fmt.Errorf("-%s %s: %s", f.Name, m[1], valueHint(f, errors.New(strings.TrimPrefix(err.Error(), m[0]))))
}

// valueHint says what f wants when its Set refused a value with err: the
// standard flag types only say "parse error", so they get a hint; the
// project's own flag types explain themselves in err.
func valueHint(f *flag.Flag, err error) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return err.Error()
	}
	switch g.Get().(type) {
	case time.Duration:
		return "want a duration such as 30s or 1m30s"
	case int, int64, uint, uint64:
		return "want a whole number such as 64"
	case bool:
		return "want true or false"
	}
	return err.Error()
}
