package wire

// TargetForm is the form of a request-target (RFC 9112 section 3.2).
type TargetForm uint8

const (
	// OriginForm: absolute-path [ "?" query ], e.g. "/a?b".
	OriginForm TargetForm = iota + 1
	// AbsoluteForm: an absolute URI, e.g. "http://example.com/a".
	AbsoluteForm
	// AuthorityForm: host ":" port, for CONNECT only.
	AuthorityForm
	// AsteriskForm: "*", for a server-wide OPTIONS.
	AsteriskForm
)

// A RequestHead is a parsed request head. Its Spans point into the buffer
// given to Parse, which it keeps until Reset; reuse one RequestHead for
// every request on a connection so that parsing allocates nothing.
type RequestHead struct {
	buf []byte

	// Method, Target and Proto are the three parts of the request line.
	Method, Target, Proto Span
	// Form is the target's form. For AbsoluteForm, Scheme and Authority
	// are its scheme and authority (Authority may be empty, as in
	// "http:///x", or absent for an opaque URI like "http:x"); for
	// AuthorityForm, Authority is the whole target.
	Form              TargetForm
	Scheme, Authority Span
	// Minor is the minor version of HTTP/1.x (0 or 1; 2-9 parse as net/http
	// does and mean "at least 1.1").
	Minor int
	// Fields are the field lines in received order.
	Fields []Field
	// Host is the value of the Host field; HasHost says one was received.
	Host    Span
	HasHost bool
	// ExpectContinue: Expect is "100-continue". ExpectOther: an Expect
	// field with any other value (a server answers 417).
	ExpectContinue, ExpectOther bool

	Transfer
}

// Reset clears h and drops its reference to the buffer, keeping the
// Fields array for the next request.
func (h *RequestHead) Reset() {
	fields := h.Fields[:0]
	*h = RequestHead{Fields: fields}
}

// Bytes returns the buffer h was parsed from.
func (h *RequestHead) Bytes() []byte { return h.buf }

// Get returns the value of the first field named name (ASCII case
// ignored), and whether there was one.
func (h *RequestHead) Get(name string) ([]byte, bool) { return get(h.buf, h.Fields, name) }

func get(b []byte, fields []Field, name string) ([]byte, bool) {
	for _, f := range fields {
		if EqualFold(f.Name.In(b), name) {
			return f.Value.In(b), true
		}
	}
	return nil, false
}

// Parse parses b, which holds one complete request head (as found by a
// HeadScanner: the request line, the field lines and the empty line), into
// h. It is as strict as net/http's server: whatever http.ReadRequest and
// the checks of http.Server reject, Parse rejects; fuzz_test.go lists where
// Parse is stricter still.
func (h *RequestHead) Parse(b []byte) error {
	h.Reset()
	h.buf = b
	if len(b) > 1<<31-1 {
		return ErrHeadTooLarge
	}
	i, err := h.parseRequestLine(b)
	if err != nil {
		return err
	}
	if i < len(b) && isOWS(b[i]) {
		return syntaxErr("field line (leading whitespace)", i)
	}
	if h.Fields, err = headFields(h.Fields, b, i); err != nil {
		return err
	}
	if err := h.checkHostExpect(); err != nil {
		return err
	}
	return h.framingFields(b, h.Fields, h.Minor)
}

// parseRequestLine parses method SP request-target SP HTTP-version and
// its line ending, returning the offset of the next line.
func (h *RequestHead) parseRequestLine(b []byte) (int, error) {
	content, next := lineEnd(b, 0)
	if next < 0 {
		return 0, syntaxErr("request line", 0)
	}
	sp1 := indexByte(b[:content], ' ', 0)
	sp2 := indexByte(b[:content], ' ', sp1+1)
	if sp1 < 0 || sp2 < 0 {
		return 0, syntaxErr("request line", 0)
	}
	h.Method = Span{0, int32(sp1)}
	h.Target = Span{int32(sp1 + 1), int32(sp2)}
	h.Proto = Span{int32(sp2 + 1), int32(content)}
	if sp1 == 0 || !allTchar(b[:sp1]) {
		return 0, syntaxErr("method", 0)
	}
	minor, err := parseVersion(h.Proto.In(b))
	if err != nil {
		return 0, err
	}
	h.Minor = minor
	if err := h.parseTarget(b); err != nil {
		return 0, err
	}
	return next, nil
}

// parseVersion parses "HTTP/" DIGIT "." DIGIT and returns the minor
// version; a major version other than 1 is ErrVersion.
func parseVersion(v []byte) (int, error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return 0, syntaxErr("http version", 0)
	}
	if v[5] != '1' {
		return 0, ErrVersion
	}
	return int(v[7] - '0'), nil
}

// checkHostExpect applies http.Server's Host rules (exactly one Host on
// HTTP/1.1 except for CONNECT, never two, its bytes those of a host) and
// notes Expect.
func (h *RequestHead) checkHostExpect() error {
	b := h.buf
	nHost, seenExpect := 0, false
	for _, f := range h.Fields {
		switch kindOf(f.Name.In(b)) {
		case kindHost:
			nHost++
			h.Host, h.HasHost = f.Value, true
		case kindExpect:
			if seenExpect {
				continue
			}
			// Only the first Expect field counts, as in net/http.
			seenExpect = true
			h.ExpectContinue = HasToken(f.Value.In(b), "100-continue")
			h.ExpectOther = !h.ExpectContinue && f.Value.Len() > 0
		}
	}
	switch {
	case nHost > 1:
		return syntaxErr("host (more than one)", 0)
	case nHost == 0 && h.Minor >= 1 && string(h.Method.In(b)) != "CONNECT":
		return syntaxErr("host (missing)", 0)
	case nHost == 1 && !allHostBytes(h.Host.In(b)):
		return syntaxErr("host", int(h.Host.Start))
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= lower(c) && lower(c) <= 'f' }

func indexByte(b []byte, c byte, from int) int {
	if from < 0 {
		return -1
	}
	for i := from; i < len(b); i++ {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func allTchar(b []byte) bool {
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

func allHostBytes(b []byte) bool {
	for _, c := range b {
		if !hostByte[c] {
			return false
		}
	}
	return true
}
