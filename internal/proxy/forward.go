package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
)

// copyBufSize is the size of the pooled buffers bodies are copied through.
const copyBufSize = 32 << 10

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// upstreamTrace follows one request's trip through the pool. Dial and TLS
// callbacks can run on the transport's dial goroutine, even after
// RoundTrip returned (a conn dialed for this request may be handed to
// another), so the fields they touch are atomic.
type upstreamTrace struct {
	// client is the client's response, which Got1xxResponse writes to
	// from the transport's read goroutine.
	client clientGuard
	// relay1xx says whether interim responses may be passed on; n1xx
	// counts those passed.
	relay1xx  bool
	n1xx      int
	getConn   time.Time
	connect   time.Duration
	conns     int
	reused    bool
	resumed   atomic.Bool
	handshake atomic.Bool
	trace     httptrace.ClientTrace
}

func newUpstreamTrace(w http.ResponseWriter, r *http.Request) *upstreamTrace {
	t := &upstreamTrace{client: clientGuard{w: w}, relay1xx: relay1xx(r)}
	t.trace = httptrace.ClientTrace{
		GetConn: func(string) { t.getConn = time.Now() },
		GotConn: func(info httptrace.GotConnInfo) {
			t.conns++
			t.reused = info.Reused || prewarmed(info.Conn)
			if !t.reused {
				t.connect = time.Since(t.getConn)
			}
		},
		TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
			if err == nil {
				t.handshake.Store(true)
				t.resumed.Store(cs.DidResume)
			}
		},
		Got1xxResponse: t.got1xx,
	}
	return t
}

// clientGuard lets a goroutine other than the handler's write an interim
// response to the client only until the handler takes the response back
// (close): before it writes the final head, and before it returns. The
// transport runs Got1xxResponse on its read goroutine, which outlives a
// RoundTrip that returned early (the client went away, the response
// header timeout fired) and goes on parsing the 1xx responses it had
// buffered; a late one written then would race the handler's own writes
// to the header map, or reach a response net/http already finished.
type clientGuard struct {
	mu     sync.Mutex
	w      http.ResponseWriter
	closed bool
}

// interim runs write with the client's response unless the guard is
// closed, and reports whether it ran.
func (g *clientGuard) interim(write func(http.ResponseWriter)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	write(g.w)
	return true
}

// close hands the response back to the handler for good: it waits for an
// interim write in progress, and drops every later one.
func (g *clientGuard) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// prewarmed reports whether c, new to the transport, was opened ahead of
// its first request (-prewarm): that request reused it as it would a
// pooled one, paying no connect and no handshake.
func prewarmed(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	p, ok := c.(interface{ Prewarmed() bool })
	return ok && p.Prewarmed()
}

// max1xx bounds the interim responses relayed for one request: once they
// are handed to us, net/http no longer limits them.
const max1xx = 16

// errTooManyInterim is the cause of a response with more than max1xx
// interim responses.
var errTooManyInterim = errors.New("origin sent more than 16 interim (1xx) responses")

// relay1xx reports whether interim responses to r may be relayed. Never to
// an HTTP/1.0 client (RFC 9110 section 15.2). Nor while a request body
// with "Expect: 100-continue" may still be read: net/http's server writes
// its own 100 Continue on the first body read, from the transport's write
// goroutine, and a 1xx written at the same time from the read goroutine
// would interleave with it.
func relay1xx(r *http.Request) bool {
	if !r.ProtoAtLeast(1, 1) {
		return false
	}
	return r.ContentLength == 0 || !hasToken(r.Header, "Expect", "100-continue")
}

// got1xx relays an interim response (102, 103) to the client. 100 Continue
// is left to net/http's server, which sends it when the transport starts
// reading the request body, that is after the origin's own 100. One that
// comes after the handler took the response back is dropped.
func (t *upstreamTrace) got1xx(code int, header textproto.MIMEHeader) error {
	if code == http.StatusContinue || !t.relay1xx {
		return nil
	}
	if t.n1xx++; t.n1xx > max1xx {
		return errTooManyInterim
	}
	t.client.interim(func(w http.ResponseWriter) { writeInterim(w, code, header) })
	return nil
}

// writeInterim writes one interim response with the origin's fields, less
// the hop-by-hop ones. net/http sends the whole header map with a 1xx, so
// the fields the handler set before (a "Connection: close") are set aside
// meanwhile and put back after.
//
// net/http's HTTP/2 server encodes a 1xx from the map itself, on its frame
// writer goroutine, and WriteHeader returns without waiting for it when
// the client reset the stream meanwhile: a map changed after that races
// the encoder (concurrent map read and write kill the process). It works
// on a copy when the map holds a Content-Length or Transfer-Encoding key,
// which no 1xx carries (HTTP/1 leaves both out of a 1xx too); an empty
// Content-Length makes it copy, and writes no field.
func writeInterim(w http.ResponseWriter, code int, header textproto.MIMEHeader) {
	h := w.Header()
	var kept http.Header
	if len(h) > 0 {
		kept = h.Clone()
		clear(h)
	}
	for k, vv := range header {
		h[k] = vv
	}
	removeHopByHop(h)
	h["Content-Length"] = nil
	w.WriteHeader(code)
	clear(h)
	for k, vv := range kept {
		h[k] = vv
	}
}

// forward proxies an absolute-form request through the pool, and ends
// the exchange (End). requested is the URL the client asked for, as
// logged: a base-URL route sends a request for its target (route.go).
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, requested string) {
	entry := newEntry(r, requested, entryKind(r))
	outreq, err := h.outboundRequest(r, entry)
	answered := false
	if err == nil {
		answered, err = h.answerMaxForwards(w, r, outreq, entry)
	}
	if err == nil && !answered {
		var ctx context.Context
		var watch *bodyWatch
		// From here on the answer goes through the watch's writer.
		ctx, watch, w = h.watchBody(r.Context(), w, r)
		// Whatever way this handler leaves, the watch's timer touches
		// nothing after it.
		defer watch.close()
		err = h.send(ctx, w, r, outreq, entry, watch)
	}
	h.End(w, entry, err)
	abortIfCut(err)
}

// send sends outreq upstream and relays the answer to w.
func (h *Handler) send(ctx context.Context, w http.ResponseWriter, r, outreq *http.Request, entry *accesslog.Entry, watch *bodyWatch) error {
	if cb, ok := outreq.Body.(*countingBody); ok {
		cb.rc = watch.wrap(cb.rc)
	}
	if err := h.bufferRetryBody(r, outreq, watch); err != nil {
		if watch.hasStalled() {
			closeAfter(w, r)
		}
		return err
	}
	if _, ok := outreq.Header["Upgrade"]; ok {
		return h.serveUpgrade(w, r, outreq, entry, watch)
	}
	resp, err := h.roundTrip(ctx, w, r, outreq, entry, watch)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The origin switched to something the client, which asked for
		// no upgrade, cannot speak.
		resp.Body.Close()
		return UnaskedSwitch(r.URL.Host, quote(upgradeType(resp.Header)))
	}
	return h.writeResponse(w, r, resp, entry, watch)
}

// roundTrip sends outreq upstream with ctx, relaying interim responses to
// w meanwhile; a failure is returned as the answer to send.
func (h *Handler) roundTrip(ctx context.Context, w http.ResponseWriter, r, outreq *http.Request, entry *accesslog.Entry, watch *bodyWatch) (*http.Response, *Error) {
	tr := newUpstreamTrace(w, r)
	// Whatever way this handler leaves, no interim response is written
	// after it.
	defer tr.client.close()
	outreq = outreq.WithContext(httptrace.WithClientTrace(ctx, &tr.trace))
	resp, err := h.transport.RoundTrip(outreq)
	// From here on, only the handler's goroutine writes to the client.
	tr.client.close()
	entry.Reused, entry.Connect, entry.TLSResumed = tr.reused, tr.connect, tr.resumed.Load()
	if tr.conns > 1 {
		entry.Retries = tr.conns - 1
	}
	if err == nil {
		return resp, nil
	}
	cb, _ := outreq.Body.(*countingBody)
	switch {
	case watch.hasStalled():
		closeAfter(w, r)
		return nil, watch.stallError(outreq.URL.Host)
	case ctx.Err() != nil:
		return nil, ClientGone(ctx.Err())
	case cb != nil && cb.failed.Load():
		// The client's body, not the origin, broke the request: a bad
		// chunk size, or fewer bytes than its Content-Length.
		return nil, BadBody(outreq.URL.Host, err)
	}
	return nil, errorFor(outreq.URL.Host, err)
}

// outboundRequest checks r and returns the request sent upstream, a
// copy of r with a header of its own: the scheme the protocol header
// asks for, hop-by-hop fields removed, Via added. r is left as it is,
// but for the trailer map it may get (trailerMap).
func (h *Handler) outboundRequest(r *http.Request, entry *accesslog.Entry) (*http.Request, error) {
	u := r.URL
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return nil, badRequest("unsupported scheme %q in %s: warmproxy forwards http:// targets (use CONNECT for tunnels)", u.Scheme, r.RequestURI)
	}
	if vv, ok := r.Header[h.protocolHeader]; ok {
		switch v := textproto.TrimString(strings.Join(vv, ",")); {
		case strings.EqualFold(v, "https"):
			scheme = "https"
		case strings.EqualFold(v, "http"):
			scheme = "http"
		default:
			return nil, badRequest("%s: %q is not a protocol warmproxy speaks to origins: want http or https", h.protocolHeader, v)
		}
	}
	if perr := checkAuthority(u.Host); perr != nil {
		return nil, perr
	}
	if viaNames(r.Header, h.viaName) {
		return nil, loopDetected("request to "+u.Host+" already passed through "+h.viaName+" (Via): refusing to loop", nil)
	}

	outreq := new(http.Request)
	*outreq = *r
	if scheme != u.Scheme {
		ou := *u
		ou.Scheme = scheme
		outreq.URL = &ou
		entry.URL = ou.String()
	}
	hdr := r.Header.Clone()
	delete(hdr, h.protocolHeader)
	cleanRequestHeader(hdr, upgradeType(hdr))
	h.via.add(hdr, r.ProtoMajor, r.ProtoMinor)
	if _, ok := hdr["User-Agent"]; !ok {
		// Go's transport would add its own; the origin sees the client's
		// headers only.
		hdr["User-Agent"] = nil
	}
	outreq.Header = hdr
	outreq.RequestURI = ""
	outreq.Host = ""
	outreq.Close = false
	if r.ContentLength == 0 {
		outreq.Body = nil
	}
	trailerMap(r)
	// Declared: the transport would announce them to the origin.
	dropBadTrailers(r.Trailer)
	outreq.Trailer = r.Trailer
	if outreq.Body != nil && outreq.Body != http.NoBody {
		outreq.Body = &countingBody{rc: outreq.Body, trailer: r.Trailer, dropped: h.trailersDropped}
	}
	return outreq, nil
}

// trailerMap gives r, when its body is chunked and it declared no
// trailers, the map net/http's server merges the trailers into when the
// body ends: the outbound request shares it, so the transport sends them
// on. It is the one change the Handler makes to a request it was given.
func trailerMap(r *http.Request) {
	if r.Trailer == nil && len(r.TransferEncoding) > 0 {
		r.Trailer = make(http.Header)
	}
}

// checkAuthority rejects a target authority with no host or a bad port.
func checkAuthority(hostport string) *Error {
	if hostport == "" {
		return badRequest("request target names no host")
	}
	host, port := hostport, ""
	// A name with no port (the common case) or a bracketed IPv6 literal
	// with none has nothing to split.
	if strings.IndexByte(hostport, ':') >= 0 && !strings.HasSuffix(hostport, "]") {
		h, p, err := net.SplitHostPort(hostport)
		if err != nil {
			return badRequest("bad authority %q in request target", hostport)
		}
		host, port = h, p
	}
	if host == "" || host == "[]" {
		return badRequest("request target %q names no host", hostport)
	}
	if !validHost(host) {
		return badRequest("bad host %q in request target: want a DNS name (letters, digits, '-', '.', '_'), an IPv4 address or a bracketed IPv6 address", host)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return badRequest("bad port %q in request target %q: want 1-65535", port, hostport)
		}
	}
	return nil
}

// validHost reports whether host, a request target's host with any port
// split off, is a name or an IP literal that can name an origin: a
// bracketed or bare (split from its port) IPv6 address without a zone,
// an IPv4 address, or a DNS name of letters, digits, '-', '.' and '_'.
// Anything else ("<b>x", "a b", "%00") could only fail at the resolver,
// and would reach the logs, the pool's per-origin stats and the resolver
// first (issue 12).
func validHost(host string) bool {
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return false
		}
		host = host[1 : len(host)-1]
		a, err := netip.ParseAddr(host)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	if strings.IndexByte(host, ':') >= 0 {
		a, err := netip.ParseAddr(host)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_':
		default:
			return false
		}
	}
	return true
}

// answerMaxForwards implements RFC 9110 section 7.6.2 for TRACE and
// OPTIONS: with Max-Forwards 0 warmproxy answers itself, sets the status
// and bytes sent in entry and returns answered; above 0 the value is
// decremented in outreq and the request goes on. A value that is not a
// number is an error to send.
func (h *Handler) answerMaxForwards(w http.ResponseWriter, r, outreq *http.Request, entry *accesslog.Entry) (answered bool, err error) {
	if r.Method != http.MethodTrace && r.Method != http.MethodOptions {
		return false, nil
	}
	v, ok := outreq.Header["Max-Forwards"]
	if !ok {
		return false, nil
	}
	n, perr := strconv.ParseUint(textproto.TrimString(strings.Join(v, "")), 10, 31)
	if perr != nil {
		return false, badRequest("Max-Forwards %q: want a whole number", strings.Join(v, ","))
	}
	if n > 0 {
		outreq.Header["Max-Forwards"] = []string{strconv.FormatUint(n-1, 10)}
		return false, nil
	}
	var body []byte
	if r.Method == http.MethodTrace {
		w.Header().Set("Content-Type", "message/http")
		body = traceEcho(r, outreq.Header)
	} else {
		w.Header().Set("Allow", "OPTIONS, GET, HEAD, POST, PUT, DELETE, PATCH, TRACE, CONNECT")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	n2, _ := w.Write(body)
	entry.Status, entry.BytesOut = http.StatusOK, int64(n2)
	return true, nil
}

// traceEcho renders the request r as it would go on, with header hdr,
// less fields that carry credentials (RFC 9110 section 9.3.8).
func traceEcho(r *http.Request, hdr http.Header) []byte {
	var b bytes.Buffer
	b.WriteString(r.Method + " " + r.RequestURI + " " + r.Proto + "\r\n")
	hdr = hdr.Clone()
	for _, k := range []string{"Authorization", "Cookie", "Proxy-Authorization"} {
		delete(hdr, k)
	}
	hdr.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}

// bufferRetryBody reads a small request body up front, so that the
// transport may resend it on a fresh connection when a pooled one turns out
// to be closed before any byte of the request reached the origin. A body
// with "Expect: 100-continue" is never read early: the origin decides.
func (h *Handler) bufferRetryBody(r, outreq *http.Request, watch *bodyWatch) *Error {
	if r.ContentLength <= 0 || r.ContentLength > h.retryBodyBytes || hasToken(r.Header, "Expect", "100-continue") {
		return nil
	}
	buf := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(watch.wrap(r.Body), buf); err != nil {
		if watch.hasStalled() {
			return watch.stallError(outreq.URL.Host)
		}
		if r.Context().Err() != nil {
			return ClientGone(err)
		}
		return shortBody(err)
	}
	outreq.Body = &countingBody{rc: io.NopCloser(bytes.NewReader(buf))}
	outreq.GetBody = func() (io.ReadCloser, error) { return &countingBody{rc: io.NopCloser(bytes.NewReader(buf))}, nil }
	return nil
}

// writeResponse relays resp: head, body (flushed as it arrives when its
// length is unknown), then trailers. watch, if not nil, is the watch on
// the request body, which may still be on its way. It returns what ended
// it early: an *Error before the head went out, a *LateError after.
func (h *Handler) writeResponse(w http.ResponseWriter, r *http.Request, resp *http.Response, entry *accesslog.Entry, watch *bodyWatch) error {
	defer resp.Body.Close()
	entry.Status = resp.StatusCode
	if resp.StatusCode < 100 || resp.StatusCode > 999 {
		return badStatus(resp.StatusCode, r.URL.Host)
	}
	announced := h.responseHead(w.Header(), resp)
	w.WriteHeader(resp.StatusCode)

	flushAll := resp.ContentLength < 0 || strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream")
	n, err := copyBody(w, resp.Body, flushAll, resp.ContentLength)
	entry.BytesOut = n
	if cb, ok := outreqBody(resp).(*countingBody); ok {
		entry.BytesIn = cb.n.Load()
	}
	if err != nil {
		return midBodyError(r, watch, err)
	}
	h.responseTrailers(w.Header(), resp.Trailer, announced)
	return nil
}

// responseHead copies resp's header to dst, the client's: less the
// hop-by-hop fields and the trailers not allowed, plus Via and the
// announcement of the trailers left, whose number it returns.
func (h *Handler) responseHead(dst http.Header, resp *http.Response) (announced int) {
	removeHopByHop(resp.Header)
	for k, vv := range resp.Header {
		dst[k] = vv
	}
	if _, ok := resp.Header["Content-Type"]; !ok {
		// net/http's server would sniff one from the body; an
		// intermediary adds none (RFC 9110 section 8.3). A nil value
		// is the documented way to stop it, and writes no field.
		dst["Content-Type"] = nil
	}
	h.via.add(dst, resp.ProtoMajor, resp.ProtoMinor)
	dropBadTrailers(resp.Trailer)
	if announced = len(resp.Trailer); announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		dst["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	return announced
}

// midBodyError is the failure err of a response body after its head
// went out: a client that went away is only recorded; for a request body
// that stalled, or an origin that failed, the client connection is cut
// (abortIfCut).
func midBodyError(r *http.Request, watch *bodyWatch, err error) *LateError {
	switch {
	case watch.hasStalled():
		return StalledMidResponse(watch.timeout)
	case r.Context().Err() != nil:
		return clientGoneMidResponse
	}
	return MidBody(err)
}

// responseTrailers sets the origin's trailers, less those not allowed
// (counted), in dst, the client's header, after the body. They go out
// under the TrailerPrefix form, which net/http's server sends whether or
// not they were announced in the head. The announced ones would also be
// sent by plain name; deleting that form keeps a field from going out
// twice.
func (h *Handler) responseTrailers(dst, trailer http.Header, announced int) {
	if n := dropBadTrailers(trailer); n > 0 {
		h.trailersDropped(TrailerResponse, n)
	}
	for k, vv := range trailer {
		if len(vv) == 0 {
			continue
		}
		if announced > 0 {
			delete(dst, k)
		}
		dst[http.TrailerPrefix+k] = vv
	}
}

// clientWriteError marks a failure to write to the client, as opposed to a
// failure to read from the origin.
type clientWriteError struct{ err error }

func (e clientWriteError) Error() string { return "write to client: " + e.err.Error() }
func (e clientWriteError) Unwrap() error { return e.err }

// copyBody streams src to w through a pooled buffer. With flushAll it
// flushes after every write, so a stream's pieces reach the client as
// they arrive; otherwise it flushes only when src has nothing more ready
// (a short read) and more is still to come.
func copyBody(w http.ResponseWriter, src io.Reader, flushAll bool, length int64) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	flusher, _ := w.(http.Flusher)
	var total int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			total += int64(nw)
			if werr != nil {
				return total, clientWriteError{werr}
			}
			if flusher != nil && (flushAll || nr < len(buf) && total < length) {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// countingBody counts the request body bytes the transport sends upstream.
// The transport reads it on its own goroutine, hence the atomic.
type countingBody struct {
	rc io.ReadCloser
	n  atomic.Int64
	// failed is set when reading the client's body failed (not at EOF).
	failed atomic.Bool
	// trailer is the request's trailer map, which net/http's server fills
	// in before the body's EOF and the transport sends after it; the
	// fields not allowed in trailers are dropped in between, and counted
	// with dropped.
	trailer http.Header
	dropped func(direction string, n int)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	if err == io.EOF && len(b.trailer) > 0 {
		if d := dropBadTrailers(b.trailer); d > 0 {
			b.dropped(TrailerRequest, d)
		}
	}
	if err != nil && err != io.EOF {
		b.failed.Store(true)
	}
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }

// outreqBody returns the body of the request resp answers.
func outreqBody(resp *http.Response) io.ReadCloser {
	if resp.Request == nil {
		return nil
	}
	return resp.Request.Body
}
