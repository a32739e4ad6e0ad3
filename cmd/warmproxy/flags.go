package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/warmproxy/warmproxy/internal/config"
)

// action is what main does after parsing the command line.
type action int

const (
	actionRun action = iota
	actionHelp
	actionVersion
)

const usageHead = `warmproxy: a keep-alive HTTP forward proxy for short-lived clients.

Usage:
  warmproxy [flags] [[host]:port [MaxIdleConnsPerHost [ProtocolHeader]]]

The positional form is the one of the original http_pool. Every flag can
also be set in the environment as WARMPROXY_<FLAG>, e.g.
WARMPROXY_MAX_IDLE_PER_HOST=32; flags and positional arguments win over the
environment.

Flags:
`

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return "WARMPROXY_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parseArgs builds a Config from defaults, then the environment, then args.
// It never exits; usage and errors go to out.
func parseArgs(args []string, getenv func(string) string, out io.Writer) (config.Config, action, error) {
	cfg := config.Default()
	fs := flag.NewFlagSet("warmproxy", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usageHead)
		fs.PrintDefaults()
	}

	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "`address` to listen on, host:port")
	fs.StringVar(&cfg.ProtocolHeader, "protocol-header", cfg.ProtocolHeader, "request `header` whose value https makes the proxy speak TLS to the origin")
	fs.StringVar(&cfg.ViaName, "via-name", cfg.ViaName, "pseudonym written into Via headers")
	fs.IntVar(&cfg.MaxIdlePerHost, "max-idle-per-host", cfg.MaxIdlePerHost, "idle pooled connections kept per origin")
	fs.IntVar(&cfg.MaxIdle, "max-idle", cfg.MaxIdle, "idle pooled connections kept over all origins")
	fs.IntVar(&cfg.MaxConnsPerHost, "max-conns-per-host", cfg.MaxConnsPerHost, "connections per origin; more requests wait for a free one (0: unlimited)")
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", cfg.DialTimeout, "TCP connect timeout to origins")
	fs.DurationVar(&cfg.TLSHandshakeTimeout, "tls-handshake-timeout", cfg.TLSHandshakeTimeout, "TLS handshake timeout to origins")
	fs.DurationVar(&cfg.ResponseHeaderTimeout, "response-header-timeout", cfg.ResponseHeaderTimeout, "wait for an origin's response head")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "close pooled origin connections idle this long")
	fs.StringVar(&cfg.CAFile, "ca-file", cfg.CAFile, "PEM `file` of extra roots for origin TLS, added to the system roots")
	fs.Int64Var(&cfg.RetryBodyBytes, "retry-body-bytes", cfg.RetryBodyBytes, "largest request body held for a replay on a fresh connection")
	fs.DurationVar(&cfg.ClientIdleTimeout, "client-idle-timeout", cfg.ClientIdleTimeout, "close idle client keep-alive connections after this long")
	fs.DurationVar(&cfg.ClientHeaderTimeout, "client-header-timeout", cfg.ClientHeaderTimeout, "time a client has to send a request head")
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", cfg.MaxHeaderBytes, "largest request head accepted")
	fs.DurationVar(&cfg.TunnelIdleTimeout, "tunnel-idle-timeout", cfg.TunnelIdleTimeout, "close CONNECT and upgrade tunnels idle this long")
	fs.StringVar(&cfg.ConnectPorts, "connect-ports", cfg.ConnectPorts, "`ports` CONNECT may reach, comma-separated, or *")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "access log `format` on stdout: tsv, json or off")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "time in-flight requests get on SIGINT or SIGTERM")
	version := fs.Bool("version", false, "print the version and exit")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, actionHelp, nil
		}
		return cfg, actionRun, err
	}
	if *version {
		return cfg, actionVersion, nil
	}

	// The original http_pool's positional form.
	pos := fs.Args()
	if len(pos) > 3 {
		return cfg, actionRun, fmt.Errorf("too many arguments %q: want [host]:port [MaxIdleConnsPerHost [ProtocolHeader]]", pos)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	// The environment fills what the command line left unset: flags and
	// positional arguments win over it. (Applied after Parse, so that set
	// holds the command line's flags only.)
	var envErrs []error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "version" || set[f.Name] {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s=%q: %v", name, v, err))
			}
		}
	})
	if err := errors.Join(envErrs...); err != nil {
		return cfg, actionRun, err
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
			return cfg, actionRun, fmt.Errorf("argument %q repeats -%s", v, p.flag)
		}
		if err := p.apply(v); err != nil {
			return cfg, actionRun, err
		}
	}
	return cfg, actionRun, nil
}
