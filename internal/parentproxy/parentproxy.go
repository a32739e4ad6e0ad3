// Package parentproxy is the client side of a parent proxy: the HTTP
// CONNECT (RFC 9110 section 9.3.6) and SOCKS5 (RFC 1928, RFC 1929)
// exchanges that turn a connection to the parent into a tunnel to a
// target, and the typed Error they fail with, which the proxy maps to a
// 502. It dials nothing and knows no policy: upstream decides what goes
// through the parent and opens the connections.
package parentproxy

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/warmproxy/warmproxy/internal/headlimit"
	"github.com/warmproxy/warmproxy/internal/netx"
)

// Parent proxy URL schemes.
const (
	HTTP    = "http"
	SOCKS5  = "socks5"  // the target is sent as an IP, resolved by the caller
	SOCKS5H = "socks5h" // the target is sent as a name, resolved by the parent
)

// Proxy is a parent proxy: where it is and how to log in.
type Proxy struct {
	// Scheme is HTTP, SOCKS5 or SOCKS5H; Addr is the parent's host:port.
	Scheme, Addr string
	// Shown is the parent's URL with the password redacted, for logs and
	// errors.
	Shown string
	// authHeader is the Proxy-Authorization value for an HTTP parent.
	authHeader string
	user, pass string
}

// New returns the parent proxy of u, a URL that config.ParseParentProxy
// accepted.
func New(u *url.URL) *Proxy {
	p := &Proxy{Scheme: u.Scheme, Addr: u.Host, Shown: u.Redacted()}
	if u.User != nil {
		p.user = u.User.Username()
		p.pass, _ = u.User.Password()
		p.authHeader = "Basic " + base64.StdEncoding.EncodeToString([]byte(p.user+":"+p.pass))
	}
	return p
}

// Handshake asks the parent, over c (a connection to it), for a tunnel to
// addr (host:port, as requested). For SOCKS5 the target sent is target,
// an IP:port the caller resolved; for HTTP and SOCKS5H it is addr. It
// returns the conn to use, which may wrap c; on an error the caller
// closes c. The caller bounds the exchange with a deadline on c.
func (p *Proxy) Handshake(c net.Conn, addr, target string) (net.Conn, error) {
	if p.Scheme == HTTP {
		return p.connect(c, addr)
	}
	return p.socks(c, addr, target)
}

// DialError is the error for a failure to reach the parent itself.
func (p *Proxy) DialError(err error) *Error {
	return &Error{Parent: p.Shown, Op: "dial", Err: err}
}

// Op is the step of a Handshake: "connect" for HTTP, "socks" for SOCKS5.
func (p *Proxy) Op() string {
	if p.Scheme == HTTP {
		return "connect"
	}
	return "socks"
}

// Error is a failure to reach a target through a parent proxy: the parent could not be reached, or it refused or
// failed the CONNECT or SOCKS5 request. The proxy maps it to a 502 with
// a Proxy-Status naming the cause.
type Error struct {
	// Parent is the parent's URL with the password redacted.
	Parent string
	// Target is the host:port asked of the parent; empty when the parent
	// itself was dialed for plain-http requests in absolute form.
	Target string
	// Op is the step that failed: "dial" (reaching the parent), "connect"
	// (the HTTP CONNECT exchange), "request" (a plain-http request sent
	// through an http parent) or "socks" (the SOCKS5 exchange).
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

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("parent proxy ")
	b.WriteString(e.Parent)
	switch e.Op {
	case "dial":
		b.WriteString(": dial")
	case "connect":
		b.WriteString(": CONNECT ")
		b.WriteString(e.Target)
	case "request":
		b.WriteString(": request for ")
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

func (e *Error) Unwrap() error { return e.Err }

// maxDrain bounds the body of a refused CONNECT read before the
// connection is closed: enough for a parent's usual error page, so that
// the close is a clean one.
const maxDrain = 4 << 10

// connect asks an http parent for a tunnel to addr (RFC 9110 section
// 9.3.6) and returns the conn once it answered 2xx.
func (p *Proxy) connect(c net.Conn, addr string) (net.Conn, error) {
	fail := func(pe *Error) (net.Conn, error) {
		pe.Parent, pe.Target, pe.Op = p.Shown, addr, "connect"
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
		return fail(&Error{Err: err})
	}
	// The reply head is bounded like every response head (an endless one
	// fails), and nothing more than it is read: a refusal's body is
	// drained only up to maxDrain, within the caller's deadline, and the
	// caller closes c.
	lr := headlimit.NewReader(c, headlimit.MaxResponseBytes)
	br := bufio.NewReaderSize(lr, 1024)
	resp, err := headlimit.ReadResponse(lr, br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		var ne net.Error
		var tl *headlimit.TooLargeError
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) || errors.As(err, &tl) {
			return fail(&Error{Err: err})
		}
		return fail(&Error{BadReply: true, Reply: "not an HTTP response", Err: err})
	}
	lr.Lift()
	if resp.StatusCode/100 != 2 {
		// Not resp.Body.Close: it reads the body to its end, which a
		// parent may never send.
		io.CopyN(io.Discard, resp.Body, maxDrain)
		return fail(&Error{HTTPStatus: resp.StatusCode, Reply: resp.Status, AuthFailed: resp.StatusCode == http.StatusProxyAuthRequired})
	}
	if n := br.Buffered(); n > 0 {
		// The origin spoke first and its bytes came with the answer.
		extra, _ := br.Peek(n)
		return netx.Prefixed(c, append([]byte(nil), extra...)), nil
	}
	return c, nil
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
func (p *Proxy) socks(c net.Conn, addr, target string) (net.Conn, error) {
	pe := p.socksAuth(c)
	if pe == nil {
		pe = socksRequest(c, target)
	}
	if pe != nil {
		pe.Parent, pe.Target, pe.Op = p.Shown, addr, "socks"
		return c, pe
	}
	return c, nil
}

// socksBad is a reply that breaks RFC 1928.
func socksBad(what string) *Error { return &Error{BadReply: true, Reply: what} }

// socksAuth offers the parent no authentication, or with a user name
// also user and password (RFC 1929), and authenticates as it chooses.
func (p *Proxy) socksAuth(c net.Conn) *Error {
	req := make([]byte, 0, 3+len(p.user)+len(p.pass))
	if p.user != "" {
		req = append(req, socksVersion, 2, socksNoAuth, socksUserPass)
	} else {
		req = append(req, socksVersion, 1, socksNoAuth)
	}
	if _, err := c.Write(req); err != nil {
		return &Error{Err: err}
	}
	var buf [2]byte
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return &Error{Err: err}
	}
	if buf[0] != socksVersion {
		return socksBad("not a SOCKS5 server")
	}
	switch buf[1] {
	case socksNoAuth:
		return nil
	case socksUserPass:
	case socksNoAcceptable:
		return &Error{AuthFailed: true, Reply: "no acceptable authentication method"}
	default:
		return socksBad("chose an authentication method not offered")
	}
	if p.user == "" {
		return &Error{AuthFailed: true, Reply: "asks for a user name and password; give them in -parent-proxy"}
	}
	req = append(req[:0], 1, byte(len(p.user)))
	req = append(req, p.user...)
	req = append(req, byte(len(p.pass)))
	req = append(req, p.pass...)
	if _, err := c.Write(req); err != nil {
		return &Error{Err: err}
	}
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return &Error{Err: err}
	}
	if buf[1] != 0 {
		return &Error{AuthFailed: true, Reply: "user name and password not accepted"}
	}
	return nil
}

// socksRequest asks the parent to connect to target (host:port) and reads
// its reply, up to the first byte relayed.
func socksRequest(c net.Conn, target string) *Error {
	host, portStr, _ := net.SplitHostPort(target)
	port := atoiPort(portStr)
	req := make([]byte, 0, 300)
	req = append(req, socksVersion, socksConnect, 0)
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
			return &Error{Reply: "host name longer than 255 bytes"}
		}
		req = append(req, socksAtypDomain, byte(len(host)))
		req = append(req, host...)
	}
	req = append(req, byte(port>>8), byte(port))
	if _, err := c.Write(req); err != nil {
		return &Error{Err: err}
	}
	return socksReply(c)
}

// socksReply reads the parent's reply to a CONNECT request; the bound
// address in it is read and dropped.
func socksReply(c net.Conn) *Error {
	var buf [4]byte
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return &Error{Err: err}
	}
	if buf[0] != socksVersion {
		return socksBad("bad reply version")
	}
	if buf[1] != 0 {
		return &Error{SOCKSReply: int(buf[1]), Reply: SOCKSReplyText(int(buf[1]))}
	}
	var n int
	switch buf[3] {
	case socksAtypIPv4:
		n = 4
	case socksAtypIPv6:
		n = 16
	case socksAtypDomain:
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			return &Error{Err: err}
		}
		n = int(buf[0])
	default:
		return socksBad("bad address type in reply")
	}
	if _, err := io.CopyN(io.Discard, c, int64(n+2)); err != nil {
		return &Error{Err: err}
	}
	return nil
}

// atoiPort parses a port, 0 when it is not one.
func atoiPort(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0
	}
	return n
}
