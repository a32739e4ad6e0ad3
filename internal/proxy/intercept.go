package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/netx"
)

// Interceptor decides which CONNECT targets are intercepted (-intercept)
// and terminates their TLS with a certificate minted for the host
// (package intercept).
type Interceptor interface {
	Match(host string, port int) bool
	// Server returns the TLS server side of c for a tunnel to host; its
	// handshake fails unless the client's SNI names host.
	Server(c net.Conn, host string) *tls.Conn
}

// interceptedKey marks the context of a request served inside an
// intercepted tunnel, so that it is logged as such.
type interceptedKey struct{}

// entryKind is the access-log kind of a request.
func entryKind(r *http.Request) string {
	if r.Context().Value(interceptedKey{}) != nil {
		return accesslog.KindIntercepted
	}
	return accesslog.KindRequest
}

// serveIntercept serves a CONNECT to a host listed in -intercept: answer
// 200, terminate the client's TLS with a minted certificate (the SNI must
// name the CONNECT host), then serve the requests inside, HTTP/1.1 or
// HTTP/2 by ALPN, as absolute-form https:// requests to target: the same
// pool, upstream TLS verification, ACLs and access log. It returns what
// ended the tunnel early, for End.
func (h *Handler) serveIntercept(w http.ResponseWriter, r *http.Request, entry *accesslog.Entry, target string) error {
	entry.Kind = accesslog.KindIntercepted
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return hijackFailed("CONNECT "+target, err)
	}
	defer h.track(client)()
	defer client.Close()
	entry.Status = http.StatusOK
	var cc *closeConn
	// The record counts the bytes of the client's TLS connection, however
	// the tunnel ends.
	defer func() {
		if cc != nil {
			entry.BytesIn, entry.BytesOut = cc.in.Load(), cc.out.Load()
		}
	}()
	client.SetDeadline(time.Now().Add(h.inner.handshakeTimeout))
	if _, err := io.WriteString(client, connectEstablished); err != nil {
		return AfterHead(ClientGone(err))
	}
	var conn net.Conn = client
	if b := buffered(brw.Reader); len(b) > 0 {
		conn = netx.Prefixed(client, b)
	}
	// Below the TLS layer, so that http.Server sees a *tls.Conn (for
	// HTTP/2 by ALPN) and closing it from anywhere ends serveInner.
	done := make(chan struct{})
	cc = &closeConn{Conn: conn, done: done}
	conn = cc
	host, _, _ := net.SplitHostPort(target)
	tc := h.intercept.Server(conn, host)
	if err := tc.HandshakeContext(r.Context()); err != nil {
		return clientHandshakeFailed(target, err)
	}
	client.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	if h.log.Enabled(r.Context(), slog.LevelDebug) {
		h.log.Debug("intercepted tunnel", accesslog.KeyURL, target, accesslog.KeyALPN, cs.NegotiatedProtocol, accesslog.KeyTLSResumed, cs.DidResume)
	}
	entry.TLSResumed = cs.DidResume
	if h.innerH1 != nil && cs.NegotiatedProtocol != "h2" {
		h.innerH1(tc, target, func(c net.Conn) { h.serveInner(c, done, target) })
		<-done
	} else {
		h.serveInner(tc, done, target)
	}
	return nil
}

// serveInner runs an http.Server on the one connection c (the tunnel's
// *tls.Conn, or the inner server's hand-over of it) until it is closed:
// by the client, the idle timeout, an upgrade's end or shutdown.
func (h *Handler) serveInner(c net.Conn, done <-chan struct{}, target string) {
	srv := h.newInner(target)
	if !h.innerServers.add(srv) {
		c.Close() // shutting down
		return
	}
	defer h.innerServers.remove(srv)
	// Serve returns once the listener's second Accept does, which waits
	// for the connection to close, or for Shutdown to close the listener;
	// the connection is then still served until it closes.
	l := &oneConnListener{c: c, done: done, closed: make(chan struct{})}
	srv.Serve(l)
	if l.untaken() {
		// Shut down before Serve began: the connection was never served.
		c.Close()
		return
	}
	<-done
}

// newInner is the server inside a tunnel to target.
func (h *Handler) newInner(target string) *http.Server {
	return &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serveIntercepted(w, r, target) }),
		ReadHeaderTimeout: h.inner.readHeaderTimeout,
		IdleTimeout:       h.inner.idleTimeout,
		MaxHeaderBytes:    h.inner.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
		// Issue 12: the h2 streams of one intercepted tunnel are bounded
		// as those of an h2c connection are.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: h.inner.maxStreams},
	}
}

// ShutdownIntercepted shuts down the servers inside intercepted tunnels
// as http.Server.Shutdown does the proxy's: an idle connection is closed
// at once, a busy one after its response; tunnels opened later are closed
// at once. It returns when all are closed or ctx is done.
func (h *Handler) ShutdownIntercepted(ctx context.Context) {
	var wg sync.WaitGroup
	for _, srv := range h.innerServers.stop() {
		wg.Go(func() { srv.Shutdown(ctx) })
	}
	wg.Wait()
}

// innerSet is the servers running inside intercepted tunnels.
type innerSet struct {
	mu      sync.Mutex
	servers map[*http.Server]struct{}
	stopped bool
}

// add registers srv; it reports false once stop was called.
func (s *innerSet) add(srv *http.Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	if s.servers == nil {
		s.servers = map[*http.Server]struct{}{}
	}
	s.servers[srv] = struct{}{}
	return true
}

func (s *innerSet) remove(srv *http.Server) {
	s.mu.Lock()
	delete(s.servers, srv)
	s.mu.Unlock()
}

// stop marks the set stopped and returns the servers running now.
func (s *innerSet) stop() []*http.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	out := make([]*http.Server, 0, len(s.servers))
	for srv := range s.servers {
		out = append(out, srv)
	}
	return out
}

// serveIntercepted serves one request from inside the tunnel to target
// (the CONNECT authority): it must name that authority, else 421.
func (h *Handler) serveIntercepted(w http.ResponseWriter, r *http.Request, target string) {
	if r.ProtoMajor == 2 && r.Context().Err() != nil {
		// A stream reset before its handler started: nothing can read an
		// answer, and a flood of them must not become upstream requests
		// (issue 12, item 3, as for h2c).
		return
	}
	host := r.Host
	if r.URL.Host != "" {
		host = r.URL.Host
	}
	var refusal *Error
	switch {
	case !sameAuthority(host, target) || !sameAuthority(r.Host, target):
		refusal = denied(http.StatusMisdirectedRequest, "request for "+host+" inside the tunnel to "+target+": this connection serves "+target+" only; open a tunnel to "+host)
	case r.Method == http.MethodConnect:
		refusal = badRequest("CONNECT inside the intercepted tunnel to %s is not supported", target)
	}
	if refusal != nil {
		h.End(w, newEntry(r, r.RequestURI, accesslog.KindIntercepted), refusal)
		return
	}
	// The client asked for https:// end to end: no header downgrades it.
	u := *r.URL
	u.Scheme, u.Host = "https", r.Host
	in := retarget(context.WithValue(r.Context(), interceptedKey{}, true), r, &u, "https://"+r.Host+u.RequestURI(), h.protocolHeader)
	h.forward(w, in, in.RequestURI)
}

// SameAuthority reports whether the authority a, as a request names it
// (port 443 may be left out), is target, a CONNECT host:port.
func SameAuthority(a, target string) bool { return sameAuthority(a, target) }

// sameAuthority reports whether the authority a, as a request names it
// (port 443 may be left out), is target, a CONNECT host:port.
func sameAuthority(a, target string) bool {
	th, tp, err := net.SplitHostPort(target)
	if err != nil {
		return false
	}
	ah, ap, err := net.SplitHostPort(a)
	if err != nil {
		ah, ap = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), "443"
	}
	return ap == tp && strings.EqualFold(strings.TrimSuffix(ah, "."), strings.TrimSuffix(th, "."))
}

// innerSettings are the client-side limits of the servers inside
// intercepted tunnels, those of the proxy's own server.
type innerSettings struct {
	handshakeTimeout  time.Duration
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int
	maxStreams        int
}

// closeConn closes done when it is closed, and counts the bytes of the
// client's TLS connection for the tunnel's record.
type closeConn struct {
	net.Conn
	once    sync.Once
	done    chan struct{}
	in, out atomic.Int64
}

func (c *closeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *closeConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

func (c *closeConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}

// oneConnListener hands out one connection, then blocks until done or
// until it is closed.
type oneConnListener struct {
	c      net.Conn
	mu     sync.Mutex
	done   <-chan struct{}
	once   sync.Once
	closed chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	select {
	case <-l.done:
	case <-l.closed:
	}
	return nil, net.ErrClosed
}

// untaken reports whether the connection was never accepted.
func (l *oneConnListener) untaken() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c != nil
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return tunnelAddr{} }

type tunnelAddr struct{}

func (tunnelAddr) Network() string { return "intercept" }
func (tunnelAddr) String() string  { return "intercept" }
