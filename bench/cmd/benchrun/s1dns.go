package main

import (
	"context"
	"net"
	"time"

	"github.com/warmproxy/warmproxy/bench/internal/origin"
	"github.com/warmproxy/warmproxy/bench/internal/slowdns"
)

// s1dnsDelay is how long the slow resolver takes to answer.
const s1dnsDelay = 50 * time.Millisecond

// s1dns is S1 with a slow resolver (issue 8): warmproxy reaches the HTTPS
// origin behind the relay by a name, origin.bench, that only a loopback
// DNS server answering after 50 ms (TTL 300 s) resolves, and the origin
// closes the connection after every response, so every request needs a
// new connection and so a name to dial. Run once with the DNS cache (the
// default) and once with -dns-cache-size 0.
func (b *bench) s1dns(ctx context.Context, rep int) {
	if !b.usable("warmproxy") {
		return
	}
	dns, err := slowdns.Start(s1dnsDelay, 300, origin.ServerName)
	if err != nil {
		b.problem("S1 slow dns: %v", err)
		return
	}
	defer dns.Close()
	_, port, err := net.SplitHostPort(b.relayAddr)
	if err != nil {
		b.problem("S1 slow dns: relay address %q: %v", b.relayAddr, err)
		return
	}
	upstream := net.JoinHostPort(origin.ServerName, port)
	for _, v := range []struct {
		name  string
		extra []string
	}{
		{"dns cache", nil},
		{"no dns cache", []string{"-dns-cache-size", "0"}},
	} {
		what := "S1 slow dns, warmproxy " + v.name
		in, err := b.start(ctx, "warmproxy", upstream, true, 1000, append([]string{"-dns-server", dns.Addr()}, v.extra...)...)
		if err != nil {
			b.problem("%s: %v", what, err)
			continue
		}
		q0 := dns.Queries()
		e := in.endpoint(upstream, "/bytes/1024?close=1", true)
		r, err := b.loadgen(ctx, what, e, "-mode", "fresh", "-c", "1", "-n", "1000000", "-d", b.c.duration.String(), "-expect-bytes", "1024")
		b.stop(in)
		if err != nil {
			b.problem("%v", err)
			continue
		}
		b.record("S1", "slow dns", "warmproxy "+v.name, rep, map[string]float64{
			"p50_ms": r.P50Ms, "p99_ms": r.P99Ms, "rps": r.RPS,
			"requests":           float64(r.Requests),
			"dns_queries_per_1k": per1k(dns.Queries()-q0, r.Requests),
		})
	}
}

// reportS1DNS renders s1dns's rows.
func (b *bench) reportS1DNS(t table, w func(string, ...any)) {
	cached, uncached := b.find("S1", "slow dns", "warmproxy dns cache"), b.find("S1", "slow dns", "warmproxy no dns cache")
	if cached == nil && uncached == nil {
		return
	}
	w("**Slow resolver** (issue 8): warmproxy reaches the HTTPS origin by the name `%s`, which only a loopback DNS server answering after %v (TTL 300 s) resolves (`-dns-server`), and the origin closes the connection after every response (`Connection: close`), so every request opens a new connection (TCP, resumed TLS) and needs the name. C=1, fresh client connections, through the %v relay. `DNS queries /1k`: queries the server got per 1000 requests (A and AAAA are asked separately).\n\n", origin.ServerName, s1dnsDelay, b.c.rtt)
	t.head("warmproxy", "p50 ms", "p99 ms", "req/s", "requests", "DNS queries /1k req")
	for _, r := range []*row{cached, uncached} {
		if r == nil {
			continue
		}
		t.line(r.Target, f(med(r, "p50_ms"), 2), f(med(r, "p99_ms"), 2), f(med(r, "rps"), 0), f(med(r, "requests"), 0), f(med(r, "dns_queries_per_1k"), 1))
	}
	w("\n")
}
