package metrics_test

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/metrics"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// Issue 4: what metrics cost per request.
//
//	go test -run '^$' -bench . -count 6 ./internal/metrics/
//
// BenchmarkRecord compares the access-log record path alone with and
// without metrics; BenchmarkForward the whole keep-alive forward (client →
// proxy → origin over loopback, one request at a time), with metrics and
// the pool's connection and request tracking on or off;
// BenchmarkForwardPaired the same two, interleaved request by request.

func BenchmarkRecord(b *testing.B) {
	entry := &accesslog.Entry{
		Start: time.Now(), Client: "127.0.0.1:50000", Method: "GET",
		URL: "https://origin.test/some/path?q=1", RequestedURL: "http://origin.test/some/path?q=1",
		Status: 200, BytesOut: 1234, Duration: 3 * time.Millisecond, Reused: true, Kind: accesslog.KindRequest,
	}
	for _, on := range []bool{false, true} {
		b.Run(onOff(on), func(b *testing.B) {
			access := accesslog.New(io.Discard, config.LogTSV)
			b.Cleanup(access.Close)
			record := access.Log
			if on {
				record = metrics.New(metrics.Options{Tracker: upstream.NewTracker()}).Record(access.Log)
			}
			b.ReportAllocs()
			for b.Loop() {
				record(entry)
			}
		})
	}
}

func BenchmarkForward(b *testing.B) {
	for _, scheme := range []string{"http", "https"} {
		for _, on := range []bool{false, true} {
			b.Run(scheme+"/"+onOff(on), func(b *testing.B) { benchForward(b, scheme, on) })
		}
	}
}

func onOff(on bool) string {
	if on {
		return "metrics-on"
	}
	return "metrics-off"
}

func benchForward(b *testing.B, scheme string, on bool) {
	do := forwarder(b, scheme, on)
	do() // warm both pools
	b.ReportAllocs()
	for b.Loop() {
		do()
	}
}

// BenchmarkForwardPaired sends each iteration's request once through a
// proxy without metrics and once through one with them, alternating which
// goes first, and times each: load from elsewhere on the machine then
// weighs on both alike. It reports the median latency of each and the
// overhead of the median with metrics over the one without.
func BenchmarkForwardPaired(b *testing.B) {
	for _, scheme := range []string{"http", "https"} {
		b.Run(scheme, func(b *testing.B) {
			off, on := forwarder(b, scheme, false), forwarder(b, scheme, true)
			off()
			on()
			var tOff, tOn []time.Duration
			timed := func(do func()) time.Duration {
				start := time.Now()
				do()
				return time.Since(start)
			}
			for b.Loop() {
				if len(tOff)%2 == 0 {
					tOff = append(tOff, timed(off))
					tOn = append(tOn, timed(on))
				} else {
					tOn = append(tOn, timed(on))
					tOff = append(tOff, timed(off))
				}
			}
			mOff, mOn := median(tOff), median(tOn)
			b.ReportMetric(float64(mOff.Nanoseconds()), "off-ns/req")
			b.ReportMetric(float64(mOn.Nanoseconds()), "on-ns/req")
			b.ReportMetric(100*(float64(mOn)/float64(mOff)-1), "overhead-%")
		})
	}
}

// median of d, which it sorts.
func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// forwarder starts an origin and a proxy in front of it, and returns a
// function sending one keep-alive request through them.
func forwarder(b *testing.B, scheme string, on bool) func() {
	b.Helper()
	body := strings.Repeat("x", 512)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
	origin := httptest.NewUnstartedServer(h)
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	if scheme == "https" {
		origin.StartTLS()
		ca := filepath.Join(b.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: origin.Certificate().Raw}), 0o600); err != nil {
			b.Fatal(err)
		}
		cfg.CAFile = ca
	} else {
		origin.Start()
	}
	b.Cleanup(origin.Close)

	up, err := upstream.New(config.MustParse(cfg))
	if err != nil {
		b.Fatal(err)
	}
	access := accesslog.New(io.Discard, config.LogTSV)
	b.Cleanup(access.Close)
	var (
		rt     http.RoundTripper
		record = access.Log
	)
	if on {
		m := metrics.New(metrics.Options{Tracker: up.Tracker()})
		rt, record = up.Tracker().Wrap(up.Transport()), m.Record(access.Log)
		b.Cleanup(up.Transport().CloseIdleConnections)
	} else {
		// The transport as it was before tracking: dialing directly,
		// TLS by the transport itself.
		plain := up.Transport().Clone()
		plain.DialContext, plain.DialTLSContext = up.Dial, nil
		rt = plain
		b.Cleanup(plain.CloseIdleConnections)
	}
	handler := proxy.New(proxy.Options{Transport: rt, Dial: proxy.DialFunc(up.Dial), Config: config.MustParse(cfg), Record: record})
	px := httptest.NewServer(handler)
	b.Cleanup(px.Close)

	ct := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: strings.TrimPrefix(px.URL, "http://")})}
	b.Cleanup(ct.CloseIdleConnections)
	client := &http.Client{Transport: ct}
	target := "http://" + strings.TrimPrefix(strings.TrimPrefix(origin.URL, "https://"), "http://") + "/"
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		b.Fatal(err)
	}
	if scheme == "https" {
		req.Header.Set("X-Real-Protocol", "https")
	}
	return func() {
		resp, err := client.Do(req.Clone(req.Context()))
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != int64(len(body)) {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
}

// stubTransport answers every request 200 with no body, touching no
// network.
type stubTransport struct{}

func (stubTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

// Issue 15: what rendering the stats page (and, to compare, /debug/pool)
// costs with the pool's most
// origins (1024: upstream.maxHosts), each with a request.
//
//	go test -run '^$' -bench StatsPage -benchmem ./internal/metrics/
func BenchmarkStatsPage(b *testing.B) {
	tracker := upstream.NewTracker()
	rt := tracker.Wrap(stubTransport{})
	for i := range 1024 {
		req := httptest.NewRequest(http.MethodGet, "http://origin"+strconv.Itoa(i)+".test/", nil)
		if _, err := rt.RoundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
	m := metrics.New(metrics.Options{Tracker: tracker})
	for _, page := range []struct {
		name string
		h    http.Handler
	}{{"html", m.StatsHandler()}, {"json", m.PoolHandler()}} {
		b.Run(page.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			var size int
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				page.h.ServeHTTP(w, req)
				size = w.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/page")
		})
	}
}
