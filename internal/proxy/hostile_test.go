package proxy_test

import (
	"bufio"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hintsOrigin is a raw origin that answers every request on a connection
// with bursts of 103 Early Hints, a little apart, then a final 200. A
// burst goes out in one write, so the proxy's transport finds all but the
// first already buffered: it hands them on one after another, even after
// the request was abandoned.
func hintsOrigin(t *testing.T, bursts, perBurst int, gap time.Duration) string {
	t.Helper()
	hint := "HTTP/1.1 103 Early Hints\r\n" +
		strings.Repeat("Link: </style.css>; rel=preload; as=style\r\n", 300) + "\r\n"
	burst := strings.Repeat(hint, perBurst)
	return rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			for range bursts {
				if _, err := io.WriteString(c, burst); err != nil {
					return
				}
				time.Sleep(gap)
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"); err != nil {
				return
			}
		}
	})
}

// abortingClients sends n requests for target through proxyAddr, conc at
// a time, each on a fresh connection. With abort, each client closes its
// connection after a random 0-60 ms; otherwise it closes it as soon as
// it has read the final response head.
// It returns how many connections could not be opened.
func abortingClients(proxyAddr, target string, n, conc int, abort bool) (dialFails int64) {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		fails atomic.Int64
	)
	raw := "GET " + target + " HTTP/1.1\r\nHost: " + strings.TrimPrefix(target, "http://") + "\r\n\r\n"
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				c, err := net.DialTimeout("tcp", proxyAddr, testTimeout)
				if err != nil {
					fails.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(testTimeout))
				io.WriteString(c, raw)
				if abort {
					time.Sleep(rand.N(60 * time.Millisecond))
				} else {
					readFinalHead(c)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	return fails.Load()
}

// readFinalHead reads response heads from c until a final (non-1xx) one.
func readFinalHead(c net.Conn) {
	br := bufio.NewReader(c)
	for range 32 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode >= 200 {
			return
		}
	}
}

// Issue 12: an origin that keeps sending 103 Early Hints while clients
// abort (or -response-header-timeout fires) must not crash the proxy: a
// late interim response, handed over by the transport's read goroutine
// after the handler returned or answered, is dropped, not written. Before
// the fix this panicked in bufio.(*Writer).Write under
// response.WriteHeader, and the race detector saw got1xx and writeError
// write the same header map.
func TestLateInterimResponses(t *testing.T) {
	for _, tt := range []struct {
		name    string
		n       int
		abort   bool
		timeout time.Duration
	}{
		{"clients abort", 2000, true, 0},
		{"response header timeout", 1000, false, 15 * time.Millisecond},
		{"both", 1000, true, 15 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			target := "http://" + hintsOrigin(t, 3, 5, 5*time.Millisecond) + "/hints"
			cfg := testConfig()
			if tt.timeout > 0 {
				cfg.ResponseHeaderTimeout = tt.timeout
			}
			p := startProxy(t, cfg)
			if fails := abortingClients(p.addr, target, tt.n, 50, tt.abort); fails > 0 {
				t.Errorf("%d of %d client connections could not be opened", fails, tt.n)
			}
			// The proxy survived and still serves: a client that waits
			// gets the final response, or with the short header timeout
			// maybe the 504.
			resp, body := p.get(t, target, nil)
			ok := resp.StatusCode == 200 && body == "final" ||
				tt.timeout > 0 && resp.StatusCode == http.StatusGatewayTimeout
			if !ok {
				t.Errorf("after the flood: %d %q, want 200 final", resp.StatusCode, body)
			}
		})
	}
}
