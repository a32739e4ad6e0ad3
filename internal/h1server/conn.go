package h1server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/limit"
	"github.com/warmproxy/warmproxy/internal/netx"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/upstream"
	"github.com/warmproxy/warmproxy/internal/wire"
)

// The HTTP/1.1 connection server (issue 14): one goroutine per client
// connection reads a request head, forwards it over the H1Pool, relays
// the response and loops, with no goroutine and no allocation per request
// in steady state beyond the access-log strings. It serves the exchange
// that is nearly all of this proxy's traffic: an HTTP/1.1 absolute-form
// request (a body up to -retry-body-bytes held whole as today, a larger
// or chunked one streamed, conn_body.go), to an HTTP/1.1 origin over
// plain TCP or TLS, with no parent proxy and no per-request access
// checks configured.
//
// Everything else is handed over, with the bytes already read, to
// net/http's server and the Handler (ServeHTTP): CONNECT, upgrades,
// Expect, TRACE and OPTIONS (Max-Forwards), HTTP/1.0, h2c (the preface
// fails to parse here), origin-form requests (admin paths, routes), heads
// the wire parser refuses (net/http then answers with today's status and
// text), origins that chose HTTP/2 by ALPN, parent proxies, and
// configurations with -allow-clients or -proxy-auth-file. A connection
// handed over stays with net/http to its end. conn_exchange.go is the
// exchange, conn_head.go the heads; each exchange ends in Handler.End,
// as the Handler's own do.

// ConnOptions are what the connection server needs beside the Handler.
type ConnOptions struct {
	// Pool carries the requests; Key names the pool key of a target.
	Pool *upstream.H1Pool
	Key  func(upstream.Scheme, string) (upstream.H1Key, error)
	// GiveH2 takes a connection whose origin chose HTTP/2, for the
	// transport that net/http's side uses.
	GiveH2 func(*upstream.PConn)
	// Gate bounds the requests in flight (-max-requests-in-flight), shared
	// with net/http's side; Busy renders the 503 past it.
	Gate *limit.Gate
	Busy func(w http.ResponseWriter, err error)
	// Fallback takes over a connection; the conn it gets replays what was
	// read from the client before its own bytes.
	Fallback func(net.Conn)
	// Closed is called once for each connection the server closed itself
	// (not for one handed over).
	Closed func()
	// Running counts requests in flight, for the drain's report.
	Running *atomic.Int64
	// HeaderTimeout, IdleTimeout and BodyTimeout are the client-side
	// timeouts (-client-header-timeout, -client-idle-timeout,
	// -client-body-timeout); ResponseHeaderTimeout bounds the wait for an
	// origin's head; MaxHeaderBytes a client's head.
	HeaderTimeout, IdleTimeout, BodyTimeout, ResponseHeaderTimeout time.Duration
	MaxHeaderBytes                                                 int
}

// ConnServer serves HTTP/1.1 client connections (see above).
type ConnServer struct {
	h *proxy.Handler
	o ConnOptions
	// h2 holds the keys of origins that chose HTTP/2: their requests go
	// to net/http's transport.
	h2 sync.Map
	// bufSize is the size of a client connection's input buffer: a head
	// of MaxHeaderBytes (with net/http's 4 KiB of slack) and a body held
	// whole.
	bufSize int
	bufs    sync.Pool

	mu      sync.Mutex
	conns   map[*clientConn]struct{}
	closing atomic.Bool
	// held counts the input buffers and exchange states out of their
	// pools: what the connections between requests must not hold.
	held atomic.Int64
}

// Held is the number of input buffers and exchange states the client
// connections hold: requests in flight hold two each, idle connections
// none.
func (s *ConnServer) Held() int64 { return s.held.Load() }

// upBufSize is the size of the buffer an exchange reads the origin
// through: the response head and, for TLS or chunked bodies, the body.
const upBufSize = 64 << 10

var upBufs = sync.Pool{New: func() any { b := make([]byte, upBufSize); return &b }}

// bigBufSize is the size of the buffer a body that outlasts its first
// read is relayed through (chunked, close-delimited, or from TLS): large
// reads and writes, few system calls per byte.
const bigBufSize = 256 << 10

var bigBufs = sync.Pool{New: func() any { b := make([]byte, bigBufSize); return &b }}

// bigBuf returns the exchange's large relay buffer, taking it from its
// pool on first use.
func (x *exchange) bigBuf() []byte {
	if x.big == nil {
		x.big = bigBufs.Get().(*[]byte)
	}
	return *x.big
}

// NewConnServer returns the connection server of h.
func New(h *proxy.Handler, o ConnOptions) *ConnServer {
	s := &ConnServer{h: h, o: o, conns: map[*clientConn]struct{}{}}
	s.bufSize = o.MaxHeaderBytes + 4096 + int(min(h.RetryBodyBytes(), 64<<10))
	s.bufs.New = func() any { b := make([]byte, s.bufSize); return &b }
	return s
}

// Connection states: waiting for a request (closable at shutdown), or
// serving one.
const (
	connIdle int32 = iota
	connActive
	connClosed
)

// clientConn is one client connection and the structures its requests
// reuse.
type clientConn struct {
	s      *ConnServer
	c      net.Conn
	tcp    *net.TCPConn
	raw    syscall.RawConn
	remote string
	state  atomic.Int32

	// buf holds what was read and not yet used, buf[:n]; nil while idle.
	buf *[]byte
	n   int
	// x is the state of the exchange in progress; nil while idle.
	x       *exchange
	hs      wire.HeadScanner
	readErr error
	// linger asks for a lingering close: the last request's body was
	// not read to its end.
	linger bool
	// The client watch (watch.go): the connection's timer and its
	// acknowledgement; under watchMu, the pooled connection waited on,
	// whether the watch must stop, is running, and found the client gone.
	watchTimer *time.Timer
	watchAck   chan struct{}
	watchMu    sync.Mutex
	watchPC    *upstream.PConn
	watchStop  bool
	watching   bool
	gone       bool
	// inner is the CONNECT target of an intercepted tunnel this
	// connection is inside ("" for a proxy client connection), and
	// innerFallback its hand-over.
	inner         string
	innerFallback func(net.Conn)
	// lastAuth, lastScheme, key and target cache the pool key of the
	// last target authority, which a client nearly always asks again.
	lastAuth   []byte
	lastScheme upstream.Scheme
	key        upstream.H1Key
	target     string
}

// exchange is what one request needs beyond the connection: its heads,
// the scanners, the output buffer and the access-log entry. It comes from
// a pool for the request's time, so an idle connection holds none.
type exchange struct {
	req   wire.RequestHead
	resp  wire.ResponseHead
	rs    wire.HeadScanner
	cs    wire.ChunkedScanner
	out   []byte
	entry accesslog.Entry
	lr    io.LimitedReader
	// up is the buffer the origin is read through; its first upN bytes
	// are the final response head (upHead bytes) and what followed it.
	up          *[]byte
	big         *[]byte
	upHead, upN int
	// bodyLen is the length of a body held whole in the client buffer
	// after the head. stream is set for a body sent on as it arrives
	// instead (chunked, or over -retry-body-bytes): rest counts what is
	// still to come of a Content-Length one, rcs scans a chunked one;
	// sent counts body bytes sent, done says the body was read to its
	// end.
	bodyLen int
	base    int
	stream  bool
	rest    int64
	rcs     wire.ChunkedScanner
	sent    int64
	done    bool
	// While a streamed body goes on its own goroutine (conn_body.go):
	// bodyOut is its scratch; bodyEOF is set once it read the body to
	// its end; under bodyMu, canceled stops it and headDone says the
	// response head was read (no deadline for it any more). relayed
	// keeps what relay found until the body's end is known.
	bodyOut  []byte
	bodyEOF  atomic.Bool
	bodyMu   sync.Mutex
	canceled bool
	headDone bool
	relayed  relayResult
}

// relayResult is the outcome of a response relay.
type relayResult struct {
	reusable bool
	n        int64
	err      error
}

var exchanges = sync.Pool{New: func() any { return &exchange{out: make([]byte, 0, 4096)} }}

// Serve serves c until it closes, or hands it over.
func (s *ConnServer) Serve(c net.Conn) {
	s.serve(&clientConn{s: s, c: c, remote: c.RemoteAddr().String()})
}

// ServeIntercepted serves c, the client's HTTP/1.1 connection inside an
// intercepted tunnel to target (a CONNECT host:port, issue 13), until it
// closes, or hands it to fallback. Its requests are origin-form
// requests for https://target, and take the path absolute-form ones do
// (same pool, upstream TLS, access record of kind intercepted); one whose
// Host names another authority goes to fallback, which answers 421.
func (s *ConnServer) ServeIntercepted(c net.Conn, target string, fallback func(net.Conn)) {
	s.serve(&clientConn{s: s, c: c, remote: c.RemoteAddr().String(), inner: target, innerFallback: fallback})
}

// serve runs cc until it closes or is handed over.
func (s *ConnServer) serve(cc *clientConn) {
	c := cc.c
	cc.hs.Max = s.o.MaxHeaderBytes + 4096
	cc.tcp, _ = c.(*net.TCPConn)
	if sc, ok := c.(syscall.Conn); ok {
		cc.raw, _ = sc.SyscallConn()
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		c.Close()
		cc.closed()
		return
	}
	s.conns[cc] = struct{}{}
	s.mu.Unlock()
	handed := cc.serve()
	s.mu.Lock()
	delete(s.conns, cc)
	s.mu.Unlock()
	cc.release()
	if !handed {
		if cc.linger {
			lingerClose(c)
		} else {
			c.Close()
		}
		cc.closed()
	}
}

// closed tells the server's owner of a client connection it closed; a
// tunnel's inner connection is the tunnel's to count.
func (cc *clientConn) closed() {
	if cc.inner == "" {
		cc.s.o.Closed()
	}
}

// lingerClose closes a connection whose client may still be sending a
// request body nobody reads: it half-closes, then reads and drops what
// arrives for a while (at most 256 KiB) before closing. Closing with
// unread bytes would reset the connection, and the reset can destroy the
// answer before the client read it (RFC 9112 section 9.6); net/http's
// server waits the same way.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(proxy.LingerWait))
	io.CopyN(io.Discard, c, 256<<10)
	c.Close()
}

// serve runs the request loop; it reports whether c was handed over.
func (cc *clientConn) serve() (handed bool) {
	for {
		if !cc.waitRequest() {
			return false
		}
		if !cc.state.CompareAndSwap(connIdle, connActive) {
			return false
		}
		hl, ok := cc.readHead()
		if !ok {
			return false
		}
		if hl < 0 || !cc.eligible(hl) {
			cc.handOver()
			return true
		}
		keep, handOver := cc.exchange(hl)
		if handOver {
			cc.handOver()
			return true
		}
		if !keep {
			return false
		}
		if cc.n == 0 {
			cc.release()
		}
		if !cc.state.CompareAndSwap(connActive, connIdle) {
			return false
		}
	}
}

// waitRequest waits for the first bytes of the next request. With nothing
// buffered it holds no buffer meanwhile: the read runs in a RawConn
// callback that takes one from the pool only once bytes are there.
func (cc *clientConn) waitRequest() bool {
	if cc.n > 0 {
		return true
	}
	cc.release()
	cc.c.SetReadDeadline(time.Now().Add(cc.s.o.IdleTimeout))
	if cc.raw == nil {
		cc.grab()
		n, err := cc.c.Read(*cc.buf)
		cc.n = n
		return err == nil && n > 0
	}
	cc.readErr = nil
	err := cc.raw.Read(cc.readReady)
	return err == nil && cc.readErr == nil && cc.n > 0
}

// readReady is the RawConn.Read callback of waitRequest: it reads into a
// pooled buffer when bytes are there, and asks to wait (returning the
// buffer) when none are.
func (cc *clientConn) readReady(fd uintptr) bool {
	cc.grab()
	n, err := syscall.Read(int(fd), *cc.buf)
	if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK {
		cc.release()
		return false
	}
	if err != nil {
		cc.readErr = err
	} else if n == 0 {
		cc.readErr = io.EOF
	}
	cc.n = max(n, 0)
	return true
}

// grab takes an input buffer from the pool if cc holds none.
func (cc *clientConn) grab() {
	if cc.buf == nil {
		cc.buf = cc.s.bufs.Get().(*[]byte)
		cc.n = 0
		cc.s.held.Add(1)
	}
}

// release returns cc's input buffer, which must hold nothing unread, and
// its exchange state.
func (cc *clientConn) release() {
	if cc.buf != nil {
		cc.s.bufs.Put(cc.buf)
		cc.buf, cc.n = nil, 0
		cc.s.held.Add(-1)
	}
	cc.endExchange()
}

// endExchange returns the exchange state to its pool.
func (cc *clientConn) endExchange() {
	if x := cc.x; x != nil {
		cc.x = nil
		cc.s.held.Add(-1)
		x.req.Reset()
		x.resp.Reset()
		x.entry = accesslog.Entry{}
		x.lr.R = nil
		x.bodyEOF.Store(false)
		x.canceled, x.headDone, x.relayed = false, false, relayResult{}
		if x.up != nil {
			upBufs.Put(x.up)
			x.up = nil
		}
		if x.big != nil {
			bigBufs.Put(x.big)
			x.big = nil
		}
		if cap(x.out) > 64<<10 {
			x.out = make([]byte, 0, 4096)
		}
		exchanges.Put(x)
	}
}

// readHead reads until buf holds a whole request head and returns its
// length; -1 when the head is for net/http to judge (too large, or not
// starting with a request line), and ok false when the client closed or
// timed out.
func (cc *clientConn) readHead() (n int, ok bool) {
	cc.hs.Reset()
	buf := *cc.buf
	// The -client-header-timeout deadline is set before the first read
	// that waits for more of the head; most heads came whole already.
	deadline := false
	for {
		if c := buf[0]; c == '\r' || c == '\n' {
			return -1, true
		}
		n, err := cc.hs.Scan(buf[:cc.n])
		if err != nil {
			return -1, true
		}
		if n > 0 {
			return n, true
		}
		if cc.n == len(buf) {
			return -1, true
		}
		if !deadline {
			cc.c.SetReadDeadline(time.Now().Add(cc.s.o.HeaderTimeout))
			deadline = true
		}
		m, rerr := cc.c.Read(buf[cc.n:])
		cc.n += m
		if rerr != nil {
			// A head cut short: net/http says nothing either.
			return 0, false
		}
	}
}

// handOver gives the connection to net/http with what was read.
func (cc *clientConn) handOver() {
	cc.c.SetReadDeadline(time.Time{})
	var pending []byte
	if cc.n > 0 {
		pending = append([]byte(nil), (*cc.buf)[:cc.n]...)
	}
	cc.release()
	fallback := cc.s.o.Fallback
	if cc.inner != "" {
		fallback = cc.innerFallback
	}
	fallback(netx.Prefixed(cc.c, pending))
}

// Shutdown stops new requests: idle connections close now, busy ones
// after their response (which says "Connection: close"). It returns when
// all are closed or ctx is done.
func (s *ConnServer) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.closeIdle() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// closeIdle closes the idle connections and returns how many are left.
func (s *ConnServer) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for cc := range s.conns {
		if cc.state.CompareAndSwap(connIdle, connClosed) {
			cc.c.Close()
		}
	}
	return len(s.conns)
}

// Close closes every connection at once.
func (s *ConnServer) Close() {
	s.closing.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for cc := range s.conns {
		cc.state.Store(connClosed)
		cc.c.Close()
	}
}

// errHandOver is returned inside an exchange that found, before anything
// was sent, that net/http's side must serve the request.
var errHandOver = errors.New("hand over")
