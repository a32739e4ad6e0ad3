package server_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// basicAuth is a Proxy-Authorization (or Authorization) value.
func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// keptConn is one client keep-alive connection to the proxy sending
// absolute-form GETs.
type keptConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialKept(t *testing.T, addr string) *keptConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keptConn{c: c, br: bufio.NewReader(c)}
}

// get sends GET target with the Proxy-Authorization value auth (none if
// empty) and returns the status code, or an error.
func (k *keptConn) get(target, auth string) (int, error) {
	k.c.SetDeadline(time.Now().Add(60 * time.Second))
	hdr := ""
	if auth != "" {
		hdr = "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n", target, hdr); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// quantile returns the q quantile (0 to 1) of d.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*q)]
}

func median(d []time.Duration) time.Duration { return quantile(d, 0.5) }

// Issue 12: wrong passwords must cost little after the first try, and a
// valid, cached user must not be slowed by a flood of them. 400 wrong
// tries (one value; with WARMPROXY_MEASURE_DISTINCT=1 also 400 distinct
// values) from 40 connections, at the default bcrypt cost, while a valid
// user sends requests on a kept connection. It asserts statuses only; the
// valid user's median latency idle and during the flood is reported with
// t.Log (no wall-clock assertion).
func TestWrongPasswordFlood(t *testing.T) {
	o, _ := countingOrigin(t)
	cfg := config.Default()
	cfg.ProxyAuthFile = testnet.Htpasswd(t, "php", "right", bcrypt.DefaultCost)
	p := start(t, cfg)
	good := basicAuth("php", "right")
	valid := dialKept(t, p.addr)
	if code, err := valid.get(o.URL+"/warm", good); err != nil || code != 200 {
		t.Fatalf("valid user's first request = %d, %v; want 200", code, err)
	}
	var idle []time.Duration
	for range 50 {
		start := time.Now()
		if code, err := valid.get(o.URL+"/idle", good); err != nil || code != 200 {
			t.Fatalf("valid user idle = %d, %v; want 200", code, err)
		}
		idle = append(idle, time.Since(start))
	}
	variants := []struct {
		name     string
		distinct bool
	}{{"same wrong value", false}}
	if os.Getenv("WARMPROXY_MEASURE_DISTINCT") == "1" {
		variants = append(variants, struct {
			name     string
			distinct bool
		}{"distinct wrong values", true})
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			const conns, tries = 40, 10
			var wg sync.WaitGroup
			done := make(chan struct{})
			codes := make(chan int, conns*tries)
			start := time.Now()
			for i := range conns {
				k := dialKept(t, p.addr)
				wg.Go(func() {
					for j := range tries {
						pass := "wrong"
						if v.distinct {
							pass = fmt.Sprintf("wrong-%d-%d", i, j)
						}
						code, err := k.get(o.URL+"/flood", basicAuth("php", pass))
						if err != nil {
							t.Errorf("wrong try: %v", err)
							return
						}
						codes <- code
					}
				})
			}
			go func() { wg.Wait(); close(done) }()
			var during []time.Duration
		loop:
			for len(during) < 2000 {
				select {
				case <-done:
					break loop
				default:
				}
				s := time.Now()
				if code, err := valid.get(o.URL+"/during", good); err != nil || code != 200 {
					t.Fatalf("valid user during the flood = %d, %v; want 200", code, err)
				}
				during = append(during, time.Since(s))
			}
			<-done
			flood := time.Since(start)
			close(codes)
			count := map[int]int{}
			for c := range codes {
				count[c]++
			}
			for c := range count {
				if c != http.StatusProxyAuthRequired && c != http.StatusServiceUnavailable {
					t.Errorf("wrong tries answered %v, want only 407 (or 503 past the bcrypt queue)", count)
				}
			}
			t.Logf("valid user median: idle %v, during %d wrong tries %v (%.1fx; p90 %v, max %v, %d samples); flood took %v; answers %v",
				median(idle), conns*tries, median(during), float64(median(during))/float64(median(idle)),
				quantile(during, 0.9), quantile(during, 1), len(during), flood.Round(time.Millisecond), count)
		})
	}
}
