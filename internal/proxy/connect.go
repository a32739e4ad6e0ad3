package proxy

import (
	"io"
	"net"
	"net/http"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/tunnel"
)

// connectEstablished is the whole answer to a CONNECT that worked. It is
// written by hand after the hijack: a 2xx to CONNECT carries no
// Content-Length or Transfer-Encoding (RFC 9110 section 9.3.6), which
// net/http's response writer would add.
const connectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n"

// serveConnect opens a CONNECT tunnel: dial the target, answer 200, then
// relay bytes both ways (RFC 9110 section 9.3.6). It returns what ended
// the exchange early, for End.
func (h *Handler) serveConnect(w http.ResponseWriter, r *http.Request, entry *accesslog.Entry) error {
	target := r.RequestURI
	port, ok := connectPort(target)
	if !ok {
		return badRequest("CONNECT target %q: want host:port, e.g. CONNECT example.com:443", target)
	}
	if !h.connectPorts.Allows(port) {
		return denied(http.StatusForbidden, "CONNECT to "+target+" is not allowed: port not in -connect-ports (now "+h.connectPorts.String()+"); add it there, or * for any")
	}
	if h.intercept != nil && h.intercept.Match(connectHost(target), port) {
		return h.serveIntercept(w, r, entry, target)
	}
	origin, err := h.dial(r.Context(), "tcp", target)
	entry.Connect = time.Since(entry.Start)
	if err != nil {
		return upstreamError(r.Context(), target, err)
	}
	// Tracked before the hijack, so that a shutdown that starts meanwhile
	// sees this tunnel: http.Server.Shutdown stops waiting for a conn once
	// it is hijacked.
	defer h.track(origin)()

	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		origin.Close()
		return hijackFailed("CONNECT "+target, err)
	}
	// Tracked at once, before the 200 goes out: the server stopped
	// counting this conn at the hijack, and a client that reads the 200
	// must find the tunnel counted (-max-client-conns).
	defer h.track(client)()
	entry.Status = http.StatusOK
	if h.tunnelIdle > 0 {
		client.SetWriteDeadline(time.Now().Add(h.tunnelIdle))
	}
	if _, err := io.WriteString(client, connectEstablished); err != nil {
		client.Close()
		origin.Close()
		entry.End = tunnel.EndError
		return AfterHead(ClientGone(err))
	}
	// Bytes the client sent right behind the CONNECT head (a pipelined TLS
	// ClientHello) sit in the server's read buffer.
	h.relay(client, origin, tunnel.Options{ToOrigin: buffered(brw.Reader)}, entry)
	return nil
}

// connectPort checks a CONNECT request target, which must be host:port
// (RFC 9110 section 9.3.6), and returns the port.
func connectPort(target string) (int, bool) {
	host, p, err := net.SplitHostPort(target)
	if err != nil || host == "" || len(p) == 0 || len(p) > 5 || !validHost(host) {
		return 0, false
	}
	port := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		port = port*10 + int(c-'0')
	}
	return port, port >= 1 && port <= 65535
}

// connectHost is the host of a checked CONNECT target, without the
// brackets of an IPv6 literal.
func connectHost(target string) string {
	host, _, _ := net.SplitHostPort(target)
	return host
}
