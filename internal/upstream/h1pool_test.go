package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/limit"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

const (
	h1Request  = "GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n"
	h1Response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
)

// Poison is what a rawOrigin does right after a connection's last
// response.
type poison int

const (
	poisonNone  poison = iota // keep the connection open and quiet
	poisonStray               // send one stray byte with the response
	poisonClose               // close the connection after the response
)

// rawOrigin is an HTTP/1.1 origin on a raw loopback listener (plain or
// TLS) that answers h1Request with h1Response. The n-th connection it
// accepts serves 1 + n%3 responses; after the last it does what poisonOf
// says. sent receives once the origin is done with a response, poison
// included; a client that waits on it, then settles the connection, has
// the stray byte or the close in its socket before it asks the pool
// again. poisoned maps the client addresses (the pool's local addresses)
// of the connections poisoned to how.
type rawOrigin struct {
	ln       net.Listener
	addr     string
	poisonOf func(n int) poison
	sent     chan struct{}
	accepted atomic.Int64
	requests atomic.Int64
	late     atomic.Int64 // requests that arrived on a poisoned connection
	poisoned sync.Map     // client addr string -> true
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
}

func startRawOrigin(t *testing.T, tlsCfg *tls.Config, poisonOf func(n int) poison) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	o := &rawOrigin{ln: ln, addr: ln.Addr().String(), poisonOf: poisonOf, sent: make(chan struct{}, 1), conns: map[net.Conn]bool{}}
	o.wg.Add(1)
	go o.accept()
	t.Cleanup(func() {
		ln.Close()
		o.mu.Lock()
		for c := range o.conns {
			c.Close()
		}
		o.mu.Unlock()
		o.wg.Wait()
	})
	return o
}

func (o *rawOrigin) accept() {
	defer o.wg.Done()
	for n := 0; ; n++ {
		c, err := o.ln.Accept()
		if err != nil {
			return
		}
		o.accepted.Add(1)
		o.mu.Lock()
		o.conns[c] = true
		o.mu.Unlock()
		o.wg.Add(1)
		go o.serve(c, n)
	}
}

// serve answers requests on c until its last, then poisons it. A stray
// connection stays open and counts any further request as one sent on a
// poisoned connection, closing it unanswered.
func (o *rawOrigin) serve(c net.Conn, n int) {
	defer o.wg.Done()
	defer func() {
		o.mu.Lock()
		delete(o.conns, c)
		o.mu.Unlock()
		c.Close()
	}()
	// A new connection may have the port of an old poisoned one.
	o.poisoned.Delete(c.RemoteAddr().String())
	br := bufio.NewReader(c)
	last, what := 1+n%3, o.poisonOf(n)
	for i := 1; ; i++ {
		if err := readHead(br); err != nil {
			return
		}
		if i > last && what != poisonNone {
			o.late.Add(1) // a request on a poisoned connection: no answer
			return
		}
		o.requests.Add(1)
		resp := h1Response
		if i == last && what == poisonStray {
			resp += "X" // one write: the stray byte is there with the response
		}
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
		if i == last && what != poisonNone {
			o.poisoned.Store(c.RemoteAddr().String(), what)
			if what == poisonClose {
				c.Close()
			}
		}
		select { // only the poisoning test waits for it
		case o.sent <- struct{}{}:
		default:
		}
		if i == last && what == poisonClose {
			return
		}
	}
}

// waitFIN waits, up to 10 s, until the kernel has the peer's FIN for
// c's socket (TCP state CLOSE_WAIT), reading nothing: the client of the
// poisoning test calls it for a connection the origin closed before it
// asks again, so that the race left is the pool's (or net/http's) own,
// not the kernel's delivery.
func waitFIN(t *testing.T, c net.Conn) {
	t.Helper()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*trackedConn); ok {
		c = tc.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("no socket beneath %T", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	const tcpCloseWait = 8
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		var info [256]byte
		size := uint32(len(info))
		state := -1
		if rc.Control(func(fd uintptr) {
			_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
				uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
			if e == 0 {
				state = int(info[0])
			}
		}) != nil {
			return // closed already
		}
		if state == tcpCloseWait {
			return
		}
		time.Sleep(20 * time.Microsecond)
	}
	t.Fatal("the origin's FIN did not arrive within 10 s")
}

// readHead reads one request head.
func readHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			return nil
		}
	}
}

func (o *rawOrigin) wasPoisoned(c net.Conn) bool {
	_, ok := o.poisoned.Load(c.LocalAddr().String())
	return ok
}

// settle waits until the client side of c, whose response the origin is
// done with, has in its kernel what the origin did to it: a stray byte
// comes in the response's own segment; a close is waited for.
func (o *rawOrigin) settle(t *testing.T, c net.Conn) {
	t.Helper()
	if what, _ := o.poisoned.Load(c.LocalAddr().String()); what == poisonClose {
		waitFIN(t, c)
	}
}

// waitSent waits for the origin to be done with a response.
func (o *rawOrigin) waitSent(t *testing.T) {
	t.Helper()
	select {
	case <-o.sent:
	case <-time.After(30 * time.Second):
		t.Fatal("origin sent no response within 30 s")
	}
}

// testH1Pool builds the upstream and its HTTP/1.1 pool from cfg.
func testH1Pool(t *testing.T, cfg config.Config) (*Upstream, *H1Pool) {
	t.Helper()
	up, err := New(config.MustParse(cfg))
	if err != nil {
		t.Fatal(err)
	}
	p := up.NewH1Pool(config.MustParse(cfg))
	t.Cleanup(p.Close)
	t.Cleanup(up.Transport().CloseIdleConnections)
	return up, p
}

func h1TestConfig() config.Config {
	cfg := config.Default()
	cfg.DialTimeout = 5 * time.Second
	cfg.TLSHandshakeTimeout = 5 * time.Second
	return cfg
}

// exchange sends h1Request on pc and reads exactly h1Response.
func exchange(pc *PConn) error {
	if _, err := io.WriteString(pc.Conn, h1Request); err != nil {
		return err
	}
	buf := make([]byte, len(h1Response))
	if _, err := io.ReadFull(pc.Conn, buf); err != nil {
		return err
	}
	if string(buf) != h1Response {
		return errors.New("response " + string(buf))
	}
	return nil
}

// Issue 14: a pooled connection with any unread byte or a pending close
// is never handed out (golang/go#31259). The origin poisons every
// connection after one to three responses, with a stray byte or a close,
// before the client asks again; in 10,000 requests the pool hands out
// none of those, while today's http.Transport, in the same setup, does
// (logged for comparison, not asserted: it is a race).
func TestH1PoolNoPoisonedHandOut(t *testing.T) {
	// Issue 16: waits on real time or sockets; runs in parallel. Go
	// starts the parallel tests once the others, whose leak checks
	// (newTestUpstream's) see every goroutine, have ended.
	t.Parallel()
	const rounds = 10000
	alternate := func(n int) poison { return poison(1 + n%2) }
	t.Run("pool", func(t *testing.T) {
		t.Parallel() // Issue 16: each has its own origin and pool
		o := startRawOrigin(t, nil, alternate)
		up, p := testH1Pool(t, h1TestConfig())
		key, err := up.H1Key(SchemeHTTP, o.addr)
		if err != nil {
			t.Fatal(err)
		}
		poisoned, reused, _ := runPoolRounds(t, p, key, o, rounds)
		t.Logf("pool: %d requests, %d on reused connections, %d poisoned hand-outs, %d connections", rounds, reused, poisoned, o.accepted.Load())
		if poisoned != 0 {
			t.Errorf("%d poisoned hand-outs in %d, want 0", poisoned, rounds)
		}
		if reused < rounds/4 {
			t.Errorf("%d of %d requests on reused connections: the pool did not pool", reused, rounds)
		}
	})
	t.Run("tls", func(t *testing.T) {
		t.Parallel() // Issue 16: each has its own origin and pool
		cfg, srvTLS := tlsTestSetup(t)
		o := startRawOrigin(t, srvTLS, alternate)
		up, p := testH1Pool(t, cfg)
		key, err := up.H1Key(SchemeHTTPS, o.addr)
		if err != nil {
			t.Fatal(err)
		}
		poisoned, reused, resumed := runPoolRounds(t, p, key, o, rounds/10)
		t.Logf("pool over TLS: %d requests, %d reused, %d poisoned hand-outs, %d new connections resumed TLS", rounds/10, reused, poisoned, resumed)
		if resumed == 0 {
			t.Error("no new connection resumed a TLS session: the dial stack's session cache is not in use")
		}
		if poisoned != 0 {
			t.Errorf("%d poisoned hand-outs over TLS in %d, want 0", poisoned, rounds/10)
		}
		if reused < rounds/40 {
			t.Errorf("%d of %d requests on reused connections: the pool did not pool", reused, rounds/10)
		}
	})
	t.Run("net/http Transport (reference)", func(t *testing.T) {
		t.Parallel() // Issue 16: each has its own origin and pool
		o := startRawOrigin(t, nil, alternate)
		up, _ := testH1Pool(t, h1TestConfig())
		// The transport logs each unsolicited byte with log.Printf.
		log.SetOutput(io.Discard)
		t.Cleanup(func() { log.SetOutput(os.Stderr) })
		poisoned, reused := runTransportRounds(t, up.Transport(), o, rounds)
		t.Logf("http.Transport: %d requests, %d hand-outs of reused connections, %d of them poisoned", rounds, reused, poisoned)
	})
}

func runPoolRounds(t *testing.T, p *H1Pool, key H1Key, o *rawOrigin, rounds int) (poisoned, reused, resumed int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute) // a hang guard only
	for i := 0; i < rounds; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d rounds within 3 minutes", i, rounds)
		}
		pc, err := p.Get(context.Background(), key)
		if err != nil {
			t.Fatalf("round %d: Get: %v", i, err)
		}
		if pc.Info.TLSResumed {
			resumed++
		}
		if pc.Info.Reused {
			reused++
			if o.wasPoisoned(pc.Conn) {
				poisoned++
				pc.Release(false)
				continue
			}
		}
		if err := exchange(pc); err != nil {
			t.Fatalf("round %d (reused %v): %v", i, pc.Info.Reused, err)
		}
		c := pc.Conn
		pc.Release(true)
		o.waitSent(t)
		o.settle(t, c)
	}
	return poisoned, reused, resumed
}

func runTransportRounds(t *testing.T, tr *http.Transport, o *rawOrigin, rounds int) (poisoned, reused int) {
	t.Helper()
	var last net.Conn
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		last = info.Conn
		if info.Reused {
			reused++
			if o.wasPoisoned(info.Conn) {
				poisoned++
			}
		}
	}}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	deadline := time.Now().Add(3 * time.Minute)
	for i := 0; i < rounds; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d rounds within 3 minutes", i, rounds)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+o.addr+"/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			continue // a poisoned connection the transport could not retry on
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		o.waitSent(t)
		o.settle(t, last)
	}
	return poisoned, reused
}

// tlsTestSetup returns a config trusting a test CA, and the origin's TLS
// settings with a certificate for 127.0.0.1: that CA itself.
func tlsTestSetup(t testing.TB) (config.Config, *tls.Config) {
	t.Helper()
	cert := testnet.SelfSigned(t, testnet.Cert{CommonName: "h1pool test", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	cfg := h1TestConfig()
	cfg.CAFile = testnet.CAFile(t, cert.Leaf)
	srv := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}
	return cfg, srv
}

// pipePool is an H1Pool whose dials return net.Pipe ends, for the timing
// logic inside a synctest bubble (real sockets cannot be used there). The
// socket peek has no socket to look at: every connection passes it.
type pipePool struct {
	*H1Pool
	dials atomic.Int64
	mu    sync.Mutex
	far   []net.Conn
}

func newPipePool(l h1Limits, stats *Tracker) *pipePool {
	pp := &pipePool{}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		pp.dials.Add(1)
		c, s := net.Pipe()
		pp.mu.Lock()
		pp.far = append(pp.far, s)
		pp.mu.Unlock()
		return c, nil
	}
	pp.H1Pool = newH1Pool(l, dial, dial, stats)
	pp.healthy = func(*PConn) bool { return true }
	return pp
}

func (pp *pipePool) close() {
	pp.Close()
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for _, c := range pp.far {
		c.Close()
	}
}

var pipeKey = H1Key{Scheme: SchemeHTTP, Addr: "origin.test:80"}

// getRelease takes a connection and puts it back; it returns whether the
// connection was reused.
func (pp *pipePool) getRelease(t *testing.T) *PConn {
	t.Helper()
	pc, err := pp.Get(context.Background(), pipeKey)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	pc.Release(true)
	return pc
}

// Issue 14: an idle connection is not handed out once idle for the idle
// timeout, and the reaper closes it even with no Get.
func TestH1PoolIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pp := newPipePool(h1Limits{idleTimeout: 500 * time.Millisecond}, nil)
		defer pp.close()
		first := pp.getRelease(t)
		time.Sleep(499 * time.Millisecond)
		if pc := pp.getRelease(t); pc != first {
			t.Fatal("a connection idle 499 ms of a 500 ms idle timeout was not reused")
		}
		time.Sleep(500 * time.Millisecond) // < reapInterval: only Get can see it
		if pc := pp.getRelease(t); pc == first || pp.dials.Load() != 2 {
			t.Fatalf("a connection idle for the idle timeout was handed out (dials %d, want 2)", pp.dials.Load())
		}
		time.Sleep(reapInterval + time.Millisecond)
		synctest.Wait()
		if n := pp.Idle(); n != 0 {
			t.Errorf("after the idle timeout and a reap, %d idle connections, want 0", n)
		}
	})
}

// Issue 14: a connection to an origin that announced "Keep-Alive:
// timeout=2" is not handed out once idle 1.5 s (timeout minus the
// margin), and counts as retired.
func TestH1PoolKeepAliveRetirement(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stats := NewTracker()
		stats.honorKeepAlive = true
		pp := newPipePool(h1Limits{idleTimeout: time.Minute}, stats)
		defer pp.close()
		pc, err := pp.Get(context.Background(), pipeKey)
		if err != nil {
			t.Fatal(err)
		}
		pc.NoteKeepAlive([]string{"timeout=2, max=100"})
		pc.Release(true)
		time.Sleep(1400 * time.Millisecond)
		if got := pp.getRelease(t); got != pc {
			t.Fatal("a connection idle 1.4 s of the origin's 1.5 s limit was not reused")
		}
		time.Sleep(1500 * time.Millisecond)
		if got := pp.getRelease(t); got == pc || pp.dials.Load() != 2 {
			t.Fatalf("a connection idle past the origin's keep-alive limit was handed out (dials %d, want 2)", pp.dials.Load())
		}
		if r := stats.Totals(SchemeHTTP).Retired; r < 1 {
			t.Errorf("retired %d, want at least 1", r)
		}
	})
}

func quietOrigin(t *testing.T) *rawOrigin {
	return startRawOrigin(t, nil, func(int) poison { return poisonNone })
}

func mustGet(t *testing.T, p *H1Pool, key H1Key) *PConn {
	t.Helper()
	pc, err := p.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%v): %v", key, err)
	}
	return pc
}

// Issue 14: idle connections are handed out newest first.
func TestH1PoolLIFO(t *testing.T) {
	o := quietOrigin(t)
	up, p := testH1Pool(t, h1TestConfig())
	key, _ := up.H1Key(SchemeHTTP, o.addr)
	a, b := mustGet(t, p, key), mustGet(t, p, key)
	for _, pc := range []*PConn{a, b} {
		if err := exchange(pc); err != nil {
			t.Fatal(err)
		}
	}
	a.Release(true)
	b.Release(true)
	if got := mustGet(t, p, key); got != b || !got.Info.Reused {
		t.Fatalf("Get after releasing a then b = %p (reused %v), want b %p, the newest", got, got.Info.Reused, b)
	}
	if got := mustGet(t, p, key); got != a {
		t.Fatalf("second Get = %p, want a %p", got, a)
	}
	if err := exchange(a); err != nil {
		t.Errorf("request on the reused connection: %v", err)
	}
}

func idleOf(p *H1Pool, key H1Key) (idle, conns int) {
	for _, s := range p.Stats() {
		if s.Key == key {
			return s.Idle, s.Conns
		}
	}
	return 0, 0
}

// Issue 14: past MaxIdlePerHost, and past MaxIdle over all keys, the
// oldest idle connection is closed.
func TestH1PoolIdleLimits(t *testing.T) {
	o1, o2 := quietOrigin(t), quietOrigin(t)
	cfg := h1TestConfig()
	cfg.MaxIdlePerHost, cfg.MaxIdle = 2, 3
	up, p := testH1Pool(t, cfg)
	k1, _ := up.H1Key(SchemeHTTP, o1.addr)
	k2, _ := up.H1Key(SchemeHTTP, o2.addr)
	a, b, c := mustGet(t, p, k1), mustGet(t, p, k1), mustGet(t, p, k1)
	a.Release(true)
	b.Release(true)
	c.Release(true)
	if idle, conns := idleOf(p, k1); idle != 2 || conns != 2 {
		t.Fatalf("after 3 releases under max-idle-per-host 2: idle %d, conns %d, want 2, 2", idle, conns)
	}
	if got := mustGet(t, p, k1); got != c {
		t.Fatal("newest not handed out first")
	} else if got2 := mustGet(t, p, k1); got2 != b {
		t.Fatal("a, the oldest, was not the one evicted")
	} else {
		got.Release(true)  // c, the oldest now
		got2.Release(true) // b
	}
	d, e := mustGet(t, p, k2), mustGet(t, p, k2)
	d.Release(true) // 3 idle: at MaxIdle
	e.Release(true) // 4: the oldest of all (c, on k1) goes
	if n := p.Idle(); n != 3 {
		t.Fatalf("idle over all keys %d, want MaxIdle 3", n)
	}
	if idle, _ := idleOf(p, k1); idle != 1 {
		t.Fatalf("k1 idle %d, want 1: its oldest was evicted", idle)
	}
	if got := mustGet(t, p, k1); got != b {
		t.Fatal("the evicted connection was not the oldest of all")
	}
}

// Issue 14: at MaxConnsPerHost a Get waits in a bounded queue and gets
// the connection released; one past the queue fails at once.
func TestH1PoolMaxConnsQueue(t *testing.T) {
	o := quietOrigin(t)
	cfg := h1TestConfig()
	cfg.MaxConnsPerHost, cfg.MaxConnsPerHostQueue = 1, 1
	cfg.DialTimeout = time.Minute // the queue's wait
	up, p := testH1Pool(t, cfg)
	key, _ := up.H1Key(SchemeHTTP, o.addr)
	a := mustGet(t, p, key)
	got := make(chan *PConn, 1)
	go func() {
		pc, err := p.Get(context.Background(), key)
		if err != nil {
			t.Errorf("queued Get: %v", err)
		}
		got <- pc
	}()
	waitFor(t, 30*time.Second, "a queued Get", func() bool {
		for _, s := range p.Stats() {
			if s.Key == key && s.Waiting == 1 {
				return true
			}
		}
		return false
	})
	_, err := p.Get(context.Background(), key)
	var se *limit.SaturatedError
	if !errors.As(err, &se) || se.Queued {
		t.Fatalf("Get past the queue: %v, want a *limit.SaturatedError, not queued", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Get(ctx, key); err == nil {
		t.Fatal("Get with a cancelled context succeeded")
	}
	a.Release(true)
	select {
	case pc := <-got:
		if pc != a || !pc.Info.Reused {
			t.Fatalf("queued Get = %p, want the released %p", pc, a)
		}
		pc.Release(true)
	case <-time.After(30 * time.Second):
		t.Fatal("queued Get not served within 30 s of a release")
	}
	if _, conns := idleOf(p, key); conns != 1 {
		t.Errorf("conns %d, want 1", conns)
	}
}

// Issue 14: the pool's requests and connections show in the Tracker's stats
// (/debug/pool): active while held, idle once released; a plain
// connection keeps its *net.TCPConn reachable for splice.
func TestH1PoolStats(t *testing.T) {
	o := quietOrigin(t)
	up, p := testH1Pool(t, h1TestConfig())
	key, _ := up.H1Key(SchemeHTTP, o.addr)
	pc := mustGet(t, p, key)
	if pc.TCP == nil || pc.Info.Reused || pc.Info.Connect <= 0 {
		t.Fatalf("new plain connection: TCP %v, reused %v, connect %v; want a *net.TCPConn, not reused, a connect time", pc.TCP, pc.Info.Reused, pc.Info.Connect)
	}
	var _ io.ReaderFrom = pc.TCP
	st := up.hostStats(t, "http", o.addr)
	if st.Open != 1 || st.Active != 1 || st.Idle != 0 || st.Requests != 1 {
		t.Fatalf("held: %+v, want open 1, active 1, idle 0, requests 1", st)
	}
	if err := exchange(pc); err != nil {
		t.Fatal(err)
	}
	pc.Release(true)
	st = up.hostStats(t, "http", o.addr)
	if st.Open != 1 || st.Active != 0 || st.Idle != 1 {
		t.Fatalf("released: %+v, want open 1, active 0, idle 1", st)
	}
	pc = mustGet(t, p, key)
	pc.Release(false)
	st = up.hostStats(t, "http", o.addr)
	if st.Open != 0 || st.Requests != 2 || st.Reused != 1 {
		t.Fatalf("after a release not reusable: %+v, want open 0, requests 2, reused 1", st)
	}
}

// Issue 14: one TLS dialer offers h2 and http/1.1; a connection whose
// origin picks h2 is handed back as such, not kept.
func TestH1PoolH2ByALPN(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := h1TestConfig()
	cfg.CAFile, cfg.UpstreamHTTP2 = path, true
	up, p := testH1Pool(t, cfg)
	key, _ := up.H1Key(SchemeHTTPS, srv.Listener.Addr().String())
	pc := mustGet(t, p, key)
	defer pc.Conn.Close()
	if pc.Proto != ProtoH2 {
		t.Fatalf("Proto %q, want %q", pc.Proto, ProtoH2)
	}
	pc.Release(true)
	if idle, conns := idleOf(p, key); idle != 0 || conns != 0 {
		t.Errorf("the pool kept the h2 connection: idle %d, conns %d", idle, conns)
	}
}

// Issue 14: the key tells connections apart by scheme, address, TLS rule
// and server name, and parent proxy.
func TestH1Key(t *testing.T) {
	cfg := h1TestConfig()
	cfg.UpstreamTLS = config.TLSRules("*.internal.test,sni=gw.internal.test,insecure")
	up, err := New(config.MustParse(cfg))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		s    Scheme
		in   string
		want H1Key
	}{
		{SchemeHTTP, "Example.test", H1Key{Scheme: SchemeHTTP, Addr: "example.test:80"}},
		{SchemeHTTPS, "example.test", H1Key{Scheme: SchemeHTTPS, Addr: "example.test:443", ServerName: "example.test"}},
		{SchemeHTTPS, "a.internal.test:8443", H1Key{Scheme: SchemeHTTPS, Addr: "a.internal.test:8443", TLSRule: up.tls.rules.rules[0].text, ServerName: "gw.internal.test"}},
	} {
		got, err := up.H1Key(tt.s, tt.in)
		if err != nil || got != tt.want {
			t.Errorf("H1Key(%v, %q) = %+v, %v, want %+v", tt.s, tt.in, got, err, tt.want)
		}
	}
}

func TestMayReplay(t *testing.T) {
	idem := http.Header{"Idempotency-Key": {"1"}}
	for _, tt := range []struct {
		name string
		a    Attempt
		want bool
	}{
		{"GET on a reused conn, written, no response", Attempt{Method: "GET", Reused: true}, true},
		{"POST never written, no body", Attempt{Method: "POST", Reused: true, NothingWritten: true}, true},
		{"POST never written, buffered body", Attempt{Method: "POST", Reused: true, NothingWritten: true, HasBody: true, Rewindable: true}, true},
		{"POST never written, streamed body", Attempt{Method: "POST", Reused: true, NothingWritten: true, HasBody: true}, false},
		{"POST written", Attempt{Method: "POST", Reused: true}, false},
		{"POST written with Idempotency-Key", Attempt{Method: "POST", Header: idem, Reused: true}, true},
		{"GET on a new conn", Attempt{Method: "GET", NothingWritten: true}, false},
		{"GET after response bytes", Attempt{Method: "GET", Reused: true, ResponseStarted: true}, false},
		{"GET replayed once already", Attempt{Method: "GET", Reused: true, Replays: 1}, false},
	} {
		if got := MayReplay(tt.a); got != tt.want {
			t.Errorf("%s: MayReplay(%+v) = %v, want %v", tt.name, tt.a, got, tt.want)
		}
	}
}

// BenchmarkH1PoolGetRelease is the steady state of the pool: an idle
// connection taken (with its peek) and put back; over TLS, Release also
// looks into the TLS buffers.
func BenchmarkH1PoolGetRelease(b *testing.B) {
	b.Run("http", func(b *testing.B) { benchGetRelease(b, SchemeHTTP, h1TestConfig(), nil) })
	b.Run("https", func(b *testing.B) {
		cfg, srv := tlsTestSetup(b)
		benchGetRelease(b, SchemeHTTPS, cfg, srv)
	})
}

func benchGetRelease(b *testing.B, s Scheme, cfg config.Config, srv *tls.Config) {
	o := quietOriginB(b, srv)
	up, err := New(config.MustParse(cfg))
	if err != nil {
		b.Fatal(err)
	}
	p := up.NewH1Pool(config.MustParse(cfg))
	defer p.Close()
	key, _ := up.H1Key(s, o)
	ctx := context.Background()
	pc, err := p.Get(ctx, key)
	if err != nil {
		b.Fatal(err)
	}
	pc.Release(true)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		pc, err := p.Get(ctx, key)
		if err != nil || !pc.Info.Reused {
			b.Fatal("not reused", err)
		}
		pc.Release(true)
	}
}

// quietOriginB accepts connections and holds them open, silent.
func quietOriginB(b *testing.B, srv *tls.Config) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	if srv != nil {
		ln = tls.NewListener(ln, srv)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if tc, ok := c.(*tls.Conn); ok {
				go tc.Handshake()
			}
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// Issue 14: the pool dials through the dial stack, prewarm stash included:
// a prewarmed TLS connection is handed out as reused, with no connect
// time, and carries a request.
func TestH1PoolTakesPrewarmed(t *testing.T) {
	o := startCountingOrigin(t, true, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cfg := config.Default()
	cfg.CAFile = o.caFile
	cfg.Prewarm = o.srv.URL + "*1"
	up, _ := startPrewarm(t, cfg)
	p := up.NewH1Pool(config.MustParse(cfg))
	t.Cleanup(p.Close)
	key, _ := up.H1Key(SchemeHTTPS, strings.TrimPrefix(o.srv.URL, "https://"))
	pc := mustGet(t, p, key)
	if !pc.Info.Reused || pc.Info.Connect != 0 || pc.Proto != ProtoHTTP1 {
		t.Fatalf("prewarmed connection: %+v, proto %q; want reused, no connect time, http/1.1", pc.Info, pc.Proto)
	}
	io.WriteString(pc.Conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(pc.Conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pc.Release(false)
}

// Issue 14: through an http parent, plain-http requests share the
// connections to the parent (absolute form); https ones get their own key
// per origin, through the parent.
func TestH1KeyParent(t *testing.T) {
	cfg := h1TestConfig()
	cfg.ParentProxy = "http://127.0.0.1:3128"
	cfg.NoParentFor = "direct.test"
	up, err := New(config.MustParse(cfg))
	if err != nil {
		t.Fatal(err)
	}
	shown := up.parent.Shown
	for _, tt := range []struct {
		s    Scheme
		in   string
		want H1Key
	}{
		{SchemeHTTP, "a.test", H1Key{Scheme: SchemeHTTP, Addr: "127.0.0.1:3128", Parent: shown, AbsoluteForm: true}},
		{SchemeHTTPS, "a.test", H1Key{Scheme: SchemeHTTPS, Addr: "a.test:443", ServerName: "a.test", Parent: shown}},
		{SchemeHTTP, "direct.test", H1Key{Scheme: SchemeHTTP, Addr: "direct.test:80"}},
	} {
		got, err := up.H1Key(tt.s, tt.in)
		if err != nil || got != tt.want {
			t.Errorf("H1Key(%v, %q) = %+v, %v, want %+v", tt.s, tt.in, got, err, tt.want)
		}
	}
}

// Issue 14: Close closes the idle connections, and a connection held at
// Close is closed at its Release, not pooled.
func TestH1PoolClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pp := newPipePool(h1Limits{idleTimeout: time.Minute}, nil)
		defer pp.close()
		idle, err := pp.Get(context.Background(), pipeKey)
		if err != nil {
			t.Fatal(err)
		}
		held, err := pp.Get(context.Background(), pipeKey)
		if err != nil {
			t.Fatal(err)
		}
		idle.Release(true)
		pp.Close()
		held.Release(true)
		held.Release(true) // a second Release does nothing
		if n := pp.Idle(); n != 0 {
			t.Errorf("after Close, %d idle, want 0", n)
		}
		for _, pc := range []*PConn{idle, held} {
			if _, err := pc.Conn.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
				t.Errorf("write on a connection after Close: %v, want it closed", err)
			}
		}
		if _, err := pp.Get(context.Background(), pipeKey); err == nil {
			t.Error("Get after Close succeeded")
		}
		if _, conns := idleOf(pp.H1Pool, pipeKey); conns != 0 {
			t.Errorf("conns %d after Close and Release, want 0", conns)
		}
	})
}
