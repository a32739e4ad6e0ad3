package wire

// ScanTrailer takes the next bytes of the trailer section, once
// InTrailer, and returns how many of them belong to it; the scanner keeps
// a copy (up to MaxTrailer, else ErrHeadTooLarge). The section ends at an
// empty line; then Done is true, Trailer returns its fields, and p[n:] is
// the next message. Every line must end in CRLF.
func (s *ChunkedScanner) ScanTrailer(p []byte) (int, error) {
	if s.state != stTrailer {
		return 0, nil
	}
	limit := s.MaxTrailer
	if limit <= 0 {
		limit = DefaultMaxTrailer
	}
	for i, c := range p {
		t := s.trailer
		switch {
		case c == '\n' && (len(t) == 0 || t[len(t)-1] != '\r'):
			return i, s.err("trailer line ending (bare lf)")
		case len(t) > 0 && t[len(t)-1] == '\r' && c != '\n':
			return i, s.err("trailer line ending (bare cr)")
		case len(t) >= limit:
			return i, ErrHeadTooLarge
		}
		s.trailer = append(t, c)
		s.off++
		if c == '\n' && s.trailerEnded() {
			return i + 1, s.parseTrailer()
		}
	}
	return len(p), nil
}

// trailerEnded reports whether the trailer buffer ends with its empty
// line: it is "\r\n" alone, or ends in "\r\n\r\n".
func (s *ChunkedScanner) trailerEnded() bool {
	t := s.trailer
	return len(t) == 2 || len(t) >= 4 && string(t[len(t)-4:]) == "\r\n\r\n"
}

// parseTrailer parses the complete trailer section into fields.
func (s *ChunkedScanner) parseTrailer() error {
	var err error
	s.fields, _, err = parseFields(s.fields[:0], s.trailer, 0)
	if err != nil {
		return err
	}
	s.state = stDone
	return nil
}

// Trailer returns the trailer section as received (its empty line
// included) and its fields, whose Spans point into raw. Both are valid
// until Reset.
func (s *ChunkedScanner) Trailer() (raw []byte, fields []Field) {
	if s.state != stDone {
		return nil, nil
	}
	return s.trailer, s.fields
}

// AppendTrailer appends to dst the trailer section with only the field
// lines whose name keep accepts, byte-exact, and the empty line. With keep
// nil, it appends the section as received.
func (s *ChunkedScanner) AppendTrailer(dst []byte, keep func(name []byte) bool) []byte {
	raw, fields := s.Trailer()
	if raw == nil {
		return dst
	}
	if keep == nil {
		return append(dst, raw...)
	}
	for _, f := range fields {
		if keep(f.Name.In(raw)) {
			dst = append(dst, f.Line.In(raw)...)
		}
	}
	return append(dst, '\r', '\n')
}

// notInTrailer lists, in lower case, the fields a trailer section may not
// carry (RFC 9110 section 6.5.1): what a recipient needs before the
// content and would misread after it. Conditionals (every If-* field) are
// caught by AllowedInTrailer. It was internal/proxy's notTrailers
// (issue 12); the proxy now asks AllowedInTrailer (issue 16).
var notInTrailer = map[string]bool{
	// Message framing, and the hop-by-hop fields (section 7.6.1).
	"content-length": true, "transfer-encoding": true, "trailer": true, "te": true,
	"connection": true, "proxy-connection": true, "keep-alive": true, "upgrade": true,
	// Routing.
	"host": true, "forwarded": true, "max-forwards": true,
	// Authentication and state (RFC 6265).
	"authorization": true, "proxy-authorization": true, "www-authenticate": true,
	"proxy-authenticate": true, "cookie": true, "set-cookie": true,
	// Request modifiers: controls and content negotiation (section 12).
	"expect": true, "range": true, "pragma": true, "accept": true, "accept-charset": true,
	"accept-encoding": true, "accept-language": true,
	// Response control data (section 15 and RFC 9111).
	"age": true, "cache-control": true, "expires": true, "date": true, "location": true,
	"retry-after": true, "vary": true, "warning": true,
	// Content format and processing.
	"content-type": true, "content-encoding": true, "content-range": true,
	"content-language": true, "content-location": true,
}

// maxNotInTrailer is the longest name in notInTrailer.
const maxNotInTrailer = len("proxy-authorization")

// AllowedInTrailer reports whether a field named name (any case) may be
// relayed in a trailer section. Fields whose definition allows a trailer
// (Authentication-Info, ETag, Server-Timing, digests) pass, as does any
// field not listed. It allocates nothing.
func AllowedInTrailer(name []byte) bool {
	if len(name) >= 3 && lower(name[0]) == 'i' && lower(name[1]) == 'f' && name[2] == '-' {
		return false
	}
	if len(name) > maxNotInTrailer {
		return true
	}
	var buf [maxNotInTrailer]byte
	for i, c := range name {
		buf[i] = lower(c)
	}
	return !notInTrailer[string(buf[:len(name)])]
}
