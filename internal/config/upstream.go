package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/warmproxy/warmproxy/internal/acl"
	"go.yaml.in/yaml/v3"
)

// TLSRules are per-host TLS settings for origins, in the text form of the
// -upstream-tls flag: rules separated by ";", each a comma-separated list
// of host patterns (as in -allow) followed by options:
//
//	*.partner.example,ca=/etc/p/ca.pem,cert=/etc/p/c.pem,key=/etc/p/k.pem; dev.test,insecure
//
// Options: ca=FILE (PEM roots added to the default ones), cert=FILE and
// key=FILE (a client certificate for mTLS), sni=NAME (the server name sent
// and verified instead of the host), insecure (skip verification: for
// self-signed development origins only). The first rule whose pattern
// matches the origin applies; no match keeps the defaults.
//
// The configuration file takes either that string or a list of mappings
// with the keys hosts, ca-file, cert-file, key-file, server-name and
// insecure-skip-verify. It is a string so that Config stays comparable.
type TLSRules string

// TLSRule is one parsed rule of TLSRules.
type TLSRule struct {
	// Hosts are the host patterns, each an acl rule (example.com,
	// *.example.com, an IP or CIDR, optionally with :port).
	Hosts              []string
	CAFile             string
	CertFile           string
	KeyFile            string
	ServerName         string
	InsecureSkipVerify bool
}

// String renders r in the flag's form.
func (r TLSRule) String() string {
	parts := append([]string(nil), r.Hosts...)
	for _, o := range []struct{ k, v string }{{"ca", r.CAFile}, {"cert", r.CertFile}, {"key", r.KeyFile}, {"sni", r.ServerName}} {
		if o.v != "" {
			parts = append(parts, o.k+"="+o.v)
		}
	}
	if r.InsecureSkipVerify {
		parts = append(parts, "insecure")
	}
	return strings.Join(parts, ",")
}

// Set replaces the rules with s, for the flag package; Validate checks it.
func (t *TLSRules) Set(s string) error {
	*t = TLSRules(strings.TrimSpace(s))
	return nil
}

func (t *TLSRules) String() string {
	if t == nil {
		return ""
	}
	return string(*t)
}

// UpstreamTLSRule is a TLSRule with its host patterns parsed.
type UpstreamTLSRule struct {
	TLSRule
	// Match holds Hosts parsed, in order.
	Match []acl.Rule
}

// Parse returns the rules, in order. Every bad rule is reported.
func (t TLSRules) Parse() ([]TLSRule, error) {
	parsed, err := t.parse()
	var rules []TLSRule
	for _, r := range parsed {
		rules = append(rules, r.TLSRule)
	}
	return rules, err
}

func (t TLSRules) parse() ([]UpstreamTLSRule, error) {
	var rules []UpstreamTLSRule
	var errs []error
	for i, text := range strings.Split(string(t), ";") {
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		r, err := parseTLSRule(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %d %q: %v", i+1, text, err))
			continue
		}
		rules = append(rules, r)
	}
	return rules, errors.Join(errs...)
}

func parseTLSRule(text string) (UpstreamTLSRule, error) {
	var r UpstreamTLSRule
	for _, f := range strings.Split(text, ",") {
		f = strings.TrimSpace(f)
		k, v, isOpt := strings.Cut(f, "=")
		switch {
		case f == "":
			continue
		case f == "insecure":
			r.InsecureSkipVerify = true
		case !isOpt:
			hr, err := acl.ParseRule(f)
			if err != nil {
				return r, err
			}
			r.Match = append(r.Match, hr)
			if len(r.Hosts) > 0 && r.CAFile+r.CertFile+r.KeyFile+r.ServerName != "" {
				return r, fmt.Errorf("host pattern %q after the options: put the patterns first", f)
			}
			r.Hosts = append(r.Hosts, f)
		case v == "":
			return r, fmt.Errorf("option %s has no value", k)
		case k == "ca":
			r.CAFile = v
		case k == "cert":
			r.CertFile = v
		case k == "key":
			r.KeyFile = v
		case k == "sni":
			r.ServerName = v
		default:
			return r, fmt.Errorf("unknown option %q: want ca=, cert=, key=, sni= or insecure", k)
		}
	}
	switch {
	case len(r.Hosts) == 0:
		return r, errors.New("no host pattern: start with e.g. *.partner.example")
	case (r.CertFile == "") != (r.KeyFile == ""):
		return r, errors.New("cert= and key= go together")
	case r.CAFile == "" && r.CertFile == "" && r.ServerName == "" && !r.InsecureSkipVerify:
		return r, errors.New("no option: want ca=, cert= and key=, sni= or insecure")
	}
	return r, nil
}

// check loads the rule's files, as upstream does at start, so that a
// missing file or a certificate that does not match its key is reported
// by Validate (and -check-config).
func (r TLSRule) check() error {
	var errs []error
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("ca: %v", err))
		case !x509.NewCertPool().AppendCertsFromPEM(pem):
			errs = append(errs, fmt.Errorf("ca %s: no PEM certificate found", r.CAFile))
		}
	}
	if r.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(r.CertFile, r.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("cert/key: %v", err))
		}
	}
	return errors.Join(errs...)
}

// tlsRuleYAML is one rule as a mapping in the configuration file.
type tlsRuleYAML struct {
	Hosts              string `yaml:"hosts"`
	CAFile             string `yaml:"ca-file,omitempty"`
	CertFile           string `yaml:"cert-file,omitempty"`
	KeyFile            string `yaml:"key-file,omitempty"`
	ServerName         string `yaml:"server-name,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure-skip-verify,omitempty"`
}

var tlsRuleKeys = map[string]bool{"hosts": true, "ca-file": true, "cert-file": true, "key-file": true, "server-name": true, "insecure-skip-verify": true}

// UnmarshalYAML reads the flag's string form or a list of mappings. An
// unknown key in a mapping is an error: a misspelt cert-file must not
// quietly turn mTLS off.
func (t *TLSRules) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*t = TLSRules(strings.TrimSpace(s))
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: want a list of rules, e.g. - {hosts: \"*.partner.example\", ca-file: /etc/ca.pem}", n.Line)
	}
	rules := make([]string, 0, len(n.Content))
	for _, item := range n.Content {
		if item.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: want a mapping with hosts: and ca-file, cert-file, key-file, server-name or insecure-skip-verify", item.Line)
		}
		for i := 0; i < len(item.Content); i += 2 {
			if k := item.Content[i]; !tlsRuleKeys[k.Value] {
				return fmt.Errorf("line %d: unknown key %q: want hosts, ca-file, cert-file, key-file, server-name or insecure-skip-verify", k.Line, k.Value)
			}
		}
		var y tlsRuleYAML
		if err := item.Decode(&y); err != nil {
			return err
		}
		r := TLSRule{Hosts: acl.SplitList(y.Hosts), CAFile: y.CAFile, CertFile: y.CertFile, KeyFile: y.KeyFile,
			ServerName: y.ServerName, InsecureSkipVerify: y.InsecureSkipVerify}
		for _, v := range []string{y.CAFile, y.CertFile, y.KeyFile, y.ServerName} {
			if strings.ContainsAny(v, ",;") {
				return fmt.Errorf("line %d: %q: a value may not hold , or ;", item.Line, v)
			}
		}
		rules = append(rules, r.String())
	}
	*t = TLSRules(strings.Join(rules, "; "))
	return nil
}

// MarshalYAML writes the rules as a list of mappings ("" when there are
// none, or when they do not parse).
func (t TLSRules) MarshalYAML() (any, error) {
	rules, err := t.Parse()
	if t == "" || err != nil {
		return string(t), nil
	}
	out := make([]tlsRuleYAML, len(rules))
	for i, r := range rules {
		out[i] = tlsRuleYAML{Hosts: strings.Join(r.Hosts, ","), CAFile: r.CAFile, CertFile: r.CertFile, KeyFile: r.KeyFile,
			ServerName: r.ServerName, InsecureSkipVerify: r.InsecureSkipVerify}
	}
	return out, nil
}

// Parent proxy URL schemes.
const (
	ParentHTTP    = "http"
	ParentSOCKS5  = "socks5"  // names resolved by warmproxy
	ParentSOCKS5H = "socks5h" // names resolved by the parent
)

// ParseParentProxy parses a -parent-proxy URL: http://, socks5:// or
// socks5h://, optional user:password, a host and a port, nothing else.
func ParseParentProxy(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("not a URL: want e.g. http://user:pass@corp-proxy:3128")
	}
	switch u.Scheme {
	case ParentHTTP, ParentSOCKS5, ParentSOCKS5H:
	default:
		return nil, fmt.Errorf("scheme %q: want http, socks5 or socks5h", u.Scheme)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return nil, fmt.Errorf("want host:port, e.g. %s://corp-proxy:3128", u.Scheme)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("port %q: want 1-65535", port)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("want no path or query, only %s://[user:pass@]host:port", u.Scheme)
	}
	if u.User != nil && u.Scheme != ParentHTTP {
		// RFC 1929: one byte of length each.
		p, _ := u.User.Password()
		if len(u.User.Username()) > 255 || len(p) > 255 {
			return nil, errors.New("socks5 user name and password: 255 bytes at most each")
		}
	}
	return u, nil
}

// parseUpstream checks the per-host TLS rules and the parent proxy, and
// parses them into p.
func (p *Parsed) parseUpstream() []error {
	c := &p.Config
	var errs []error
	rules, err := c.UpstreamTLS.parse()
	if err != nil {
		errs = append(errs, fmt.Errorf("upstream-tls: %v; see warmproxy -h for the rule form", err))
	}
	for i, r := range rules {
		if err := r.check(); err != nil {
			errs = append(errs, fmt.Errorf("upstream-tls rule %d %q: %v", i+1, r.String(), err))
		}
	}
	p.UpstreamTLS = rules
	if c.ParentProxy != "" {
		if u, err := ParseParentProxy(c.ParentProxy); err != nil {
			errs = append(errs, fmt.Errorf("parent-proxy: %v", err))
		} else if u.User != nil && c.ParentProxyAuthFile != "" {
			errs = append(errs, errors.New("parent-proxy has user:pass and parent-proxy-auth-file is set: keep the credentials in the file only"))
		} else {
			p.ParentProxy = u
		}
	} else if c.ParentProxyAuthFile != "" {
		errs = append(errs, errors.New("parent-proxy-auth-file is set but parent-proxy is not: set -parent-proxy or drop -parent-proxy-auth-file"))
	}
	if c.ParentProxyAuthFile != "" {
		if _, err := os.Stat(c.ParentProxyAuthFile); err != nil {
			errs = append(errs, fmt.Errorf("parent-proxy-auth-file: %v", err))
		}
	}
	if c.NoParentFor != "" {
		for _, s := range acl.SplitList(c.NoParentFor) {
			r, err := acl.ParseRule(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("no-parent-for: %v", err))
				continue
			}
			p.NoParentFor = append(p.NoParentFor, r)
		}
		if c.ParentProxy == "" {
			errs = append(errs, errors.New("no-parent-for is set but parent-proxy is not: set -parent-proxy or drop -no-parent-for"))
		}
	}
	return errs
}

// Redacted returns c with its secrets masked, for printing: the parent
// proxy's password becomes "xxxxx".
func (c Config) Redacted() Config {
	if c.ParentProxy != "" {
		if u, err := url.Parse(c.ParentProxy); err == nil {
			c.ParentProxy = u.Redacted()
		}
	}
	return c
}
