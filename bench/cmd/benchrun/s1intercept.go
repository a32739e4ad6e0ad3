package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	"github.com/warmproxy/warmproxy/bench/internal/procs"
)

// s1InterceptTarget is S1's interception row (issue 13): the PHP-pattern
// client sends https:// through the proxy unchanged, so it does its own
// CONNECT and TLS handshake to warmproxy per request, and warmproxy,
// intercepting the origin's address, serves it from the pool.
const s1InterceptTarget = "warmproxy-intercept"

// startIntercept makes an interception CA for the relay's IP and starts
// warmproxy intercepting it. It returns the instance and the CA file the
// client trusts.
func (b *bench) startIntercept(ctx context.Context) (*instance, string, error) {
	host, port, err := net.SplitHostPort(b.relayAddr)
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(b.c.workDir, "intercept-ca")
	if _, err := procs.Run(ctx, []string{b.c.warmproxy, "ca", "init", "-force", "-intercept", host, dir}); err != nil {
		return nil, "", fmt.Errorf("warmproxy ca init: %v", err)
	}
	in, err := b.start(ctx, "warmproxy", b.relayAddr, true, 1000,
		"-intercept", host, "-intercept-ca", dir, "-connect-ports", port)
	if err != nil {
		return nil, "", err
	}
	return in, filepath.Join(dir, "ca.pem"), nil
}

// interceptEndpoint is the client's view: a CONNECT to the relay's
// address through warmproxy, TLS inside trusting ca, origin-form requests
// whose Host is that address.
func (b *bench) interceptEndpoint(in *instance, path, ca string) endpoint {
	return endpoint{addr: in.addr, target: path, host: b.relayAddr, tls: true, connect: b.relayAddr, ca: ca}
}
