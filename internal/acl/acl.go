// Package acl is warmproxy's access policy: which clients may use the
// proxy, and which destinations (host name, port, resolved IP) requests may
// reach. It is pure: it opens no sockets, resolves no names and logs
// nothing. The upstream dialer asks it about a name before resolving it
// (a denied name costs no DNS query) and again for every IP the name
// resolves to, so a name that resolves to a denied address (DNS
// rebinding, evil.example → 10.0.0.1) is caught at dial time; a target
// sent to a parent proxy, which resolves it, is asked about by name; a
// pooled connection is asked about again after the policy changed (a
// reload). Clients, from -allow-clients, is the client side: a list of IPs
// and CIDR prefixes checked at accept and again for each request, so a
// reload reaches connections already open. Rule's forms name hosts for
// other settings too (-upstream-tls, -no-parent-for, -intercept), which
// match with Rule.Match.
//
// # Rules
//
// A rule is a target with an optional port or port range:
//
//	example.com          the host example.com, any port
//	*.example.com        any subdomain of example.com (not example.com)
//	*                    any host
//	10.0.0.0/8           any resolved IP in the prefix
//	127.0.0.2            one IP
//	[fd00::/8]:443       IPv6 prefix with a port (brackets needed with a port)
//	example.com:8000-8999
//	:25                  any host, port 25
//
// # Evaluation
//
// For a destination (host, port, ip):
//  1. a -deny rule that matches denies;
//  2. a built-in denied range (cloud metadata and link-local, always;
//     loopback, RFC 1918, CGNAT, ULA, multicast and the like with
//     DenyPrivate) that holds ip, or the IPv4 address inside a NAT64 ip
//     (64:ff9b::/96), denies, unless an -allow rule naming an IP or prefix
//     holds ip (a host-name allow rule never lifts a built-in deny:
//     *.example.com may resolve to 169.254.169.254);
//  3. with any -allow rule, the destination must match one, else it is
//     denied;
//  4. otherwise it is allowed.
package acl

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Decision is the policy's answer. Rule names the rule that decided it, as
// written in the configuration or as a built-in ("metadata
// 169.254.0.0/16"); Reason says why in a few words.
type Decision struct {
	Allow  bool
	Rule   string
	Reason string
}

// ErrDenied is matched by every *DeniedError (errors.Is).
var ErrDenied = errors.New("destination denied by policy")

// ErrLoop means a request would reach the proxy's own listener.
var ErrLoop = errors.New("destination is this proxy's own listener")

// DeniedError is returned by a dial that the policy refused.
type DeniedError struct {
	Decision Decision
	// Host and Port are the destination as requested; IP is the resolved
	// address that was denied (invalid when the name alone decided).
	Host string
	Port int
	IP   netip.Addr
}

func (e *DeniedError) Error() string {
	dst := e.Host
	if e.IP.IsValid() && e.IP.String() != e.Host {
		dst += " (" + e.IP.String() + ")"
	}
	return "acl: " + dst + " port " + strconv.Itoa(e.Port) + " denied by rule " + e.Decision.Rule + ": " + e.Decision.Reason
}

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// kind is what a rule's target is.
type kind uint8

const (
	kindAny    kind = iota // "*" or an empty target (":25")
	kindHost               // exact host name
	kindSuffix             // "*.example.com"
	kindPrefix             // IP or CIDR
)

// Rule is one parsed allow or deny rule.
type Rule struct {
	text   string
	kind   kind
	host   string // kindHost, kindSuffix: lowercase, no trailing dot
	prefix netip.Prefix
	// portLo..portHi is the port range; 0, 0 means any port.
	portLo, portHi int
}

// String returns the rule as written, normalized.
func (r Rule) String() string { return r.text }

// ParseRule parses one rule; see the package comment for the forms.
func ParseRule(s string) (Rule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Rule{}, errors.New("empty rule")
	}
	target, ports, err := splitRule(s)
	if err != nil {
		return Rule{}, err
	}
	r := Rule{}
	if ports != "" && ports != "*" {
		lo, hi, err := parsePortRange(ports)
		if err != nil {
			return Rule{}, fmt.Errorf("rule %q: %v", s, err)
		}
		r.portLo, r.portHi = lo, hi
	}
	if err := r.setTarget(s, target); err != nil {
		return Rule{}, err
	}
	r.text = r.render()
	return r, nil
}

// splitRule splits the rule s into its target and its port part (empty
// when it names none): "[v6]:ports", a bare IPv6 address or prefix (no
// port without brackets), or "target:ports".
func splitRule(s string) (target, ports string, err error) {
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", fmt.Errorf("rule %q: missing ]", s)
		}
		target, ports = s[1:end], s[end+1:]
		if ports != "" {
			if ports[0] != ':' {
				return "", "", fmt.Errorf("rule %q: want [ipv6]:port", s)
			}
			ports = ports[1:]
			if ports == "" {
				return "", "", fmt.Errorf("rule %q: empty port after ]:", s)
			}
		}
		if !strings.Contains(target, ":") {
			return "", "", fmt.Errorf("rule %q: brackets are for IPv6 addresses", s)
		}
		return target, ports, nil
	case strings.Count(s, ":") > 1:
		return s, "", nil
	case strings.Contains(s, ":"):
		i := strings.LastIndexByte(s, ':')
		if s[i+1:] == "" {
			return "", "", fmt.Errorf("rule %q: empty port after :", s)
		}
		return s[:i], s[i+1:], nil
	}
	return s, "", nil
}

// setTarget sets r's kind and its host or prefix from target, the rule
// s without its ports.
func (r *Rule) setTarget(s, target string) error {
	switch {
	case target == "" || target == "*":
		r.kind = kindAny
	case strings.Contains(target, "/"):
		p, err := netip.ParsePrefix(target)
		if err != nil {
			return fmt.Errorf("rule %q: bad CIDR prefix: want e.g. 10.0.0.0/8", s)
		}
		if p.Addr().Zone() != "" {
			return fmt.Errorf("rule %q: zones are not allowed", s)
		}
		r.kind, r.prefix = kindPrefix, unmapPrefix(p.Masked())
	case isIPLiteral(target):
		a, err := netip.ParseAddr(target)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("rule %q: bad IP address", s)
		}
		a = a.Unmap()
		r.kind, r.prefix = kindPrefix, netip.PrefixFrom(a, a.BitLen())
	case strings.HasPrefix(target, "*."):
		h := strings.ToLower(strings.TrimSuffix(target[2:], "."))
		if !validHostName(h) {
			return fmt.Errorf("rule %q: bad host pattern: want *.example.com", s)
		}
		r.kind, r.host = kindSuffix, h
	default:
		h := strings.ToLower(strings.TrimSuffix(target, "."))
		if !validHostName(h) {
			return fmt.Errorf("rule %q: bad host name: want example.com, *.example.com, an IP or a CIDR prefix", s)
		}
		r.kind, r.host = kindHost, h
	}
	return nil
}

// render writes the rule in its normal form.
func (r Rule) render() string {
	var t string
	switch r.kind {
	case kindAny:
		t = "*"
	case kindHost:
		t = r.host
	case kindSuffix:
		t = "*." + r.host
	case kindPrefix:
		if r.prefix.IsSingleIP() {
			t = r.prefix.Addr().String()
		} else {
			t = r.prefix.String()
		}
		if r.prefix.Addr().Is6() && r.portLo != 0 {
			t = "[" + t + "]"
		}
	}
	switch {
	case r.portLo == 0:
	case r.portLo == r.portHi:
		t += ":" + strconv.Itoa(r.portLo)
	default:
		t += ":" + strconv.Itoa(r.portLo) + "-" + strconv.Itoa(r.portHi)
	}
	return t
}

func parsePortRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err = parsePort(a)
	if err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parsePort(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("port range %q runs backwards", s)
		}
	}
	return lo, hi, nil
}

func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("bad port %q: want 1-65535", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad port %q: want 1-65535", s)
		}
		n = n*10 + int(s[i]-'0')
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("bad port %q: want 1-65535", s)
	}
	return n, nil
}

// isIPLiteral reports whether s looks like an IP address rather than a
// host name: any colon, or digits and dots only.
func isIPLiteral(s string) bool {
	if strings.Contains(s, ":") {
		return true
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// validHostName accepts lowercase LDH labels (underscores too, as found in
// real DNS names), 1-63 bytes each, 253 in all.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

func (r *Rule) portOK(port int) bool {
	return r.portLo == 0 || port >= r.portLo && port <= r.portHi
}

// matchName reports whether the rule matches host and port without an IP.
// host is lowercase-insensitive and may end in a dot.
func (r *Rule) matchName(host string, port int) bool {
	if !r.portOK(port) {
		return false
	}
	switch r.kind {
	case kindAny:
		return true
	case kindHost:
		return strings.EqualFold(trimDot(host), r.host)
	case kindSuffix:
		h := trimDot(host)
		n := len(h) - len(r.host)
		return n > 1 && h[n-1] == '.' && strings.EqualFold(h[n:], r.host)
	}
	return false
}

// match reports whether the rule matches the destination; ip may be
// invalid when not yet known, and then IP rules do not match.
func (r *Rule) match(host string, port int, ip netip.Addr) bool {
	if r.kind == kindPrefix {
		return ip.IsValid() && r.portOK(port) && r.prefix.Contains(ip)
	}
	return r.matchName(host, port)
}

// Match reports whether the rule matches host, a name or an IP literal,
// and port (0: unknown, matched by port-less rules only). Other packages
// use it for their own host-pattern lists (no-parent-for, upstream-tls).
func (r *Rule) Match(host string, port int) bool {
	if r.kind == kindPrefix {
		ip, err := netip.ParseAddr(host)
		return err == nil && r.match(host, port, ip.Unmap().WithZone(""))
	}
	return r.matchName(host, port)
}

func trimDot(h string) string {
	if len(h) > 0 && h[len(h)-1] == '.' {
		return h[:len(h)-1]
	}
	return h
}

// Builtin is a range denied without being configured.
type builtin struct {
	prefix netip.Prefix
	rule   string
	reason string
}

func mustBuiltin(cidr, set, reason string) builtin {
	p := netip.MustParsePrefix(cidr)
	return builtin{prefix: p, rule: set + " " + cidr, reason: reason}
}

// metadata are the cloud metadata and link-local service addresses, denied
// always. An -allow rule naming the IP or a prefix holding it lifts the deny.
var metadata = []builtin{
	// AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle and others all serve
	// instance metadata on link-local 169.254.169.254; AWS ECS uses
	// 169.254.170.2 and time sync 169.254.169.123: the whole range goes.
	mustBuiltin("169.254.0.0/16", "metadata", "link-local / cloud metadata address"),
	mustBuiltin("fd00:ec2::254/128", "metadata", "AWS IPv6 instance metadata address"),
	mustBuiltin("100.100.100.200/32", "metadata", "Alibaba Cloud metadata address"),
	mustBuiltin("192.0.0.192/32", "metadata", "Oracle Cloud metadata address"),
	mustBuiltin("fe80::/10", "metadata", "IPv6 link-local address"),
}

// private are the ranges -deny-private adds.
var private = []builtin{
	mustBuiltin("127.0.0.0/8", "deny-private", "loopback address"),
	mustBuiltin("::1/128", "deny-private", "loopback address"),
	mustBuiltin("0.0.0.0/8", "deny-private", "this-host address (reaches loopback)"),
	mustBuiltin("::/128", "deny-private", "unspecified address (reaches loopback)"),
	mustBuiltin("10.0.0.0/8", "deny-private", "private (RFC 1918) address"),
	mustBuiltin("172.16.0.0/12", "deny-private", "private (RFC 1918) address"),
	mustBuiltin("192.168.0.0/16", "deny-private", "private (RFC 1918) address"),
	mustBuiltin("100.64.0.0/10", "deny-private", "shared (carrier-grade NAT) address"),
	mustBuiltin("fc00::/7", "deny-private", "unique local (ULA) address"),
	mustBuiltin("224.0.0.0/4", "deny-private", "multicast address"),
	mustBuiltin("ff00::/8", "deny-private", "multicast address"),
	mustBuiltin("255.255.255.255/32", "deny-private", "broadcast address"),
}

// nat64 is the well-known NAT64 prefix: its last 32 bits are an IPv4
// address, which is checked too.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Config is what a Policy is built from. Allow and Deny hold rules in the
// forms of the package comment.
type Config struct {
	Allow, Deny []string
	// DenyPrivate denies loopback, RFC 1918, CGNAT, link-local, ULA,
	// multicast and unspecified destinations.
	DenyPrivate bool
}

// Policy decides where requests may go. The zero value is not usable;
// build one with New. A Policy is immutable and safe for concurrent use.
type Policy struct {
	allow, deny []Rule
	// ipAllow are the allow rules that may lift a built-in deny.
	ipAllow  []Rule
	builtins []builtin
	// nameOnly is true when no allow rule is an IP rule, so a name that
	// matches no allow rule is denied before it is resolved.
	nameOnly bool
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// New parses cfg's rules. Every bad rule is reported.
func New(cfg Config) (*Policy, error) {
	p := &Policy{nameOnly: true}
	var errs []error
	for _, s := range cfg.Allow {
		r, err := ParseRule(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow: %v", err))
			continue
		}
		p.allow = append(p.allow, r)
		if r.kind == kindPrefix {
			p.ipAllow = append(p.ipAllow, r)
			p.nameOnly = false
		}
	}
	for _, s := range cfg.Deny {
		r, err := ParseRule(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("deny: %v", err))
			continue
		}
		p.deny = append(p.deny, r)
	}
	p.builtins = metadata
	if cfg.DenyPrivate {
		p.builtins = append(append([]builtin(nil), metadata...), private...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

var allowDefault = Decision{Allow: true, Rule: "default", Reason: "no rule denies it"}

// CheckName decides what can be decided before the host is resolved. An IP
// literal host is decided in full. For a name, Allow means only "not
// denied yet": Check decides again for each resolved IP at dial time.
func (p *Policy) CheckName(host string, port int) Decision {
	if ip, err := netip.ParseAddr(host); err == nil {
		return p.Check(host, port, ip)
	}
	for i := range p.deny {
		if r := &p.deny[i]; r.kind != kindPrefix && r.matchName(host, port) {
			return Decision{Rule: "deny " + r.text, Reason: "denied by configuration"}
		}
	}
	if len(p.allow) > 0 && p.nameOnly {
		for i := range p.allow {
			if r := &p.allow[i]; r.matchName(host, port) {
				return Decision{Allow: true, Rule: "allow " + r.text, Reason: "allowed by configuration"}
			}
		}
		return Decision{Rule: "allow-list", Reason: "matches no -allow rule"}
	}
	return allowDefault
}

// Check decides a destination: the host as requested, its port, and the
// IP it resolved to (for an IP literal, that IP).
func (p *Policy) Check(host string, port int, ip netip.Addr) Decision {
	ip = ip.Unmap().WithZone("")
	if d, denied := p.checkIP(host, port, ip); denied {
		return d
	}
	if ip.Is6() && nat64.Contains(ip) {
		b := ip.As16()
		v4 := netip.AddrFrom4([4]byte(b[12:]))
		if d, denied := p.checkIP(host, port, v4); denied {
			d.Reason += " (embedded in NAT64 address " + ip.String() + ")"
			return d
		}
	}
	if len(p.allow) > 0 {
		for i := range p.allow {
			if r := &p.allow[i]; r.match(host, port, ip) {
				return Decision{Allow: true, Rule: "allow " + r.text, Reason: "allowed by configuration"}
			}
		}
		return Decision{Rule: "allow-list", Reason: "matches no -allow rule"}
	}
	return allowDefault
}

// checkIP applies the deny rules and the built-in ranges.
func (p *Policy) checkIP(host string, port int, ip netip.Addr) (Decision, bool) {
	for i := range p.deny {
		if r := &p.deny[i]; r.match(host, port, ip) {
			return Decision{Rule: "deny " + r.text, Reason: "denied by configuration"}, true
		}
	}
	if !ip.IsValid() {
		return Decision{}, false
	}
	for i := range p.builtins {
		b := &p.builtins[i]
		if !b.prefix.Contains(ip) {
			continue
		}
		lifted := false
		for j := range p.ipAllow {
			if r := &p.ipAllow[j]; r.portOK(port) && r.prefix.Contains(ip) {
				lifted = true
				break
			}
		}
		if !lifted {
			return Decision{Rule: b.rule, Reason: b.reason}, true
		}
	}
	return Decision{}, false
}

// Clients is the set of client addresses allowed to use the proxy. A nil
// *Clients allows every client.
type Clients struct {
	prefixes []netip.Prefix
	text     string
}

// ParseClients parses a list of IPs and CIDR prefixes.
func ParseClients(list []string) (*Clients, error) {
	if len(list) == 0 {
		return nil, nil
	}
	c := &Clients{}
	var errs []error
	var texts []string
	for _, s := range list {
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			if err == nil {
				a = a.Unmap()
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil || p.Addr().Zone() != "" {
			errs = append(errs, fmt.Errorf("client %q: want an IP or CIDR prefix, e.g. 127.0.0.1/32 or 10.0.0.0/8", s))
			continue
		}
		p = unmapPrefix(p.Masked())
		c.prefixes = append(c.prefixes, p)
		texts = append(texts, p.String())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c.text = strings.Join(texts, ",")
	return c, nil
}

// Check decides whether a client at addr may use the proxy.
func (c *Clients) Check(addr netip.Addr) Decision {
	if c == nil {
		return Decision{Allow: true, Rule: "default", Reason: "no -allow-clients list"}
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range c.prefixes {
		if p.Contains(addr) {
			return Decision{Allow: true, Rule: "allow-clients " + p.String(), Reason: "client allowed"}
		}
	}
	return Decision{Rule: "allow-clients " + c.text, Reason: "client address not in -allow-clients"}
}
