package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"slices"

	"golang.org/x/net/http/httpguts"
)

// This file is the differential oracle: what net/http decides on the same
// bytes, and the documented places where wire deliberately decides
// otherwise. Each difference is a rejection by wire of input net/http
// accepts; wire never accepts what net/http rejects.
//
// Deliberate differences (wire is stricter), with the reason:
//
//  1. obs-fold (a field line starting with SP or HTAB): net/http joins it
//     to the previous line; wire rejects it (RFC 9112 section 5.2 allows
//     either), because a proxy that forwards field lines byte-exact would
//     otherwise send the fold on, and origins disagree about it.
//  2. A bare CR just before the line ending ("v\r\r\n"): net/http's
//     textproto trims it; wire rejects it (RFC 9112 section 2.2).
//  3. A malformed or differing Content-Length beside Transfer-Encoding:
//     chunked: net/http deletes it unread; wire rejects the message, which
//     a proxy would close the connection on anyway (smuggling).
//  4. Responses: a space before the colon ("Content-Length : 5"), which
//     http.ReadResponse keeps as a different field name; wire rejects it
//     (RFC 9112 section 5.1; net/http's server rejects it in requests).
//  5. Responses: a status code that is not three digits from 100 ("+20",
//     "099"), a control byte in the reason phrase, and a version other
//     than HTTP/1.x: ReadResponse accepts them; wire rejects them (RFC
//     9112 section 4 and RFC 9110 section 15; an HTTP/1.1 connection
//     carries no HTTP/2.0 response).
//  6. Chunked bodies: a control byte in a chunk extension (net/http skips
//     the extension unread); in the trailer section a bare LF or CR, an
//     obs-fold, or a space before the colon (net/http reads the trailer
//     with textproto, as lax as in heads). RFC 9112 section 7.1.1 and 7.1.2.
//
//  7. CONNECT with an empty request-target: net/http parses "http://"
//     and accepts an empty authority; wire rejects an empty target for
//     every method (RFC 9112 section 3.2.3).
//
// Requests are judged as http.Server does: http.ReadRequest, then the
// server's own checks (HTTP/1.x only, the Host rules, valid field names
// and values). The h2c preface (PRI * HTTP/2.0) is the connection
// server's business, before wire sees a head.

// netReq is net/http's verdict on a request head.
type netReq struct {
	req *http.Request
	err error
}

func netReadRequest(b []byte) netReq {
	br := bufio.NewReader(bytes.NewReader(b))
	req, err := http.ReadRequest(br)
	if err != nil {
		return netReq{err: err}
	}
	if br.Buffered() != 0 {
		return netReq{err: errors.New("oracle: net/http left bytes of the head unread")}
	}
	if req.ProtoMajor != 1 {
		return netReq{err: errors.New("oracle: unsupported protocol version")}
	}
	// ReadRequest deletes Host from the header; http.Server's internal
	// reader does not, and judges it. Read the fields again with
	// textproto to see them.
	tp := textproto.NewReader(bufioReader(b))
	tp.ReadLine()
	mh, _ := tp.ReadMIMEHeader()
	if hosts, ok := mh["Host"]; ok {
		req.Header["Host"] = hosts
	}
	hosts, haveHost := req.Header["Host"]
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && req.Method != "CONNECT" {
		return netReq{err: errors.New("oracle: missing required Host header")}
	}
	if len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
		return netReq{err: errors.New("oracle: malformed Host header")}
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return netReq{err: errors.New("oracle: invalid header name")}
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return netReq{err: errors.New("oracle: invalid header value")}
			}
		}
	}
	return netReq{req: req}
}

// headerOf groups wire's fields as net/http would: canonical names,
// values in order.
func headerOf(b []byte, fields []Field) http.Header {
	h := http.Header{}
	for _, f := range fields {
		k := textproto.CanonicalMIMEHeaderKey(string(f.Name.In(b)))
		h[k] = append(h[k], string(f.Value.In(b)))
	}
	return h
}

// comparableHeader removes what net/http rewrites while reading: the
// framing fields it consumes and the Cache-Control it adds for Pragma.
func comparableHeader(h http.Header, drop ...string) http.Header {
	h = h.Clone()
	for _, k := range append(drop, "Content-Length", "Transfer-Encoding", "Trailer", "Cache-Control") {
		delete(h, k)
	}
	return h
}

func headersEqual(a, b http.Header, drop ...string) bool {
	a, b = comparableHeader(a, drop...), comparableHeader(b, drop...)
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// lines calls fn for each line of the head b after the first, without
// its ending, as net/http's reader sees lines (LF ends a line).
func lines(b []byte, fn func(line []byte)) {
	_, rest, _ := bytes.Cut(b, []byte("\n"))
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		fn(bytes.TrimSuffix(line, []byte("\r")))
	}
}

// hasObsFold reports whether a line after the first starts with SP/HTAB
// (difference 1).
func hasObsFold(b []byte) bool {
	found := false
	lines(b, func(l []byte) { found = found || len(l) > 0 && isOWS(l[0]) })
	return found
}

// hasBareCR reports whether a CR appears that is not part of a line
// ending (difference 2).
func hasBareCR(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			return true
		}
	}
	return false
}

// hasSpaceBeforeColon reports whether a field line has a space before its
// colon (difference 4).
func hasSpaceBeforeColon(b []byte) bool {
	found := false
	lines(b, func(l []byte) {
		name, _, ok := bytes.Cut(l, []byte(":"))
		found = found || ok && bytes.ContainsAny(name, " \t")
	})
	return found
}

// requestDifference reports whether wire's rejection of b, which net/http
// accepted as req, is one of the documented differences.
func requestDifference(b []byte, req *http.Request) bool {
	return hasObsFold(b) || hasBareCR(b) || req.RequestURI == "" ||
		len(req.TransferEncoding) > 0 && len(b) > 0 && bytes.Contains(bytes.ToLower(b), []byte("content-length"))
}

// responseDifference is the same for responses.
func responseDifference(b []byte, resp *http.Response) bool {
	if hasObsFold(b) || hasBareCR(b) || hasSpaceBeforeColon(b) || resp.ProtoMajor != 1 {
		return true
	}
	if resp.StatusCode < 100 || resp.StatusCode > 999 {
		return true
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if code := bytes.TrimLeft(line[len(resp.Proto)+1:], " "); len(code) >= 3 && !bytes.ContainsFunc(code[:3], func(r rune) bool { return r < '0' || r > '9' }) {
		for _, c := range bytes.TrimSuffix(line, []byte("\r")) {
			if !valueByte(c) {
				return true // a control byte in the reason
			}
		}
	} else {
		return true // a signed status code
	}
	return len(resp.TransferEncoding) > 0 && bytes.Contains(bytes.ToLower(b), []byte("content-length"))
}

// netChunked is net/http's verdict on a chunked body: the decoded data,
// the trailer, how many bytes of b it consumed, and its error.
type netChunked struct {
	data     []byte
	trailer  http.Header
	consumed int
	err      error
}

const chunkedPrefix = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

func netReadChunked(b []byte) netChunked {
	rd := bytes.NewReader(append([]byte(chunkedPrefix), b...))
	br := bufio.NewReader(rd)
	req, err := http.ReadRequest(br)
	if err != nil {
		panic("oracle: the chunked prefix does not parse: " + err.Error())
	}
	data, err := io.ReadAll(req.Body)
	consumed := len(b) - br.Buffered() - rd.Len()
	return netChunked{data: data, trailer: req.Trailer, consumed: consumed, err: err}
}

// chunkedDifference reports whether wire's rejection of b, which net/http
// accepted, is difference 6; s is the scanner that rejected it, holding
// the trailer bytes it had taken.
func chunkedDifference(b []byte, s *ChunkedScanner, werr error) bool {
	var se *SyntaxError
	if !errors.As(werr, &se) {
		return false
	}
	t := append([]byte("x\n"), s.trailer...)
	switch se.What {
	case "chunk extension":
		return se.Off < len(b) && (b[se.Off] < 0x20 || b[se.Off] == 0x7f)
	case "trailer line ending (bare lf)", "trailer line ending (bare cr)":
		return true // the offending byte is the one ScanTrailer refused
	case "field line (obs-fold or leading whitespace)":
		return hasObsFold(t)
	case "field name":
		return hasSpaceBeforeColon(t)
	}
	return false
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
