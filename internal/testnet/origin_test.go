package testnet

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// ServeRequests answers request after request on one connection, bodies
// read, until answer says to close.
func TestServeRequests(t *testing.T) {
	addr := ServeRequests(t, func(c net.Conn, r *http.Request, body []byte) bool {
		out := r.URL.Path + " " + string(body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(out), out)
		return r.URL.Path != "/last"
	})
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /last HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"/a hi", "/last "} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer %q: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Errorf("answer = %q, want %q", b, want)
		}
	}
	if n, err := br.ReadByte(); err == nil {
		t.Errorf("read %q after the last answer, want the connection closed", n)
	}
}

// OnNew counts connections, not requests: two requests on one keep-alive
// connection count once.
func TestOnNew(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = OnNew(func() { n.Add(1) })
	srv.Start()
	t.Cleanup(srv.Close)
	c := srv.Client()
	for range 2 {
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if got := n.Load(); got != 1 {
		t.Errorf("OnNew counted %d connections for two keep-alive requests, want 1", got)
	}
}
