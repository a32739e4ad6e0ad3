package upstream

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
)

// ParentError is a failure to reach a target through the parent proxy
// (-parent-proxy): the parent could not be reached, or it refused or
// failed the CONNECT or SOCKS5 request. The proxy maps it to a 502 with
// a Proxy-Status naming the cause.
type ParentError struct {
	// Parent is the parent's URL with the password redacted.
	Parent string
	// Target is the host:port asked of the parent; empty when the parent
	// itself was dialed for plain-http requests in absolute form.
	Target string
	// Op is the step that failed: "dial" (reaching the parent), "connect"
	// (the HTTP CONNECT exchange) or "socks" (the SOCKS5 exchange).
	Op string
	// HTTPStatus is the parent's status code for a CONNECT it did not
	// accept (not 2xx); 0 if it gave none.
	HTTPStatus int
	// SOCKSReply is the parent's SOCKS5 reply code, RFC 1928 section 6,
	// for a request it failed; 0 if it gave none.
	SOCKSReply int
	// AuthFailed means the parent refused warmproxy's credentials, or
	// asked for credentials warmproxy has not got.
	AuthFailed bool
	// BadReply means the parent's answer broke the protocol.
	BadReply bool
	// Reply is the parent's answer in words (status line or SOCKS reply).
	Reply string
	// Err is the underlying I/O error, if any.
	Err error
}

func (e *ParentError) Error() string {
	var b strings.Builder
	b.WriteString("parent proxy ")
	b.WriteString(e.Parent)
	switch e.Op {
	case "dial":
		b.WriteString(": dial")
	case "connect":
		b.WriteString(": CONNECT ")
		b.WriteString(e.Target)
	default:
		b.WriteString(": socks connect ")
		b.WriteString(e.Target)
	}
	if e.Reply != "" {
		b.WriteString(": ")
		b.WriteString(e.Reply)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *ParentError) Unwrap() error { return e.Err }

// parent dials origins through the parent proxy. Names are checked
// against the destination policy before they are sent to the parent
// (CheckName: deny rules and allow-lists by name, IP literals by IP); a
// name's IPs are checked only where warmproxy resolves it (socks5://),
// since otherwise the parent resolves it. The parent's own address is
// configuration, trusted, and never checked.
type parent struct {
	url    *url.URL // for Transport.Proxy (http parents)
	scheme string
	addr   string // host:port of the parent
	shown  string // url with the password redacted
	// authHeader is the Proxy-Authorization value for an http parent.
	authHeader string
	user, pass string // socks5 credentials (RFC 1929)
	bypass     []acl.Rule
	guard      *Guard
	dialer     *net.Dialer
}

// newParent returns nil when cfg names no parent proxy.
func newParent(cfg config.Config, guard *Guard, dialer *net.Dialer, log *slog.Logger) (*parent, error) {
	if cfg.ParentProxy == "" {
		return nil, nil
	}
	u, err := config.ParseParentProxy(cfg.ParentProxy)
	if err != nil {
		return nil, fmt.Errorf("parent-proxy: %v", err)
	}
	p := &parent{scheme: u.Scheme, addr: u.Host, shown: u.Redacted(), guard: guard, dialer: dialer}
	p.url = &url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host}
	if u.User != nil {
		p.user = u.User.Username()
		p.pass, _ = u.User.Password()
		p.authHeader = "Basic " + base64.StdEncoding.EncodeToString([]byte(p.user+":"+p.pass))
	}
	for _, s := range acl.SplitList(cfg.NoParentFor) {
		r, err := acl.ParseRule(s)
		if err != nil {
			return nil, fmt.Errorf("no-parent-for: %v", err)
		}
		p.bypass = append(p.bypass, r)
	}
	log.Info("origins reached through a parent proxy", "parent", p.shown, "no_parent_for", cfg.NoParentFor)
	return p, nil
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
// transport pools, with Proxy-Authorization from the URL. https requests
// return nil here: they are tunnelled by the TLS dialer (dial), so that
// per-host TLS rules, session resumption and pool counting apply.
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
// reach: by name, or for an IP literal by IP, plus the loop check.
func (p *parent) checkTarget(host string, port int) error {
	policy := p.guard.Policy()
	if d := policy.CheckName(host, port); !d.Allow {
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

// transportDial is the transport's DialContext: a dial to the http
// parent's own address is the transport reaching the parent for
// absolute-form requests (see proxy) and goes there directly; any other
// address is an origin (dial).
func (p *parent) transportDial(ctx context.Context, network, addr string) (net.Conn, error) {
	if p.scheme == config.ParentHTTP && addr == p.addr {
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
	// The policy first: a denied name is never sent to the parent, and
	// socks5:// names are resolved and checked here.
	target := addr
	if p.scheme == config.ParentSOCKS5 {
		ip, err := p.resolve(ctx, network, host, port)
		if err != nil {
			return nil, err
		}
		target = netip.AddrPortFrom(ip, uint16(port)).String()
	} else if err := p.checkTarget(host, port); err != nil {
		return nil, err
	}
	if p.dialer.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.dialer.Timeout)
		defer cancel()
	}
	c, err := p.dialParent(ctx, network)
	if err != nil {
		return nil, err
	}
	// The exchange with the parent is bounded by ctx (the dial timeout):
	// a deadline on the conn, moved to now if ctx ends first.
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	if p.scheme == config.ParentHTTP {
		c, err = p.connect(c, addr)
	} else {
		c, err = p.socks(c, addr, target)
	}
	if !stop() && err == nil {
		err = &ParentError{Parent: p.shown, Target: addr, Op: p.op(), Err: context.Cause(ctx)}
	}
	if err != nil {
		if c != nil {
			c.Close()
		}
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func (p *parent) op() string {
	if p.scheme == config.ParentHTTP {
		return "connect"
	}
	return "socks"
}

// dialParent opens a TCP connection to the parent.
func (p *parent) dialParent(ctx context.Context, network string) (net.Conn, error) {
	c, err := p.dialer.DialContext(ctx, network, p.addr)
	if err != nil {
		return nil, &ParentError{Parent: p.shown, Op: "dial", Err: err}
	}
	return c, nil
}

// resolve resolves host for a socks5:// parent and checks every IP, as
// the guard does for a direct dial; it returns the first IP.
func (p *parent) resolve(ctx context.Context, network, host string, port int) (netip.Addr, error) {
	g := p.guard
	policy := g.Policy()
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		if d := policy.CheckName(host, port); !d.Allow {
			return netip.Addr{}, &acl.DeniedError{Decision: d, Host: host, Port: port}
		}
		lookupNet := "ip"
		switch network {
		case "tcp4":
			lookupNet = "ip4"
		case "tcp6":
			lookupNet = "ip6"
		}
		if ips, err = g.lookup(ctx, lookupNet, host); err != nil {
			return netip.Addr{}, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		if len(ips) == 0 {
			return netip.Addr{}, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}}
		}
	}
	for i, ip := range ips {
		ip = ip.Unmap()
		ips[i] = ip
		if d := policy.Check(host, port, ip); !d.Allow {
			return netip.Addr{}, &acl.DeniedError{Decision: d, Host: host, Port: port, IP: ip}
		}
		if g.isSelf(ip, port) {
			return netip.Addr{}, fmt.Errorf("dial %s: %w", netip.AddrPortFrom(ip, uint16(port)), acl.ErrLoop)
		}
	}
	return ips[0], nil
}

// connect asks an http parent for a tunnel to addr (RFC 9110 section
// 9.3.6) and returns the conn once it answered 2xx.
func (p *parent) connect(c net.Conn, addr string) (net.Conn, error) {
	fail := func(pe *ParentError) (net.Conn, error) {
		pe.Parent, pe.Target, pe.Op = p.shown, addr, "connect"
		return c, pe
	}
	var b strings.Builder
	b.Grow(96 + len(addr)*2 + len(p.authHeader))
	b.WriteString("CONNECT ")
	b.WriteString(addr)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(addr)
	b.WriteString("\r\n")
	if p.authHeader != "" {
		b.WriteString("Proxy-Authorization: ")
		b.WriteString(p.authHeader)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return fail(&ParentError{Err: err})
	}
	br := bufio.NewReaderSize(c, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		var ne net.Error
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) {
			return fail(&ParentError{Err: err})
		}
		return fail(&ParentError{BadReply: true, Reply: "not an HTTP response", Err: err})
	}
	if resp.StatusCode/100 != 2 {
		resp.Body.Close()
		return fail(&ParentError{HTTPStatus: resp.StatusCode, Reply: resp.Status, AuthFailed: resp.StatusCode == http.StatusProxyAuthRequired})
	}
	if n := br.Buffered(); n > 0 {
		// The origin spoke first and its bytes came with the answer.
		extra, _ := br.Peek(n)
		return &prefixConn{Conn: c, prefix: append([]byte(nil), extra...)}, nil
	}
	return c, nil
}

// prefixConn returns prefix before reading from Conn.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// CloseWrite half-closes the underlying TCP conn, for tunnels.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SOCKS5 constants, RFC 1928 and RFC 1929.
const (
	socksVersion      = 5
	socksNoAuth       = 0x00
	socksUserPass     = 0x02
	socksNoAcceptable = 0xff
	socksConnect      = 0x01
	socksAtypIPv4     = 0x01
	socksAtypDomain   = 0x03
	socksAtypIPv6     = 0x04
)

// socksReplies are the reply codes of RFC 1928 section 6.
var socksReplies = [...]string{
	1: "general SOCKS server failure",
	2: "connection not allowed by ruleset",
	3: "network unreachable",
	4: "host unreachable",
	5: "connection refused",
	6: "TTL expired",
	7: "command not supported",
	8: "address type not supported",
}

// SOCKSReplyText names a SOCKS5 reply code.
func SOCKSReplyText(code int) string {
	if code > 0 && code < len(socksReplies) {
		return socksReplies[code]
	}
	return "reply " + strconv.Itoa(code)
}

// socks asks a SOCKS5 parent to connect to target: an IP:port for
// socks5://, the name as given (addr) for socks5h://.
func (p *parent) socks(c net.Conn, addr, target string) (net.Conn, error) {
	fail := func(pe *ParentError) (net.Conn, error) {
		pe.Parent, pe.Target, pe.Op = p.shown, addr, "socks"
		return c, pe
	}
	ioFail := func(err error) (net.Conn, error) { return fail(&ParentError{Err: err}) }
	bad := func(what string) (net.Conn, error) { return fail(&ParentError{BadReply: true, Reply: what}) }

	host, portStr, _ := net.SplitHostPort(target)
	port := atoiPort(portStr)
	req := make([]byte, 0, 300)
	if p.user != "" {
		req = append(req, socksVersion, 2, socksNoAuth, socksUserPass)
	} else {
		req = append(req, socksVersion, 1, socksNoAuth)
	}
	if _, err := c.Write(req); err != nil {
		return ioFail(err)
	}
	var buf [4]byte
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		return ioFail(err)
	}
	if buf[0] != socksVersion {
		return bad("not a SOCKS5 server")
	}
	switch buf[1] {
	case socksNoAuth:
	case socksUserPass:
		if p.user == "" {
			return fail(&ParentError{AuthFailed: true, Reply: "asks for a user name and password; give them in -parent-proxy"})
		}
		req = append(req[:0], 1, byte(len(p.user)))
		req = append(req, p.user...)
		req = append(req, byte(len(p.pass)))
		req = append(req, p.pass...)
		if _, err := c.Write(req); err != nil {
			return ioFail(err)
		}
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			return ioFail(err)
		}
		if buf[1] != 0 {
			return fail(&ParentError{AuthFailed: true, Reply: "user name and password not accepted"})
		}
	case socksNoAcceptable:
		return fail(&ParentError{AuthFailed: true, Reply: "no acceptable authentication method"})
	default:
		return bad("chose an authentication method not offered")
	}

	req = append(req[:0], socksVersion, socksConnect, 0)
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.Is4() {
			req = append(req, socksAtypIPv4)
		} else {
			req = append(req, socksAtypIPv6)
		}
		req = append(req, ip.AsSlice()...)
	} else {
		if len(host) > 255 {
			return fail(&ParentError{Reply: "host name longer than 255 bytes"})
		}
		req = append(req, socksAtypDomain, byte(len(host)))
		req = append(req, host...)
	}
	req = append(req, byte(port>>8), byte(port))
	if _, err := c.Write(req); err != nil {
		return ioFail(err)
	}
	if _, err := io.ReadFull(c, buf[:4]); err != nil {
		return ioFail(err)
	}
	if buf[0] != socksVersion {
		return bad("bad reply version")
	}
	if buf[1] != 0 {
		return fail(&ParentError{SOCKSReply: int(buf[1]), Reply: SOCKSReplyText(int(buf[1]))})
	}
	// The bound address: read and dropped.
	var n int
	switch buf[3] {
	case socksAtypIPv4:
		n = 4
	case socksAtypIPv6:
		n = 16
	case socksAtypDomain:
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			return ioFail(err)
		}
		n = int(buf[0])
	default:
		return bad("bad address type in reply")
	}
	if _, err := io.CopyN(io.Discard, c, int64(n+2)); err != nil {
		return ioFail(err)
	}
	return c, nil
}
