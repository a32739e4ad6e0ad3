package upstream_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// relays owns the byte relays of a test parent: Close ends them all.
type relays struct {
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// relay copies between a and b until either side ends, then closes both.
func (r *relays) relay(a, b net.Conn) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		a.Close()
		b.Close()
		return
	}
	r.conns = append(r.conns, a, b)
	r.wg.Add(2)
	r.mu.Unlock()
	var once sync.Once
	done := func() { once.Do(func() { a.Close(); b.Close() }) }
	go func() { defer r.wg.Done(); io.Copy(a, b); done() }()
	go func() { defer r.wg.Done(); io.Copy(b, a); done() }()
}

func (r *relays) Close() {
	r.mu.Lock()
	r.closed = true
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// testNames maps the .test names a test parent may be asked for to
// loopback; anything else but a loopback IP is refused, so nothing leaves
// the machine.
func loopbackAddr(names map[string]bool, hostport string) (string, bool) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", false
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || names[host] {
		return net.JoinHostPort("127.0.0.1", port), true
	}
	return "", false
}

// httpParent is an HTTP forward proxy started by a test: CONNECT and
// absolute-form requests, Basic credentials, counts of what it saw.
type httpParent struct {
	addr       string
	user, pass string
	names      map[string]bool
	// connectStatus, when set, answers every CONNECT with it.
	connectStatus int
	conns         atomic.Int32 // TCP connections accepted
	connects      atomic.Int32 // CONNECT requests let through
	requests      atomic.Int32 // absolute-form requests let through
	refused       atomic.Int32 // requests without the right credentials
	relays        relays
	tr            *http.Transport
}

func startHTTPParent(t testing.TB, user, pass string, names ...string) *httpParent {
	t.Helper()
	p := &httpParent{user: user, pass: pass, names: map[string]bool{}, tr: &http.Transport{}}
	for _, n := range names {
		p.names[n] = true
	}
	srv := httptest.NewUnstartedServer(p)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			p.conns.Add(1)
		}
	}
	srv.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)
	srv.Start()
	p.addr = srv.Listener.Addr().String()
	t.Cleanup(func() {
		srv.Close()
		p.relays.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

func (p *httpParent) url() string {
	if p.user == "" {
		return "http://" + p.addr
	}
	return "http://" + url.UserPassword(p.user, p.pass).String() + "@" + p.addr
}

func (p *httpParent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.user != "" {
		u, pw, ok := (&http.Request{Header: http.Header{"Authorization": r.Header["Proxy-Authorization"]}}).BasicAuth()
		if !ok || u != p.user || pw != p.pass {
			p.refused.Add(1)
			w.Header().Set("Proxy-Authenticate", `Basic realm="parent"`)
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
	}
	if r.Method == http.MethodConnect {
		if p.connectStatus != 0 {
			w.WriteHeader(p.connectStatus)
			return
		}
		addr, ok := loopbackAddr(p.names, r.Host)
		if !ok {
			http.Error(w, "test parent: not a loopback target", http.StatusBadGateway)
			return
		}
		origin, err := net.DialTimeout("tcp", addr, testTimeout)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		p.connects.Add(1)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			origin.Close()
			return
		}
		brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
		brw.Flush()
		p.relays.relay(c, origin)
		return
	}
	if !r.URL.IsAbs() {
		http.Error(w, "test parent: want absolute form", http.StatusBadRequest)
		return
	}
	addr, ok := loopbackAddr(p.names, r.URL.Host)
	if !ok {
		http.Error(w, "test parent: not a loopback target", http.StatusBadGateway)
		return
	}
	p.requests.Add(1)
	out := r.Clone(r.Context())
	out.RequestURI, out.URL.Host = "", addr
	out.Header.Del("Proxy-Authorization")
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// socksParent is a SOCKS5 server started by a test (RFC 1928, with RFC
// 1929 user/password when user is set).
type socksParent struct {
	addr       string
	user, pass string
	names      map[string]bool
	// reply, when set, fails every CONNECT with that reply code.
	reply    byte
	conns    atomic.Int32
	connects atomic.Int32
	// lastAtyp is the address type of the last request (1 IPv4, 3 name).
	lastAtyp atomic.Int32
	ln       net.Listener
	relays   relays
	wg       sync.WaitGroup
}

func startSOCKSParent(t *testing.T, user, pass string, names ...string) *socksParent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &socksParent{addr: ln.Addr().String(), user: user, pass: pass, names: map[string]bool{}, ln: ln}
	for _, n := range names {
		p.names[n] = true
	}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.conns.Add(1)
			p.wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.relays.Close()
		p.wg.Wait()
	})
	return p
}

func (p *socksParent) url(scheme string) string {
	if p.user == "" {
		return scheme + "://" + p.addr
	}
	return scheme + "://" + url.UserPassword(p.user, p.pass).String() + "@" + p.addr
}

func (p *socksParent) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(testTimeout))
	br := bufio.NewReader(c)
	fail := func() { c.Close() }
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(br, hdr); err != nil || hdr[0] != 5 {
		fail()
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		fail()
		return
	}
	want := byte(0)
	if p.user != "" {
		want = 2
	}
	if !strings.ContainsRune(string(methods), rune(want)) {
		c.Write([]byte{5, 0xff})
		fail()
		return
	}
	c.Write([]byte{5, want})
	if want == 2 {
		ver, _ := br.ReadByte()
		ul, _ := br.ReadByte()
		u := make([]byte, ul)
		io.ReadFull(br, u)
		pl, _ := br.ReadByte()
		pw := make([]byte, pl)
		io.ReadFull(br, pw)
		if ver != 1 || string(u) != p.user || string(pw) != p.pass {
			c.Write([]byte{1, 1})
			fail()
			return
		}
		c.Write([]byte{1, 0})
	}
	req := make([]byte, 4)
	if _, err := io.ReadFull(br, req); err != nil || req[0] != 5 || req[1] != 1 {
		fail()
		return
	}
	var host string
	switch req[3] {
	case 1:
		ip := make([]byte, 4)
		io.ReadFull(br, ip)
		host = net.IP(ip).String()
	case 4:
		ip := make([]byte, 16)
		io.ReadFull(br, ip)
		host = net.IP(ip).String()
	case 3:
		n, _ := br.ReadByte()
		name := make([]byte, n)
		io.ReadFull(br, name)
		host = string(name)
	}
	portB := make([]byte, 2)
	if _, err := io.ReadFull(br, portB); err != nil {
		fail()
		return
	}
	p.lastAtyp.Store(int32(req[3]))
	p.connects.Add(1)
	reply := func(code byte) { c.Write([]byte{5, code, 0, 1, 127, 0, 0, 1, 0, 0}) }
	if p.reply != 0 {
		reply(p.reply)
		fail()
		return
	}
	addr, ok := loopbackAddr(p.names, net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(portB)))))
	if !ok {
		reply(2)
		fail()
		return
	}
	origin, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		reply(5)
		fail()
		return
	}
	reply(0)
	c.SetDeadline(time.Time{})
	p.relays.relay(c, origin)
}

// countingOrigin is a plain-http origin that counts its connections.
func countingOrigin(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.Host)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func parentConfig(parentURL string) config.Config {
	cfg := testConfig()
	cfg.ParentProxy = parentURL
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return cfg
}

// Issue 8: plain-http requests go to an http parent in absolute form with
// the URL's credentials, pooled: N requests, to two origins, take one
// connection to the parent.
func TestParentHTTPPlainPooled(t *testing.T) {
	par := startHTTPParent(t, "alice", "s3cret:x")
	o1, _ := countingOrigin(t)
	o2, _ := countingOrigin(t)
	up, logs := testUpstream(t, parentConfig(par.url()))
	rt := up.Tracker().Wrap(up.Transport())
	for i := range 6 {
		o := o1
		if i%2 == 1 {
			o = o2
		}
		if got := get(t, rt, o.URL+"/"); !strings.HasPrefix(got, "hello from 127.0.0.1:") {
			t.Fatalf("request %d: body %q", i, got)
		}
	}
	if n := par.conns.Load(); n != 1 {
		t.Errorf("parent accepted %d connections for 6 requests, want 1 (pooled)", n)
	}
	if n, r := par.requests.Load(), par.refused.Load(); n != 6 || r != 0 {
		t.Errorf("parent let %d requests through and refused %d, want 6 with credentials, 0 refused", n, r)
	}
	if n := par.connects.Load(); n != 0 {
		t.Errorf("parent saw %d CONNECTs for plain http, want 0", n)
	}
	if l := logs.String(); strings.Contains(l, "s3cret") || !strings.Contains(l, "parent=") {
		t.Errorf("start log %q: want the parent named, password redacted", l)
	}
}

// Issue 8: https origins through an http parent get one CONNECT per
// pooled connection: N requests → 1 CONNECT and 1 full TLS handshake; a
// new connection resumes the session through a new tunnel.
func TestParentHTTPSConnectPerConn(t *testing.T) {
	ca := newTestCA(t)
	serverCert, _, _ := ca.issue(t, "origin", "origin.test")
	_, certFile, keyFile := ca.issue(t, "warmproxy-client")
	origin := startTLSOrigin(t, &serverCert, ca.pool)
	par := startHTTPParent(t, "bob", "pw", "origin.test")
	cfg := parentConfig(par.url())
	cfg.UpstreamTLS = config.TLSRules("origin.test,ca=" + ca.file + ",cert=" + certFile + ",key=" + keyFile)
	up, _ := testUpstream(t, cfg) // no names: only the parent resolves origin.test
	url := "https://origin.test:" + origin.port + "/"
	for range 5 {
		if got := get(t, up.Transport(), url); !strings.HasPrefix(got, "client=warmproxy-client ") {
			t.Fatalf("origin saw %q, want the rule's client certificate", got)
		}
	}
	if n := par.connects.Load(); n != 1 {
		t.Errorf("parent saw %d CONNECTs for 5 requests, want 1", n)
	}
	if full, resumed := tlsCounts(up); full != 1 || resumed != 0 {
		t.Errorf("TLS handshakes %d full, %d resumed; want 1 full", full, resumed)
	}
	up.Transport().CloseIdleConnections()
	get(t, up.Transport(), url)
	if n := par.connects.Load(); n != 2 {
		t.Errorf("parent saw %d CONNECTs after a new connection, want 2", n)
	}
	if full, resumed := tlsCounts(up); full != 1 || resumed != 1 {
		t.Errorf("TLS handshakes %d full, %d resumed; want the second resumed through the parent", full, resumed)
	}
	if st := up.Tracker().Totals(upstream.SchemeHTTPS); st.Opened != 2 {
		t.Errorf("pool opened %d https connections, want 2 (counted through the parent)", st.Opened)
	}
}

// Issue 8: a SOCKS5 parent with user and password carries both schemes,
// one SOCKS connect per pooled connection; socks5h sends the name,
// socks5 resolves and checks it first and sends the IP.
func TestParentSOCKS5(t *testing.T) {
	plainOrigin, _ := countingOrigin(t)
	_, plainPort, _ := net.SplitHostPort(plainOrigin.Listener.Addr().String())
	tlsO := startTLSOrigin(t, nil, nil)
	for _, tt := range []struct {
		scheme string
		atyp   int32
	}{
		{"socks5h", 3},
		{"socks5", 1},
	} {
		t.Run(tt.scheme, func(t *testing.T) {
			par := startSOCKSParent(t, "carol", "pw", "origin.test")
			cfg := parentConfig(par.url(tt.scheme))
			cfg.UpstreamTLS = "origin.test,insecure"
			names := []string{}
			if tt.scheme == "socks5" {
				names = []string{"origin.test"} // warmproxy resolves
			}
			up, _ := testUpstream(t, cfg, names...)
			for range 3 {
				get(t, up.Transport(), "http://origin.test:"+plainPort+"/")
				get(t, up.Transport(), "https://origin.test:"+tlsO.port+"/")
			}
			if c, n := par.conns.Load(), par.connects.Load(); c != 2 || n != 2 {
				t.Errorf("SOCKS parent: %d connections, %d connects for 3 http + 3 https requests; want 2 and 2", c, n)
			}
			if a := par.lastAtyp.Load(); a != tt.atyp {
				t.Errorf("address type %d sent, want %d", a, tt.atyp)
			}
		})
	}
}

// Issue 8: -no-parent-for hosts are dialed directly, by the guard; the
// rest go through the parent.
func TestNoParentFor(t *testing.T) {
	for _, scheme := range []string{"http", "socks5h"} {
		t.Run(scheme, func(t *testing.T) {
			o, conns := countingOrigin(t)
			_, port, _ := net.SplitHostPort(o.Listener.Addr().String())
			var parURL string
			var parSeen func() int32
			if scheme == "http" {
				par := startHTTPParent(t, "", "", "via.test")
				parURL, parSeen = par.url(), func() int32 { return par.requests.Load() + par.connects.Load() }
			} else {
				par := startSOCKSParent(t, "", "", "via.test")
				parURL, parSeen = par.url(scheme), par.connects.Load
			}
			cfg := testConfig()
			cfg.ParentProxy, cfg.NoParentFor = parURL, "*.direct.test, 10.0.0.0/8"
			up, _ := testUpstream(t, cfg, "a.direct.test")
			get(t, up.Transport(), "http://a.direct.test:"+port+"/")
			if n := parSeen(); n != 0 {
				t.Errorf("parent saw %d requests for a -no-parent-for host, want 0", n)
			}
			if conns.Load() != 1 {
				t.Error("the origin got no direct connection")
			}
			get(t, up.Transport(), "http://via.test:"+port+"/")
			if n := parSeen(); n != 1 {
				t.Errorf("parent saw %d requests for via.test, want 1", n)
			}
			// CONNECT tunnels use the same dialer.
			c, err := up.Dial(context.Background(), "tcp", "a.direct.test:"+port)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if n := parSeen(); n != 1 {
				t.Errorf("parent saw %d requests after a direct Dial, want 1", n)
			}
		})
	}
}

// Issue 8: the parent's own address is trusted configuration; targets are
// checked by name, and IP literals by IP, before the parent is asked.
// With deny-private, a loopback parent still works, 127.0.0.1 as a target
// is denied, and a name (resolved by the parent) is let through: the
// resolved-IP check needs warmproxy to resolve (socks5://).
func TestParentPolicy(t *testing.T) {
	o, _ := countingOrigin(t)
	_, port, _ := net.SplitHostPort(o.Listener.Addr().String())
	par := startHTTPParent(t, "", "", "named.test", "blocked.test")
	cfg := parentConfig(par.url())
	cfg.DenyPrivate, cfg.Deny = true, "blocked.test"
	up, _ := testUpstream(t, cfg)
	for _, target := range []string{"http://127.0.0.1:" + port + "/", "http://blocked.test:" + port + "/"} {
		_, err := tryGet(up.Transport(), target)
		var de *acl.DeniedError
		if !errors.As(err, &de) {
			t.Errorf("GET %s through the parent = %v, want *acl.DeniedError", target, err)
		}
		if _, err := up.Dial(context.Background(), "tcp", strings.TrimSuffix(strings.TrimPrefix(target, "http://"), "/")); !errors.As(err, &de) {
			t.Errorf("Dial %s through the parent = %v, want *acl.DeniedError", target, err)
		}
	}
	if n := par.requests.Load() + par.connects.Load(); n != 0 {
		t.Errorf("parent was asked %d times for denied targets, want 0", n)
	}
	if _, err := tryGet(up.Transport(), "http://named.test:"+port+"/"); err != nil {
		t.Errorf("GET named.test through a loopback parent with deny-private: %v, want it let through (the parent resolves it)", err)
	}

	// socks5:// resolves here, so the resolved IP is checked too.
	sp := startSOCKSParent(t, "", "", "named.test")
	cfg = parentConfig(sp.url("socks5"))
	cfg.DenyPrivate = true
	up, _ = testUpstream(t, cfg, "named.test")
	_, err := tryGet(up.Transport(), "http://named.test:"+port+"/")
	var de *acl.DeniedError
	if !errors.As(err, &de) || !de.IP.IsValid() {
		t.Errorf("GET named.test through socks5:// with deny-private = %v, want denied on its resolved IP", err)
	}
	if n := sp.connects.Load(); n != 0 {
		t.Errorf("SOCKS parent asked %d times, want 0", n)
	}
}

// startHandler serves the proxy handler over up on loopback and returns
// its address.
func startHandler(t *testing.T, cfg config.Config, up *upstream.Upstream) string {
	t.Helper()
	h := proxy.New(proxy.Options{
		Transport: up.RoundTripper(),
		Dial:      proxy.DialFunc(up.Dial),
		DialTLS:   up.DialTLS,
		Config:    config.MustParse(cfg),
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// proxyResp sends a raw request head to the proxy at addr and reads the
// response head.
func proxyResp(t *testing.T, addr, head string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", head, err)
	}
	return resp, c, br
}

// Issue 8: client CONNECTs and upgrades go through the parent too.
func TestParentCarriesConnectAndUpgrade(t *testing.T) {
	var upgrades atomic.Int32
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "test" {
			io.WriteString(w, "plain")
			return
		}
		upgrades.Add(1)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nupgraded")
		brw.Flush()
	}))
	t.Cleanup(o.Close)
	oAddr := o.Listener.Addr().String()
	par := startHTTPParent(t, "u", "p")
	cfg := parentConfig(par.url())
	cfg.ConnectPorts = "*"
	up, _ := testUpstream(t, cfg)
	addr := startHandler(t, cfg, up)

	resp, c, br := proxyResp(t, addr, "CONNECT "+oAddr+" HTTP/1.1\r\nHost: "+oAddr+"\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT through warmproxy: %s", resp.Status)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r2, err := http.ReadResponse(br, nil); err != nil || r2.StatusCode != http.StatusOK {
		t.Fatalf("request in the tunnel: %v", err)
	}
	if n := par.connects.Load(); n != 1 {
		t.Errorf("parent saw %d CONNECTs for a client CONNECT, want 1", n)
	}

	resp, _, br = proxyResp(t, addr, "GET http://"+oAddr+"/ HTTP/1.1\r\nHost: "+oAddr+"\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade through warmproxy: %s", resp.Status)
	}
	if b, _ := io.ReadAll(io.LimitReader(br, 8)); string(b) != "upgraded" || upgrades.Load() != 1 {
		t.Errorf("upgraded stream read %q, want upgraded", b)
	}
	if n := par.connects.Load(); n != 2 {
		t.Errorf("parent saw %d CONNECTs after an upgrade, want 2", n)
	}
}

// Issue 8: a parent that cannot be reached or refuses gives the client a
// 502 whose Proxy-Status names the cause.
func TestParentFailures(t *testing.T) {
	o, _ := countingOrigin(t)
	oAddr := o.Listener.Addr().String()
	closedAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	forbidding := startHTTPParent(t, "", "")
	forbidding.connectStatus = http.StatusForbidden
	failing := startHTTPParent(t, "", "")
	failing.connectStatus = http.StatusBadGateway
	authHTTP := startHTTPParent(t, "u", "right")
	authSOCKS := startSOCKSParent(t, "u", "right")
	refusing := startSOCKSParent(t, "", "")
	refusing.reply = 5
	unreachable := startSOCKSParent(t, "", "")
	unreachable.reply = 4

	for _, tt := range []struct {
		name, parent string
		// https: X-Real-Protocol: https, through the TLS dialer; else
		// CONNECT, or with plain a plain-http request.
		mode      string
		wantType  string
		wantInMsg string
	}{
		{"http CONNECT 403", forbidding.url(), "connect", "http_request_denied", "does not allow"},
		{"http CONNECT 502 https", failing.url(), "https", "destination_unavailable", "502 Bad Gateway"},
		{"http wrong password", "http://u:wrong@" + authHTTP.addr, "https", "http_request_denied", "credentials"},
		// Issue 8: the parent's 407 to a plain-http request is warmproxy's
		// failure, not a challenge for the client.
		{"http wrong password plain", "http://u:wrong@" + authHTTP.addr, "plain", "http_request_denied", "credentials"},
		{"http parent down", "http://" + closedAddr, "https", "connection_refused", "parent proxy http://" + closedAddr},
		{"http parent down plain", "http://" + closedAddr, "plain", "connection_refused", "parent proxy http://" + closedAddr},
		{"socks wrong password", "socks5h://u:wrong@" + authSOCKS.addr, "connect", "http_request_denied", "credentials"},
		{"socks no password", "socks5h://" + authSOCKS.addr, "plain", "http_request_denied", "credentials"},
		{"socks refused", refusing.url("socks5h"), "https", "connection_refused", "refused"},
		{"socks unreachable", unreachable.url("socks5h"), "connect", "destination_ip_unroutable", "host unreachable"},
		{"socks parent down", "socks5://" + closedAddr, "connect", "connection_refused", "parent proxy socks5://" + closedAddr},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parentConfig(tt.parent)
			cfg.ConnectPorts = "*"
			up, _ := testUpstream(t, cfg)
			addr := startHandler(t, cfg, up)
			var head string
			switch tt.mode {
			case "connect":
				head = "CONNECT " + oAddr + " HTTP/1.1\r\nHost: " + oAddr + "\r\n\r\n"
			case "https":
				head = "GET http://" + oAddr + "/ HTTP/1.1\r\nHost: " + oAddr + "\r\nX-Real-Protocol: https\r\n\r\n"
			default:
				head = "GET http://" + oAddr + "/ HTTP/1.1\r\nHost: " + oAddr + "\r\n\r\n"
			}
			resp, _, _ := proxyResp(t, addr, head)
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			ps := resp.Header.Get("Proxy-Status")
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(ps, "error="+tt.wantType) {
				t.Errorf("status %s, Proxy-Status %q; want 502 with error=%s (body %q)", resp.Status, ps, tt.wantType, body)
			}
			if !strings.Contains(string(body), tt.wantInMsg) {
				t.Errorf("body %q: want it to say %q", body, tt.wantInMsg)
			}
			if strings.Contains(ps+string(body), "right") || strings.Contains(ps+string(body), "wrong") {
				t.Errorf("a password shows in %q / %q", ps, body)
			}
		})
	}
}

// BenchmarkPlainHTTPParent compares a pooled plain-http request sent
// directly with one sent through an http parent (absolute form over a
// pooled connection to the parent). The parent's own work is included.
func BenchmarkPlainHTTPParent(b *testing.B) {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer o.Close()
	par := startHTTPParent(b, "u", "p")
	for _, parentURL := range []string{"", par.url()} {
		name := "direct"
		if parentURL != "" {
			name = "parent"
		}
		b.Run(name, func(b *testing.B) {
			cfg := testConfig()
			cfg.ParentProxy = parentURL
			up, err := upstream.New(config.MustParse(cfg))
			if err != nil {
				b.Fatal(err)
			}
			defer up.Transport().CloseIdleConnections()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tryGet(up.Transport(), o.URL+"/"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
