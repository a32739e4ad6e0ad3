package proxy

import (
	"math/bits"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/warmproxy/warmproxy/internal/config"
)

// Issue 8: the longest prefix wins; the prefix without its slash maps to
// the base path.
func TestRoutesMatch(t *testing.T) {
	rs := newRoutes(parseRoutes("/api/=http://a.test/, /api/v2/=https://b.test/base/,/stripe/=https://api.stripe.com/"))
	tests := []struct {
		path, host, rest string
	}{
		{"/api/x", "a.test", "x"},
		{"/api/v2/x/y", "b.test", "x/y"},
		{"/api/v2", "b.test", ""},
		{"/api", "a.test", ""},
		{"/stripe/v1/charges", "api.stripe.com", "v1/charges"},
		{"/apix/y", "", ""},
		{"/", "", ""},
		{"/metrics", "", ""},
	}
	for _, tt := range tests {
		r, rest := rs.match(tt.path)
		host := ""
		if r != nil {
			host = r.Host
		}
		if host != tt.host || rest != tt.rest {
			t.Errorf("match(%q) = %q, %q; want %q, %q", tt.path, host, rest, tt.host, tt.rest)
		}
	}
}

// Issue 8: no path remainder leaves the route's base path, however its
// dots and slashes are encoded.
func TestCheckRest(t *testing.T) {
	tests := []struct {
		rest string
		ok   bool
	}{
		{"v1/charges", true},
		{"", true},
		{"v1/", true},
		{"a..b/c.d/...", true},
		{"group%2Fproject/files", true},
		{"%7Euser", true},
		{"..", false},
		{".", false},
		{"../x", false},
		{"v1/../../x", false},
		{"v1/./x", false},
		{"%2e%2e/x", false},
		{"%2E%2E/x", false},
		{"%2E./x", false},
		{".%2e/x", false},
		{"%2e/x", false},
		{"..%2fx", false},
		{"..%2Fx", false},
		{"x%2f..%2fy", false},
		{"..%5cx", false},
		{"..\\x", false},
		{"x/%zz", false},
	}
	for _, tt := range tests {
		if err := checkRest(tt.rest); (err == nil) != tt.ok {
			t.Errorf("checkRest(%q) = %v, want ok %v", tt.rest, err, tt.ok)
		}
	}
}

// Issue 12: the forms common origin servers read as dot-segments are
// refused; names that merely hold dots are not.
func TestCheckRestLenientForms(t *testing.T) {
	tests := []struct {
		rest string
		ok   bool
	}{
		{"..;/x", false},
		{".;x/y", false},
		{"..%00", false},
		{"a%00", false},
		{"%c0%ae%c0%ae/x", false},
		{"%e0%80%ae%e0%80%ae/x", false},
		{"%ef%bc%8e%ef%bc%8e/x", false},
		{"%e2%80%a5", false},
		{"%252e%252e", false},
		{"%2525252e", false},
		{"..%20", false},
		{"..%ff", false},
		{"..\xc0", false},
		{"a..b/...", true},
		{"%2e%2efoo", true},
		{"..foo;v=1", true},
		{"%e2%80%a6", true},
		{"%c3%a9", true},
		{"group%252Fproject", true},
	}
	for _, tt := range tests {
		if err := checkRest(tt.rest); (err == nil) != tt.ok {
			t.Errorf("checkRest(%q) = %v, want ok %v", tt.rest, err, tt.ok)
		}
	}
}

// FuzzCheckRest checks, for any path a route forwards, that the
// request-target sent to the origin has no dot-segment and no NUL as a
// lenient origin reads it (lenientViews, written apart from the code under test): decoded any
// number of times, overlong UTF-8 and NFKC dot forms folded, undecodable
// bytes kept or dropped, split on '/' and '\', path parameters cut,
// trailing spaces trimmed.
func FuzzCheckRest(f *testing.F) {
	for _, s := range []string{
		"v1/charges", "..", "..;/x", "%2e%2e", "..%00", "%c0%ae%c0%ae",
		"%e0%80%ae", "%ef%bc%8e%ef%bc%8e", "..%5cx", "..%2fx", "%252e%252e",
		"a..b/...", "%2e%2efoo", "group%2Fproject", "%c0%2e%c0%2e", "..%ff",
		"..%20", "%25c0%25ae", "\xc0%2e", "%e2%80%a5", "..\\x",
	} {
		f.Add(s)
	}
	rs := newRoutes(parseRoutes("/x/=http://origin.test/base/"))
	h := &Handler{protocolHeader: "X-Real-Protocol"}
	f.Fuzz(func(t *testing.T, rest string) {
		// The path as the server hands it over: parsed from a request
		// line, then matched on its escaped form.
		u, err := url.ParseRequestURI("/x/" + rest)
		if err != nil {
			return
		}
		rt, rem := rs.match(u.EscapedPath())
		if rt == nil {
			return
		}
		r := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}
		out, perr := h.routeRequest(r, rt, rem)
		if perr != nil {
			return
		}
		target := out.URL.RequestURI() // what goes to the origin
		if !strings.HasPrefix(target, "/base/") {
			t.Fatalf("route of %q left the base path: %q", rest, target)
		}
		path, _, _ := strings.Cut(target, "?")
		for _, v := range lenientViews(path) {
			if strings.IndexByte(v, 0) >= 0 {
				t.Fatalf("route of %q sends %q, in which a lenient origin reads a NUL (%q)", rest, target, v)
			}
			if p, ok := lenientDotSegment(v); ok {
				t.Fatalf("route of %q sends %q, in which a lenient origin reads the segment %q (%q)", rest, target, p, v)
			}
		}
	})
}

// lenientViews returns the ways a lenient origin could read path: decoded
// 0, 1, 2, ... times until nothing changes, each as is, with its UTF-8
// read leniently, and with that minus the bytes left undecoded.
func lenientViews(path string) []string {
	var views []string
	for s, n := path, 0; n < 16; n++ {
		u := lenientUTF8(s)
		views = append(views, s, u, asciiOnly(u))
		d := pctDecode(s)
		if d == s {
			break
		}
		s = d
	}
	return views
}

func pctDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil && !strings.ContainsAny(s[i+1:i+3], "+-") {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lenientUTF8 decodes each multi-byte sequence by its lead byte's length,
// masking the continuation bytes without checking them; a result in
// ASCII, or one NFKC folds to dots, slashes or semicolons, replaces the
// sequence.
func lenientUTF8(s string) string {
	nfkc := map[rune]string{
		'\u037e': ";", '\u2024': ".", '\u2025': "..", '\ufe14': ";", '\ufe30': "..", '\ufe52': ".",
		'\ufe54': ";", '\ufe68': `\`, '\uff0e': ".", '\uff0f': "/", '\uff1b': ";", '\uff3c': `\`,
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		n := bits.LeadingZeros8(^s[i]) // count of leading 1 bits
		if n < 2 || n > 4 || i+n > len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		r := rune(s[i]) & (1<<(7-n) - 1)
		for j := 1; j < n; j++ {
			r = r<<6 | rune(s[i+j])&0x3f
		}
		switch f, ok := nfkc[r]; {
		case r < 0x80:
			b.WriteByte(byte(r))
		case ok:
			b.WriteString(f)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func asciiOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 0x80 {
			return -1
		}
		return r
	}, s)
}

// lenientDotSegment reports the first segment of s that reads as "." or
// "..".
func lenientDotSegment(s string) (string, bool) {
	for _, seg := range strings.FieldsFunc(s, func(r rune) bool { return r == '/' || r == '\\' }) {
		p, _, _ := strings.Cut(seg, ";")
		if p = strings.TrimRight(p, " \t"); p == "." || p == ".." {
			return seg, true
		}
	}
	return "", false
}

// Issue 12: the stricter check costs an ordinary path no allocation.
func TestCheckRestAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { checkRest("v1/charges/ch_123;v=2/a..b") }); n != 0 {
		t.Errorf("checkRest of a plain path: %v allocations, want 0", n)
	}
}

// parseRoutes parses a -route list as config.Parse does.
func parseRoutes(s string) []config.Route {
	c := config.Default()
	c.Routes = s
	return config.MustParse(c).Routes
}
