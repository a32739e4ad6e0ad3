package server_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// h2cRaw is a raw h2c client connection on an http2.Framer, to send what
// no well-behaved client would: hundreds of streams at once, streams reset
// right after their HEADERS. A goroutine reads every frame, acknowledges
// SETTINGS and counts the response statuses and stream resets.
type h2cRaw struct {
	c    net.Conn
	mu   sync.Mutex // guards fr's writes, enc and buf
	fr   *http2.Framer
	enc  *hpack.Encoder
	buf  bytes.Buffer
	next uint32
	done chan struct{}

	statusMu sync.Mutex
	statuses map[string]int
	resets   atomic.Int64
	goAway   atomic.Bool
}

func dialH2C(t *testing.T, addr string) *h2cRaw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &h2cRaw{c: c, next: 1, done: make(chan struct{}), statuses: map[string]int{}}
	h.fr = http2.NewFramer(c, c)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.buf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go h.read()
	t.Cleanup(func() { c.Close(); <-h.done })
	return h
}

func (h *h2cRaw) read() {
	defer close(h.done)
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.mu.Lock()
				h.fr.WriteSettingsAck()
				h.mu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s != "" {
				h.statusMu.Lock()
				h.statuses[s]++
				h.statusMu.Unlock()
			}
		case *http2.RSTStreamFrame:
			h.resets.Add(1)
		case *http2.GoAwayFrame:
			h.goAway.Store(true)
		}
	}
}

// get opens a stream for GET http://authority/ and returns its ID; with
// reset, RST_STREAM(CANCEL) follows at once.
func (h *h2cRaw) get(authority string, reset bool) (uint32, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.getLocked(authority, reset)
}

// flood opens n streams for GET http://authority/, waits pause, and
// resets them all: by then their handlers run.
func (h *h2cRaw) flood(authority string, n int, pause time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := h.next
	for range n {
		if _, err := h.getLocked(authority, false); err != nil {
			return err
		}
	}
	time.Sleep(pause)
	for id := first; id < h.next; id += 2 {
		if err := h.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			return err
		}
	}
	return nil
}

func (h *h2cRaw) getLocked(authority string, reset bool) (uint32, error) {
	id := h.next
	h.next += 2
	h.buf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", authority}, {":path", "/"}} {
		h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.buf.Bytes(), EndStream: true, EndHeaders: true})
	if err == nil && reset {
		err = h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	return id, err
}

func (h *h2cRaw) status(code string) int {
	h.statusMu.Lock()
	defer h.statusMu.Unlock()
	return h.statuses[code]
}

// slowOrigin holds every request until release is closed (or 30 s),
// counting connections, requests (but those to /other) and those in its
// handler now.
type slowOrigin struct {
	srv                      *httptest.Server
	conns, requests, holding atomic.Int64
	release                  chan struct{}
	once                     sync.Once
}

func startSlowOrigin(t *testing.T, hold bool) *slowOrigin {
	t.Helper()
	o := &slowOrigin{release: make(chan struct{})}
	if !hold {
		o.free()
	}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/other" {
			io.WriteString(w, "ok")
			return
		}
		o.requests.Add(1)
		o.holding.Add(1)
		defer o.holding.Add(-1)
		select {
		case <-o.release:
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		io.WriteString(w, "ok")
	}))
	o.srv.Config.ConnState = testnet.OnNew(func() { o.conns.Add(1) })
	o.srv.Start()
	t.Cleanup(func() { o.free(); o.srv.Close() })
	return o
}

func (o *slowOrigin) free() { o.once.Do(func() { close(o.release) }) }

// waitStable polls f until it has not changed for 300 ms, at most 30 s
// (a hang-guard), and returns its last value.
func waitStable(f func() int64) int64 {
	last, since := f(), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if v := f(); v != last {
			last, since = v, time.Now()
		} else if time.Since(since) >= 300*time.Millisecond {
			break
		}
	}
	return last
}

// Issue 12: with -max-client-conns 10, five h2c connections of 250
// streams each to a slow origin made 1,212 origin connections: streams
// escaped the client limits. Now each connection carries at most
// -client-h2c-max-streams (100) streams, and -max-requests-in-flight
// bounds them all: past it, 503 with Retry-After.
func TestH2CStreamsBounded(t *testing.T) {
	for _, tt := range []struct {
		name      string
		inFlight  int
		wantConns int64 // the most origin connections
		want503   bool
	}{
		{"defaults", config.Default().MaxRequestsInFlight, int64(5 * config.Default().ClientH2CMaxStreams), false},
		{"max-requests-in-flight 300", 300, 300, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := startSlowOrigin(t, true)
			cfg := config.Default()
			cfg.MaxClientConns = 10
			cfg.MaxRequestsInFlight = tt.inFlight
			r := start(t, cfg)
			authority := o.srv.Listener.Addr().String()
			var clients []*h2cRaw
			for range 5 {
				h := dialH2C(t, r.addr)
				clients = append(clients, h)
				for range 250 {
					if _, err := h.get(authority, false); err != nil {
						t.Fatalf("sending HEADERS: %v", err)
					}
				}
			}
			answered := func() int64 {
				var n int64
				for _, h := range clients {
					n += int64(h.status("503")) + h.resets.Load()
				}
				return n + o.holding.Load()
			}
			waitStable(answered)
			conns, holding := o.conns.Load(), o.holding.Load()
			var busy, refused int64
			for _, h := range clients {
				busy += int64(h.status("503"))
				refused += h.resets.Load()
			}
			t.Logf("1250 streams on 5 conns: %d origin connections, %d requests held at the origin, %d answered 503, %d streams refused (RST_STREAM)",
				conns, holding, busy, refused)
			if conns > tt.wantConns {
				t.Errorf("%d origin connections, want at most %d", conns, tt.wantConns)
			}
			if tt.want503 && busy == 0 {
				t.Errorf("no 503 past -max-requests-in-flight %d", tt.inFlight)
			}
			o.free()
			// The proxy keeps serving.
			if code, body := get(t, freshClient(t, r.addr), o.srv.URL+"/", ""); code != 200 || body != "ok" {
				t.Errorf("a request after the flood: %d %q, want 200 ok", code, body)
			}
		})
	}
}

// Issue 12: one h2c connection sending 20,000 HEADERS+RST_STREAM pairs
// made 16,284 origin requests and 2,150 new origin connections. Here the
// pairs go in batches of 100 HEADERS, then their 100 RST_STREAMs 2 ms
// later, so that each reset meets a request under way to a slow origin.
// Now a stream reset before its handler starts is not served, a reset one
// cancels its dial, and the connection is closed once most of its streams
// were reset: the origin sees few requests and connections, and another
// client is served meanwhile.
func TestH2CRapidResetBounded(t *testing.T) {
	o := startSlowOrigin(t, true)
	r := start(t, config.Default())
	authority := o.srv.Listener.Addr().String()
	h := dialH2C(t, r.addr)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// Another client, meanwhile: its latencies, one request at a time.
	stop := make(chan struct{})
	var lat []time.Duration
	var other sync.WaitGroup
	other.Go(func() {
		c := freshClient(t, r.addr)
		for i := 0; i < 2000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			if code, _ := get(t, c, o.srv.URL+"/other", ""); code == 200 {
				lat = append(lat, time.Since(t0))
			}
		}
	})
	const pairs, batch = 20000, 100
	sent := 0
	for deadline := time.Now().Add(30 * time.Second); sent < pairs && time.Now().Before(deadline); sent += batch {
		if err := h.flood(authority, batch, 2*time.Millisecond); err != nil {
			break
		}
	}
	requests := waitStable(o.requests.Load)
	closed := false
	select {
	case <-h.done:
		closed = true
	case <-time.After(10 * time.Second):
	}
	close(stop)
	other.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	slices.Sort(lat)
	var median time.Duration
	if len(lat) > 0 {
		median = lat[len(lat)/2]
	}
	conns := o.conns.Load()
	t.Logf("%d HEADERS+RST_STREAM pairs sent (connection closed by the proxy %v): %d origin requests, %d origin connections; heap in use %d -> %d KiB; other client: %d requests, median %v",
		sent, closed, requests, conns, before.HeapInuse>>10, after.HeapInuse>>10, len(lat), median)
	if !closed {
		t.Errorf("the proxy kept the connection that reset %d streams open", sent)
	}
	// Closed after some 100 resets: a few dozen requests and, with the
	// 32 dials at a time, some 100 connections; unbounded, thousands.
	if requests > 500 {
		t.Errorf("%d origin requests for reset streams, want at most 500", requests)
	}
	if conns > 200 {
		t.Errorf("%d origin connections for reset streams, want at most 200", conns)
	}
	if len(lat) == 0 {
		t.Errorf("the other client got no answer during the flood")
	}
}

// Issue 12: -max-requests-in-flight counts HTTP/1.1 requests and open
// CONNECT tunnels too; past it a request gets 503 with Retry-After and a
// Proxy-Status naming the limit, and the place is free again once the
// tunnel closes.
func TestMaxRequestsInFlightHTTP1(t *testing.T) {
	o := startSlowOrigin(t, false)
	cfg := config.Default()
	cfg.MaxRequestsInFlight = 1
	cfg.ConnectPorts = "*"
	r := start(t, cfg)
	tun, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	target := o.srv.Listener.Addr().String()
	io.WriteString(tun, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	tun.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(tun), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v, %v", resp, err)
	}
	req, _ := http.NewRequest(http.MethodGet, o.srv.URL+"/", nil)
	busy, err := freshClient(t, r.addr).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(busy.Body)
	busy.Body.Close()
	ps := busy.Header.Get("Proxy-Status")
	if busy.StatusCode != http.StatusServiceUnavailable || busy.Header.Get("Retry-After") != "1" ||
		!strings.Contains(ps, "error=connection_limit_reached") || !strings.Contains(string(body), "max-requests-in-flight 1") {
		t.Errorf("GET with the tunnel open: %d, Retry-After %q, Proxy-Status %q, body %q; want 503 naming max-requests-in-flight",
			busy.StatusCode, busy.Header.Get("Retry-After"), ps, body)
	}
	tun.Close()
	// The tunnel's place is given back when its handler ends.
	var code int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, _ = get(t, freshClient(t, r.addr), o.srv.URL+"/", ""); code == http.StatusOK {
			break
		}
	}
	if code != http.StatusOK {
		t.Errorf("GET after the tunnel closed: %d, want 200", code)
	}
}
