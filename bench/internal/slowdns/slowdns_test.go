package slowdns

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestServerAnswersAfterDelay(t *testing.T) {
	const delay = 50 * time.Millisecond
	s, err := Start(delay, 60, "origin.bench")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.Addr())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	ips, err := r.LookupNetIP(ctx, "ip4", "origin.bench")
	if err != nil || len(ips) != 1 || ips[0].String() != "127.0.0.1" {
		t.Fatalf("LookupNetIP(origin.bench) = %v, %v; want [127.0.0.1]", ips, err)
	}
	if d := time.Since(start); d < delay {
		t.Errorf("answer after %v, want at least %v", d, delay)
	}
	if _, err := r.LookupNetIP(ctx, "ip4", "other.bench"); err == nil {
		t.Errorf("LookupNetIP(other.bench) = nil error, want not found")
	}
	if got := s.Queries(); got < 2 {
		t.Errorf("Queries() = %d, want at least 2", got)
	}
}
