package config

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/warmproxy/warmproxy/internal/acl"
)

// validateSecurity checks the access settings: the rules parse, and a
// listener that other machines can reach is not an open proxy by accident.
// It parses allow-clients and the destination policy into p.
func (p *Parsed) parseSecurity() []error {
	c := &p.Config
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var err error
	if p.AllowClients, err = acl.ParseClients(acl.SplitList(c.AllowClients)); err != nil {
		bad("allow-clients %q: %v", c.AllowClients, err)
	}
	if p.Policy, err = acl.New(acl.Config{Allow: acl.SplitList(c.Allow), Deny: acl.SplitList(c.Deny), DenyPrivate: c.DenyPrivate}); err != nil {
		bad("bad destination rule: %v; see warmproxy -h for the rule forms", err)
	}
	if c.ClientH2CMaxStreams < 1 || c.ClientH2CMaxStreams > 1<<20 {
		bad("client-h2c-max-streams %d: want 1 to 1048576 (100 is common)", c.ClientH2CMaxStreams)
	}
	if c.MaxConnsPerHostQueue < 0 {
		bad("max-conns-per-host-queue %d: want 0 (no waiting) or more", c.MaxConnsPerHostQueue)
	}
	if c.DNSServer != "" {
		if _, _, err := net.SplitHostPort(c.DNSServer); err != nil {
			bad("dns-server %q: want host:port, e.g. 127.0.0.1:53", c.DNSServer)
		}
	}
	_, _, listenErr := net.SplitHostPort(c.Listen) // a bad address is reported once, by Validate
	if listenErr == nil && c.ProxyAuthFile == "" && c.AllowClients == "" && !c.OpenProxyIKnow && !LoopbackListen(c.Listen) {
		bad("listen %q is not a loopback address, so anyone who reaches it could use warmproxy as an open proxy: "+
			"set -allow-clients CIDR,... or -proxy-auth-file FILE, or -open-proxy-i-know to run open on purpose", c.Listen)
	}
	return errs
}

// LoopbackListen reports whether a listen address binds loopback only: a
// loopback IP or "localhost", or a Unix socket, which is local too. An
// empty host (":9999") binds every interface.
func LoopbackListen(listen string) bool {
	if _, ok := UnixListen(listen); ok {
		return true
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
