package h1server

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// body1K is the origin's answer in the allocation test and benchmark.
var body1K = strings.Repeat("x", 1024)

// cannedOrigin answers each request head it reads with one canned
// response, allocating nothing per request.
func cannedOrigin(t testing.TB) string {
	resp := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body1K), body1K))
	return testnet.Serve(t, func(c net.Conn) {
		buf := make([]byte, 8192)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			for {
				i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
				if i < 0 {
					break
				}
				n = copy(buf, buf[i+4:n])
				if _, err := c.Write(resp); err != nil {
					return
				}
			}
		}
	})
}

// rawClient sends one canned proxy request at a time and reads the whole
// answer into a fixed buffer.
type rawClient struct {
	c    net.Conn
	req  []byte
	buf  []byte
	want int
}

func newRawClient(t testing.TB, r *rig, origin string) *rawClient {
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{c: c, buf: make([]byte, 8192),
		req: []byte("GET http://" + origin + "/v1/x HTTP/1.1\r\nHost: " + origin + "\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")}
	// The first answer tells the length of every answer.
	rc.c.SetDeadline(time.Now().Add(hangGuard))
	rc.c.Write(rc.req)
	n := 0
	for {
		m, err := rc.c.Read(rc.buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
		if i := bytes.Index(rc.buf[:n], []byte("\r\n\r\n")); i >= 0 && n-i-4 == len(body1K) {
			rc.want = n
			return rc
		}
	}
}

// do runs one request.
func (rc *rawClient) do() error {
	if _, err := rc.c.Write(rc.req); err != nil {
		return err
	}
	n := 0
	for n < rc.want {
		m, err := rc.c.Read(rc.buf[n:])
		if err != nil {
			return err
		}
		n += m
	}
	if n != rc.want {
		return fmt.Errorf("answer of %d bytes, want %d", n, rc.want)
	}
	return nil
}

// Issue 14: a proxied request of 1 KiB, in steady state on a kept-alive
// client and a pooled origin connection, allocates at most 3 times in
// the whole process (the access-log entry's strings; the record itself
// is a no-op here). Before the connection server, net/http's path made
// 143.
func TestAllocsPerProxiedRequest(t *testing.T) {
	origin := cannedOrigin(t)
	r := newRig(t, config.Default())
	r.noRecord = true
	rc := newRawClient(t, r, origin)
	rc.c.SetDeadline(time.Now().Add(hangGuard))
	var failed error
	allocs := testing.AllocsPerRun(500, func() {
		if err := rc.do(); err != nil && failed == nil {
			failed = err
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	t.Logf("%.2f allocations per proxied 1 KiB request", allocs)
	if allocs > 3 && !raceOn {
		t.Errorf("%.2f allocations per request, want at most 3", allocs)
	}
}

// BenchmarkProxied1KiB is one proxied 1 KiB GET over loopback, client and
// origin kept alive (go test -bench Proxied -benchmem ./internal/h1server).
func BenchmarkProxied1KiB(b *testing.B) {
	origin := cannedOrigin(b)
	r := newRig(b, config.Default())
	r.noRecord = true
	rc := newRawClient(b, r, origin)
	rc.c.SetDeadline(time.Time{})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := rc.do(); err != nil {
			b.Fatal(err)
		}
	}
}
