package metrics

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/dnscache"
	"github.com/warmproxy/warmproxy/internal/proxystatus"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// value sums the samples of family name in m's registry whose labels
// include the given pairs; a histogram counts its samples.
func value(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather() = %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if !matches(s, labels) {
				continue
			}
			switch {
			case s.Counter != nil:
				sum += s.Counter.GetValue()
			case s.Gauge != nil:
				sum += s.Gauge.GetValue()
			case s.Histogram != nil:
				sum += float64(s.Histogram.GetSampleCount())
			}
		}
		return sum
	}
	t.Fatalf("no metric family %s", name)
	return 0
}

func matches(s *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		ok := false
		for _, lp := range s.GetLabel() {
			ok = ok || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
		}
		if !ok {
			return false
		}
	}
	return true
}

type sample struct {
	name   string
	labels []string
	want   float64
}

func TestObserve(t *testing.T) {
	tests := []struct {
		name  string
		entry accesslog.Entry
		want  []sample
	}{
		{
			name:  "reused https request",
			entry: accesslog.Entry{Kind: accesslog.KindRequest, Method: "GET", Status: 200, URL: "https://a.test/", Reused: true, Duration: time.Millisecond},
			want: []sample{
				{"warmproxy_requests_total", []string{"method", "GET", "code", "2xx"}, 1},
				{"warmproxy_upstream_requests_total", []string{"conn", "reused"}, 1},
				{"warmproxy_handshakes_avoided_total", []string{"kind", "tcp"}, 1},
				{"warmproxy_handshakes_avoided_total", []string{"kind", "tls"}, 1},
				{"warmproxy_request_duration_seconds", []string{"conn", "reused"}, 1},
				{"warmproxy_upstream_connect_duration_seconds", nil, 0},
			},
		},
		{
			name:  "reused http request avoids no tls",
			entry: accesslog.Entry{Kind: accesslog.KindRequest, Method: "HEAD", Status: 304, URL: "http://a.test/", Reused: true},
			want: []sample{
				{"warmproxy_requests_total", []string{"method", "HEAD", "code", "3xx"}, 1},
				{"warmproxy_handshakes_avoided_total", []string{"kind", "tcp"}, 1},
				{"warmproxy_handshakes_avoided_total", []string{"kind", "tls"}, 0},
			},
		},
		{
			name:  "new connection after a stale one",
			entry: accesslog.Entry{Kind: accesslog.KindRequest, Method: "POST", Status: 201, URL: "http://a.test/", Connect: 3 * time.Millisecond, Retries: 1},
			want: []sample{
				{"warmproxy_requests_total", []string{"method", "POST", "code", "2xx"}, 1},
				{"warmproxy_upstream_requests_total", []string{"conn", "new"}, 1},
				{"warmproxy_upstream_requests_total", []string{"conn", "reused"}, 0},
				{"warmproxy_upstream_connect_duration_seconds", nil, 1},
				{"warmproxy_upstream_retries_total", nil, 1},
				{"warmproxy_request_duration_seconds", []string{"conn", "new"}, 1},
			},
		},
		{
			name:  "dns failure",
			entry: accesslog.Entry{Kind: accesslog.KindRequest, Method: "PROPFIND", Status: 502, Error: "dns_error"},
			want: []sample{
				{"warmproxy_requests_total", []string{"method", "other", "code", "5xx"}, 1},
				{"warmproxy_errors_total", []string{"type", "dns_error"}, 1},
				{"warmproxy_upstream_requests_total", nil, 0},
				{"warmproxy_request_duration_seconds", []string{"conn", "none"}, 1},
			},
		},
		{
			name:  "unknown error type",
			entry: accesslog.Entry{Kind: accesslog.KindRequest, Method: "GET", Status: 999, Error: "made_up"},
			want: []sample{
				{"warmproxy_requests_total", []string{"method", "GET", "code", "other"}, 1},
				{"warmproxy_errors_total", []string{"type", "other"}, 1},
			},
		},
		{
			name:  "connect tunnel",
			entry: accesslog.Entry{Kind: accesslog.KindConnect, Method: "CONNECT", Status: 200, BytesIn: 100, BytesOut: 5000, End: "eof", Duration: time.Minute},
			want: []sample{
				{"warmproxy_requests_total", []string{"method", "CONNECT", "code", "2xx"}, 1},
				{"warmproxy_tunnels_total", []string{"kind", "connect"}, 1},
				{"warmproxy_tunnel_bytes_total", []string{"direction", "up"}, 100},
				{"warmproxy_tunnel_bytes_total", []string{"direction", "down"}, 5000},
				{"warmproxy_request_duration_seconds", nil, 0},
			},
		},
		{
			name:  "connect refused before relaying",
			entry: accesslog.Entry{Kind: accesslog.KindConnect, Method: "CONNECT", Status: 403, BytesOut: 80, Error: "http_request_denied"},
			want: []sample{
				{"warmproxy_tunnels_total", nil, 0},
				{"warmproxy_tunnel_bytes_total", nil, 0},
				{"warmproxy_errors_total", []string{"type", "http_request_denied"}, 1},
			},
		},
		{
			name:  "websocket upgrade",
			entry: accesslog.Entry{Kind: accesslog.KindUpgrade, Method: "GET", Status: 101, URL: "http://a.test/ws", Reused: true, BytesIn: 7, BytesOut: 9, End: "eof"},
			want: []sample{
				{"warmproxy_requests_total", []string{"code", "1xx"}, 1},
				{"warmproxy_tunnels_total", []string{"kind", "upgrade"}, 1},
				{"warmproxy_tunnel_bytes_total", nil, 16},
				{"warmproxy_upstream_requests_total", []string{"conn", "reused"}, 1},
				{"warmproxy_request_duration_seconds", nil, 0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{})
			var got *accesslog.Entry
			m.Record(func(e *accesslog.Entry) { got = e })(&tt.entry)
			if got != &tt.entry {
				t.Error("Record did not pass the entry on")
			}
			for _, s := range tt.want {
				if v := value(t, m, s.name, s.labels...); v != s.want {
					t.Errorf("%s%v = %v, want %v", s.name, s.labels, v, s.want)
				}
			}
		})
	}
}

// Observing a request allocates nothing.
func TestObserveAllocs(t *testing.T) {
	m := New(Options{})
	entries := []accesslog.Entry{
		{Kind: accesslog.KindRequest, Method: "GET", Status: 200, URL: "https://a.test/", Reused: true, Duration: time.Millisecond},
		{Kind: accesslog.KindRequest, Method: "GET", Status: 200, URL: "http://a.test/", Connect: time.Millisecond, Retries: 1},
		{Kind: accesslog.KindRequest, Method: "GET", Status: 502, Error: "connection_refused"},
	}
	for _, e := range entries {
		if n := testing.AllocsPerRun(100, func() { m.Observe(&e) }); n != 0 {
			t.Errorf("Observe(%+v) allocates %v times, want 0", e, n)
		}
	}
}

func TestMethodAndStatusClasses(t *testing.T) {
	for _, tt := range []struct {
		method     string
		status     int
		wantMethod string
		wantStatus string
	}{
		{"GET", 200, "GET", "2xx"},
		{"get", 404, "other", "4xx"},
		{"CONNECT", 499, "CONNECT", "4xx"},
		{"PATCH", 101, "PATCH", "1xx"},
		{"BREW", 0, "other", "other"},
		{"DELETE", 600, "DELETE", "other"},
	} {
		if m, s := methodClasses[methodClass(tt.method)], statusClasses[statusClass(tt.status)]; m != tt.wantMethod || s != tt.wantStatus {
			t.Errorf("classes(%q, %d) = %s, %s, want %s, %s", tt.method, tt.status, m, s, tt.wantMethod, tt.wantStatus)
		}
	}
}

func TestTunnelsOpenGauge(t *testing.T) {
	n := 3
	m := New(Options{Tunnels: func() int { return n }})
	if v := value(t, m, "warmproxy_tunnels_open"); v != 3 {
		t.Errorf("warmproxy_tunnels_open = %v, want 3", v)
	}
}

func TestPoolHandlerWithoutTracker(t *testing.T) {
	m := New(Options{})
	rec := httptest.NewRecorder()
	m.PoolHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pool", nil))
	var rep PoolReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil || rep.Upstreams == nil || rep.Totals == nil {
		t.Errorf("/debug/pool without a tracker = %q (%v), want empty lists", rec.Body.String(), err)
	}
}

func TestTrackerCollector(t *testing.T) {
	m := New(Options{Tracker: upstream.NewTracker()})
	for _, name := range []string{
		"warmproxy_upstream_connections_opened_total",
		"warmproxy_upstream_connections_closed_total",
		"warmproxy_upstream_connections",
		"warmproxy_upstream_requests_in_flight",
		"warmproxy_upstream_dial_errors_total",
		"warmproxy_tls_handshakes_total",
	} {
		if v := value(t, m, name); v != 0 {
			t.Errorf("%s on an empty pool = %v, want 0", name, v)
		}
	}
}

// Issue 8: the DNS cache's lookups are counted by result at scrape time.
func TestDNSCollector(t *testing.T) {
	var queries int
	lookup := func(_ context.Context, _, host string) ([]netip.Addr, error) {
		queries++
		if host == "gone.test" {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	cache := dnscache.New(lookup, dnscache.Options{Size: 8, MinTTL: time.Minute, MaxTTL: time.Hour})
	m := New(Options{DNS: cache})
	ctx := context.Background()
	for range 3 {
		if _, err := cache.Lookup(ctx, "ip", "api.test"); err != nil {
			t.Fatal(err)
		}
	}
	cache.Lookup(ctx, "ip", "gone.test")
	cache.Wait()
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"warmproxy_dns_lookups_total", []string{"result", "hit"}, 2},
		{"warmproxy_dns_lookups_total", []string{"result", "miss"}, 2},
		{"warmproxy_dns_lookups_total", []string{"result", "stale"}, 0},
		{"warmproxy_dns_queries_total", nil, float64(queries)},
		{"warmproxy_dns_cache_entries", nil, 2},
	} {
		if got := value(t, m, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if queries != 2 {
		t.Errorf("resolver queries = %d, want 2", queries)
	}
}

// Every metric the Grafana dashboard queries exists.
func TestDashboardQueriesKnownMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana-dashboard.json: %v", err)
	}
	dns := dnscache.New(func(context.Context, string, string) ([]netip.Addr, error) {
		return nil, &net.DNSError{Err: "no resolver"}
	}, dnscache.Options{Size: 8, MinTTL: time.Minute, MaxTTL: time.Hour})
	m := New(Options{Tracker: upstream.NewTracker(), Tunnels: func() int { return 0 }, DNS: dns})
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, mf := range mfs {
		known[mf.GetName()] = true
	}
	name := regexp.MustCompile(`warmproxy_[a-z0-9_]+`)
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := n
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(n, suffix); ok && known[b] {
						base = b
					}
				}
				if !known[base] {
					t.Errorf("panel %q queries %s, which warmproxy does not export", p.Title, n)
				}
			}
		}
	}
	if queries == 0 {
		t.Error("dashboard has no queries")
	}
}

// Issue 16: the label set of warmproxy_errors_total is RFC 9209's list:
// each type is counted under its own name, none as "other".
func TestErrorLabelsAreProxyStatusTypes(t *testing.T) {
	m := New(Options{})
	for _, typ := range proxystatus.Types() {
		m.Observe(&accesslog.Entry{Kind: accesslog.KindRequest, Method: "GET", Status: 502, Error: typ})
		if got := value(t, m, "warmproxy_errors_total", "type", typ); got != 1 {
			t.Errorf("warmproxy_errors_total{type=%q} = %v after one such error, want 1", typ, got)
		}
	}
	if got := value(t, m, "warmproxy_errors_total", "type", "other"); got != 0 {
		t.Errorf(`warmproxy_errors_total{type="other"} = %v, want 0`, got)
	}
}
