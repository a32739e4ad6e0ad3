package proxy

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"

	"github.com/warmproxy/warmproxy/internal/wire"
)

// net/http's server deletes Content-Length from a request that also
// carries Transfer-Encoding before any handler sees it, so the Handler
// cannot tell such a request (a request smuggling shape) from a plain
// chunked one. RFC 9112 section 6.1 says the connection MUST be closed
// after responding to it. A connection handed to net/http's server is
// wrapped by WatchFraming, which watches the bytes the server reads and
// flags the connection when one head holds both fields; FramingContext
// hands the flag to ServeHTTP (ambiguousFraming), which answers with
// "Connection: close". The HTTP/1.1 connection server hands such a
// request over with the bytes it read, which the watch reads too.

// WatchFraming wraps c, a client connection for net/http's server, in the
// framing watch.
func WatchFraming(c net.Conn) net.Conn { return &framingConn{Conn: c} }

// FramingContext is the http.Server's ConnContext: it hands a watched
// connection's flag to the Handler.
func FramingContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		return withFramingFlag(ctx, &fc.ambiguous)
	}
	return ctx
}

// framingKey is the context key of a client connection's framing flag.
type framingKey struct{}

// withFramingFlag returns a copy of ctx carrying f, a client connection's
// flag that the server sets once a request head on it carried both
// Content-Length and Transfer-Encoding. net/http drops the Content-Length
// and reads the body as chunked; the handler then closes the connection
// after the response, as RFC 9112 section 6.1 requires.
func withFramingFlag(ctx context.Context, f *atomic.Bool) context.Context {
	return context.WithValue(ctx, framingKey{}, f)
}

// prefixLen is the number of bytes of a line needed to classify it: the
// length of "transfer-encoding:".
const prefixLen = len("transfer-encoding:")

// framingConn flags the connection once a block of header-like lines
// (ended by an empty line) holds both a Content-Length and a
// Transfer-Encoding line. It scans everything read, bodies included, so
// a body with such lines can flag a connection too; the only cost of that
// is a closed connection. Scanning stops once the flag is set. Reads of
// one net/http connection never run concurrently, so only the flag is
// atomic.
type framingConn struct {
	net.Conn
	ambiguous atomic.Bool

	// line holds the first bytes of the current line; n counts them, and
	// is -1 once the line was classified and the rest is skipped.
	line         [prefixLen]byte
	n            int
	sawCL, sawTE bool
}

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.ambiguous.Load() {
		c.scan(p[:n])
	}
	return n, err
}

// NetConn returns the connection underneath, so a tunnel can splice
// between TCP connections (tls.Conn has a method of the same name).
func (c *framingConn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the connection, as net/http's server does before
// closing a connection whose request it did not read in full.
func (c *framingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *framingConn) scan(b []byte) {
	for len(b) > 0 {
		if c.n < 0 {
			// Skip to the next line.
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return
			}
			b = b[i+1:]
			c.n = 0
			continue
		}
		ch := b[0]
		b = b[1:]
		c.line[c.n] = ch
		c.n++
		switch {
		case ch == '\n':
			c.endLine(c.line[:c.n])
			c.n = 0
		case c.n == prefixLen:
			c.classify(c.line[:])
			c.n = -1
		}
	}
}

// endLine handles a line that ended within its first prefixLen bytes.
func (c *framingConn) endLine(line []byte) {
	if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
		// An empty line ends a head.
		if c.sawCL && c.sawTE {
			c.ambiguous.Store(true)
		}
		c.sawCL, c.sawTE = false, false
		return
	}
	c.classify(line)
}

func (c *framingConn) classify(line []byte) {
	switch {
	case hasPrefixFold(line, "content-length:"):
		c.sawCL = true
	case hasPrefixFold(line, "transfer-encoding:"):
		c.sawTE = true
	}
}

// hasPrefixFold reports whether b starts with the ASCII prefix p, ASCII
// case ignored.
func hasPrefixFold(b []byte, p string) bool {
	return len(b) >= len(p) && wire.EqualFold(b[:len(p)], p)
}
