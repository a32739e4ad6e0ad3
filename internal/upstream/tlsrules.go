package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
)

// tlsRules are the per-host TLS settings for origins (-upstream-tls),
// applied to each TLS connection warmproxy opens to an origin, pooled or
// for an upgrade; CONNECT tunnels carry the client's own TLS and are left
// alone. The first rule whose host pattern matches wins. A nil *tlsRules
// has no rule.
type tlsRules struct {
	rules []tlsRule
}

type tlsRule struct {
	text  string
	hosts []acl.Rule
	// roots replaces the transport's RootCAs when the rule names a CA: the
	// default roots plus the rule's.
	roots      *x509.CertPool
	certs      []tls.Certificate
	serverName string
	insecure   bool
	// cache is the rule's own: a session made with one client identity
	// must never be offered on a connection made under another.
	cache tls.ClientSessionCache
}

// newTLSRules loads the rules' files. base are the roots the transport
// uses (nil: the system's), to which a rule's CA is added.
func newTLSRules(parsed []config.UpstreamTLSRule, base *x509.CertPool, log *slog.Logger) (*tlsRules, error) {
	if len(parsed) == 0 {
		return nil, nil
	}
	rs := &tlsRules{rules: make([]tlsRule, 0, len(parsed))}
	for i, p := range parsed {
		r := tlsRule{
			text:       p.String(),
			serverName: p.ServerName,
			insecure:   p.InsecureSkipVerify,
			cache:      tls.NewLRUClientSessionCache(tlsSessionCacheSize),
		}
		fail := func(err error) error { return fmt.Errorf("upstream-tls rule %d %q: %v", i+1, r.text, err) }
		r.hosts = p.Match
		if p.CAFile != "" {
			var err error
			if r.roots, err = ruleRoots(base, p.CAFile); err != nil {
				return nil, fail(err)
			}
		}
		if p.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
			if err != nil {
				return nil, fail(fmt.Errorf("cert/key: %v", err))
			}
			r.certs = []tls.Certificate{cert}
		}
		if r.insecure {
			log.Warn("upstream tls verification off: origins matching these hosts are trusted without checking their certificate",
				"hosts", strings.Join(p.Hosts, ","), "rule", r.text)
		}
		rs.rules = append(rs.rules, r)
	}
	return rs, nil
}

// ruleRoots returns base (or the system roots) plus the PEM certificates
// in file.
func ruleRoots(base *x509.CertPool, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ca: %v", err)
	}
	var pool *x509.CertPool
	if base != nil {
		pool = base.Clone()
	} else if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca %s: no PEM certificate found", file)
	}
	return pool, nil
}

// match returns the first rule for host and port, or nil.
func (rs *tlsRules) match(host string, port int) *tlsRule {
	if rs == nil {
		return nil
	}
	for i := range rs.rules {
		r := &rs.rules[i]
		for j := range r.hosts {
			if r.hosts[j].Match(host, port) {
				return r
			}
		}
	}
	return nil
}

// clientConfig returns the TLS settings for a connection to addr
// (host:port): a clone of base, taken now so that what the transport
// added to it (NextProtos) is kept, with the matching rule applied and
// ServerName defaulting to addr's host.
func (rs *tlsRules) clientConfig(base *tls.Config, addr string) *tls.Config {
	var cfg *tls.Config
	if base != nil {
		cfg = base.Clone()
	} else {
		cfg = &tls.Config{}
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if r := rs.match(host, atoiPort(portStr)); r != nil {
		if r.roots != nil {
			cfg.RootCAs = r.roots
		}
		if r.certs != nil {
			cfg.Certificates = r.certs
		}
		if r.serverName != "" {
			cfg.ServerName = r.serverName
		}
		if r.insecure {
			cfg.InsecureSkipVerify = true
		}
		cfg.ClientSessionCache = r.cache
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	return cfg
}

// atoiPort parses a port, 0 when it is not one.
func atoiPort(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0
	}
	return n
}
