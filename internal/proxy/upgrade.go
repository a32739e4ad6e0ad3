package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/tunnel"
)

// serveUpgrade relays a 101 Switching Protocols answer to an upgrade
// request, then the bytes of the new protocol both ways. A request whose
// upgrade the origin refused never gets here: any other status is an
// ordinary response.
func (h *Handler) serveUpgrade(w http.ResponseWriter, r, outreq *http.Request, resp *http.Response, entry *accesslog.Entry) {
	entry.Kind = accesslog.KindUpgrade
	entry.Status = resp.StatusCode
	reqUp := upgradeType(outreq.Header)
	respUp := upgradeType(resp.Header)
	origin, ok := resp.Body.(io.ReadWriteCloser)
	if reqUp == "" || !asciiEqualFold(reqUp, respUp) || !ok {
		resp.Body.Close()
		h.fail(w, entry, &Error{Status: http.StatusBadGateway, Type: PSHTTPUpgradeFailed,
			Msg: "origin " + r.URL.Host + " switched to protocol " + quote(respUp) + " the client did not ask for (" + quote(reqUp) + ")"})
		return
	}
	removeHopByHop(resp.Header)
	dst := w.Header()
	for k, vv := range resp.Header {
		dst[k] = vv
	}
	dst["Connection"] = []string{"Upgrade"}
	dst["Upgrade"] = []string{respUp}
	appendVia(dst, resp.ProtoMajor, resp.ProtoMinor, h.viaName)

	rc := http.NewResponseController(w)
	client, brw, err := rc.Hijack()
	if err != nil {
		origin.Close()
		h.fail(w, entry, &Error{Status: http.StatusInternalServerError, Type: PSProxyInternalError, Msg: "cannot take over the client connection", Err: err})
		return
	}
	// The 101 head is written by hand: after a hijack the server writes
	// nothing.
	resp.Header = dst
	if err := writeHead(brw.Writer, resp); err != nil {
		client.Close()
		origin.Close()
		entry.Error, entry.Detail = PSConnectionTerminated, "client went away"
		entry.Duration = time.Since(entry.Start)
		h.record(entry)
		return
	}
	originConn, ok := origin.(net.Conn)
	if !ok {
		originConn = rwcConn{ReadWriteCloser: origin, Conn: client}
	}
	h.relay(client, originConn, buffered(brw.Reader), entry)
}

// writeHead writes resp's status line and header, then flushes.
func writeHead(bw *bufio.Writer, resp *http.Response) error {
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	resp.Header.Write(bw)
	bw.WriteString("\r\n")
	return bw.Flush()
}

// rwcConn lets the upgraded origin stream net/http hands back (an
// io.ReadWriteCloser over the pooled conn, not the conn) ride the tunnel.
// Addresses come from the client's conn; deadlines are no-ops, so the
// tunnel's idle timeout is enforced through the client side, whose
// deadline looks at activity in both directions.
type rwcConn struct {
	io.ReadWriteCloser
	net.Conn
}

func (c rwcConn) Read(p []byte) (int, error)       { return c.ReadWriteCloser.Read(p) }
func (c rwcConn) Write(p []byte) (int, error)      { return c.ReadWriteCloser.Write(p) }
func (c rwcConn) Close() error                     { return c.ReadWriteCloser.Close() }
func (c rwcConn) SetDeadline(time.Time) error      { return nil }
func (c rwcConn) SetReadDeadline(time.Time) error  { return nil }
func (c rwcConn) SetWriteDeadline(time.Time) error { return nil }

// relay runs a tunnel between client and origin and logs it when it ends.
func (h *Handler) relay(client, origin net.Conn, pending []byte, entry *accesslog.Entry) {
	if h.tunnels != nil {
		defer h.tunnels.Track(client)()
		defer h.tunnels.Track(origin)()
	}
	res := tunnel.Relay(client, origin, pending, h.tunnelIdle)
	entry.BytesIn, entry.BytesOut, entry.End = res.Up, res.Down, res.End
	entry.Duration = time.Since(entry.Start)
	h.record(entry)
}

// buffered returns the bytes br holds that were read from the client but
// not yet consumed: a pipelined TLS ClientHello after a CONNECT head, or a
// WebSocket frame sent right after the upgrade request.
func buffered(br *bufio.Reader) []byte {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := br.Peek(n)
	return append([]byte(nil), b...)
}

func quote(s string) string { return "\"" + s + "\"" }

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
