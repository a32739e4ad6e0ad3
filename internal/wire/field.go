package wire

import "bytes"

// A Span is the byte range [Start, End) of the buffer a head was parsed
// from. Offsets, rather than slices, let a caller move or compact the
// buffer and still find each element.
type Span struct{ Start, End int32 }

// In returns the bytes of s in b, the buffer the head was parsed from.
func (s Span) In(b []byte) []byte { return b[s.Start:s.End] }

// Len is the number of bytes in s.
func (s Span) Len() int { return int(s.End - s.Start) }

// A Field is one field line of a head or trailer section, in received
// order: its name (case as received), its value without the surrounding
// whitespace, and the whole line including its line ending, so a relay can
// forward it byte-exact or leave it out.
type Field struct {
	Name, Value, Line Span
}

// tchar is RFC 9110's token character set (section 5.6.2).
var tchar = [256]bool{}

// hostByte is the set of bytes net/http accepts in a Host field
// (golang.org/x/net/http/httpguts.ValidHostHeader): what the RFC 3986
// host and port grammar uses, checked byte by byte.
var hostByte = [256]bool{}

func init() {
	for c := '0'; c <= '9'; c++ {
		tchar[c], hostByte[c] = true, true
	}
	for c := 'a'; c <= 'z'; c++ {
		tchar[c], hostByte[c] = true, true
		tchar[c-'a'+'A'], hostByte[c-'a'+'A'] = true, true
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		tchar[c] = true
	}
	for _, c := range []byte("!$%&()*+,-.:;=['_~]") {
		hostByte[c] = true
	}
}

// valueByte reports whether c may appear in a field value: VCHAR, SP,
// HTAB and obs-text (RFC 9110 section 5.5); every other control byte,
// CR and LF included, may not.
func valueByte(c byte) bool { return c >= 0x20 && c != 0x7f || c == '\t' }

// isOWS reports whether c is optional whitespace (SP or HTAB).
func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// lower folds an ASCII letter to lower case.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// EqualFold reports whether b equals the ASCII string s, ignoring ASCII
// case (field names are ASCII; Unicode folding would be wrong here).
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

// trimOWS removes leading and trailing SP and HTAB.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// HasToken reports whether the comma-separated list value contains token,
// ignoring ASCII case and the whitespace around each element.
func HasToken(value []byte, token string) bool {
	found := false
	EachElement(value, func(e []byte) bool {
		found = EqualFold(e, token)
		return !found
	})
	return found
}

// EachElement calls fn with each non-empty element of the comma-separated
// list value, trimmed of whitespace, until fn returns false.
func EachElement(value []byte, fn func(e []byte) bool) {
	for len(value) > 0 {
		e, rest, _ := bytes.Cut(value, comma)
		value = rest
		if e = trimOWS(e); len(e) > 0 && !fn(e) {
			return
		}
	}
}

var comma = []byte(",")

// lineEnd returns the index just past the line ending of the line that
// starts at b[i], and the index where the line's content ends (before CRLF
// or a bare LF), or -1 when b holds no LF from i on.
func lineEnd(b []byte, i int) (content, next int) {
	k := bytes.IndexByte(b[i:], '\n')
	if k < 0 {
		return -1, -1
	}
	j := i + k
	if j > i && b[j-1] == '\r' {
		return j - 1, j + 1
	}
	return j, j + 1
}

// headFields parses the field lines of a head b from offset i, appending
// them to dst: the empty line that ends them must end b.
func headFields(dst []Field, b []byte, i int) ([]Field, error) {
	fields, end, err := parseFields(dst, b, i)
	if err == nil && end != len(b) {
		err = syntaxErr("head end (bytes after the empty line)", end)
	}
	return fields, err
}

// parseFields parses the field lines of b from offset i up to and
// including the empty line that ends the section, appending them to dst.
// A line may end in LF alone, as net/http accepts in heads (ScanTrailer
// has refused that in a trailer before it gets here). It returns the
// fields and the offset just past the empty line.
func parseFields(dst []Field, b []byte, i int) ([]Field, int, error) {
	for {
		content, next := lineEnd(b, i)
		if next < 0 {
			return dst, i, syntaxErr("head end", i)
		}
		if content == i {
			return dst, next, nil
		}
		f, err := parseField(b, i, content)
		if err != nil {
			return dst, i, err
		}
		f.Line = Span{int32(i), int32(next)}
		dst = append(dst, f)
		i = next
	}
}

// parseField parses the field line b[i:end] (without its line ending):
// token ":" OWS value OWS. A line starting with whitespace (obs-fold), a
// space before the colon, or a control byte in the value is an error.
func parseField(b []byte, i, end int) (Field, error) {
	j := i
	for j < end && tchar[b[j]] {
		j++
	}
	switch {
	case j < end && isOWS(b[i]):
		return Field{}, syntaxErr("field line (obs-fold or leading whitespace)", i)
	case j == end || b[j] != ':':
		return Field{}, syntaxErr("field name", j)
	case j == i:
		return Field{}, syntaxErr("field name (empty)", i)
	}
	v := j + 1
	for v < end && isOWS(b[v]) {
		v++
	}
	e := end
	for e > v && isOWS(b[e-1]) {
		e--
	}
	for k := v; k < e; k++ {
		if !valueByte(b[k]) {
			return Field{}, syntaxErr("field value", k)
		}
	}
	return Field{Name: Span{int32(i), int32(j)}, Value: Span{int32(v), int32(e)}}, nil
}

// fieldKind names the fields wire derives something from.
type fieldKind uint8

const (
	kindOther fieldKind = iota
	kindContentLength
	kindTransferEncoding
	kindConnection
	kindUpgrade
	kindTrailer
	kindHost
	kindExpect
)

// kindOf classifies a field name, ASCII case ignored, looking at its
// length first so that most names cost one comparison.
func kindOf(name []byte) fieldKind {
	switch len(name) {
	case 4:
		if EqualFold(name, "host") {
			return kindHost
		}
	case 6:
		if EqualFold(name, "expect") {
			return kindExpect
		}
	case 7:
		if EqualFold(name, "upgrade") {
			return kindUpgrade
		}
		if EqualFold(name, "trailer") {
			return kindTrailer
		}
	case 10:
		if EqualFold(name, "connection") {
			return kindConnection
		}
	case 14:
		if EqualFold(name, "content-length") {
			return kindContentLength
		}
	case 17:
		if EqualFold(name, "transfer-encoding") {
			return kindTransferEncoding
		}
	}
	return kindOther
}
