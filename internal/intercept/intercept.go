package intercept

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Options configure an Interceptor.
type Options struct {
	// Patterns are the hosts intercepted (-intercept), as ParsePatterns
	// returns them.
	Patterns []Pattern
	// AnyHost allows a catch-all pattern (-intercept-any-host-i-know).
	AnyHost bool
	// Dir holds the CA (-intercept-ca).
	Dir    string
	Minter MinterOptions
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Interceptor terminates the TLS of intercepted CONNECT tunnels.
type Interceptor struct {
	match  Matcher
	minter *Minter
	config *tls.Config
	// Warning, when not empty, is what the operator should know about the
	// CA, e.g. that it carries no Name Constraints.
	Warning string
}

// New loads the CA in o.Dir and checks that its Name Constraints cover
// o.Patterns. A CA with no constraints at all (one supplied, not made by
// warmproxy ca init) is accepted with a Warning.
func New(o Options) (*Interceptor, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	patterns := o.Patterns
	if len(patterns) == 0 {
		return nil, errors.New("intercept: no host patterns")
	}
	for _, p := range patterns {
		if p.Any() && !o.AnyHost {
			return nil, fmt.Errorf("intercept: pattern %s matches every host: list the hosts, or pass -intercept-any-host-i-know", p)
		}
	}
	ca, err := LoadCA(o.Dir, o.Now())
	if err != nil {
		return nil, err
	}
	i := &Interceptor{match: patterns}
	if ca.Constrained() {
		if err := ca.Covers(patterns, o.Dir, o.Now()); err != nil {
			return nil, err
		}
	} else {
		i.Warning = "the interception CA carries no name constraints: its key can sign for any name; keep it as safe as a root key, or make a constrained one with warmproxy ca init"
	}
	if o.Minter.Now == nil {
		o.Minter.Now = o.Now
	}
	i.minter = NewMinter(ca, o.Minter)
	i.config = i.newConfig()
	return i, nil
}

// Match reports whether a CONNECT to host:port is intercepted.
func (i *Interceptor) Match(host string, port int) bool { return i.match.Match(host, port) }

// Minter is the leaf cache, for tests and benchmarks.
func (i *Interceptor) Minter() *Minter { return i.minter }

// Server returns the TLS server side of c for a tunnel to host (the
// CONNECT authority's host). The handshake fails unless the client's SNI
// names host; a client of an IP literal sends none.
func (i *Interceptor) Server(c net.Conn, host string) *tls.Conn {
	return tls.Server(&tunnelConn{Conn: c, host: normalHost(host)}, i.config)
}

// tunnelConn carries the CONNECT authority's host to the handshake
// callbacks, which see the conn given to tls.Server.
type tunnelConn struct {
	net.Conn
	host string
}

// newConfig is the tls.Config every intercepted tunnel starts from. For
// each ClientHello it checks the SNI and returns the tunnel's own config,
// whose session tickets are sealed with this one's keys, so that a client
// resumes on its next tunnel to the same host.
func (i *Interceptor) newConfig() *tls.Config {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		tc, ok := hello.Conn.(*tunnelConn)
		if !ok {
			return nil, errors.New("intercept: handshake on a conn that is no tunnel")
		}
		if !sniMatches(hello.ServerName, tc.host) {
			return nil, fmt.Errorf("intercept: client's TLS server name %q is not the CONNECT host %q", hello.ServerName, tc.host)
		}
		return i.tunnelConfig(base, tc.host), nil
	}
	return base
}

// tunnelConfig is the server config of one tunnel to host: the leaf for
// host, and tickets that carry host and resume in a tunnel to host only
// (a client of IP literals sends no SNI to tell them apart).
func (i *Interceptor) tunnelConfig(base *tls.Config, host string) *tls.Config {
	tag := append([]byte(ticketTag), host...)
	return &tls.Config{
		MinVersion: base.MinVersion,
		NextProtos: base.NextProtos,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return i.minter.Certificate(host)
		},
		WrapSession: func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			ss.Extra = append(ss.Extra, tag)
			return base.EncryptTicket(cs, ss)
		},
		UnwrapSession: func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			ss, err := base.DecryptTicket(identity, cs)
			if err != nil || ss == nil {
				return ss, err
			}
			for _, e := range ss.Extra {
				if bytes.Equal(e, tag) {
					return ss, nil
				}
			}
			return nil, nil // another host's: a full handshake
		},
	}
}

// ticketTag prefixes the tunnel host kept in a session ticket.
const ticketTag = "warmproxy-sni:"

// sniMatches reports whether a ClientHello's server name fits host. A
// client of an IP literal sends no SNI (RFC 6066 section 3); some send the
// literal anyway.
func sniMatches(sni, host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return sni == "" || normalHost(sni) == host
	}
	return sni != "" && strings.EqualFold(strings.TrimSuffix(sni, "."), host)
}
