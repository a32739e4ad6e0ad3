package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/warmproxy/warmproxy/internal/config"
)

// Base-URL routes (-route /stripe/=https://api.stripe.com/) serve SDKs
// that take a base URL but no proxy: an origin-form request for a path
// under a route's prefix, sent to the proxy's own address, is forwarded to
// the same path under the route's base URL, through the same pool,
// destination policy and access log as a proxy request.
//
// The path is joined on its escaped form, so what the client escaped stays
// escaped. A remainder with a "." or ".." segment is refused (400), also
// when percent-encoded (%2e%2e) or split by an encoded slash or backslash
// (..%2f, ..%5c), which an origin might decode before resolving dot
// segments: no request leaves the route's base path. An encoded slash in
// an ordinary segment (group%2Fproject) is passed on as sent.

// routes holds the parsed routes, longest prefix first.
type routes []config.Route

// newRoutes parses the comma-separated list s, which passed
// config.Validate; a bad entry is skipped.
func newRoutes(s string) routes {
	var rs routes
	for _, e := range config.SplitRoutes(s) {
		if r, err := config.ParseRoute(e); err == nil {
			rs = append(rs, r)
		}
	}
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

// routeRequest turns r, an origin-form request matching route rt with
// rest the escaped path after the prefix, into a request for the route's
// target. The protocol header is dropped: the route names the scheme.
func (h *Handler) routeRequest(r *http.Request, rt *config.Route, rest string) *Error {
	if err := checkRest(rest); err != nil {
		return err
	}
	joined := rt.Base + rest
	path, err := url.PathUnescape(joined)
	if err != nil {
		return badRequest("route %s: bad escape in path %q", rt.Prefix, r.URL.EscapedPath())
	}
	u := &url.URL{Scheme: rt.Scheme, Host: rt.Host, Path: path, RawPath: joined, RawQuery: r.URL.RawQuery}
	r.URL = u
	r.Host = rt.Host
	r.RequestURI = u.String()
	delete(r.Header, h.protocolHeader)
	return nil
}

// checkRest refuses a path remainder that could leave the route's base
// path: any segment that is "." or "..", after percent-decoding and after
// splitting on decoded slashes and backslashes.
func checkRest(rest string) *Error {
	for seg := range strings.SplitSeq(rest, "/") {
		dec := seg
		if strings.IndexByte(seg, '%') >= 0 {
			var err error
			if dec, err = url.PathUnescape(seg); err != nil {
				return badRequest("bad escape in path segment %q", seg)
			}
		}
		if dotSegment(dec) {
			return badRequest("path segment %q is or holds a . or .. segment: a route request cannot leave the route's base path", seg)
		}
	}
	return nil
}

// dotSegment reports whether s, split on '/' and '\', has a part that is
// "." or "..".
func dotSegment(s string) bool {
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '/' || s[i] == '\\' {
			if part := s[start:i]; part == "." || part == ".." {
				return true
			}
			start = i + 1
		}
	}
	return false
}
