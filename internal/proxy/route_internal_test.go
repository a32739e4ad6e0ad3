package proxy

import "testing"

// Issue 8: the longest prefix wins; the prefix without its slash maps to
// the base path.
func TestRoutesMatch(t *testing.T) {
	rs := newRoutes("/api/=http://a.test/, /api/v2/=https://b.test/base/,/stripe/=https://api.stripe.com/")
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
