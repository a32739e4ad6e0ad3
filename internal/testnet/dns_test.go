package testnet

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// DNS answers A queries for its names in order, SERVFAIL for a ServFail
// name, NXDOMAIN for the rest, and no records for AAAA.
func TestDNS(t *testing.T) {
	addr := DNS(t, map[string][]string{"two.test": {"127.0.0.2", "127.0.0.3"}, "fail.test": {ServFail}})
	r := Resolver(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := r.LookupHost(ctx, "TWO.test."); err != nil || strings.Join(got, " ") != "127.0.0.2 127.0.0.3" {
		t.Errorf("LookupHost(two.test) = %v, %v; want [127.0.0.2 127.0.0.3]", got, err)
	}
	var dnsErr *net.DNSError
	if _, err := r.LookupHost(ctx, "none.test."); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("LookupHost(none.test) error = %v, want not found", err)
	}
	if _, err := r.LookupHost(ctx, "fail.test."); !errors.As(err, &dnsErr) || dnsErr.IsNotFound {
		t.Errorf("LookupHost(fail.test) error = %v, want a server failure", err)
	}
	if got, err := r.LookupIP(ctx, "ip6", "two.test."); err == nil {
		t.Errorf("LookupIP(ip6, two.test) = %v, want no address", got)
	}
}
