package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/warmproxy/warmproxy/internal/config"
)

// Base-URL routes (-route /stripe/=https://api.stripe.com/) serve SDKs
// that take a base URL but no proxy: an origin-form request for a path
// under a route's prefix, sent to the proxy's own address, is forwarded to
// the same path under the route's base URL, through the same pool,
// destination policy and access log as a proxy request.
//
// The path is joined on its escaped form, so what the client escaped stays
// escaped. A remainder that any common origin server could read as
// holding a "." or ".." segment is refused (400), so that no request
// leaves the route's base path: plain or percent-encoded (%2e%2e, any
// case, also encoded twice: %252e), split by a slash or backslash, raw or
// encoded (..%2f, ..\, ..%5c), with a path parameter (..;x, read as ".."
// by Tomcat, Jetty and Spring) or trailing spaces, in overlong UTF-8
// (%c0%ae) or a compatibility form NFKC folds to a dot (fullwidth
// %ef%bc%8e). So is a NUL byte (%00) anywhere in it. An encoded slash in
// an ordinary segment (group%2Fproject) is passed on as sent, and so are
// dots inside a name (a..b, ..., %2e%2efoo).

// routes holds the parsed routes, longest prefix first.
type routes []config.Route

// newRoutes orders the routes of -route, which config.Parse parsed,
// longest prefix first.
func newRoutes(list []config.Route) routes {
	rs := routes(slices.Clone(list))
	slices.SortStableFunc(rs, func(a, b config.Route) int { return len(b.Prefix) - len(a.Prefix) })
	return rs
}

// match returns the route for the escaped path p and the rest of p after
// its prefix ("" for the prefix without its trailing slash), or nil.
func (rs routes) match(p string) (*config.Route, string) {
	for i := range rs {
		r := &rs[i]
		if strings.HasPrefix(p, r.Prefix) {
			return r, p[len(r.Prefix):]
		}
		if len(p) == len(r.Prefix)-1 && strings.HasPrefix(r.Prefix, p) {
			return r, ""
		}
	}
	return nil, ""
}

// routeRequest returns a copy of r, an origin-form request matching
// route rt with rest the escaped path after the prefix, for the route's
// target. The protocol header is left out: the route names the scheme.
func (h *Handler) routeRequest(r *http.Request, rt *config.Route, rest string) (*http.Request, *Error) {
	if err := checkRest(rest); err != nil {
		return nil, err
	}
	joined := rt.Base + rest
	path, err := url.PathUnescape(joined)
	if err != nil {
		return nil, badRequest("route %s: bad escape in path %q", rt.Prefix, r.URL.EscapedPath())
	}
	u := &url.URL{Scheme: rt.Scheme, Host: rt.Host, Path: path, RawPath: joined, RawQuery: r.URL.RawQuery}
	return retarget(r.Context(), r, u, u.String(), h.protocolHeader), nil
}

// maxDecodes is how many rounds of percent-decoding checkRest reads a
// segment through: an origin that decodes twice (or a framework behind
// one that decodes again) reads %252e%252e as "..". A segment that still
// holds an escape after that many rounds is refused.
const maxDecodes = 3

// checkRest refuses a path remainder that could leave the route's base
// path as some common origin server reads it (see checkSegment), and one
// with a NUL byte, which C and Java servers read as the end of the path
// ("..%00.jpg").
func checkRest(rest string) *Error {
	if strings.IndexByte(rest, '%') >= 0 {
		// Strictly once: a malformed escape is an error here, where
		// origins differ on what they do with one.
		if _, err := url.PathUnescape(rest); err != nil {
			return badRequest("bad escape in path %q", rest)
		}
	}
	for seg := range strings.SplitSeq(rest, "/") {
		if err := checkSegment(seg); err != nil {
			return err
		}
	}
	return nil
}

// checkSegment refuses a path segment that, read by a lenient origin,
// holds a "." or ".." segment: after up to maxDecodes rounds of
// percent-decoding, with overlong UTF-8 and the compatibility forms that
// NFKC folds to ASCII decoded (see fold), split on '/' and '\' (IIS),
// with a ";parameter" cut off (Tomcat, Jetty and Spring read "..;x" as
// ".."), with trailing spaces dropped (Windows); each round both with
// its bytes as they are and read as UTF-8, and both with the bytes left
// over kept and dropped (as a decoder that skips what it cannot decode).
func checkSegment(seg string) *Error {
	s := seg
	for round := 0; ; round++ {
		views, n := [4]string{s}, 1
		if !isASCII(s) {
			f := fold(s)
			views[1], views[2], views[3], n = f, dropNonASCII(s), dropNonASCII(f), 4
		}
		for _, v := range views[:n] {
			if strings.IndexByte(v, 0) >= 0 {
				return badRequest("path segment %q holds a NUL byte", seg)
			}
			if dotSegment(v) {
				return badRequest("path segment %q is or holds a . or .. segment: a route request cannot leave the route's base path", seg)
			}
		}
		dec := unescape(s)
		if dec == s {
			return nil
		}
		if round == maxDecodes {
			return badRequest("path segment %q is percent-encoded more than %d times", seg, maxDecodes)
		}
		s = dec
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// unescape decodes the valid %XX escapes of s and leaves anything else as
// it is, as a lenient origin does.
func unescape(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// fold returns s as a lenient decoder reads its non-ASCII bytes: a UTF-8
// sequence, overlong or not and whatever the top bits of its continuation
// bytes (old Java and IIS decoders: %c0%ae, %e0%80%ae, %c0%af, %c1%9c),
// that encodes an ASCII character becomes that character, and so do the
// characters NFKC folds to '.', '..', '/', '\' or ';' (fullwidth, small
// and leader forms: %ef%bc%8e). Anything else stays as it is.
func fold(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for i < len(s) {
		c := s[i]
		n := seqLen(c)
		if n == 1 || i+n > len(s) {
			b = append(b, c)
			i++
			continue
		}
		r := rune(c & (0x7f >> n))
		for _, cc := range []byte(s[i+1 : i+n]) {
			r = r<<6 | rune(cc&0x3f)
		}
		if r < utf8.RuneSelf {
			b = append(b, byte(r))
		} else if f, ok := nfkcASCII[r]; ok {
			b = append(b, f...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}

// dropNonASCII returns s without its non-ASCII bytes, as a decoder that
// drops what it cannot decode reads it ("..%ff").
func dropNonASCII(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s[:i])
	for ; i < len(s); i++ {
		if s[i] < utf8.RuneSelf {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// seqLen is the length of the UTF-8 sequence lead byte c starts, as a
// lenient decoder counts it; 1 for ASCII and stray bytes.
func seqLen(c byte) int {
	switch {
	case c >= 0xc0 && c < 0xe0:
		return 2
	case c >= 0xe0 && c < 0xf0:
		return 3
	case c >= 0xf0 && c < 0xf8:
		return 4
	}
	return 1
}

// nfkcASCII maps the characters whose NFKC form is made only of '.', '/',
// '\' and ';' to that form (generated from golang.org/x/text's NFKC over
// every code point; U+2026 and U+FE19, "...", are no dot segment and left
// out).
var nfkcASCII = map[rune]string{
	0x037e: ";",  // GREEK QUESTION MARK
	0x2024: ".",  // ONE DOT LEADER
	0x2025: "..", // TWO DOT LEADER
	0xfe14: ";",  // PRESENTATION FORM FOR VERTICAL SEMICOLON
	0xfe30: "..", // PRESENTATION FORM FOR VERTICAL TWO DOT LEADER
	0xfe52: ".",  // SMALL FULL STOP
	0xfe54: ";",  // SMALL SEMICOLON
	0xfe68: "\\", // SMALL REVERSE SOLIDUS
	0xff0e: ".",  // FULLWIDTH FULL STOP
	0xff0f: "/",  // FULLWIDTH SOLIDUS
	0xff1b: ";",  // FULLWIDTH SEMICOLON
	0xff3c: "\\", // FULLWIDTH REVERSE SOLIDUS
}

// dotSegment reports whether s, split on '/' and '\', has a part that
// reads as "." or "..": exactly, before a ';' (a path parameter), or
// followed by spaces.
func dotSegment(s string) bool {
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '/' || s[i] == '\\' {
			part := s[start:i]
			if j := strings.IndexByte(part, ';'); j >= 0 {
				part = part[:j]
			}
			part = strings.TrimRight(part, " \t")
			if part == "." || part == ".." {
				return true
			}
			start = i + 1
		}
	}
	return false
}
