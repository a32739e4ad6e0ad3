package wire

import "net/url"

// parseTarget classifies and checks the request-target as net/http does
// (url.ParseRequestURI, with CONNECT's authority-form read as
// "http://"+target). The usual shapes are checked here without
// allocating; an authority with userinfo, an IP literal or a
// percent-encoded host falls back to net/url itself, which allocates.
func (h *RequestHead) parseTarget(b []byte) error {
	t := h.Target.In(b)
	start := int(h.Target.Start)
	for i, c := range t {
		if c < 0x20 || c == 0x7f {
			return syntaxErr("request target (control byte)", start+i)
		}
	}
	switch {
	case len(t) == 0:
		return syntaxErr("request target (empty)", start)
	case t[0] != '/' && string(h.Method.In(b)) == "CONNECT":
		h.Form, h.Authority = AuthorityForm, h.Target
		// net/http parses "http://" + target: the authority runs to the
		// first "/" (or "?"), and anything after it is a path.
		a, rest := splitAuthority(t)
		if err := checkAuthority(a, t, "http://"); err != nil {
			return err
		}
		return checkPath(rest, start+len(a))
	case string(t) == "*":
		h.Form = AsteriskForm
		return nil
	case t[0] == '/':
		h.Form = OriginForm
		return checkPath(t, start)
	}
	return h.parseAbsolute(t, start)
}

// parseAbsolute checks an absolute-form target: scheme ":" then either
// "//" authority path-abempty, an absolute path, or an opaque rest that
// net/url accepts unchecked.
func (h *RequestHead) parseAbsolute(t []byte, start int) error {
	colon := -1
	for i, c := range t {
		if c == ':' {
			colon = i
			break
		}
		if !(isAlpha(c) || i > 0 && (isDigit(c) || c == '+' || c == '-' || c == '.')) {
			break
		}
	}
	if colon <= 0 {
		// No scheme, and not a path: net/url says "invalid URI for
		// request" (or "missing protocol scheme" for a leading colon).
		return syntaxErr("request target", start)
	}
	h.Form = AbsoluteForm
	h.Scheme = Span{int32(start), int32(start + colon)}
	rest := t[colon+1:]
	off := start + colon + 1
	if len(rest) < 2 || rest[0] != '/' || rest[1] != '/' {
		if len(rest) > 0 && rest[0] == '/' {
			return checkPath(rest, off)
		}
		return nil // opaque, or only a query
	}
	a, path := splitAuthority(rest[2:])
	h.Authority = Span{int32(off + 2), int32(off + 2 + len(a))}
	if err := checkAuthority(a, t, ""); err != nil {
		return err
	}
	return checkPath(path, off+2+len(a))
}

// splitAuthority cuts t at the first "/" after the authority, as net/url
// does once it has removed the query: the authority ends at "/" or "?".
func splitAuthority(t []byte) (authority, rest []byte) {
	for i, c := range t {
		if c == '/' || c == '?' {
			return t[:i], t[i:]
		}
	}
	return t, nil
}

// checkAuthority accepts host [":" port] where host is made of
// unreserved characters and port of digits, which net/url accepts as is.
// Anything else goes to url.ParseRequestURI(prefix+target) for the
// verdict.
func checkAuthority(a, target []byte, prefix string) error {
	host := a
	for i, c := range a {
		if c == ':' {
			host = a[:i]
			if !allDigits(a[i+1:]) {
				return slowTarget(prefix + string(target))
			}
			break
		}
	}
	for _, c := range host {
		if !(isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			return slowTarget(prefix + string(target))
		}
	}
	return nil
}

// slowTarget asks net/url about a target the fast checks do not cover.
func slowTarget(whole string) error {
	if _, err := url.ParseRequestURI(whole); err != nil {
		return syntaxErr("request target (authority)", 0)
	}
	return nil
}

// checkPath checks the percent-encoding of the path part of p (before any
// "?"): each "%" must start "%" HEXDIG HEXDIG. net/url checks nothing
// else in a request path, nor anything in the query.
func checkPath(p []byte, start int) error {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '?':
			return nil
		case '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return syntaxErr("request target (percent-encoding)", start+i)
			}
			i += 2
		}
	}
	return nil
}

func isAlpha(c byte) bool { return 'a' <= lower(c) && lower(c) <= 'z' }

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}
