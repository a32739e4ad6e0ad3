package wire

// A ResponseHead is a parsed response head from an origin. Like a
// RequestHead, its Spans point into the buffer given to Parse; reuse one
// per upstream connection.
type ResponseHead struct {
	buf []byte

	// Proto, Code and Reason are the parts of the status line; Status is
	// Code as a number (100-999).
	Proto, Code, Reason Span
	Status              int
	Minor               int
	Fields              []Field

	Transfer
}

// Reset clears h and drops its reference to the buffer, keeping the
// Fields array.
func (h *ResponseHead) Reset() {
	fields := h.Fields[:0]
	*h = ResponseHead{Fields: fields}
}

// Bytes returns the buffer h was parsed from.
func (h *ResponseHead) Bytes() []byte { return h.buf }

// Get returns the value of the first field named name, and whether there
// was one.
func (h *ResponseHead) Get(name string) ([]byte, bool) { return get(h.buf, h.Fields, name) }

// Parse parses b, one complete response head, into h and derives its
// framing for a request with method reqMethod (RFC 9112 section 6.3, as
// net/http's ReadResponse): no body for HEAD, 1xx, 204 and 304; else
// chunked, else Content-Length, else until the connection closes.
// fuzz_test.go lists where Parse is stricter than http.ReadResponse.
func (h *ResponseHead) Parse(b []byte, reqMethod []byte) error {
	h.Reset()
	h.buf = b
	if len(b) > 1<<31-1 {
		return ErrHeadTooLarge
	}
	i, err := h.parseStatusLine(b)
	if err != nil {
		return err
	}
	if h.Fields, err = headFields(h.Fields, b, i); err != nil {
		return err
	}
	if err := h.framingFields(b, h.Fields, h.Minor); err != nil {
		return err
	}
	h.responseFraming(string(reqMethod) == "HEAD")
	return nil
}

// responseFraming applies the rules that depend on the request and the
// status on top of the fields' framing.
func (h *ResponseHead) responseFraming(head bool) {
	switch {
	case head || h.Status/100 == 1 || h.Status == 204 || h.Status == 304:
		h.Framing = BodyNone
	case h.Framing == BodyNone:
		// Neither chunked nor a length: the body ends when the
		// connection does.
		h.Framing, h.Close = BodyClose, true
	}
}

// parseStatusLine parses HTTP-version SP 3DIGIT SP reason-phrase. As
// net/http does, more spaces may follow the version and the reason may be
// absent (with or without its space).
func (h *ResponseHead) parseStatusLine(b []byte) (int, error) {
	content, next := lineEnd(b, 0)
	if next < 0 {
		return 0, syntaxErr("status line", 0)
	}
	sp := indexByte(b[:content], ' ', 0)
	if sp < 0 {
		return 0, syntaxErr("status line", 0)
	}
	h.Proto = Span{0, int32(sp)}
	c := sp + 1
	for c < content && b[c] == ' ' {
		c++
	}
	if content-c < 3 || content-c > 3 && b[c+3] != ' ' {
		return 0, syntaxErr("status code", c)
	}
	h.Code = Span{int32(c), int32(c + 3)}
	r := min(c+4, content)
	h.Reason = Span{int32(r), int32(content)}
	code := b[c : c+3]
	if !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || code[0] == '0' {
		return 0, syntaxErr("status code", c)
	}
	h.Status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	for k := r; k < content; k++ {
		if !valueByte(b[k]) {
			return 0, syntaxErr("reason phrase", k)
		}
	}
	minor, err := parseVersion(h.Proto.In(b))
	if err != nil {
		return 0, err
	}
	h.Minor = minor
	return next, nil
}
