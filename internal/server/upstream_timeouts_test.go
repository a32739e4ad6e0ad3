package server_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// hangGuard bounds each wait in these tests: far above the 100ms bounds
// they set, far below the -dial-timeout of an hour that each of those
// bounds fell back to before it had its own setting.
const hangGuard = 20 * time.Second

// silent serves connections that are read and never answered.
func silent(t *testing.T) string {
	return testnet.Serve(t, func(c net.Conn) { io.Copy(io.Discard, c) })
}

// Issue 16: -upstream-queue-timeout, not -dial-timeout, bounds the wait
// for a free connection at -max-conns-per-host: with the one connection
// busy, a second request gets 503 after 100ms, though dial-timeout is an
// hour.
func TestUpstreamQueueTimeout(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			held <- struct{}{}
			<-release
		}
	}))
	defer origin.Close()
	defer close(release)
	cfg := config.Default()
	cfg.MaxConnsPerHost, cfg.DialTimeout, cfg.UpstreamQueueTimeout = 1, time.Hour, 100*time.Millisecond
	r := start(t, cfg)
	c := freshClient(t, r.addr)
	c.Timeout = hangGuard
	go func() {
		if resp, err := c.Get(origin.URL + "/hold"); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-held:
	case <-time.After(hangGuard):
		t.Fatal("the first request did not reach the origin")
	}
	resp, err := c.Get(origin.URL + "/next")
	if err != nil {
		t.Fatalf("second request: %v (it waited for -dial-timeout, not -upstream-queue-timeout)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request: %s, Retry-After %q; want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
}

// Issue 16: -upstream-parent-timeout, not -dial-timeout, bounds the
// handshake with -parent-proxy: a parent that accepts and never answers
// CONNECT fails the tunnel after 100ms, though dial-timeout is an hour.
func TestUpstreamParentTimeout(t *testing.T) {
	cfg := config.Default()
	cfg.ParentProxy = "http://" + silent(t)
	cfg.DialTimeout, cfg.UpstreamParentTimeout = time.Hour, 100*time.Millisecond
	r := start(t, cfg)
	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hangGuard))
	io.WriteString(conn, "CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT through a silent parent: %v (the handshake waited for -dial-timeout, not -upstream-parent-timeout)", err)
	}
	resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Errorf("CONNECT through a silent parent: %s, want a 5xx", resp.Status)
	}
}

// Issue 16: -upstream-prewarm-timeout, not -dial-timeout plus
// -tls-handshake-timeout, bounds opening a prewarm connection: with an
// origin that accepts and never answers the TLS handshake, the first round
// of prewarm dials fails after 100ms and /readyz answers 200, though both
// of the others are an hour.
func TestUpstreamPrewarmTimeout(t *testing.T) {
	cfg := config.Default()
	cfg.Prewarm = "https://" + silent(t)
	cfg.DialTimeout, cfg.TLSHandshakeTimeout, cfg.UpstreamPrewarmTimeout = time.Hour, time.Hour, 100*time.Millisecond
	r := start(t, cfg)
	deadline := time.Now().Add(hangGuard)
	for {
		if code, _, _ := direct(t, r.addr, "/readyz"); code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz not 200: the prewarm dial waited for -dial-timeout plus -tls-handshake-timeout, not -upstream-prewarm-timeout")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
