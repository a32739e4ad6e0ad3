package proxy

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/headlimit"
	"github.com/warmproxy/warmproxy/internal/proxystatus"
	"github.com/warmproxy/warmproxy/internal/tunnel"
)

// maxInterim bounds the 1xx interim responses (100, 102, 103) skipped
// before an upgrade request's final answer.
const maxInterim = 8

// serveUpgrade forwards a request that asks to switch protocols (Upgrade
// plus "Connection: upgrade", e.g. WebSocket). It goes out on a
// connection of its own, dialled like the pool's (with TLS when the
// protocol header asks for https), never on a pooled one: after a 101 the
// connection belongs to the tunnel, which then gets a real conn that can
// half-close, take deadlines and, for plain TCP, splice.
//
// On 101 for a protocol the client asked for, warmproxy relays the 101 and
// then bytes both ways. Any other final status is an ordinary response:
// no tunnel, and the client connection stays usable as after any request.
// It returns what ended the exchange early, as writeResponse does.
func (h *Handler) serveUpgrade(w http.ResponseWriter, r, outreq *http.Request, entry *accesslog.Entry, watch *bodyWatch) error {
	ctx := r.Context()
	u := outreq.URL
	origin, err := h.dialUpgrade(ctx, u.Scheme, u.Host)
	entry.Connect = time.Since(entry.Start)
	if err != nil {
		return upstreamError(ctx, u.Host, err)
	}
	defer h.track(origin)()
	// The client going away abandons the exchange. Once the tunnel starts
	// it owns origin, and this no longer applies.
	tunnelOwns := false
	stop := context.AfterFunc(ctx, func() { origin.Close() })
	defer func() {
		stop()
		if !tunnelOwns {
			origin.Close()
		}
	}()

	resp, br, err := h.sendUpgrade(origin, outreq)
	if err != nil {
		if watch.hasStalled() {
			closeAfter(w, r)
			return watch.stallError(u.Host)
		}
		return upstreamError(ctx, u.Host, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return h.writeResponse(w, r, resp, entry, watch)
	}

	entry.Kind = accesslog.KindUpgrade
	entry.Status = resp.StatusCode
	reqUp, respUp := upgradeType(outreq.Header), upgradeType(resp.Header)
	if !switchAllowed(reqUp, respUp) {
		return upgradeFailed("origin " + u.Host + " switched to protocol " + quote(respUp) + " the client did not ask for (" + quote(reqUp) + ")")
	}
	if !stop() {
		// The client left while the origin answered.
		return ClientGone(context.Cause(ctx))
	}

	// The tunnel reads the client's connection from now on: the body
	// watch must never set a deadline on it.
	if watch != nil {
		watch.stop()
	}
	removeHopByHop(resp.Header)
	resp.Header["Connection"] = []string{"Upgrade"}
	resp.Header["Upgrade"] = []string{respUp}
	appendVia(resp.Header, resp.ProtoMajor, resp.ProtoMinor, h.viaName)
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return hijackFailed("the upgrade to "+u.Host, err)
	}
	// Tracked at once: the server stopped counting it at the hijack.
	defer h.track(client)()
	// After a hijack the server writes nothing: the 101 head goes out by
	// hand.
	if h.tunnelIdle > 0 {
		client.SetWriteDeadline(time.Now().Add(h.tunnelIdle))
	}
	if err := writeSwitch(brw.Writer, resp.Header); err != nil {
		client.Close()
		entry.End = tunnel.EndError
		return AfterHead(ClientGone(err))
	}
	tunnelOwns = true
	h.relay(client, origin, tunnel.Options{
		ToOrigin: buffered(brw.Reader),
		ToClient: buffered(br),
	}, entry)
	return nil
}

// dialUpgrade opens the connection an upgrade request goes out on.
func (h *Handler) dialUpgrade(ctx context.Context, scheme, host string) (net.Conn, error) {
	if scheme == "https" {
		if h.dialTLS == nil {
			return nil, badGateway(proxystatus.ProxyInternalError, "no TLS dialer configured for upgrades to https origins", nil)
		}
		return h.dialTLS(ctx, "tcp", hostPort(host, "443"))
	}
	return h.dial(ctx, "tcp", hostPort(host, "80"))
}

// sendUpgrade writes outreq on origin and reads the final response head,
// within the response header timeout and headlimit.MaxResponseBytes. The
// response body, if any, reads from the returned reader; bytes behind a
// 101 head are buffered there.
func (h *Handler) sendUpgrade(origin net.Conn, outreq *http.Request) (*http.Response, *bufio.Reader, error) {
	if h.responseHeaderTimeout > 0 {
		origin.SetDeadline(time.Now().Add(h.responseHeaderTimeout))
	}
	if err := outreq.Write(origin); err != nil {
		return nil, nil, err
	}
	// The heads, interim ones included, share one bound: an origin that
	// sends header lines forever gets a 502, not the proxy's memory.
	lr := headlimit.NewReader(origin, headlimit.MaxResponseBytes)
	br := bufio.NewReader(lr)
	for range maxInterim {
		resp, err := headlimit.ReadResponse(lr, br, outreq)
		if err != nil {
			return nil, nil, err
		}
		if resp.StatusCode < 100 {
			return nil, nil, badStatus(resp.StatusCode, outreq.URL.Host)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			lr.Lift()
			origin.SetDeadline(time.Time{})
			return resp, br, nil
		}
	}
	return nil, nil, badGateway(proxystatus.HTTPProtocolError, "origin "+outreq.URL.Host+" sent more than 8 interim responses", nil)
}

// upstreamError is the answer to a failure to reach the origin target
// with ctx, the client's: a 499 when the client is the one that went
// away.
func upstreamError(ctx context.Context, target string, err error) *Error {
	if ctx.Err() != nil {
		return ClientGone(err)
	}
	return errorFor(target, err)
}

// switchAllowed reports whether a 101 naming the protocols got may answer
// a request that offered want: each protocol switched to must be one the
// client offered (RFC 9110 section 7.8). Both are comma-separated lists.
func switchAllowed(want, got string) bool {
	if want == "" || strings.TrimSpace(got) == "" {
		return false
	}
	for got != "" {
		var g string
		g, got, _ = strings.Cut(got, ",")
		if g = textproto.TrimString(g); g == "" {
			continue
		}
		if !offered(want, g) {
			return false
		}
	}
	return true
}

func offered(list, proto string) bool {
	for list != "" {
		var p string
		p, list, _ = strings.Cut(list, ",")
		if asciiEqualFold(textproto.TrimString(p), proto) {
			return true
		}
	}
	return false
}

// writeSwitch writes a 101 head with header h, then flushes.
func writeSwitch(bw *bufio.Writer, h http.Header) error {
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h.Write(bw)
	bw.WriteString("\r\n")
	return bw.Flush()
}

// relay runs a tunnel between client and origin and sets in entry how
// it ended. The caller tracks both conns.
func (h *Handler) relay(client, origin net.Conn, o tunnel.Options, entry *accesslog.Entry) {
	o.Idle = h.tunnelIdle
	res := tunnel.Relay(client, origin, o)
	entry.BytesIn, entry.BytesOut, entry.End = res.Up, res.Down, res.End
	if res.Err != nil {
		entry.Detail = res.Err.Error()
	}
}

// track registers c for shutdown and returns the function that forgets it.
func (h *Handler) track(c net.Conn) (untrack func()) {
	if h.tunnels == nil {
		return func() {}
	}
	return h.tunnels.Track(c)
}

// buffered returns the bytes br holds that were read but not yet consumed:
// a pipelined TLS ClientHello after a CONNECT head, a WebSocket frame sent
// right after the upgrade request, or the origin's first frames behind its
// 101 head.
func buffered(br *bufio.Reader) []byte {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := br.Peek(n)
	return append([]byte(nil), b...)
}

// hostPort returns host with port def added when it names none.
func hostPort(host, def string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		return host + ":" + def
	}
	return net.JoinHostPort(host, def)
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
