package dnscache_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/testnet"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// fakeClock is the cache's clock in tests: it moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// dnsGuard returns a guard that resolves with d and caches (with the
// defaults, changed by mod) on a fake clock. Its dialer reaches loopback
// only.
func dnsGuard(t *testing.T, d *testDNS, mod func(*config.Config)) (*upstream.Guard, *fakeClock) {
	t.Helper()
	cfg := config.Default()
	cfg.DNSServer = d.addr
	if mod != nil {
		mod(&cfg)
	}
	var dials atomic.Int32
	g, err := upstream.NewGuard(config.MustParse(cfg), &net.Dialer{Timeout: 2 * time.Second, Control: testnet.LoopbackOnly(&dials)})
	if err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	if c := g.DNS(); c != nil {
		c.SetClock(clk.now)
		t.Cleanup(c.Wait)
	}
	return g, clk
}

// dialOK dials addr with g and closes the connection.
func dialOK(t *testing.T, g *upstream.Guard, addr string) {
	t.Helper()
	c, err := g.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("DialContext(%s): %v", addr, err)
	}
	c.Close()
}

// Issue 8: a DNS answer is kept for its records' TTL, clamped to
// -dns-min-ttl and -dns-max-ttl: N dials within it cost one query, and the
// first dial after it asks again.
func TestDNSCacheTTL(t *testing.T) {
	_, port, _ := net.SplitHostPort(testnet.Serve(t, func(net.Conn) {}))
	type step struct {
		advance time.Duration
		queries int // A queries the server has seen after the dials
	}
	tests := []struct {
		name     string
		ttl      uint32
		min, max time.Duration
		truncate bool // the answer comes over TCP
		steps    []step
	}{
		{"record ttl", 30, 5 * time.Second, 5 * time.Minute, false, []step{{0, 1}, {10 * time.Second, 1}, {10 * time.Second, 1}, {11 * time.Second, 2}}},
		// Each lookup asks twice: over UDP, truncated, then over TCP.
		{"record ttl over tcp", 40, 5 * time.Second, 5 * time.Minute, true, []step{{0, 2}, {30 * time.Second, 2}, {11 * time.Second, 4}}},
		{"raised to min", 1, 5 * time.Second, 5 * time.Minute, false, []step{{0, 1}, {3 * time.Second, 1}, {3 * time.Second, 2}}},
		{"ttl 0 raised to min", 0, 5 * time.Second, 5 * time.Minute, false, []step{{0, 1}, {4 * time.Second, 1}, {2 * time.Second, 2}}},
		{"cut to max", 3600, 5 * time.Second, time.Minute, false, []step{{0, 1}, {50 * time.Second, 1}, {11 * time.Second, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startDNS(t, map[string][]string{"a.test": {"127.0.0.1"}})
			d.configure(func(d *testDNS) { d.ttl, d.truncate = tt.ttl, tt.truncate })
			g, clk := dnsGuard(t, d, func(c *config.Config) { c.DNSMinTTL, c.DNSMaxTTL = tt.min, tt.max })
			var elapsed time.Duration
			for _, s := range tt.steps {
				clk.advance(s.advance)
				elapsed += s.advance
				for range 3 {
					dialOK(t, g, "a.test:"+port)
				}
				g.DNS().Wait()
				if got := d.count("a.test"); got != s.queries {
					t.Fatalf("after %v: %d queries, want %d", elapsed, got, s.queries)
				}
			}
			d.mu.Lock()
			tcp := d.tcp
			d.mu.Unlock()
			if tt.truncate && tcp == 0 {
				t.Errorf("no query came over TCP")
			}
		})
	}
}

// Issue 8: when the resolver fails (SERVFAIL) or is slow, an expired
// answer is used for up to -dns-stale, and a request through the proxy to
// a loopback origin still succeeds; past -dns-stale, or once the name is
// gone (NXDOMAIN), it fails as a DNS error.
func TestDNSServeStale(t *testing.T) {
	// Waits on held resolver answers only; runs beside the other
	// parallel tests.
	t.Parallel()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	t.Cleanup(origin.Close)
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	target := "http://origin.test:" + port + "/"

	tests := []struct {
		name    string
		fail    func(d *testDNS)
		advance time.Duration
		status  int
		stale   uint64
	}{
		{"servfail", func(d *testDNS) { d.servfail = true }, 11 * time.Second, 200, 1},
		// Issue 16: the answer is held until the GET has been served
		// (release below), where a 3 s delay used to pass time.
		{"slow resolver", func(d *testDNS) { d.gate = make(chan struct{}) }, 11 * time.Second, 200, 1},
		{"servfail past dns-stale", func(d *testDNS) { d.servfail = true }, 11*time.Second + time.Hour, 502, 0},
		{"name gone", func(d *testDNS) { delete(d.hosts, "origin.test") }, 11 * time.Second, 502, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startDNS(t, map[string][]string{"origin.test": {"127.0.0.1"}})
			d.configure(func(d *testDNS) { d.ttl = 10 })
			cfg := config.Default()
			cfg.DNSServer = d.addr
			up, err := upstream.New(config.MustParse(cfg))
			if err != nil {
				t.Fatal(err)
			}
			clk := newFakeClock()
			up.DNS().SetClock(clk.now)
			up.DNS().SetStaleWait(100 * time.Millisecond)
			t.Cleanup(up.DNS().Wait)
			t.Cleanup(d.release) // before Wait: a held refresh ends
			srv := httptest.NewServer(proxy.New(proxy.Options{Transport: up.Transport(), Dial: proxy.DialFunc(up.Dial), Config: config.MustParse(cfg)}))
			t.Cleanup(srv.Close)
			t.Cleanup(up.Transport().CloseIdleConnections)
			client := &http.Client{
				Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: srv.Listener.Addr().String()})},
				Timeout:   10 * time.Second,
			}
			get := func() (int, string) {
				t.Helper()
				resp, err := client.Get(target)
				if err != nil {
					t.Fatalf("GET %s: %v", target, err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, resp.Header.Get("Proxy-Status") + " " + string(b)
			}
			if code, body := get(); code != 200 {
				t.Fatalf("first GET: %d %s", code, body)
			}
			d.configure(tt.fail)
			up.Transport().CloseIdleConnections() // the next request dials
			clk.advance(tt.advance)
			code, body := get()
			if code != tt.status {
				t.Fatalf("GET after the resolver failed: %d %s, want %d", code, body, tt.status)
			}
			if code != 200 && !strings.Contains(body, "dns_error") {
				t.Errorf("GET: %s, want a dns_error", body)
			}
			// Issue 12 (no wall-clock bounds): the slow resolver's query
			// is still out when the stale answer has served the GET.
			if tt.name == "slow resolver" && up.DNS().Flights() != 1 {
				t.Errorf("the refresh ended before the GET was answered, want the GET not to wait for it")
			}
			d.release()
			if st := up.DNS().Stats(); st.Stale != tt.stale {
				t.Errorf("stale answers %d, want %d (%+v)", st.Stale, tt.stale, st)
			}
			if n := d.count("origin.test"); n < 2 {
				t.Errorf("%d queries, want the expired answer asked again", n)
			}
		})
	}
}

// Issue 8: concurrent dials of a name not cached share one query, and a
// caller that gives up does not fail the others (issue 12: nor cancel the
// query they wait for).
func TestDNSCacheCoalesce(t *testing.T) {
	// Waits on held resolver answers only; runs beside the other
	// parallel tests.
	t.Parallel()
	var accepts atomic.Int32
	_, port, _ := net.SplitHostPort(testnet.Serve(t, func(net.Conn) { accepts.Add(1) }))
	d := startDNS(t, map[string][]string{"c.test": {"127.0.0.1"}})
	// Issue 16: the answer is held until the impatient dial has given up
	// (release below), where a 500 ms delay used to pass time.
	d.hold()
	g, _ := dnsGuard(t, d, nil)
	t.Cleanup(d.release) // before the guard's Wait

	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			c, err := g.DialContext(context.Background(), "tcp", "c.test:"+port)
			if err == nil {
				c.Close()
			}
			errs <- err
		})
	}
	testnet.WaitUntil(t, 5*time.Second, "the query to reach the server", func() bool { return d.count("c.test") == 1 })
	impatient, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.DialContext(impatient, "tcp", "c.test:"+port); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("impatient dial: error %v, want a deadline", err)
	}
	d.release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("dial: %v", err)
		}
	}
	if q := d.count("c.test"); q != 1 {
		t.Errorf("%d queries for %d concurrent dials, want 1", q, n+1)
	}
	deadline := time.Now().Add(2 * time.Second)
	for accepts.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if a := accepts.Load(); a != n {
		t.Errorf("origin accepted %d connections, want %d", a, n)
	}
}

// Issue 8: "no such host" is cached for -dns-min-ttl, then asked again.
func TestDNSCacheNegative(t *testing.T) {
	d := startDNS(t, nil)
	g, clk := dnsGuard(t, d, nil)
	for i, want := range []int{1, 1, 2} {
		if i == 2 {
			clk.advance(config.Default().DNSMinTTL)
		}
		_, err := g.DialContext(context.Background(), "tcp", "nx.test:80")
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Fatalf("dial %d: error %v, want not found", i, err)
		}
		if got := d.count("nx.test"); got != want {
			t.Errorf("dial %d: %d queries, want %d", i, got, want)
		}
	}
}

// Issue 8: the cache holds -dns-cache-size names, the least recently used
// going first.
func TestDNSCacheBounded(t *testing.T) {
	_, port, _ := net.SplitHostPort(testnet.Serve(t, func(net.Conn) {}))
	d := startDNS(t, map[string][]string{"a.test": {"127.0.0.1"}, "b.test": {"127.0.0.1"}, "c.test": {"127.0.0.1"}})
	g, _ := dnsGuard(t, d, func(c *config.Config) { c.DNSCacheSize = 2 })
	for _, name := range []string{"a", "b", "a", "c", "a", "b"} {
		dialOK(t, g, name+".test:"+port)
	}
	for name, want := range map[string]int{"a.test": 1, "b.test": 2, "c.test": 1} {
		if got := d.count(name); got != want {
			t.Errorf("%s: %d queries, want %d", name, got, want)
		}
	}
	if n := g.DNS().Stats().Entries; n != 2 {
		t.Errorf("%d entries, want 2", n)
	}
}

// Issue 8: a hit in the last tenth of the TTL refreshes the entry in the
// background, so a name in steady use does not expire in front of a dial.
func TestDNSCachePrefetch(t *testing.T) {
	// Waits on held resolver answers only; runs beside the other
	// parallel tests.
	t.Parallel()
	_, port, _ := net.SplitHostPort(testnet.Serve(t, func(net.Conn) {}))
	d := startDNS(t, map[string][]string{"p.test": {"127.0.0.1"}})
	d.configure(func(d *testDNS) { d.ttl = 10 })
	g, clk := dnsGuard(t, d, nil)
	dialOK(t, g, "p.test:"+port)
	clk.advance(9500 * time.Millisecond)
	// Issue 16: the refresh's answer is held until the dial near expiry
	// has returned (release below), where a 1.5 s delay used to pass time.
	d.hold()
	t.Cleanup(d.release) // before the guard's Wait
	dialOK(t, g, "p.test:"+port)
	// Issue 12 (no wall-clock bounds): the refresh is still out.
	if g.DNS().Flights() != 1 {
		t.Errorf("the refresh ended before the dial near expiry returned: it waited for the refresh")
	}
	d.release()
	g.DNS().Wait()
	if q := d.count("p.test"); q != 2 {
		t.Fatalf("%d queries after a hit near expiry, want 2 (one refresh)", q)
	}
	clk.advance(5 * time.Second) // past the first answer's TTL, within the refreshed one's
	dialOK(t, g, "p.test:"+port)
	if q := d.count("p.test"); q != 2 {
		t.Errorf("%d queries, want the refreshed answer used", q)
	}
	if st := g.DNS().Stats(); st.Hits != 2 || st.Misses != 1 {
		t.Errorf("stats %+v, want 2 hits and 1 miss", st)
	}
}

// With -dns-cache-size 0 every dial asks the resolver.
func TestDNSCacheOff(t *testing.T) {
	_, port, _ := net.SplitHostPort(testnet.Serve(t, func(net.Conn) {}))
	d := startDNS(t, map[string][]string{"a.test": {"127.0.0.1"}})
	g, _ := dnsGuard(t, d, func(c *config.Config) { c.DNSCacheSize = 0 })
	if g.DNS() != nil {
		t.Fatal("a cache with -dns-cache-size 0")
	}
	for range 3 {
		dialOK(t, g, "a.test:"+port)
	}
	if q := d.count("a.test"); q != 3 {
		t.Errorf("%d queries for 3 dials, want 3", q)
	}
}

// Resolve and DialUnguarded use the cache and skip the policy: for a
// destination the operator named, such as a parent proxy.
func TestGuardResolveUnguarded(t *testing.T) {
	_, port, _ := net.SplitHostPort(testnet.Serve(t, func(net.Conn) {}))
	d := startDNS(t, map[string][]string{"parent.test": {"127.0.0.1"}})
	g, _ := dnsGuard(t, d, func(c *config.Config) { c.DenyPrivate = true })
	ips, err := g.Resolve(context.Background(), "ip", "parent.test")
	if err != nil || len(ips) != 1 || ips[0].String() != "127.0.0.1" {
		t.Fatalf("Resolve = %v, %v, want [127.0.0.1]", ips, err)
	}
	if _, err := g.DialContext(context.Background(), "tcp", "parent.test:"+port); err == nil {
		t.Fatal("DialContext to loopback with -deny-private succeeded")
	}
	c, err := g.DialUnguarded(context.Background(), "tcp", "parent.test:"+port)
	if err != nil {
		t.Fatalf("DialUnguarded: %v", err)
	}
	c.Close()
	if q := d.count("parent.test"); q != 1 {
		t.Errorf("%d queries, want 1", q)
	}
}
