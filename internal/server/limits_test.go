package server

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
)

type nopTracker struct{}

func (nopTracker) Track(net.Conn) func() { return func() {} }

func newTestLimits(t *testing.T, set func(*config.Config)) (*limits, net.Listener, *strings.Builder) {
	t.Helper()
	cfg := config.Default()
	set(&cfg)
	var logs strings.Builder
	clients, err := acl.ParseClients(acl.SplitList(cfg.AllowClients))
	if err != nil {
		t.Fatal(err)
	}
	l := newLimits(config.MustParse(cfg), func() *acl.Clients { return clients }, slog.New(slog.NewTextHandler(&logs, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return l, l.listener(ln), &logs
}

// Issue 6: a client outside -allow-clients is reset at accept and never
// reaches the server.
func TestLimitsRefuseClients(t *testing.T) {
	_, ln, logs := newTestLimits(t, func(c *config.Config) { c.AllowClients = "127.0.0.1/32" })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	// The reset may come before connect(2) returns: an error is a refusal
	// too.
	if bad, err := d.Dial("tcp", ln.Addr().String()); err == nil {
		bad.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, _ := bad.Read(make([]byte, 1)); n != 0 {
			t.Error("refused client read a byte")
		}
		bad.Close()
	}
	good, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	select {
	case c := <-accepted:
		if got := c.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.1" {
			t.Errorf("accepted a client from %s, want only 127.0.0.1", got)
		}
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("allowed client never accepted")
	}
	ln.Close()
	for c := range accepted {
		t.Errorf("extra accepted conn from %v", c.RemoteAddr())
		c.Close()
	}
	if !strings.Contains(logs.String(), "not in -allow-clients") {
		t.Errorf("refusal not logged: %q", logs.String())
	}
}

// Issue 6: over -max-client-conns a client gets a 503 with Retry-After;
// served, hijacked and tracked connections are counted until they end.
func TestLimitsMaxClientConns(t *testing.T) {
	l, ln, _ := newTestLimits(t, func(c *config.Config) { c.MaxClientConns = 2 })
	tr := l.tracker(nopTracker{})
	accept := func() net.Conn {
		t.Helper()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	c1 := accept()
	dial()
	c2 := accept()
	// A hijacked conn leaves the server's count, and its tunnel (client
	// plus origin conn) enters the tracker's.
	l.connState(c2, http.StateHijacked)
	untrackClient, untrackOrigin := tr.Track(c2), tr.Track(&net.TCPConn{})
	if got := l.active(); got != 2 {
		t.Fatalf("active = %d with one served and one tunnel, want 2", got)
	}
	over := dial()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	over.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatalf("connection over the limit: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), "max-client-conns 2") {
		t.Errorf("over the limit: %d %v %q, want 503 with Retry-After", resp.StatusCode, resp.Header, body)
	}
	// The tunnel ends: a new connection is accepted.
	untrackClient()
	untrackOrigin()
	untrackOrigin()
	dial()
	select {
	case c := <-done:
		c.Close()
		l.connState(c, http.StateClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted after the tunnel ended")
	}
	l.connState(c1, http.StateClosed)
	c1.Close()
	c2.Close()
	if got := l.active(); got != 0 {
		t.Errorf("active = %d after everything closed, want 0", got)
	}
}

// Issue 6: -open-proxy-i-know on a non-loopback address is logged loudly.
func TestLimitsOpenProxyWarning(t *testing.T) {
	_, _, logs := newTestLimits(t, func(c *config.Config) { c.Listen = ":0"; c.OpenProxyIKnow = true })
	if !strings.Contains(logs.String(), "OPEN PROXY") || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("no loud warning: %q", logs.String())
	}
}
