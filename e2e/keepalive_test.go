package e2e_test

// Issue 8: retirement before the origin's announced keep-alive timeout,
// against Debian's nginx ("keepalive_timeout 2s 2s": close idle
// connections at 2 s and say so in "Keep-Alive: timeout=2"), through the
// built binary.

import (
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// cliFieldRetries is the access log's retries field (accesslog.TSVHeader).
const cliFieldRetries = 11

// delayRelay forwards TCP connections to a target, delaying each chunk
// and the close by half a round trip in each direction, in order: a
// network path where a request and the origin's close can cross.
type delayRelay struct {
	ln    net.Listener
	half  time.Duration
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startDelayRelay(t *testing.T, target string, rtt time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &delayRelay{ln: ln, half: rtt / 2}
	r.wg.Add(1)
	go r.accept(target)
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return ln.Addr().String()
}

func (r *delayRelay) accept(target string) {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		time.Sleep(2 * r.half) // the SYN's round trip
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, c, up)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(up, c)
		go r.pipe(c, up)
	}
}

type relayChunk struct {
	at  time.Time
	b   []byte
	eof bool
}

// pipe copies src to dst, each chunk and the end half a round trip late.
func (r *delayRelay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	ch := make(chan relayChunk, 256)
	r.wg.Add(1)
	go func() { // reader; the writer below drains ch
		defer r.wg.Done()
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- relayChunk{at: time.Now().Add(r.half), b: buf[:n]}
			}
			if err != nil {
				ch <- relayChunk{at: time.Now().Add(r.half), eof: true}
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at))
		if c.eof {
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			continue
		}
		if _, err := dst.Write(c.b); err != nil {
			src.Close() // the other side is gone: end both ways
			dst.Close()
		}
	}
}

// kaRun drives n requests through a fresh warmproxy to nginx behind the
// relay, pausing pause() after each answer, and returns the retries the
// access log counts and the requests that failed.
func kaRun(t *testing.T, ngx *cliNginx, relay string, honor bool, n int, pause func() time.Duration) (retries, failed int) {
	t.Helper()
	proxy := cliStartProxy(t, "-ca-file", ngx.CAFile, "-honor-keepalive-timeout="+strconv.FormatBool(honor))
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxy.Addr}), DisableKeepAlives: true}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	target := "http://" + relay + "/ka"
	for i := range n {
		if i > 0 {
			time.Sleep(pause())
		}
		req, _ := http.NewRequestWithContext(t.Context(), "GET", target, nil)
		req.Header.Set("X-Real-Protocol", "https")
		resp, err := client.Do(req)
		if err != nil {
			failed++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failed++
		}
	}
	for _, r := range proxy.cliAccessRecords(t, n, "https://"+relay+"/ka") {
		k, _ := strconv.Atoi(r[cliFieldRetries])
		retries += k
	}
	return retries, failed
}

// Issue 8: nginx closes idle connections at 2 s and announces it; behind
// an 80 ms round trip a request sent just before 2 s meets the close.
// With retirement on, warmproxy has closed that connection at 1.5 s and
// dials a new one: no retry. With it off, the request goes out on the
// closing connection and is retried. WARMPROXY_KA_SAMPLES=N runs N
// requests per mode with pauses drawn from 1.9-2.1 s instead, for the
// numbers in issue 8.
func TestCLINginxKeepAliveRetirement(t *testing.T) {
	ngx := cliStartNginx(t, cliNginxKeepalive)
	relay := startDelayRelay(t, ngx.Addr, 80*time.Millisecond)
	n, pause := 4, func() time.Duration {
		// Inside (2 s - RTT, 2 s): the request crosses nginx's close.
		return 1955*time.Millisecond + rand.N(30*time.Millisecond)
	}
	samples, _ := strconv.Atoi(os.Getenv("WARMPROXY_KA_SAMPLES"))
	if samples > 0 {
		n, pause = min(samples, 200), func() time.Duration {
			return 1900*time.Millisecond + rand.N(200*time.Millisecond)
		}
	}
	// The two modes share nginx and the relay but each has its own
	// warmproxy and connections, and both mostly sleep: run them at once.
	for _, honor := range []bool{true, false} {
		t.Run("honor="+strconv.FormatBool(honor), func(t *testing.T) {
			t.Parallel()
			retries, failed := kaRun(t, ngx, relay, honor, n, pause)
			t.Logf("%s, %d requests, honor-keepalive-timeout=%v: %d retries, %d failed", ngx.Version, n, honor, retries, failed)
			if failed > 0 {
				t.Errorf("%d requests failed, want 0", failed)
			}
			switch {
			case samples > 0:
			case honor && retries != 0:
				t.Errorf("%d retries with retirement on, want 0", retries)
			case !honor && retries == 0:
				t.Errorf("no retry with retirement off: the pauses did not meet nginx's close, so this test proves nothing")
			}
		})
	}
}
