package wire

// Framing is how a message's body is delimited (RFC 9112 section 6.3).
type Framing uint8

const (
	// BodyNone: the message has no body.
	BodyNone Framing = iota
	// BodyLength: the body is ContentLength bytes.
	BodyLength
	// BodyChunked: the body is chunked; relay it through a ChunkedScanner.
	BodyChunked
	// BodyClose: the body runs until the origin closes the connection
	// (responses only).
	BodyClose
)

func (f Framing) String() string {
	switch f {
	case BodyNone:
		return "none"
	case BodyLength:
		return "length"
	case BodyChunked:
		return "chunked"
	case BodyClose:
		return "close"
	}
	return "invalid"
}

// Transfer is the framing information common to requests and responses,
// derived from the fields as net/http's readTransfer does.
type Transfer struct {
	// Framing and ContentLength say how the body is delimited.
	// ContentLength is -1 unless a valid Content-Length was received and
	// no chunked coding overrides it; it keeps the received value when the
	// body is BodyNone all the same (a response to HEAD, a 304).
	Framing       Framing
	ContentLength int64
	// CLAndTE: both Content-Length and Transfer-Encoding: chunked were
	// received. The body is read as chunked (RFC 9112 section 6.3, as
	// net/http does); a proxy must not forward the Content-Length and must
	// close the connection after this exchange. Unlike net/http, which
	// deletes the Content-Length unread, wire still rejects one that is
	// malformed or duplicated with differing values.
	CLAndTE bool
	// TEIgnored: an HTTP/1.0 message carried Transfer-Encoding, which
	// net/http ignores (golang/go#12785); it must not be forwarded.
	TEIgnored bool
	// Close: the connection does not persist after this message
	// (Connection: close, or HTTP/1.0 without keep-alive).
	Close bool
	// Upgrade: an Upgrade field was received; Connection names it when
	// ConnUpgrade is set.
	Upgrade, ConnUpgrade bool
	// Trailer: a Trailer field was received.
	Trailer bool
}

// framingFields scans fields for the framing-related ones and fills t.
// It checks Content-Length (digits only; duplicates must be identical),
// Transfer-Encoding (one field, exactly "chunked", on HTTP/1.1) and the
// names a chunked message declares in Trailer, as net/http does.
func (t *Transfer) framingFields(b []byte, fields []Field, minor int) error {
	*t = Transfer{ContentLength: -1}
	var cl, te Span
	nCL, nTE := 0, 0
	keepAlive := false
	for _, f := range fields {
		switch kindOf(f.Name.In(b)) {
		case kindContentLength:
			if nCL > 0 && string(f.Value.In(b)) != string(cl.In(b)) {
				return syntaxErr("content-length (differing values)", int(f.Line.Start))
			}
			cl = f.Value
			nCL++
		case kindTransferEncoding:
			te = f.Value
			nTE++
		case kindConnection:
			v := f.Value.In(b)
			t.Close = t.Close || HasToken(v, "close")
			keepAlive = keepAlive || HasToken(v, "keep-alive")
			t.ConnUpgrade = t.ConnUpgrade || HasToken(v, "upgrade")
		case kindUpgrade:
			t.Upgrade = true
		case kindTrailer:
			t.Trailer = true
		}
	}
	if minor == 0 && !keepAlive {
		t.Close = true
	}
	if nTE > 0 {
		if minor == 0 {
			t.TEIgnored = true
		} else if nTE > 1 || !EqualFold(te.In(b), "chunked") {
			return ErrTransferEncoding
		} else {
			t.Framing = BodyChunked
			t.CLAndTE = nCL > 0
		}
	}
	if nCL > 0 {
		n, ok := parseContentLength(cl.In(b))
		if !ok {
			return syntaxErr("content-length", int(cl.Start))
		}
		if t.Framing != BodyChunked {
			t.Framing, t.ContentLength = BodyLength, n
		}
	}
	if t.Framing == BodyChunked && t.Trailer {
		return checkDeclaredTrailers(b, fields)
	}
	return nil
}

// parseContentLength parses a Content-Length value: one or more digits
// (leading zeros allowed), at most 2^63-1, as strconv.ParseUint(v, 10, 63).
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' || n > (1<<63-1)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n >= 1<<63 {
			return 0, false
		}
	}
	return int64(n), true
}

// checkDeclaredTrailers rejects a chunked message whose Trailer field
// announces a framing field, as net/http's fixTrailer does.
func checkDeclaredTrailers(b []byte, fields []Field) error {
	var err error
	for _, f := range fields {
		if kindOf(f.Name.In(b)) != kindTrailer {
			continue
		}
		EachElement(f.Value.In(b), func(e []byte) bool {
			if EqualFold(e, "content-length") || EqualFold(e, "transfer-encoding") || EqualFold(e, "trailer") {
				err = syntaxErr("trailer (declares a framing field)", int(f.Value.Start))
			}
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
