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
	cl := declareFlags(&cfg)
	if err := cl.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			cl.usage(out)
			return cfg, actionHelp, nil
		}
		return cfg, actionRun, flagError(cl.fs, err)
	}
	newLayer(cl.lists)
	if *cl.version {
		return cfg, actionVersion, nil
	}
	act := actionRun
	if *cl.checkConfig {
		act = actionCheckConfig
	}

	// The flags are parsed, and written into cfg; note them, then build cfg
	// again layer by layer so each layer overrides the one below.
	given := cl.given()
	cfg = config.Default()
	problems := fileLayer(&cfg, cl.configPath(getenv))
	problems = append(problems, cl.envLayer(getenv)...)
	newLayer(cl.lists)
	if err := cl.flagLayer(given); err != nil {
		return cfg, act, err
	}
	if err := positionalLayer(&cfg, cl.fs.Args(), given); err != nil {
		return cfg, act, err
	}
	if len(problems) > 0 {
		return cfg, act, &settingsError{errors.Join(problems...)}
	}
	return cfg, act, nil
}

// cmdLine is the flag set over a Config: a flag per declared setting, and
// the three flags that are not settings.
type cmdLine struct {
	fs *flag.FlagSet
	// lists are the repeatable flags, for newLayer.
	lists                []*listFlag
	version, checkConfig *bool
	configFile           *string
}

// notSettings names the flags that set nothing in the Config.
var notSettings = map[string]bool{"version": true, "config": true, "check-config": true}

// declareFlags defines the flags on cfg from the settings' declarations.
func declareFlags(cfg *config.Config) *cmdLine {
	fs := flag.NewFlagSet("warmproxy", flag.ContinueOnError)
	// The flag package prints an error and the whole usage on a bad
	// flag; main prints one line instead (flagError), and -h the usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &cmdLine{
		fs:          fs,
		lists:       settingFlags(fs, cfg),
		version:     fs.Bool("version", false, "print the version and exit"),
		configFile:  fs.String("config", "", "YAML `file` of settings, keyed by flag name; the environment and flags override it"),
		checkConfig: fs.Bool("check-config", false, "check the configuration (file, environment, flags), print the effective settings and exit: 0 if valid, 2 if not"),
	}
}

// usage prints -h's text to out.
func (cl *cmdLine) usage(out io.Writer) {
	cl.fs.SetOutput(out)
	fmt.Fprint(out, usageHead)
	cl.fs.PrintDefaults()
}

// setting is a flag given on the command line, with its value.
type setting struct{ name, value string }

// given lists the settings the command line gave, in its order.
func (cl *cmdLine) given() []setting {
	var given []setting
	cl.fs.Visit(func(f *flag.Flag) {
		if !notSettings[f.Name] {
			given = append(given, setting{f.Name, f.Value.String()})
		}
	})
	return given
}

// configPath is the file -config names, else WARMPROXY_CONFIG's.
func (cl *cmdLine) configPath(getenv func(string) string) string {
	if *cl.configFile != "" {
		return *cl.configFile
	}
	return getenv(envName("config"))
}

// fileLayer applies the YAML file at path (none if empty) to cfg, as far
// as it could be read, and returns its problems.
func fileLayer(cfg *config.Config, path string) []error {
	if path == "" {
		return nil
	}
	file, err := config.LoadFile(path)
	file.Apply(cfg)
	if err != nil {
		return []error{err}
	}
	return nil
}

// envLayer sets each flag named in the environment (WARMPROXY_<FLAG>) and
// returns the values refused, each of which keeps the layer below.
func (cl *cmdLine) envLayer(getenv func(string) string) []error {
	var problems []error
	cl.fs.VisitAll(func(f *flag.Flag) {
		if notSettings[f.Name] {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			prev := f.Value.String()
			if err := cl.fs.Set(f.Name, v); err != nil {
				problems = append(problems, fmt.Errorf("%s=%q: %s", name, v, valueHint(f, err)))
				cl.fs.Set(f.Name, prev) // a failed Set may have zeroed it
			}
		}
	})
	return problems
}

// flagLayer sets the flags given on the command line again, over the
// layers below.
func (cl *cmdLine) flagLayer(given []setting) error {
	for _, s := range given {
		if err := cl.fs.Set(s.name, s.value); err != nil {
			return fmt.Errorf("-%s %q: %s", s.name, s.value, valueHint(cl.fs.Lookup(s.name), err))
		}
	}
	return nil
}

// positionalLayer applies the original http_pool's positional form,
// [host]:port [MaxIdleConnsPerHost [ProtocolHeader]], to cfg. An argument
// that repeats a flag given on the command line is an error; the file and
// the environment are layers below both (fs.Visit would list the
// environment's too, so given is the command line's own list).
func positionalLayer(cfg *config.Config, pos []string, given []setting) error {
	if len(pos) > 3 {
		return fmt.Errorf("too many arguments %q: want [host]:port [MaxIdleConnsPerHost [ProtocolHeader]]", pos)
	}
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
			return fmt.Errorf("argument %q repeats -%s", v, p.flag)
		}
		if err := p.apply(v); err != nil {
			return err
		}
	}
	return nil
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
