// Package intercept is warmproxy's opt-in TLS interception (issue 13): a
// local CA whose X.509 Name Constraints permit only the names of the
// -intercept patterns, leaf certificates minted from it per host and kept
// in a bounded cache, and the tls.Config that terminates a client's TLS
// inside a CONNECT tunnel. It opens no sockets and decides nothing about
// requests; internal/proxy serves what is inside the tunnel.
package intercept

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/warmproxy/warmproxy/internal/acl"
)

// Pattern is one -intercept host pattern: a host name, *.domain, an IP
// literal or a CIDR prefix, with an optional port or port range (the forms
// of -allow).
type Pattern struct {
	rule acl.Rule
	// name is the DNS name of a host or *.domain pattern, lowercase, and
	// suffix says it was *.name; prefix is set for an IP or CIDR pattern;
	// any is the catch-all ("*" or a port-only rule).
	name   string
	suffix bool
	prefix netip.Prefix
	any    bool
}

// String is the pattern in the normal form of -allow rules.
func (p Pattern) String() string { return p.rule.String() }

// Any reports whether p matches every host.
func (p Pattern) Any() bool { return p.any }

// ParsePatterns parses a comma-separated -intercept list. Every bad
// pattern is reported.
func ParsePatterns(s string) ([]Pattern, error) {
	var (
		out  []Pattern
		errs []error
	)
	for _, f := range acl.SplitList(s) {
		p, err := parsePattern(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

func parsePattern(s string) (Pattern, error) {
	r, err := acl.ParseRule(s)
	if err != nil {
		return Pattern{}, err
	}
	p := Pattern{rule: r}
	target := hostOf(r.String())
	switch {
	case target == "*":
		p.any = true
	case strings.Contains(target, "/"):
		pr, err := netip.ParsePrefix(target)
		if err != nil {
			return Pattern{}, fmt.Errorf("rule %q: bad CIDR prefix", s)
		}
		p.prefix = pr
	case strings.HasPrefix(target, "*."):
		p.name, p.suffix = target[2:], true
	default:
		if a, err := netip.ParseAddr(target); err == nil {
			p.prefix = netip.PrefixFrom(a, a.BitLen())
		} else {
			p.name = target
		}
	}
	return p, nil
}

// hostOf strips the port part from a rule in its normal form.
func hostOf(rule string) string {
	switch {
	case strings.HasPrefix(rule, "["):
		return strings.TrimPrefix(rule[:strings.IndexByte(rule, ']')], "[")
	case strings.Count(rule, ":") > 1:
		return rule
	case strings.HasPrefix(rule, ":"):
		return "*"
	}
	h, _, _ := strings.Cut(rule, ":")
	return h
}

// Matcher tells which CONNECT targets are intercepted.
type Matcher []Pattern

// Match reports whether a CONNECT to host:port is intercepted.
func (m Matcher) Match(host string, port int) bool {
	for i := range m {
		if m[i].rule.Match(host, port) {
			return true
		}
	}
	return false
}

// sample is a name a leaf minted for p would carry: the host itself, a
// name under *.domain, an IP literal of the prefix. Checking that the CA
// lets a leaf for it verify checks that its constraints cover p.
func (p Pattern) samples() []string {
	switch {
	case p.any:
		return []string{"warmproxy-check.example", "192.0.2.1"}
	case p.prefix.IsValid():
		first := p.prefix.Masked().Addr()
		out := []string{first.String()}
		if !p.prefix.IsSingleIP() {
			out = append(out, lastAddr(p.prefix).String())
		}
		return out
	case p.suffix:
		return []string{"warmproxy-check." + p.name}
	}
	return []string{p.name}
}

// lastAddr is the highest address in pr.
func lastAddr(pr netip.Prefix) netip.Addr {
	b := pr.Masked().Addr().AsSlice()
	bits := pr.Bits()
	for i := range b {
		for j := 7; j >= 0; j-- {
			if i*8+(7-j) >= bits {
				b[i] |= 1 << j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// constraints turns patterns into the Name Constraints of a CA: permitted
// DNS subtrees for the names, permitted IP ranges for the IPs; a name type
// no pattern uses is shut entirely. A catch-all pattern gives none.
func constraints(patterns []Pattern) (dns []string, ips, excludedIPs []*net.IPNet, none bool) {
	for _, p := range patterns {
		switch {
		case p.any:
			return nil, nil, nil, true
		case p.prefix.IsValid():
			ips = append(ips, &net.IPNet{IP: p.prefix.Masked().Addr().AsSlice(), Mask: net.CIDRMask(p.prefix.Bits(), p.prefix.Addr().BitLen())})
		case p.suffix:
			// A leading dot permits the subdomains only (RFC 5280 and
			// both crypto/x509 and OpenSSL read it so).
			dns = append(dns, "."+p.name)
		default:
			dns = append(dns, p.name)
		}
	}
	if len(dns) == 0 {
		// No DNS name is permitted: ".invalid" (RFC 6761) names nothing real.
		dns = []string{".invalid"}
	}
	if len(ips) == 0 {
		excludedIPs = []*net.IPNet{
			{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		}
	}
	return dns, ips, excludedIPs, false
}
