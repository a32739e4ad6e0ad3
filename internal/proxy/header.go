package proxy

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/warmproxy/warmproxy/internal/wire"
	"golang.org/x/net/http/httpguts"
)

// hopHeaders are the hop-by-hop fields of RFC 9110 section 7.6.1 plus the
// proxy-to-proxy ones, in canonical form. Proxy-Authorization and
// Proxy-Authenticate belong to this hop only: credentials for warmproxy are
// never passed on.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Te",
	"Transfer-Encoding",
	"Trailer",
	"Upgrade",
	"Proxy-Authorization",
	"Proxy-Authenticate",
}

// hopByLen is hopHeaders indexed by length: IsHopByHop runs for every
// field of every head the connection server relays, and most names match
// no length.
var hopByLen = func() [][]string {
	var t [][]string
	for _, h := range hopHeaders {
		for len(t) <= len(h) {
			t = append(t, nil)
		}
		t[len(h)] = append(t[len(h)], h)
	}
	return t
}()

// IsHopByHop reports whether name (any case) is one of hopHeaders: the
// connection server (internal/h1server) asks this list, which it shares
// with the Handler.
func IsHopByHop(name []byte) bool {
	if len(name) >= len(hopByLen) {
		return false
	}
	for _, h := range hopByLen[len(name)] {
		if wire.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// connectionTokens calls fn for each token listed in the Connection fields
// of h, trimmed, in the order given.
func connectionTokens(h http.Header, fn func(token string)) {
	for _, v := range h["Connection"] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if tok = textproto.TrimString(tok); tok != "" {
				fn(tok)
			}
		}
	}
}

// hasToken reports whether the comma-separated values of h[key] contain
// token, ignoring case.
func hasToken(h http.Header, key, token string) bool {
	for _, v := range h[key] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(textproto.TrimString(tok), token) {
				return true
			}
		}
	}
	return false
}

// removeHopByHop deletes the Connection field, every field it names, and
// the fixed hop-by-hop fields.
func removeHopByHop(h http.Header) {
	connectionTokens(h, func(tok string) {
		if textproto.CanonicalMIMEHeaderKey(tok) != "Te" || !hasToken(h, "Te", "trailers") {
			h.Del(tok)
		}
	})
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// upgradeType returns the protocol a request or response asks to switch
// to: its Upgrade field, when Connection names "upgrade".
func upgradeType(h http.Header) string {
	if !hasToken(h, "Connection", "upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// cleanRequestHeader prepares an inbound request's header for the origin.
// It keeps "TE: trailers" (the client accepts trailers) and, for an
// upgrade, Upgrade with "Connection: Upgrade".
func cleanRequestHeader(h http.Header, upgrade string) {
	trailers := hasToken(h, "Te", "trailers")
	removeHopByHop(h)
	if trailers {
		h["Te"] = []string{"trailers"}
	}
	if upgrade != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{upgrade}
	}
}

// appendVia adds this hop to the Via field: the protocol version the
// message arrived with, and warmproxy's pseudonym.
func appendVia(h http.Header, major, minor int, name string) {
	var v string
	switch {
	case major == 1 && minor == 1:
		v = "1.1 " + name
	case major == 1 && minor == 0:
		v = "1.0 " + name
	case major == 2:
		v = "2 " + name
	default:
		v = "1.1 " + name
	}
	h["Via"] = append(h["Via"], v)
}

// viaValues holds the Via entries of one pseudonym, built once, so the
// hot path adds Via without building strings. Each slice has cap == len:
// an append to it elsewhere copies instead of writing into it.
type viaValues struct{ v10, v11, v2 []string }

func newViaValues(name string) viaValues {
	return viaValues{v10: []string{"1.0 " + name}, v11: []string{"1.1 " + name}, v2: []string{"2 " + name}}
}

// add does what appendVia does, without allocating when h has no Via yet.
func (v *viaValues) add(h http.Header, major, minor int) {
	one := v.v11
	switch {
	case major == 1 && minor == 0:
		one = v.v10
	case major == 2:
		one = v.v2
	}
	if old := h["Via"]; len(old) > 0 {
		h["Via"] = append(old, one[0])
		return
	}
	h["Via"] = one
}

// viaNames reports whether any Via entry received-by pseudonym is name.
func viaNames(h http.Header, name string) bool {
	for _, v := range h["Via"] {
		for v != "" {
			var entry string
			entry, v, _ = strings.Cut(v, ",")
			entry = textproto.TrimString(entry)
			// "1.1 name (comment)": the second word is the receiver.
			_, rest, ok := strings.Cut(entry, " ")
			if !ok {
				continue
			}
			rest = textproto.TrimString(rest)
			if by, _, _ := strings.Cut(rest, " "); strings.EqualFold(by, name) {
				return true
			}
		}
	}
	return false
}

// badTrailer reports whether the field named k may not be sent as a
// trailer: wire.AllowedInTrailer holds the one list (RFC 9110 section
// 6.5.1, and every If-* conditional). A name that is not a token is left
// for net/http to refuse unless it starts with "If-" as written, as
// before the list moved (issue 16).
func badTrailer(k string) bool {
	if !httpguts.ValidHeaderFieldName(k) {
		return strings.HasPrefix(k, "If-")
	}
	return !wire.AllowedInTrailer([]byte(k))
}

// dropBadTrailers deletes from t the fields that are not allowed in a
// trailer section and returns how many carried a value.
func dropBadTrailers(t http.Header) int {
	n := 0
	for k, vv := range t {
		if badTrailer(k) {
			if len(vv) > 0 {
				n++
			}
			delete(t, k)
		}
	}
	return n
}
