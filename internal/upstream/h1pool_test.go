package upstream

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
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
// says. Each response's sent receives after the origin is done with it,
// poison included, so a client that waits on it has the stray byte or
// the close in its socket before it asks the pool again. poisoned holds
// the client addresses (the pool's local addresses) of the connections
// poisoned.
type rawOrigin struct {
	ln       net.Listener
	addr     string
	poisonOf func(n int) poison
	sent     chan struct{}
	accepted atomic.Int64
	requests atomic.Int64
	late     atomic.Int64 // requests that arrived on a poisoned connection
	poisoned sync.Map // client addr string -> true
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
		if i > last {
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
			o.poisoned.Store(c.RemoteAddr().String(), true)
			if what == poisonClose {
				c.Close()
			}
		}
		o.sent <- struct{}{}
		if i == last && what == poisonClose {
			return
		}
	}
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
	up, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := up.NewH1Pool(cfg)
	t.Cleanup(p.Close)
	t.Cleanup(up.Transport.CloseIdleConnections)
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
	const rounds = 10000
	alternate := func(n int) poison { return poison(1 + n%2) }
	t.Run("pool", func(t *testing.T) {
		o := startRawOrigin(t, nil, alternate)
		up, p := testH1Pool(t, h1TestConfig())
		key, err := up.H1Key(SchemeHTTP, o.addr)
		if err != nil {
			t.Fatal(err)
		}
		poisoned, reused := runPoolRounds(t, p, key, o, rounds)
		t.Logf("pool: %d requests, %d on reused connections, %d poisoned hand-outs, %d connections", rounds, reused, poisoned, o.accepted.Load())
		if poisoned != 0 {
			t.Errorf("%d poisoned hand-outs in %d, want 0", poisoned, rounds)
		}
		if reused < rounds/4 {
			t.Errorf("%d of %d requests on reused connections: the pool did not pool", reused, rounds)
		}
	})
	t.Run("tls", func(t *testing.T) {
		cfg, srvTLS := tlsTestSetup(t)
		o := startRawOrigin(t, srvTLS, alternate)
		up, p := testH1Pool(t, cfg)
		key, err := up.H1Key(SchemeHTTPS, o.addr)
		if err != nil {
			t.Fatal(err)
		}
		poisoned, reused := runPoolRounds(t, p, key, o, rounds/10)
		t.Logf("pool over TLS: %d requests, %d reused, %d poisoned hand-outs", rounds/10, reused, poisoned)
		if poisoned != 0 {
			t.Errorf("%d poisoned hand-outs over TLS in %d, want 0", poisoned, rounds/10)
		}
		if reused < rounds/40 {
			t.Errorf("%d of %d requests on reused connections: the pool did not pool", reused, rounds/10)
		}
	})
	t.Run("net/http Transport (reference)", func(t *testing.T) {
		o := startRawOrigin(t, nil, alternate)
		up, _ := testH1Pool(t, h1TestConfig())
		// The transport logs each unsolicited byte with log.Printf.
		log.SetOutput(io.Discard)
		t.Cleanup(func() { log.SetOutput(os.Stderr) })
		poisoned, reused := runTransportRounds(t, up.Transport, o, rounds)
		t.Logf("http.Transport: %d requests, %d hand-outs of reused connections, %d of them poisoned", rounds, reused, poisoned)
	})
}

func runPoolRounds(t *testing.T, p *H1Pool, key H1Key, o *rawOrigin, rounds int) (poisoned, reused int) {
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
		pc.Release(true)
		o.waitSent(t)
	}
	return poisoned, reused
}

func runTransportRounds(t *testing.T, tr *http.Transport, o *rawOrigin, rounds int) (poisoned, reused int) {
	t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
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
	}
	return poisoned, reused
}

// tlsTestSetup returns a config trusting a test CA, and the origin's TLS
// settings with a certificate for 127.0.0.1 that CA signed.
func tlsTestSetup(t *testing.T) (config.Config, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "h1pool test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := h1TestConfig()
	cfg.CAFile = path
	srv := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
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

func newPipePool(l h1Limits, stats *Pool) *pipePool {
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
		stats := NewPool()
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
