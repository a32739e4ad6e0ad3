package dnscache_test

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// BenchmarkDialSlowResolver measures a fresh upstream connection (resolve,
// check, TCP connect to a loopback origin) when the resolver takes 50ms to
// answer, as in S1 with a slow resolver: "cache=off" asks for every
// connection, "cache=on" asks once per TTL, and "first-dial" is the miss
// every new name pays either way.
//
//	go test -run '^$' -bench DialSlowResolver -benchtime 2s ./internal/dnscache
func BenchmarkDialSlowResolver(b *testing.B) {
	origin := testnet.Serve(b, func(net.Conn) {})
	_, port, _ := net.SplitHostPort(origin)
	d := startDNS(b, map[string][]string{"origin.test": {"127.0.0.1"}})
	d.configure(func(d *testDNS) { d.delay, d.ttl = 50*time.Millisecond, 300 })

	guard := func(b *testing.B, size int) *upstream.Guard {
		cfg := config.Default()
		cfg.DNSServer, cfg.DNSCacheSize = d.addr, size
		var dials atomic.Int32
		g, err := upstream.NewGuard(config.MustParse(cfg), &net.Dialer{Timeout: 2 * time.Second, Control: testnet.LoopbackOnly(&dials)})
		if err != nil {
			b.Fatal(err)
		}
		return g
	}
	dial := func(b *testing.B, g *upstream.Guard, addr string) {
		c, err := g.DialContext(context.Background(), "tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	for _, size := range []int{0, config.Default().DNSCacheSize} {
		name := "cache=off"
		if size > 0 {
			name = "cache=on"
		}
		b.Run(name, func(b *testing.B) {
			g := guard(b, size)
			dial(b, g, "origin.test:"+port) // the first dial fills the cache
			b.ResetTimer()
			for range b.N {
				dial(b, g, "origin.test:"+port)
			}
		})
	}
	b.Run("first-dial", func(b *testing.B) {
		g := guard(b, config.Default().DNSCacheSize)
		for i := range b.N {
			b.StopTimer()
			host := "n" + strconv.Itoa(i) + ".test"
			d.set(host, "127.0.0.1")
			b.StartTimer()
			dial(b, g, host+":"+port)
		}
	})
}
