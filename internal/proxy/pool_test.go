package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Issue 2: every request after the first reuses the pooled origin
// connection, although each client request comes on a fresh connection.
func TestKeepAliveReuse(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p := startProxy(t, testConfig())
	const n = 20
	for i := range n {
		resp, body := p.get(t, o.httpURL(fmt.Sprintf("/%d", i)), nil)
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d = %d %q, want 200 ok", i, resp.StatusCode, body)
		}
	}
	if got := o.newConns.Load(); got != 1 {
		t.Errorf("origin accepted %d connections for %d requests, want 1", got, n)
	}
	entries := p.waitEntries(t, n)
	for i, e := range entries {
		if want := i > 0; e.Reused != want {
			t.Errorf("entry %d Reused = %v, want %v", i, e.Reused, want)
		}
		if i == 0 && e.Connect <= 0 {
			t.Errorf("entry 0 Connect = %v, want > 0 (a new connection)", e.Connect)
		}
	}
}

// concurrentGets sends n requests to target at once; the origin holds each
// one until all n arrived, so they need n connections.
func concurrentGets(t *testing.T, p *testProxy, target string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := p.client(t).Get(target)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// barrier releases its waiters once n of them arrived.
type barrier struct {
	mu   sync.Mutex
	n    int
	done chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, done: make(chan struct{})} }

func (b *barrier) wait() bool {
	b.mu.Lock()
	if b.n--; b.n == 0 {
		close(b.done)
	}
	b.mu.Unlock()
	select {
	case <-b.done:
		return true
	case <-time.After(testTimeout):
		return false
	}
}

// Issue 2: at most MaxIdlePerHost connections per origin stay in the pool.
func TestMaxIdlePerHost(t *testing.T) {
	const burst, idle = 5, 2
	var bar atomic.Pointer[barrier]
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if !bar.Load().wait() {
			http.Error(w, "barrier timeout", 500)
		}
	})
	cfg := testConfig()
	cfg.MaxIdlePerHost = idle
	p := startProxy(t, cfg)

	bar.Store(newBarrier(burst))
	concurrentGets(t, p, o.httpURL("/"), burst)
	if got := o.newConns.Load(); got != burst {
		t.Fatalf("first burst: origin accepted %d connections, want %d", got, burst)
	}
	// The pool keeps 2 and closes the other 3.
	waitFor(t, "the proxy to close the connections over the idle cap", func() bool {
		return o.closedConns.Load() == burst-idle
	})
	bar.Store(newBarrier(burst))
	concurrentGets(t, p, o.httpURL("/"), burst)
	if got, want := o.newConns.Load(), int64(burst+burst-idle); got != want {
		t.Errorf("after second burst: origin accepted %d connections, want %d (2 reused from the pool)", got, want)
	}
}

// Issue 2: with MaxConnsPerHost, extra requests wait for a free
// connection instead of opening more.
func TestMaxConnsPerHostWaits(t *testing.T) {
	var active, peak atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		n := active.Add(1)
		defer active.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		io.WriteString(w, "ok")
	})
	cfg := testConfig()
	cfg.MaxConnsPerHost = 1
	p := startProxy(t, cfg)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", o.httpURL("/"), nil)
			resp, err := p.client(t).Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d, want 200", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if got := o.newConns.Load(); got != 1 {
		t.Errorf("origin accepted %d connections, want 1", got)
	}
	if got := peak.Load(); got != 1 {
		t.Errorf("origin saw %d requests at once, want 1", got)
	}
}

// Issue 2: TLS to the origin through the protocol header resumes its
// session on a new connection after the origin closed the first one.
func TestTLSResumption(t *testing.T) {
	var resumed atomic.Int64
	o := newTLSOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && r.TLS.DidResume {
			resumed.Add(1)
		}
		io.WriteString(w, "ok")
	})
	cfg := testConfig()
	cfg.CAFile = o.caFile
	p := startProxy(t, cfg)
	hdr := http.Header{"X-Real-Protocol": {"https"}}
	for i := range 3 {
		if resp, body := p.get(t, o.httpURL("/"), hdr); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if o.newConns.Load() != 1 || o.handshakes.Load() != 1 || resumed.Load() != 0 {
		t.Fatalf("before close: conns %d, handshakes %d, resumed %d; want 1, 1, 0", o.newConns.Load(), o.handshakes.Load(), resumed.Load())
	}
	o.CloseClientConnections()
	if resp, body := p.get(t, o.httpURL("/"), hdr); resp.StatusCode != 200 {
		t.Fatalf("after close: %d %s", resp.StatusCode, body)
	}
	if o.newConns.Load() != 2 || resumed.Load() != 1 {
		t.Errorf("after close: conns %d, resumed %d; want 2, 1", o.newConns.Load(), resumed.Load())
	}
	if e := p.waitEntries(t, 4)[3]; !e.TLSResumed || e.Reused {
		t.Errorf("entry after close: TLSResumed %v Reused %v, want true false", e.TLSResumed, e.Reused)
	}
}

// Issue 2: an origin that closes its side (Connection: close, or its own
// keep-alive timeout) never makes the next request fail.
func TestStaleConnectionInvisible(t *testing.T) {
	tests := []struct {
		name  string
		setup func(o *testOrigin)
		close bool
	}{
		{name: "connection close", close: true},
		{name: "origin idle timeout", setup: func(o *testOrigin) { o.Config.IdleTimeout = 50 * time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOriginWith(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.close {
					w.Header().Set("Connection", "close")
				}
				io.WriteString(w, "ok")
			}, tt.setup)
			p := startProxy(t, testConfig())
			for i := range 3 {
				if resp, body := p.get(t, o.httpURL("/"), nil); resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("request %d = %d %q, want 200 ok", i, resp.StatusCode, body)
				}
				time.Sleep(150 * time.Millisecond)
			}
			if got := o.newConns.Load(); got != 3 {
				t.Errorf("origin accepted %d connections, want 3 (it closed each one)", got)
			}
		})
	}
}

// poisonDialer wraps the transport's dial function. Poison makes the next
// write on every connection dialed so far fail before any byte leaves:
// the race of an origin closing an idle pooled connection just as a
// request is sent on it.
type poisonDialer struct {
	mu    sync.Mutex
	conns []*poisonConn
}

type poisonConn struct {
	net.Conn
	poisoned atomic.Bool
}

func (c *poisonConn) Write(p []byte) (int, error) {
	if c.poisoned.Load() {
		c.Conn.Close()
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}
	}
	return c.Conn.Write(p)
}

func (d *poisonDialer) wrap(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		pc := &poisonConn{Conn: c}
		d.mu.Lock()
		d.conns = append(d.conns, pc)
		d.mu.Unlock()
		return pc, nil
	}
}

func (d *poisonDialer) poison() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.poisoned.Store(true)
	}
}

// Issue 2: a request that never reached the origin because its pooled
// connection was dead is sent again on a fresh one, a small POST included
// (its body is held for that); a POST that may have reached the origin is
// never replayed.
func TestStaleConnectionRetry(t *testing.T) {
	var gets, posts atomic.Int64
	hangUp := atomic.Bool{}
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.Method {
		case "GET":
			gets.Add(1)
		case "POST":
			posts.Add(1)
			if len(body) != 1024 {
				t.Errorf("origin got a %d-byte POST body, want 1024", len(body))
			}
		}
		if hangUp.Load() {
			// Take the request, then die without answering.
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		io.WriteString(w, "ok")
	})
	post := func(p *testProxy) *http.Response {
		req, _ := http.NewRequest("POST", o.httpURL("/post"), bytes.NewReader(bytes.Repeat([]byte("x"), 1024)))
		resp, _ := do(t, p.client(t), req)
		return resp
	}

	t.Run("never reached", func(t *testing.T) {
		gets.Store(0)
		posts.Store(0)
		var d poisonDialer
		p := startProxy(t, testConfig())
		p.up.Transport().DialContext = d.wrap(p.up.Transport().DialContext)
		p.get(t, o.httpURL("/warm"), nil)

		d.poison()
		if resp, _ := p.get(t, o.httpURL("/get"), nil); resp.StatusCode != 200 {
			t.Errorf("GET on a dead pooled connection = %d, want 200", resp.StatusCode)
		}
		d.poison()
		if resp := post(p); resp.StatusCode != 200 {
			t.Errorf("POST on a dead pooled connection = %d, want 200 (retried with its buffered body)", resp.StatusCode)
		}
		if gets.Load() != 2 || posts.Load() != 1 {
			t.Errorf("origin got %d GETs and %d POSTs, want 2 and 1", gets.Load(), posts.Load())
		}
		entries := p.waitEntries(t, 3)
		if entries[1].Retries != 1 || entries[2].Retries != 1 {
			t.Errorf("Retries = %d, %d; want 1, 1", entries[1].Retries, entries[2].Retries)
		}
	})

	t.Run("may have reached", func(t *testing.T) {
		gets.Store(0)
		posts.Store(0)
		p := startProxy(t, testConfig())
		hangUp.Store(false)
		p.get(t, o.httpURL("/warm"), nil)
		hangUp.Store(true)
		defer hangUp.Store(false)
		if resp := post(p); resp.StatusCode != http.StatusBadGateway {
			t.Errorf("POST the origin took and dropped = %d, want 502", resp.StatusCode)
		}
		if got := posts.Load(); got != 1 {
			t.Errorf("origin got the POST %d times, want 1 (never replayed)", got)
		}
		// An idempotent request in the same spot is retried once on a
		// fresh connection.
		hangUp.Store(false)
		p.get(t, o.httpURL("/warm"), nil)
		hangUp.Store(true)
		gets.Store(0)
		p.get(t, o.httpURL("/get"), nil)
		if got := gets.Load(); got != 2 {
			t.Errorf("origin got the GET %d times, want 2 (retried once)", got)
		}
	})
}

// Issue 2: a client that goes away cancels its upstream request at once.
//
// Issue 12: without a wall-clock bound: nothing but the client leaving
// can end the origin's wait (no response header timeout fires before
// the test's hang guard), so a cancel seen at all is the client's.
func TestClientGoneCancelsUpstream(t *testing.T) {
	arrived := make(chan struct{})
	canceled := make(chan struct{}, 1)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
			canceled <- struct{}{}
		case <-time.After(3 * testTimeout):
		}
	})
	cfg := testConfig()
	cfg.ResponseHeaderTimeout = time.Hour
	p := startProxy(t, cfg)
	c, _ := rawConn(t, p.addr)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", o.httpURL("/slow"), o.hostPort())
	select {
	case <-arrived:
	case <-time.After(testTimeout):
		t.Fatal("request never reached the origin")
	}
	c.Close()
	select {
	case <-canceled:
	case <-time.After(2 * testTimeout):
		t.Fatalf("origin request not canceled %v after the client left", 2*testTimeout)
	}
	if e := p.waitEntries(t, 1)[0]; e.Status != 499 {
		t.Errorf("access record status = %d, want 499", e.Status)
	}
}

// Issue 2: pooled origin connections idle longer than IdleTimeout are
// closed by the proxy.
func TestPoolIdleTimeout(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cfg := testConfig()
	cfg.IdleTimeout = 100 * time.Millisecond
	p := startProxy(t, cfg)
	p.get(t, o.httpURL("/"), nil)
	start := time.Now()
	waitFor(t, "the idle pooled connection to be closed", func() bool { return o.closedConns.Load() == 1 })
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("closed after %v, want about the 100ms idle timeout", d)
	}
}
