package h1server

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/wire"
)

// The heads the connection server writes: the request to the origin and
// the response to the client, built from the received field lines in
// their order and case, less the hop-by-hop fields (RFC 9110 section
// 7.6.1) and those the Connection field names, plus this hop's Via.

// appendRequestHead appends the head of r (parsed from b) as it goes to
// the origin: origin-form target, Host set to the target's authority (RFC
// 9112 section 3.2.2), the protocol header and hop-by-hop fields left out,
// "TE: trailers" kept, Content-Length written once.
func (cc *clientConn) appendRequestHead(dst []byte, r *wire.RequestHead, b []byte) []byte {
	dst = append(dst, r.Method.In(b)...)
	dst = append(dst, ' ')
	path, host := b[r.Authority.End:r.Target.End], r.Authority.In(b)
	if r.Form == wire.OriginForm {
		// Inside an intercepted tunnel: the target is the path, the
		// Host the tunnel's authority (checked).
		path, host = r.Target.In(b), r.Host.In(b)
	}
	if len(path) == 0 || path[0] != '/' {
		dst = append(dst, '/')
	}
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, '\r', '\n')
	trailers := false
	for _, f := range r.Fields {
		name := f.Name.In(b)
		switch {
		case wire.EqualFold(name, "host"), wire.EqualFold(name, "content-length"), wire.EqualFold(name, cc.s.h.ProtocolHeader()):
			continue
		case wire.EqualFold(name, "te"):
			trailers = trailers || wire.HasToken(f.Value.In(b), "trailers")
			continue
		case proxy.IsHopByHop(name) || namedByConnection(r.Fields, b, name):
			continue
		}
		dst = appendField(dst, name, f.Value.In(b))
	}
	if trailers {
		dst = append(dst, "TE: trailers\r\n"...)
	}
	switch r.Framing {
	case wire.BodyLength:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, r.ContentLength, 10)
		dst = append(dst, '\r', '\n')
	case wire.BodyChunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
		dst = appendTrailerField(dst, b, r.Fields)
	}
	dst = append(dst, "Via: 1.1 "...)
	dst = append(dst, cc.s.h.ViaName()...)
	return append(dst, "\r\n\r\n"...)
}

// appendResponseHead appends the head of h as it goes to the client. A
// final head gets Via, a Date when the origin sent none (RFC 9110 section
// 6.6.1, as net/http's server adds one), its framing (a body delimited by
// the origin's close goes out chunked), the Trailer fields allowed, and
// "Connection: close" with closeAfter; an interim head gets only its own
// fields less the hop-by-hop ones.
func (cc *clientConn) appendResponseHead(dst []byte, h *wire.ResponseHead, closeAfter bool) []byte {
	b := h.Bytes()
	dst = append(dst, "HTTP/1.1 "...)
	dst = append(dst, h.Code.In(b)...)
	dst = append(dst, ' ')
	if h.Reason.Len() > 0 {
		dst = append(dst, h.Reason.In(b)...)
	} else {
		dst = append(dst, http.StatusText(h.Status)...)
	}
	dst = append(dst, '\r', '\n')
	final := h.Status >= 200
	hasDate := false
	for _, f := range h.Fields {
		name := f.Name.In(b)
		switch {
		case proxy.IsHopByHop(name) || namedByConnection(h.Fields, b, name):
			continue
		case h.Framing == wire.BodyChunked && wire.EqualFold(name, "content-length"):
			continue
		case wire.EqualFold(name, "date"):
			hasDate = true
		}
		dst = appendField(dst, name, f.Value.In(b))
	}
	if !final {
		return append(dst, '\r', '\n')
	}
	switch h.Framing {
	case wire.BodyChunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
		dst = appendTrailerField(dst, b, h.Fields)
	case wire.BodyClose:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	if !hasDate {
		dst = append(dst, "Date: "...)
		dst = appendDate(dst)
		dst = append(dst, '\r', '\n')
	}
	if h.Minor == 0 {
		dst = append(dst, "Via: 1.0 "...)
	} else {
		dst = append(dst, "Via: 1.1 "...)
	}
	dst = append(dst, cc.s.h.ViaName()...)
	dst = append(dst, '\r', '\n')
	if closeAfter {
		dst = append(dst, "Connection: close\r\n"...)
	}
	return append(dst, '\r', '\n')
}

// appendTrailerField announces the trailer fields the Trailer fields
// among fields (of b) name that may be relayed, as the sender named them.
func appendTrailerField(dst, b []byte, fields []wire.Field) []byte {
	n := 0
	for _, f := range fields {
		if !wire.EqualFold(f.Name.In(b), "trailer") {
			continue
		}
		v := f.Value.In(b)
		for len(v) > 0 {
			var name []byte
			name, v = nextElement(v)
			if len(name) == 0 || !wire.AllowedInTrailer(name) {
				continue
			}
			if n == 0 {
				dst = append(dst, "Trailer: "...)
			} else {
				dst = append(dst, ", "...)
			}
			dst = append(dst, name...)
			n++
		}
	}
	if n > 0 {
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// appendField appends one field line.
func appendField(dst, name, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':', ' ')
	dst = append(dst, value...)
	return append(dst, '\r', '\n')
}

// namedByConnection reports whether a Connection field among fields (of
// b) lists name.
func namedByConnection(fields []wire.Field, b, name []byte) bool {
	for _, f := range fields {
		if !wire.EqualFold(f.Name.In(b), "connection") {
			continue
		}
		for v := f.Value.In(b); len(v) > 0; {
			var tok []byte
			tok, v = nextElement(v)
			if bytes.EqualFold(tok, name) {
				return true
			}
		}
	}
	return false
}

// nextElement splits the first element off a comma-separated list,
// trimmed of whitespace.
func nextElement(v []byte) (elem, rest []byte) {
	i := bytes.IndexByte(v, ',')
	if i < 0 {
		elem, rest = v, nil
	} else {
		elem, rest = v[:i], v[i+1:]
	}
	return bytes.TrimSpace(elem), rest
}

// cachedDate is the Date value of one second.
type cachedDate struct {
	sec int64
	v   []byte
}

var dateCache atomic.Pointer[cachedDate]

// appendDate appends the current time in the HTTP date format, built
// once a second.
func appendDate(dst []byte) []byte {
	now := time.Now()
	d := dateCache.Load()
	if d == nil || d.sec != now.Unix() {
		d = &cachedDate{sec: now.Unix(), v: now.UTC().AppendFormat(nil, http.TimeFormat)}
		dateCache.Store(d)
	}
	return append(dst, d.v...)
}

// headWriter is the http.ResponseWriter the connection server renders its
// own answers through (the Handler's error answers, the 503 past the
// request gate), so they read exactly as net/http's side writes them.
type headWriter struct {
	h    http.Header
	code int
	body []byte
}

func newHeadWriter() *headWriter { return &headWriter{h: http.Header{}} }

func (w *headWriter) Header() http.Header { return w.h }

func (w *headWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *headWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// render renders the response, saying "Connection: close" with
// closeAfter, and its body only withBody: the answer to a
// HEAD request says how long the body would be and sends none (RFC 9110
// section 9.3.2), or the next response on the connection would begin
// with it.
func (w *headWriter) render(closeAfter, withBody bool) []byte {
	if closeAfter {
		w.h["Connection"] = []string{"close"}
	}
	if _, ok := w.h["Date"]; !ok {
		w.h["Date"] = []string{string(appendDate(nil))}
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(w.code) + " " + http.StatusText(w.code) + "\r\n")
	w.h.Write(&b)
	b.WriteString("\r\n")
	if withBody {
		b.Write(w.body)
	}
	return b.Bytes()
}

// answerWriter is the headWriter Handler.End answers through; send
// writes the answer to the client once End has recorded the exchange.
type answerWriter struct {
	*headWriter
	c          net.Conn
	closeAfter bool
	// headOnly: the request was HEAD.
	headOnly bool
}

// send writes the answer to the client. A failed write is not recorded
// again (nor is a failed flush on net/http's side).
func (w *answerWriter) send() { w.c.Write(w.render(w.closeAfter, !w.headOnly)) }
