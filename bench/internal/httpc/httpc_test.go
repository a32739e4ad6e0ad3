package httpc

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRender(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"origin-form", Request{Target: "/x", Host: "h:1"},
			"GET /x HTTP/1.1\r\nHost: h:1\r\nUser-Agent: warmproxy-bench\r\n\r\n"},
		{"absolute-form takes host from target",
			Request{Target: "http://127.0.0.1:9/bytes/1", Header: []string{"X-Real-Protocol: https"}},
			"GET http://127.0.0.1:9/bytes/1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nUser-Agent: warmproxy-bench\r\nX-Real-Protocol: https\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.req.Render()
			if err != nil || string(got) != tt.want {
				t.Errorf("Render() = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
	if _, err := (Request{Target: "/no-host"}).Render(); err == nil {
		t.Errorf("Render() of origin-form without Host: want error")
	}
}

// The origin sees the exact absolute-form target, and Do reads bodies of
// both framings on one kept-alive connection.
func TestDoKeepAlive(t *testing.T) {
	var (
		mu      sync.Mutex
		targets []string
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		targets = append(targets, r.RequestURI)
		mu.Unlock()
		if strings.HasSuffix(r.RequestURI, "chunked") {
			w.Write([]byte("abc"))
			w.(http.Flusher).Flush()
			w.Write([]byte("de"))
			return
		}
		w.Write([]byte("hello"))
	}))
	t.Cleanup(ts.Close)
	addr := strings.TrimPrefix(ts.URL, "http://")
	c, err := Dialer{Addr: addr, Timeout: time.Second}.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, target := range []string{"http://" + addr + "/plain", "/chunked"} {
		req, err := Request{Target: target, Host: addr}.Render()
		if err != nil {
			t.Fatal(err)
		}
		res, err := Do(c, br, req)
		if err != nil || res.Status != 200 || res.BodyBytes != 5 || !res.KeepAlive {
			t.Errorf("Do(%s) = %+v, %v, want 200 with 5 bytes, keep-alive", target, res, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(targets) != 2 || targets[0] != "http://"+addr+"/plain" {
		t.Errorf("origin saw %q, want the absolute target first", targets)
	}
}

// Issue 13: with Connect set, Dial opens a CONNECT tunnel through the
// proxy at Addr first (loadgen -connect, S1's interception row).
func TestDialConnect(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Method + " " + r.RequestURI
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		c.Write([]byte("echo " + line))
	}))
	defer srv.Close()
	d := Dialer{Addr: srv.Listener.Addr().String(), Connect: "origin.test:443", Timeout: 10 * time.Second}
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m := <-got; m != "CONNECT origin.test:443" {
		t.Errorf("proxy got %q, want CONNECT origin.test:443", m)
	}
	c.Write([]byte("hi\n"))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if line != "echo hi\n" {
		t.Errorf("through the tunnel: %q, want %q", line, "echo hi\n")
	}
}
