package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

func TestParseKeepAliveTimeout(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want time.Duration
		ok   bool
	}{
		{[]string{"timeout=5, max=100"}, 5 * time.Second, true},
		{[]string{"max=100, Timeout=2"}, 2 * time.Second, true},
		{[]string{"max=100", "timeout = 3"}, 3 * time.Second, true},
		{[]string{`timeout="4"`}, 4 * time.Second, true},
		{[]string{"timeout=0"}, 0, false},
		{[]string{"timeout=-1"}, 0, false},
		{[]string{"timeout=abc"}, 0, false},
		{[]string{"timeout=999999999"}, 0, false},
		{[]string{"timeout=86400"}, 24 * time.Hour, true},
		{[]string{"timeout=86401"}, 0, false},
		// Issue 12: n*time.Second overflowed before the 24 h check, and
		// these wrapped around to a short, positive timeout.
		{[]string{"timeout=18446744075"}, 0, false},
		{[]string{"timeout=9223372037"}, 0, false},
		{[]string{"timeout=99999999999999999999999"}, 0, false},
		{[]string{"max=5"}, 0, false},
		{[]string{""}, 0, false},
		{nil, 0, false},
	} {
		got, ok := parseKeepAliveTimeout(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseKeepAliveTimeout(%q) = %v, %v, want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRetireAfter(t *testing.T) {
	for _, tt := range []struct{ in, want time.Duration }{
		{time.Second, 500 * time.Millisecond},
		{2 * time.Second, 1500 * time.Millisecond},
		{5 * time.Second, 4500 * time.Millisecond},
		{60 * time.Second, 54 * time.Second},
	} {
		if got := retireAfter(tt.in); got != tt.want {
			t.Errorf("retireAfter(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// kaOrigin is an HTTP/1.1 origin on a raw listener that announces
// "Keep-Alive: timeout=N" (when announce is set) and closes a connection
// idle N. A request that arrives in the last band before N crosses the
// origin's close, as it does on a real network when the origin's timer
// fires while the request is on the wire: the origin closes without an
// answer.
type kaOrigin struct {
	addr     string
	timeout  time.Duration
	band     time.Duration
	announce bool
	accepts  atomic.Int64
	stale    atomic.Int64 // requests that met a closing connection
}

func startKAOrigin(t *testing.T, timeout, band time.Duration, announce bool) *kaOrigin {
	t.Helper()
	o := &kaOrigin{timeout: timeout, band: band, announce: announce}
	o.addr = testnet.Serve(t, func(c net.Conn) {
		o.accepts.Add(1)
		o.serve(c)
	})
	return o
}

// pipeKAOrigin is a kaOrigin for synctest bubbles: it has no listener,
// and serves each connection its dial hands out over net.Pipe.
func pipeKAOrigin(timeout, band time.Duration, announce bool) *kaOrigin {
	return &kaOrigin{addr: "origin.test:80", timeout: timeout, band: band, announce: announce}
}

func (o *kaOrigin) dial(context.Context, string, string) (net.Conn, error) {
	c, s := net.Pipe()
	o.accepts.Add(1)
	go o.serve(s)
	return c, nil
}

// newPipeUpstream is the pool and transport of New with the given
// -honor-keepalive-timeout, dialing o over pipes, for a synctest bubble.
func newPipeUpstream(t *testing.T, o *kaOrigin, honor bool) (*Tracker, http.RoundTripper) {
	t.Helper()
	p := NewTracker()
	p.honorKeepAlive = honor
	tr := &http.Transport{DialContext: o.dial}
	p.instrument(tr, newTLSStep(nil, tr))
	t.Cleanup(tr.CloseIdleConnections)
	return p, p.Wrap(tr)
}

func (o *kaOrigin) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	idleSince := time.Now()
	for {
		c.SetReadDeadline(idleSince.Add(o.timeout))
		req, err := http.ReadRequest(br)
		if err != nil {
			return // idle too long, or the client closed
		}
		if time.Since(idleSince) >= o.timeout-o.band {
			o.stale.Add(1)
			return
		}
		c.SetReadDeadline(time.Time{})
		io.Copy(io.Discard, req.Body)
		head := "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n"
		if o.announce {
			head += "Keep-Alive: timeout=" + strings.TrimSuffix(o.timeout.String(), "s") + ", max=1000\r\n"
		}
		switch req.URL.Path {
		case "/slow": // the head comes late
			time.Sleep(3 * o.timeout / 2)
			io.WriteString(c, head+"\r\nbody")
		case "/pause": // the body pauses midway
			io.WriteString(c, head+"\r\nbo")
			time.Sleep(3 * o.timeout / 2)
			io.WriteString(c, "dy")
		default:
			io.WriteString(c, head+"\r\nbody")
		}
		idleSince = time.Now()
	}
}

// getCounting sends GET url through rt and returns how many connections
// the request took (more than one: the transport retried) and whether the
// first was reused.
func getCounting(t *testing.T, rt http.RoundTripper, url string) (conns int, reused bool) {
	t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if conns++; conns == 1 {
			reused = info.Reused
		}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "body" {
		t.Fatalf("GET %s: body %q, %v", url, body, err)
	}
	return conns, reused
}

func newTestUpstream(t *testing.T, cfg config.Config) *Upstream {
	t.Helper()
	leaks := goleak.IgnoreCurrent()
	up, err := New(config.MustParse(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		up.Close()
		goleak.VerifyNone(t, leaks)
	})
	return up
}

// Issue 8: an origin that announces "Keep-Alive: timeout=1" and closes
// idle connections at 1 s: requests spaced just under 1 s meet no stale
// connection with retirement on, and do with it off.
func TestKeepAliveRetirement(t *testing.T) {
	for _, tt := range []struct {
		name  string
		honor bool
	}{
		{"on", true},
		{"off", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := pipeKAOrigin(time.Second, 200*time.Millisecond, true)
				pool, rt := newPipeUpstream(t, o, tt.honor)
				url := "http://" + o.addr + "/"
				retries := 0
				for i := range 4 {
					if i > 0 {
						time.Sleep(900 * time.Millisecond)
					}
					n, _ := getCounting(t, rt, url)
					retries += n - 1
				}
				st := pool.Hosts()[0]
				t.Logf("retries %d, stale hits at the origin %d, retired %d, accepts %d", retries, o.stale.Load(), st.Retired, o.accepts.Load())
				if tt.honor {
					if retries != 0 || o.stale.Load() != 0 {
						t.Errorf("with retirement: %d retries, %d requests met a closing connection, want 0", retries, o.stale.Load())
					}
					if st.Retired < 3 || st.KeepAliveTimeout != 1 {
						t.Errorf("retired %d, keep-alive timeout %vs, want 3 or more and 1s", st.Retired, st.KeepAliveTimeout)
					}
				} else {
					if retries == 0 || o.stale.Load() == 0 {
						t.Errorf("without retirement: %d retries, %d stale hits, want some (else this test proves nothing)", retries, o.stale.Load())
					}
					if st.Retired != 0 {
						t.Errorf("retired %d with -honor-keepalive-timeout=false, want 0", st.Retired)
					}
				}
			})
		})
	}
}

// Retirement never cuts a request in flight: a head that comes after the
// limit, a body that pauses past it.
func TestKeepAliveRetirementSparesBusyConns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := pipeKAOrigin(time.Second, 0, true)
		pool, rt := newPipeUpstream(t, o, config.Default().HonorKeepAliveTimeout)
		base := "http://" + o.addr
		getCounting(t, rt, base+"/") // learn the timeout
		for _, path := range []string{"/slow", "/pause"} {
			if n, reused := getCounting(t, rt, base+path); n != 1 || !reused {
				t.Errorf("GET %s took %d connections (reused %v), want 1 reused", path, n, reused)
			}
		}
		if st := pool.Hosts()[0]; st.Retired != 0 {
			t.Errorf("retired %d connections while requests used them, want 0", st.Retired)
		}
	})
}

// An idle connection is retired even while another request to the same
// origin is in flight on a second connection: under steady load the
// surplus idle connections are the ones that meet the origin's close.
func TestKeepAliveRetiresIdleConnUnderLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := pipeKAOrigin(time.Second, 0, true)
		pool, rt := newPipeUpstream(t, o, config.Default().HonorKeepAliveTimeout)
		base := "http://" + o.addr
		getCounting(t, rt, base+"/") // learn the timeout
		// Two connections: the slow request holds one for 1.5 s; the other,
		// used once alongside it and then idle, must be retired meanwhile.
		slow := make(chan struct{})
		go func() {
			defer close(slow)
			getCounting(t, rt, base+"/slow")
		}()
		testnet.WaitUntil(t, 5*time.Second, "the slow request to be in flight", func() bool { return pool.Hosts()[0].InFlight == 1 })
		getCounting(t, rt, base+"/")
		if got := o.accepts.Load(); got != 2 {
			t.Fatalf("origin accepted %d connections, want 2", got)
		}
		// The idle one is retired 0.5 s after its last use, while the slow
		// request (1.5 s) is still in flight.
		testnet.WaitUntil(t, 5*time.Second, "the idle connection to be retired", func() bool { return pool.Hosts()[0].Retired == 1 })
		if st := pool.Hosts()[0]; st.InFlight != 1 {
			t.Errorf("retired while %d requests were in flight, want it while the slow one (1) still was", st.InFlight)
		}
		<-slow
		if st := pool.Hosts()[0]; st.Retired != 1 {
			t.Errorf("retired %d connections, want 1: never the one the slow request held", st.Retired)
		}
	})
}

// The race: the transport takes an idle connection from its pool in the
// instant it is retired. The request, having written nothing, is sent
// again on a new connection, and the client sees no error.
func TestRetiredConnRetries(t *testing.T) {
	o := startKAOrigin(t, 60*time.Second, 0, true)
	up := newTestUpstream(t, config.Default())
	rt := up.Tracker().Wrap(up.Transport())
	url := "http://" + o.addr + "/"
	var first *trackedConn
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		first, _ = info.Conn.(*trackedConn)
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if first == nil {
		t.Fatal("the transport's connection is not a *trackedConn")
	}
	first.last.Store(retiredMark) // checkIdle's CompareAndSwap won; its Close is yet to come
	n, reused := getCounting(t, rt, url)
	if n != 2 || !reused {
		t.Errorf("request on the retired connection took %d connections (first reused %v), want 2: the retired one, then a new one", n, reused)
	}
	if got := o.accepts.Load(); got != 2 {
		t.Errorf("origin accepted %d connections, want 2", got)
	}
}

// Issue 12: an origin announcing "Keep-Alive: timeout=18446744075" (past
// the 24 h bound) is not believed: no keep-alive timeout is learned, and
// its idle connection stays pooled instead of being retired after the
// 1.29 s the overflowed product came to.
func TestKeepAliveTimeoutOverflowIgnored(t *testing.T) {
	o := startCountingOrigin(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Keep-Alive", "timeout=18446744075, max=100")
		io.WriteString(w, "body")
	})
	up := newTestUpstream(t, config.Default())
	rt := up.Tracker().Wrap(up.Transport())
	url := o.srv.URL + "/"
	getCounting(t, rt, url)
	st := up.Tracker().Hosts()[0]
	if st.KeepAliveTimeout != 0 {
		t.Fatalf("learned keep-alive timeout %vs from timeout=18446744075, want none", st.KeepAliveTimeout)
	}
	if n, reused := getCounting(t, rt, url); n != 1 || !reused {
		t.Errorf("second request took %d connections (reused %v), want 1 reused", n, reused)
	}
	if st := up.Tracker().Hosts()[0]; st.Retired != 0 || o.accepts.Load() != 1 {
		t.Errorf("retired %d, origin accepted %d, want 0 and 1", st.Retired, o.accepts.Load())
	}
}
