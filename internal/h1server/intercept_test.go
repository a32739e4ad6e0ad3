package h1server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// Issue 14 with issue 13: the HTTP/1.1 requests inside an intercepted
// tunnel take the new path: origin-form requests for the tunnel's
// authority go to https://target over one pooled TLS connection, logged
// as intercepted, the origin's field case kept (net/http would have
// canonicalized it); a request naming another authority is handed over
// (the Handler answers 421).
func TestServeIntercepted(t *testing.T) {
	var conns atomic.Int32
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["x-lower"] = []string{"kept"}
		fmt.Fprintf(w, "hello %s %s", r.Host, r.URL.Path)
	}))
	origin.Config.ConnState = testnet.OnNew(func() { conns.Add(1) })
	origin.StartTLS()
	t.Cleanup(origin.Close)
	target := strings.TrimPrefix(origin.URL, "https://")
	cfg := config.Default()
	cfg.CAFile = testnet.CAFile(t, origin.Certificate())
	r := newRig(t, cfg)
	var handed atomic.Int32
	inner := testnet.Serve(t, func(c net.Conn) {
		r.cs.ServeIntercepted(c, target, func(c net.Conn) {
			handed.Add(1)
			c.Close()
		})
	})
	c, err := net.Dial("tcp", inner)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 2 {
		fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: %s\r\n\r\n", target)
		head := readHead(t, br)
		if !strings.Contains(head, "x-lower: kept\r\n") {
			t.Errorf("request %d: head lacks the origin's x-lower field as sent:\n%s", i, head)
		}
		resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(head), br)), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if want := "hello " + target + " /x"; resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
	}
	waitIdle(t, r)
	log := r.log()
	if len(log) != 2 || log[0].Kind != accesslog.KindIntercepted || log[0].URL != "https://"+target+"/x" || !log[1].Reused {
		t.Errorf("entries %+v, want 2 intercepted for https://%s/x, the second reused", log, target)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("origin saw %d connections, want 1", n)
	}
	fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: other.test\r\n\r\n")
	if _, err := br.ReadByte(); err != io.EOF || handed.Load() != 1 {
		t.Errorf("request for another authority: read %v, %d hand-overs; want it handed over", err, handed.Load())
	}
}
