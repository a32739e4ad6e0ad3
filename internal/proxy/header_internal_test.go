package proxy

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"
)

func TestRemoveHopByHop(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{
			name: "fixed fields",
			in: http.Header{"Connection": {"keep-alive"}, "Keep-Alive": {"timeout=5"}, "Proxy-Connection": {"keep-alive"},
				"Te": {"trailers"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"}, "Upgrade": {"h2c"},
				"Proxy-Authorization": {"Basic x"}, "Proxy-Authenticate": {"Basic"}, "X-Keep": {"1"}},
			want: http.Header{"X-Keep": {"1"}},
		},
		{
			name: "connection-named fields, any case and spacing",
			in:   http.Header{"Connection": {" x-a ,X-B", "x-c"}, "X-A": {"1"}, "X-B": {"2"}, "X-C": {"3"}, "X-D": {"4"}},
			want: http.Header{"X-D": {"4"}},
		},
		{
			name: "empty tokens",
			in:   http.Header{"Connection": {",, ,"}, "X-D": {"4"}},
			want: http.Header{"X-D": {"4"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in.Clone()
			removeHopByHop(h)
			if !headerEqual(h, tt.want) {
				t.Errorf("removeHopByHop(%v) = %v, want %v", tt.in, h, tt.want)
			}
		})
	}
}

func TestCleanRequestHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      http.Header
		upgrade string
		want    http.Header
	}{
		{"te trailers kept", http.Header{"Te": {"deflate, Trailers;q=1"}}, "", http.Header{}},
		{"te trailers alone", http.Header{"Te": {"trailers"}}, "", http.Header{"Te": {"trailers"}}},
		{"te named by connection", http.Header{"Te": {"trailers"}, "Connection": {"TE"}}, "", http.Header{"Te": {"trailers"}}},
		{"upgrade kept for an upgrade", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, "websocket",
			http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in.Clone()
			cleanRequestHeader(h, tt.upgrade)
			if !headerEqual(h, tt.want) {
				t.Errorf("cleanRequestHeader(%v, %q) = %v, want %v", tt.in, tt.upgrade, h, tt.want)
			}
		})
	}
}

func TestUpgradeType(t *testing.T) {
	tests := []struct {
		in   http.Header
		want string
	}{
		{http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}, "websocket"},
		{http.Header{"Upgrade": {"websocket"}}, ""},
		{http.Header{"Connection": {"upgrade"}}, ""},
	}
	for _, tt := range tests {
		if got := upgradeType(tt.in); got != tt.want {
			t.Errorf("upgradeType(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAppendVia(t *testing.T) {
	tests := []struct {
		major, minor int
		want         string
	}{
		{1, 1, "1.1 wp"}, {1, 0, "1.0 wp"}, {2, 0, "2 wp"}, {0, 9, "1.1 wp"},
	}
	for _, tt := range tests {
		h := http.Header{"Via": {"1.0 other"}}
		appendVia(h, tt.major, tt.minor, "wp")
		if got := h["Via"]; !slices.Equal(got, []string{"1.0 other", tt.want}) {
			t.Errorf("appendVia(HTTP/%d.%d) = %q, want [1.0 other %s]", tt.major, tt.minor, got, tt.want)
		}
	}
}

func TestViaNames(t *testing.T) {
	tests := []struct {
		via  []string
		want bool
	}{
		{[]string{"1.1 warmproxy"}, true},
		{[]string{"1.0 cache, 1.1 WarmProxy (v1)"}, true},
		{[]string{"1.1 warmproxy-other"}, false},
		{[]string{"warmproxy"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := viaNames(http.Header{"Via": tt.via}, "warmproxy"); got != tt.want {
			t.Errorf("viaNames(%q) = %v, want %v", tt.via, got, tt.want)
		}
	}
}

func headerEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// FuzzRemoveHopByHop checks the hygiene invariant: after cleaning, no
// hop-by-hop field and no field the Connection header named survives
// (but "TE: trailers" on requests), and nothing panics.
func FuzzRemoveHopByHop(f *testing.F) {
	// Seeds: header blocks, one "Name: value" per line.
	for _, s := range []string{
		"Connection: close\nX-A: 1",
		"Connection: X-A, x-b\nX-A: 1\nX-B: 2\nX-C: 3",
		"Connection: te\nTe: trailers",
		"Te: gzip, trailers\nKeep-Alive: 1",
		"Connection: ,,\nConnection: Upgrade\nUpgrade: websocket",
		"Connection: \x00bad, Proxy-Connection\nProxy-Connection: x",
		"Transfer-Encoding: chunked\nTrailer: X-Sum\nX-Sum: 1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, block string) {
		h := http.Header{}
		for _, line := range strings.Split(block, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			h.Add(k, textproto.TrimString(v))
		}
		var named []string
		connectionTokens(h, func(tok string) { named = append(named, textproto.CanonicalMIMEHeaderKey(tok)) })
		trailers := hasToken(h, "Te", "trailers")
		upgrade := upgradeType(h)

		resp := h.Clone()
		removeHopByHop(resp)
		for _, k := range append(named, hopHeaders[:]...) {
			if v, ok := resp[k]; ok {
				t.Errorf("removeHopByHop left %s: %q (input %q)", k, v, block)
			}
		}

		req := h.Clone()
		cleanRequestHeader(req, upgrade)
		for _, k := range append(named, hopHeaders[:]...) {
			v, ok := req[k]
			switch {
			case !ok:
			case k == "Te" && trailers && slices.Equal(v, []string{"trailers"}):
			case upgrade != "" && (k == "Connection" || k == "Upgrade"):
			default:
				t.Errorf("cleanRequestHeader left %s: %q (input %q)", k, v, block)
			}
		}
	})
}

func TestViaValues(t *testing.T) {
	v := newViaValues("wp")
	for _, tt := range []struct {
		major, minor int
		in           []string
	}{{1, 1, nil}, {1, 0, nil}, {2, 0, nil}, {0, 9, nil}, {1, 1, []string{"1.0 other"}}} {
		want, got := http.Header{"Via": tt.in}, http.Header{"Via": tt.in}
		if tt.in == nil {
			delete(want, "Via")
			delete(got, "Via")
		}
		appendVia(want, tt.major, tt.minor, "wp")
		v.add(got, tt.major, tt.minor)
		if !slices.Equal(got["Via"], want["Via"]) {
			t.Errorf("add(HTTP/%d.%d, %q) = %q, want %q as appendVia", tt.major, tt.minor, tt.in, got["Via"], want["Via"])
		}
		// An append to the result never changes the shared value.
		_ = append(got["Via"], "x")
	}
	if v.v11[0] != "1.1 wp" || len(v.v11) != 1 || cap(v.v11) != 1 {
		t.Errorf("shared Via value changed: %q", v.v11)
	}
}

func TestCheckAuthority(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"a.test", true},
		{"a.test:8080", true},
		{"a.test:", true},
		{"127.0.0.1:80", true},
		{"[::1]", true},
		{"[::1]:443", true},
		{"", false},
		{":80", false},
		{"[]", false},
		{"[]:80", false},
		{"a.test:0", false},
		{"a.test:65536", false},
		{"a.test:http", false},
		{"::1", false},
		{"a:b:c", false},
	}
	for _, tt := range tests {
		if err := checkAuthority(tt.in); (err == nil) != tt.ok {
			t.Errorf("checkAuthority(%q) = %v, want ok %v", tt.in, err, tt.ok)
		}
	}
}

// Issue 12: dropBadTrailers keeps the fields RFC 9110 section 6.5.1
// allows in trailers and counts the others that carried a value.
func TestDropBadTrailers(t *testing.T) {
	tests := []struct {
		name  string
		in    http.Header
		want  http.Header
		count int
	}{
		{"nil", nil, nil, 0},
		{"allowed", http.Header{"X-Checksum": {"1"}, "Etag": {`"x"`}, "Server-Timing": {"db;dur=5"}, "Authentication-Info": {"a"}},
			http.Header{"X-Checksum": {"1"}, "Etag": {`"x"`}, "Server-Timing": {"db;dur=5"}, "Authentication-Info": {"a"}}, 0},
		{"framing and routing", http.Header{"Content-Length": {"99"}, "Transfer-Encoding": {"chunked"}, "Host": {"evil"}, "X-A": {"1"}},
			http.Header{"X-A": {"1"}}, 3},
		{"credentials and cookies", http.Header{"Authorization": {"x"}, "Proxy-Authorization": {"x"}, "Cookie": {"c"}, "Set-Cookie": {"s"}, "Www-Authenticate": {"Basic"}},
			http.Header{}, 5},
		{"conditionals and controls", http.Header{"If-Match": {"*"}, "If-None-Match": {"*"}, "Range": {"bytes=0-"}, "Cache-Control": {"no-store"}, "Expect": {"100-continue"}},
			http.Header{}, 5},
		{"response controls and format", http.Header{"Date": {"d"}, "Location": {"/x"}, "Vary": {"*"}, "Content-Type": {"text/html"}, "Content-Encoding": {"gzip"}},
			http.Header{}, 5},
		{"non-canonical key", http.Header{"content-length": {"1"}}, http.Header{}, 1},
		{"declared, no value yet", http.Header{"Set-Cookie": nil, "X-A": nil}, http.Header{"X-A": nil}, 0},
		// Issue 16: the list now lives in wire; a name that is not a
		// token stays for net/http to refuse unless it starts "If-".
		{"not a token", http.Header{"if-a b": {"1"}, "If-a b": {"1"}, "content-length x": {"1"}},
			http.Header{"if-a b": {"1"}, "content-length x": {"1"}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in.Clone()
			if n := dropBadTrailers(h); n != tt.count || !headerEqual(h, tt.want) {
				t.Errorf("dropBadTrailers(%v) = %d, left %v; want %d, %v", tt.in, n, h, tt.count, tt.want)
			}
		})
	}
}

// Issue 16: IsHopByHop, the connection server's test of each relayed
// field, knows every hop-by-hop name in any case and no other name,
// including names of the same lengths.
func TestIsHopByHop(t *testing.T) {
	for _, h := range hopHeaders {
		for _, name := range []string{h, strings.ToLower(h), strings.ToUpper(h)} {
			if !IsHopByHop([]byte(name)) {
				t.Errorf("IsHopByHop(%q) = false, want true", name)
			}
		}
	}
	for _, name := range []string{"", "T", "Tf", "Content-Length", "Upgrader", "Trailers", "Proxy-Connectio", "Transfer-Encodingx",
		"Proxy-Authenticatx", "Proxy-Authorizatio", "Proxy-Authorization-X", "X-Forwarded-For", "Keep-Alivf"} {
		if IsHopByHop([]byte(name)) {
			t.Errorf("IsHopByHop(%q) = true, want false", name)
		}
	}
}
