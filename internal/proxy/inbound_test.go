package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// Issue 16: the Handler sends a copy of the request it is given, as
// net/http/httputil's ReverseProxy does: hop-by-hop hygiene, Via, the
// protocol header, a route's rewrite and Max-Forwards change the outbound
// request only, never the inbound one (its URL, Host, target and header).
func TestInboundRequestUnchanged(t *testing.T) {
	o := newRouteOrigin(t)
	cfg := testConfig()
	cfg.Routes = "/x/=" + o.URL + "/base/"
	h := startProxy(t, cfg).srv.Config.Handler

	tests := []struct {
		name, method, target string
		header               http.Header
	}{
		{"absolute form", http.MethodGet, o.URL + "/a?b=1", http.Header{
			"Connection": {"X-Hop, keep-alive"}, "X-Hop": {"1"}, "Keep-Alive": {"timeout=5"},
			"Te": {"trailers, gzip"}, "X-Real-Protocol": {"http"}, "Proxy-Authorization": {"Basic eDp5"},
			"Via": {"1.1 other"},
		}},
		{"route", http.MethodGet, "/x/v1?q=1", http.Header{"X-Real-Protocol": {"https"}, "Connection": {"close"}}},
		{"max-forwards", http.MethodOptions, o.URL + "/", http.Header{"Max-Forwards": {"3"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, nil)
			r.Header = tt.header
			want := snapshot(r)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				t.Fatalf("%s %s = %d %q, want 200", tt.method, tt.target, rec.Code, rec.Body)
			}
			if got := snapshot(r); !reflect.DeepEqual(got, want) {
				t.Errorf("after ServeHTTP the inbound request is %+v, want it as given: %+v", got, want)
			}
		})
	}
}

// requestView is what of a request the Handler must leave as it is.
type requestView struct {
	URL, Host, RequestURI string
	Header                http.Header
}

func snapshot(r *http.Request) requestView {
	return requestView{URL: r.URL.String(), Host: r.Host, RequestURI: r.RequestURI, Header: r.Header.Clone()}
}
