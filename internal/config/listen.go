package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/warmproxy/warmproxy/internal/acl"
)

// unixPrefix marks a Unix socket listen address: unix:/run/warmproxy.sock.
const unixPrefix = "unix:"

// maxUnixPath is the longest socket path Linux takes (sun_path holds 108
// bytes with the terminating NUL).
const maxUnixPath = 107

// UnixListen returns the socket path of a unix: listen address.
func UnixListen(listen string) (path string, ok bool) {
	if !strings.HasPrefix(listen, unixPrefix) {
		return "", false
	}
	return listen[len(unixPrefix):], true
}

// ParseListenMode parses an octal file mode such as 0660.
func ParseListenMode(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("want an octal file mode such as 0660")
	}
	return uint32(n), nil
}

// parseListen checks Listen, ListenMode and Routes, and parses the last
// two.
func (p *Parsed) parseListen() []error {
	c := &p.Config
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if path, ok := UnixListen(c.Listen); ok {
		switch {
		case path == "":
			bad("listen %q: want a socket path after unix:, e.g. unix:/run/warmproxy/warmproxy.sock", c.Listen)
		case len(path) > maxUnixPath:
			bad("listen %q: socket path is %d bytes, the most is %d; pick a shorter path", c.Listen, len(path), maxUnixPath)
		}
		if c.AllowClients != "" {
			bad("allow-clients %q cannot apply to a Unix socket listener (its clients have no IP): "+
				"leave it empty; the socket file's owner, group and -listen-mode decide who may connect", c.AllowClients)
		}
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q: want host:port, e.g. 127.0.0.1:9999, or unix:/path/to.sock", c.Listen)
	}
	if mode, err := ParseListenMode(c.ListenMode); err != nil {
		bad("listen-mode %q: %v", c.ListenMode, err)
	} else {
		p.ListenMode = fs.FileMode(mode)
	}
	seen := map[string]bool{}
	for _, s := range SplitRoutes(c.Routes) {
		r, err := ParseRoute(s)
		if err != nil {
			bad("route %q: %v", s, err)
			continue
		}
		if seen[r.Prefix] {
			bad("route %q: prefix %s is routed twice; keep one", s, r.Prefix)
		}
		seen[r.Prefix] = true
		p.Routes = append(p.Routes, r)
	}
	return errs
}

// SplitRoutes splits a comma-separated list of routes, trimming spaces
// (a YAML folded string puts one after each comma).
func SplitRoutes(s string) []string { return acl.SplitList(s) }

// Route maps requests for paths under Prefix on the proxy's own address to
// the same path under Target: with -route /stripe/=https://api.stripe.com/,
// GET /stripe/v1/charges goes to https://api.stripe.com/v1/charges.
type Route struct {
	// Prefix starts and ends with '/', e.g. /stripe/.
	Prefix string
	// Scheme is http or https; Host is host[:port].
	Scheme, Host string
	// Base is the target's escaped base path; it ends with '/'.
	Base string
}

// ParseRoute parses "/prefix/=scheme://host[:port][/basepath/]".
func ParseRoute(s string) (Route, error) {
	prefix, target, ok := strings.Cut(s, "=")
	if !ok {
		return Route{}, errors.New("want /prefix/=https://host/, e.g. /stripe/=https://api.stripe.com/")
	}
	if err := checkRoutePath(prefix); err != nil {
		return Route{}, fmt.Errorf("prefix %q: %v", prefix, err)
	}
	if prefix == "/" {
		return Route{}, fmt.Errorf("prefix %q: want at least one path segment, e.g. /stripe/, so admin paths stay reachable", prefix)
	}
	u, err := url.Parse(target)
	switch {
	case err != nil:
		return Route{}, fmt.Errorf("target %q: %v", target, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return Route{}, fmt.Errorf("target %q: want an http:// or https:// URL", target)
	case u.Host == "" || u.Hostname() == "":
		return Route{}, fmt.Errorf("target %q: names no host", target)
	case u.User != nil:
		return Route{}, fmt.Errorf("target %q: credentials in the URL are not supported; send them in headers", target)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "":
		return Route{}, fmt.Errorf("target %q: want no query or fragment, only scheme://host[:port][/basepath/]", target)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return Route{}, fmt.Errorf("target %q: bad port %q: want 1-65535", target, p)
		}
	}
	base := u.EscapedPath()
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	if err := checkRoutePath(base); err != nil {
		return Route{}, fmt.Errorf("target %q: base path %v", target, err)
	}
	return Route{Prefix: prefix, Scheme: u.Scheme, Host: u.Host, Base: base}, nil
}

// checkRoutePath checks a route's prefix or base path: it starts and ends
// with '/', holds only unreserved characters (letters, digits, -._~),
// and has no empty, "." or ".." segment.
func checkRoutePath(p string) error {
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
		return errors.New("want a path that starts and ends with /, e.g. /stripe/")
	}
	if p == "/" {
		return nil
	}
	for _, seg := range strings.Split(p[1:len(p)-1], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("has an empty, . or .. segment %q", seg)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
				return fmt.Errorf("has %q: want letters, digits and -._~ only", c)
			}
		}
	}
	return nil
}
