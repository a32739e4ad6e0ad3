package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/parentproxy"
)

// ParentError is a failure to reach a target through the parent proxy;
// see parentproxy.Error.
type ParentError = parentproxy.Error

// parent routes origin dials through the parent proxy (-parent-proxy).
// Targets are checked against the destination policy before they are
// sent to the parent (CheckName: deny rules and allow-lists by name, IP
// literals by IP); a name's IPs are checked only where warmproxy resolves
// it (socks5://), since otherwise the parent resolves it. The parent's
// own address is configuration, trusted, and never checked.
type parent struct {
	*parentproxy.Proxy
	url    *url.URL // for Transport.Proxy (http parents)
	bypass []acl.Rule
	guard  *Guard
	// timeout bounds reaching the parent plus its handshake
	// (-upstream-parent-timeout).
	timeout time.Duration
}

// newParent returns nil when cfg names no parent proxy.
func newParent(cfg config.Parsed, guard *Guard, log *slog.Logger) (*parent, error) {
	if cfg.ParentProxy == nil {
		return nil, nil
	}
	u := new(url.URL)
	*u = *cfg.ParentProxy // shared; the credentials go into the copy
	if cfg.ParentProxyAuthFile != "" {
		var err error
		if u.User, err = readParentAuth(cfg.ParentProxyAuthFile, log); err != nil {
			return nil, err
		}
	}
	p := &parent{
		Proxy:   parentproxy.New(u),
		url:     &url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host},
		guard:   guard,
		timeout: cfg.UpstreamParentTimeout,
		bypass:  cfg.NoParentFor,
	}
	log.Info("origins reached through a parent proxy", "parent", p.Shown, "no_parent_for", cfg.Config.NoParentFor)
	return p, nil
}

// readParentAuth reads -parent-proxy-auth-file: one line user:password
// (a trailing newline is not part of it). A file that others than its
// owner may read is used, with a warning.
func readParentAuth(path string, log *slog.Logger) (*url.Userinfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("parent-proxy-auth-file: %v", err)
	}
	line := strings.TrimRight(string(data), "\r\n")
	user, pass, ok := strings.Cut(line, ":")
	if !ok || user == "" || strings.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("parent-proxy-auth-file %s: want one line user:password", path)
	}
	if len(user) > 255 || len(pass) > 255 {
		return nil, fmt.Errorf("parent-proxy-auth-file %s: user name and password: 255 bytes at most each", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("parent-proxy-auth-file may be read by others than its owner; chmod 600 it",
			"file", path, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()))
	}
	return url.UserPassword(user, pass), nil
}

// bypassed reports whether host:port is reached directly (-no-parent-for).
func (p *parent) bypassed(host string, port int) bool {
	for i := range p.bypass {
		if p.bypass[i].Match(host, port) {
			return true
		}
	}
	return false
}

// proxy is Transport.Proxy for an http parent: plain-http requests go to
// the parent in absolute form, on connections to the parent that the
// transport pools, with Proxy-Authorization from the URL's user:pass
// (net/http adds it). https requests get nil here: the TLS dialer tunnels
// them (dial), so that per-host TLS rules, session resumption and pool
// counting apply; net/http's own CONNECT would bypass DialTLSContext.
func (p *parent) proxy(req *http.Request) (*url.URL, error) {
	if req.URL.Scheme != "http" {
		return nil, nil
	}
	host, port := req.URL.Hostname(), 80
	if s := req.URL.Port(); s != "" {
		port = atoiPort(s)
	}
	if p.bypassed(host, port) {
		return nil, nil
	}
	if err := p.checkTarget(host, port); err != nil {
		return nil, err
	}
	return p.url, nil
}

// checkTarget applies the destination policy to a target the parent will
// resolve and reach: by name, or for an IP literal by IP, plus the loop
// check.
func (p *parent) checkTarget(host string, port int) error {
	if d := p.guard.Policy().CheckName(host, port); !d.Allow {
		de := &acl.DeniedError{Decision: d, Host: host, Port: port}
		if ip, err := netip.ParseAddr(host); err == nil {
			de.IP = ip.Unmap()
		}
		return de
	}
	if ip, err := netip.ParseAddr(host); err == nil && p.guard.isSelf(ip.Unmap(), port) {
		return fmt.Errorf("dial %s: %w", net.JoinHostPort(host, strconv.Itoa(port)), acl.ErrLoop)
	}
	return nil
}

// transportDial is the transport's DialContext. A dial to the http
// parent's own address is the transport reaching the parent for
// absolute-form requests (see proxy) and goes there directly; any other
// address is an origin (dial).
func (p *parent) transportDial(ctx context.Context, network, addr string) (net.Conn, error) {
	if p.Scheme == parentproxy.HTTP && addr == p.Addr {
		return p.dialParent(ctx, network)
	}
	return p.dial(ctx, network, addr)
}

// dial opens a connection to the origin addr: through the parent (an HTTP
// CONNECT tunnel, or SOCKS5), or directly with the guard when
// -no-parent-for matches. CONNECT tunnels, upgrades and the pool's TLS
// connections all use it: one tunnel per connection.
func (p *parent) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	port := atoiPort(portStr)
	if port == 0 {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("bad port %q", portStr)}
	}
	if p.bypassed(host, port) {
		return p.guard.DialContext(ctx, network, addr)
	}
	// The policy first: a denied target is never sent to the parent.
	target := addr
	if p.Scheme == parentproxy.SOCKS5 {
		ip, err := p.resolve(ctx, network, host, port)
		if err != nil {
			return nil, err
		}
		target = netip.AddrPortFrom(ip, uint16(port)).String()
	} else if err := p.checkTarget(host, port); err != nil {
		return nil, err
	}
	if p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	c, err := p.dialParent(ctx, network)
	if err != nil {
		return nil, err
	}
	// The exchange with the parent is bounded by ctx (the parent timeout):
	// a deadline on the conn, moved to the past if ctx ends first.
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	tc, err := p.Handshake(c, addr, target)
	if !stop() && err == nil {
		err = &ParentError{Parent: p.Shown, Target: addr, Op: p.Op(), Err: context.Cause(ctx)}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return tc, nil
}

// dialParent opens a TCP connection to the parent: its name resolved
// like an origin's (DNS cache, happy eyeballs), its address not checked.
func (p *parent) dialParent(ctx context.Context, network string) (net.Conn, error) {
	c, err := p.guard.DialUnguarded(ctx, network, p.Addr)
	if err != nil {
		return nil, p.DialError(err)
	}
	return c, nil
}

// resolve resolves host for a socks5:// parent and checks every IP, as
// the guard does for a direct dial; it returns the first IP of the
// network's family.
func (p *parent) resolve(ctx context.Context, network, host string, port int) (netip.Addr, error) {
	addrs, err := p.guard.resolveChecked(ctx, network, host, port, p.guard.Policy())
	if err != nil {
		return netip.Addr{}, err
	}
	return addrs[0].Addr(), nil
}

// parentAuthCheck turns an http parent's 407 to a plain-http request sent
// through it into a *ParentError. The client's credentials, if any, are
// warmproxy's: a challenge from the parent is warmproxy's misconfiguration
// (-parent-proxy's user:password), which the client can neither see nor
// answer, so it gets a 502 naming the parent rather than the parent's 407.
// An origin's own 407, on a request that went direct, passes through.
type parentAuthCheck struct {
	next http.RoundTripper
	p    *parent
}

func (c *parentAuthCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusProxyAuthRequired {
		return resp, err
	}
	if via, _ := c.p.proxy(req); via == nil {
		return resp, nil
	}
	resp.Body.Close()
	return nil, &ParentError{Parent: c.p.Shown, Target: req.URL.Host, Op: "request", HTTPStatus: resp.StatusCode, AuthFailed: true, Reply: resp.Status}
}
