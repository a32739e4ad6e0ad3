package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// maxPrewarmConns bounds N in one prewarm target "URL*N".
const maxPrewarmConns = 1024

// PrewarmTarget is one origin that Prewarm keeps connections open to.
type PrewarmTarget struct {
	// Scheme is "http" or "https".
	Scheme string
	// Addr is host:port, the port filled in from the scheme, as the pooled
	// transport dials it.
	Addr string
	// Conns is how many connections are kept open (the N of "URL*N").
	Conns int
}

// ParsePrewarm parses Prewarm: comma-separated targets, each
// "scheme://host[:port][*N]" with scheme http or https and N (default 1)
// connections. A path, query or user is an error: connections are per
// origin.
func ParsePrewarm(s string) ([]PrewarmTarget, error) {
	var out []PrewarmTarget
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		t, err := parsePrewarmTarget(f)
		if err != nil {
			return nil, err
		}
		key := t.Scheme + "://" + t.Addr
		if seen[key] {
			return nil, fmt.Errorf("%q: %s is listed twice; give it once with *N", f, key)
		}
		seen[key] = true
		out = append(out, t)
	}
	return out, nil
}

func parsePrewarmTarget(f string) (PrewarmTarget, error) {
	spec, n := f, 1
	if i := strings.LastIndexByte(f, '*'); i >= 0 {
		var err error
		spec = f[:i]
		if n, err = strconv.Atoi(f[i+1:]); err != nil || n < 1 || n > maxPrewarmConns {
			return PrewarmTarget{}, fmt.Errorf("%q: want *N with N from 1 to %d connections", f, maxPrewarmConns)
		}
	}
	u, err := url.Parse(spec)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return PrewarmTarget{}, fmt.Errorf("%q: want http://host[:port][*N] or https://host[:port][*N]", f)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return PrewarmTarget{}, fmt.Errorf("%q: want an origin only (scheme://host[:port]), no user, path or query", f)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return PrewarmTarget{}, fmt.Errorf("%q: want a port from 1 to 65535", f)
	}
	return PrewarmTarget{Scheme: u.Scheme, Addr: net.JoinHostPort(u.Hostname(), port), Conns: n}, nil
}

// validatePrewarm checks that Prewarm parses and stays within the pool's
// limits: prewarmed connections are idle ones, so N may not exceed
// max-idle-per-host (nor max-conns-per-host when set), and all of them
// together not max-idle. It puts the targets in p.
func (p *Parsed) parsePrewarm() []error {
	c := &p.Config
	if c.Prewarm == "" {
		return nil
	}
	targets, err := ParsePrewarm(c.Prewarm)
	if err != nil {
		return []error{fmt.Errorf("prewarm: %v", err)}
	}
	p.Prewarm = targets
	var errs []error
	total := 0
	for _, t := range targets {
		total += t.Conns
		if c.MaxIdlePerHost > 0 && t.Conns > c.MaxIdlePerHost {
			errs = append(errs, fmt.Errorf("prewarm %s://%s*%d: more than max-idle-per-host %d; lower N or raise max-idle-per-host", t.Scheme, t.Addr, t.Conns, c.MaxIdlePerHost))
		}
		if c.MaxConnsPerHost > 0 && t.Conns > c.MaxConnsPerHost {
			errs = append(errs, fmt.Errorf("prewarm %s://%s*%d: more than max-conns-per-host %d; lower N or raise max-conns-per-host", t.Scheme, t.Addr, t.Conns, c.MaxConnsPerHost))
		}
	}
	if c.MaxIdle > 0 && total > c.MaxIdle {
		errs = append(errs, fmt.Errorf("prewarm: %d connections in all, more than max-idle %d; prewarm fewer or raise max-idle", total, c.MaxIdle))
	}
	return errs
}
