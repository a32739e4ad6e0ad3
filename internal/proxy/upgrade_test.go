package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
	"github.com/warmproxy/warmproxy/internal/tunnel"
)

// tunnelHTTPOrigin starts an httptest origin, over TLS when tlsOn, and
// returns it with a config edit that makes warmproxy trust it.
func tunnelHTTPOrigin(t *testing.T, tlsOn bool, h http.Handler) (*httptest.Server, func(*config.Config)) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	if !tlsOn {
		srv.Start()
		t.Cleanup(srv.Close)
		return srv, nil
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := testnet.CAFile(t, srv.Certificate())
	return srv, func(c *config.Config) { c.CAFile = ca }
}

// tunnelHostOf returns the host:port of an httptest server.
func tunnelHostOf(srv *httptest.Server) string { return srv.Listener.Addr().String() }

// tunnelWSClient returns an HTTP client that reaches origins through the
// proxy at addr.
func tunnelWSClient(t *testing.T, addr string) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Issue 3: a WebSocket echo through the proxy with a maintained client
// library, to a plain origin and, with the protocol header, to a TLS one.
func TestUpgradeWebSocketEcho(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := map[bool]string{false: "http origin", true: "https origin"}[tlsOn]
		t.Run(name, func(t *testing.T) {
			tunnelLeakCheck(t)
			originVia := make(chan string, 1)
			origin, trust := tunnelHTTPOrigin(t, tlsOn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				originVia <- r.Header.Get("Via") + "|" + r.Header.Get("X-Real-Protocol")
				c, err := websocket.Accept(w, r, nil)
				if err != nil {
					return
				}
				defer c.CloseNow()
				c.SetReadLimit(2 << 20)
				ctx := r.Context()
				for {
					typ, msg, err := c.Read(ctx)
					if err != nil {
						return
					}
					if err := c.Write(ctx, typ, msg); err != nil {
						return
					}
				}
			}))
			rig := tunnelStartProxy(t, trust)
			hdr := http.Header{}
			if tlsOn {
				hdr.Set("X-Real-Protocol", "https")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ws, resp, err := websocket.Dial(ctx, "ws://"+tunnelHostOf(origin)+"/echo", &websocket.DialOptions{
				HTTPClient: tunnelWSClient(t, rig.addr),
				HTTPHeader: hdr,
			})
			if err != nil {
				t.Fatalf("websocket.Dial through the proxy: %v", err)
			}
			defer ws.CloseNow()
			if via := resp.Header.Get("Via"); !strings.Contains(via, "warmproxy") {
				t.Errorf("101 Via = %q, want warmproxy in it", via)
			}
			if got := <-originVia; got != "1.1 warmproxy|" {
				t.Errorf("origin saw Via|X-Real-Protocol %q, want %q", got, "1.1 warmproxy|")
			}
			ws.SetReadLimit(2 << 20)
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
			msgs := []struct {
				typ websocket.MessageType
				b   []byte
			}{
				{websocket.MessageText, []byte("hello")},
				{websocket.MessageBinary, big},
				{websocket.MessageText, []byte("bye")},
			}
			for _, m := range msgs {
				if err := ws.Write(ctx, m.typ, m.b); err != nil {
					t.Fatalf("write: %v", err)
				}
				typ, got, err := ws.Read(ctx)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if typ != m.typ || !bytes.Equal(got, m.b) {
					t.Fatalf("echo of a %d-byte message: got %d bytes type %v", len(m.b), len(got), typ)
				}
			}
			if err := ws.Close(websocket.StatusNormalClosure, "done"); err != nil {
				t.Errorf("close handshake through the proxy: %v", err)
			}
			e := rig.record(t)
			scheme := map[bool]string{false: "http", true: "https"}[tlsOn]
			if e.Kind != accesslog.KindUpgrade || e.Status != 101 || e.URL != scheme+"://"+tunnelHostOf(origin)+"/echo" ||
				e.BytesIn < 1<<20 || e.BytesOut < 1<<20 || e.End == "" {
				t.Errorf("access record kind %q status %d url %q in %d out %d end %q; want upgrade 101 %s://… >1MiB both ways and an end",
					e.Kind, e.Status, e.URL, e.BytesIn, e.BytesOut, e.End, scheme)
			}
			rig.noMoreRecords(t)
		})
	}
}

// tunnelFooOrigin answers an upgrade to "foo/1" with a 101 and bytes right
// behind it, then reads the new protocol until EOF and only then answers:
// that needs half-close through the proxy.
func tunnelFooOrigin(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "foo/1" || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			http.Error(w, "want Upgrade: foo/1", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo/1\r\n\r\nearly")
		brw.Flush()
		got, err := io.ReadAll(brw)
		if err != nil {
			return
		}
		brw.WriteString(" bye:" + string(got))
		brw.Flush()
	})
}

// Issue 3: an upgrade to any token relays both ways with half-close,
// over plain and TLS origins; bytes either side sent early are kept.
func TestUpgradeHalfClose(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := map[bool]string{false: "http origin", true: "https origin"}[tlsOn]
		t.Run(name, func(t *testing.T) {
			tunnelLeakCheck(t)
			origin, trust := tunnelHTTPOrigin(t, tlsOn, tunnelFooOrigin(t))
			rig := tunnelStartProxy(t, trust)
			host := tunnelHostOf(origin)
			c := tunnelDial(t, rig.addr)
			req := "GET http://" + host + "/up HTTP/1.1\r\nHost: " + host + "\r\nConnection: Upgrade\r\nUpgrade: foo/1\r\n"
			if tlsOn {
				req += "X-Real-Protocol: https\r\n"
			}
			// "hello" is sent before the 101, right behind the head.
			io.WriteString(c, req+"\r\nhello")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "foo/1" || resp.Header.Get("Connection") != "Upgrade" {
				t.Fatalf("response %q Upgrade %q Connection %q, want 101 foo/1 Upgrade", resp.Status, resp.Header.Get("Upgrade"), resp.Header.Get("Connection"))
			}
			early := make([]byte, 5)
			if _, err := io.ReadFull(br, early); err != nil || string(early) != "early" {
				t.Fatalf("read %q, %v; want the origin's bytes behind its 101", early, err)
			}
			io.WriteString(c, "world")
			c.CloseWrite()
			if got := tunnelReadAll(t, br); got != " bye:helloworld" {
				t.Errorf("client read %q after its FIN, want %q", got, " bye:helloworld")
			}
			e := rig.record(t)
			if e.Kind != accesslog.KindUpgrade || e.Status != 101 || e.BytesIn != 10 || e.BytesOut != 20 || e.End != tunnel.EndEOF {
				t.Errorf("access record kind %q status %d in %d out %d end %q (%s); want upgrade 101 in 10 out 20 end eof",
					e.Kind, e.Status, e.BytesIn, e.BytesOut, e.End, e.Detail)
			}
			if !tlsOn {
				rig.checkTCP(t, 2)
			}
		})
	}
}

// Issue 3 (seed 003): an origin that answers an upgrade with anything but
// 101 gives the client an ordinary response, no tunnel, and the client
// connection goes on serving requests.
func TestUpgradeRefused(t *testing.T) {
	plain, _ := tunnelHTTPOrigin(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "plain ok")
	}))
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
	}{
		{"502", http.StatusBadGateway, nil, "upstream websocket service down\n"},
		{"426", http.StatusUpgradeRequired, http.Header{"Upgrade": {"foo/2"}, "Connection": {"Upgrade"}}, "use foo/2\n"},
		{"200", http.StatusOK, nil, "no upgrade, here is a page\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tunnelLeakCheck(t)
			origin, _ := tunnelHTTPOrigin(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			rig := tunnelStartProxy(t, nil)
			host := tunnelHostOf(origin)
			c := tunnelDial(t, rig.addr)
			br := bufio.NewReader(c)
			io.WriteString(c, "GET http://"+host+"/ws HTTP/1.1\r\nHost: "+host+"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("reading the answer to the refused upgrade: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != tt.status || string(body) != tt.body {
				t.Fatalf("got %d %q (%v), want %d %q", resp.StatusCode, body, err, tt.status, tt.body)
			}
			if v := resp.Header.Get("Upgrade"); v != "" {
				t.Errorf("hop-by-hop Upgrade %q passed to the client", v)
			}
			if e := rig.record(t); e.Kind != accesslog.KindRequest || e.Status != tt.status || e.End != "" {
				t.Errorf("access record kind %q status %d end %q, want an ordinary request record", e.Kind, e.Status, e.End)
			}
			// The same client connection carries the next request.
			phost := tunnelHostOf(plain)
			io.WriteString(c, "GET http://"+phost+"/next HTTP/1.1\r\nHost: "+phost+"\r\n\r\n")
			resp2, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("next request on the same client connection: %v", err)
			}
			body2, _ := io.ReadAll(resp2.Body)
			if resp2.StatusCode != 200 || string(body2) != "plain ok" {
				t.Errorf("next request: %d %q, want 200 %q", resp2.StatusCode, body2, "plain ok")
			}
			rig.record(t)
		})
	}
	t.Run("websocket client sees the 502", func(t *testing.T) {
		tunnelLeakCheck(t)
		origin, _ := tunnelHTTPOrigin(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusBadGateway)
		}))
		rig := tunnelStartProxy(t, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, resp, err := websocket.Dial(ctx, "ws://"+tunnelHostOf(origin)+"/ws", &websocket.DialOptions{HTTPClient: tunnelWSClient(t, rig.addr)})
		if err == nil {
			ws.CloseNow()
			t.Fatal("websocket.Dial succeeded, want the origin's 502")
		}
		if resp == nil || resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("websocket.Dial: %v, response %v; want the origin's 502", err, resp)
		}
		rig.record(t)
	})
	t.Run("origin down", func(t *testing.T) {
		tunnelLeakCheck(t)
		rig := tunnelStartProxy(t, nil)
		host := testnet.ClosedAddr(t)
		c := tunnelDial(t, rig.addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET http://"+host+"/ws HTTP/1.1\r\nHost: "+host+"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 502 || !strings.Contains(resp.Header.Get("Proxy-Status"), "error=connection_refused") {
			t.Errorf("got %d Proxy-Status %q, want 502 connection_refused", resp.StatusCode, resp.Header.Get("Proxy-Status"))
		}
		rig.record(t)
	})
}

// tunnelSwitchOrigin answers every request with a 101 to protocol proto.
func tunnelSwitchOrigin(t *testing.T, proto string) string {
	return tunnelOrigin(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+proto+"\r\n\r\n")
		io.Copy(c, br) // echo until the tunnel goes
	})
}

// Issue 3: a 101 for a protocol the client did not ask for is a 502, and
// the client connection stays usable; one the client offered in a list is
// fine.
func TestUpgradeUnaskedProtocol(t *testing.T) {
	tests := []struct {
		name    string
		upgrade string // the client's Upgrade; "" sends none
		status  int
	}{
		{"other protocol", "foo", http.StatusBadGateway},
		{"no upgrade asked", "", http.StatusBadGateway},
		{"offered in a list", "foo/2, Bar", http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tunnelLeakCheck(t)
			host := tunnelSwitchOrigin(t, "bar")
			rig := tunnelStartProxy(t, nil)
			c := tunnelDial(t, rig.addr)
			br := bufio.NewReader(c)
			req := "GET http://" + host + "/ HTTP/1.1\r\nHost: " + host + "\r\n"
			if tt.upgrade != "" {
				req += "Connection: Upgrade\r\nUpgrade: " + tt.upgrade + "\r\n"
			}
			io.WriteString(c, req+"\r\n")
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 101 {
				io.WriteString(c, "echo")
				c.CloseWrite()
				if got := tunnelReadAll(t, br); got != "echo" {
					t.Errorf("tunnel echoed %q", got)
				}
				if e := rig.record(t); e.Kind != accesslog.KindUpgrade || e.End != tunnel.EndEOF {
					t.Errorf("access record kind %q end %q, want upgrade eof", e.Kind, e.End)
				}
				return
			}
			e := rig.record(t)
			body, _ := io.ReadAll(resp.Body)
			if ps := resp.Header.Get("Proxy-Status"); !strings.Contains(ps, "error=http_upgrade_failed") || !strings.Contains(string(body), "bar") {
				t.Errorf("Proxy-Status %q body %q, want http_upgrade_failed naming bar", ps, body)
			}
			if e.Status != 502 || e.End != "" {
				t.Errorf("access record status %d end %q, want 502 and no tunnel", e.Status, e.End)
			}
			// Still usable: the proxy answers the next request (here its
			// usage text, for an origin-form request).
			io.WriteString(c, "GET /nothing HTTP/1.1\r\nHost: x.test\r\n\r\n")
			resp2, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("next request on the same connection: %v", err)
			}
			resp2.Body.Close()
			if resp2.StatusCode != 400 {
				t.Errorf("next request: %d, want the proxy's 400 for origin-form", resp2.StatusCode)
			}
			rig.record(t)
		})
	}
}

// Issue 3: resets on either side of an upgraded connection end the tunnel
// cleanly, with one record that says "reset".
func TestUpgradeReset(t *testing.T) {
	for _, side := range []string{"client", "origin"} {
		t.Run(side, func(t *testing.T) {
			tunnelLeakCheck(t)
			originConn := make(chan *net.TCPConn, 1)
			originDone := make(chan struct{})
			host := tunnelOrigin(t, func(c *net.TCPConn) {
				defer close(originDone)
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
				originConn <- c
				io.Copy(c, br)
			})
			rig := tunnelStartProxy(t, nil)
			c := tunnelDial(t, rig.addr)
			br := bufio.NewReader(c)
			io.WriteString(c, "GET http://"+host+"/ HTTP/1.1\r\nHost: "+host+"\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			io.WriteString(c, "data")
			buf := make([]byte, 4)
			if _, err := io.ReadFull(br, buf); err != nil {
				t.Fatal(err)
			}
			tunnelReset(t, side, c, <-originConn, br, originDone)
			if e := rig.record(t); e.Kind != accesslog.KindUpgrade || e.End != tunnel.EndReset {
				t.Errorf("access record kind %q end %q (%s), want upgrade reset", e.Kind, e.End, e.Detail)
			}
			rig.noMoreRecords(t)
		})
	}
}
