package netx

import "net"

// PrefixConn is a connection some of whose bytes were already read (by a
// head parser, from a bufio.Reader): its reads return those first, then
// read the connection beneath.
type PrefixConn struct {
	net.Conn
	pending []byte
}

// Prefixed returns c with pending read first; it keeps pending, which the
// caller must not change afterwards. It wraps c even with nothing
// pending: what is handed on is then never c's own type (a *tls.Conn
// stays hidden from an http.Server that would otherwise serve it as TLS).
func Prefixed(c net.Conn, pending []byte) *PrefixConn {
	return &PrefixConn{Conn: c, pending: pending}
}

func (c *PrefixConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the connection beneath, for the tunnel relay's splice,
// once no read-ahead byte is left (a wrapper the relay looks through must
// hold none, see tunnel.Relay); nil before.
func (c *PrefixConn) NetConn() net.Conn {
	if len(c.pending) > 0 {
		return nil
	}
	return c.Conn
}

// CloseWrite half-closes the connection beneath, for tunnels; it does
// nothing when that one cannot half-close.
func (c *PrefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
