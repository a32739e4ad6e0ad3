// Package metrics turns what warmproxy does into Prometheus metrics on a
// private registry, and serves them with the upstream connections' state
// (/debug/pool) and a stats page (/stats).
//
// Per-request facts come from the access-log entry each request ends with
// (Record wraps the access log), dropped trailer fields from the proxy
// (TrailersDropped); connection facts come from the upstream Tracker's and
// the DNS cache's counters, read at scrape time, and from the Tracker's TLS
// handshakes. Every label is bounded: there is no host or URL label.
// Per-host detail is in /debug/pool instead.
package metrics

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/dnscache"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/proxystatus"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// Method classes: the methods of RFC 9110 and PATCH, then the rest.
var methodClasses = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "other"}

const numMethods = len(methodClasses)

func methodClass(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodDelete:
		return 4
	case http.MethodOptions:
		return 5
	case http.MethodPatch:
		return 6
	case http.MethodTrace:
		return 7
	case http.MethodConnect:
		return 8
	}
	return numMethods - 1
}

// Status classes; index = status/100, with 0 for anything out of range.
var statusClasses = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func statusClass(code int) int {
	if c := code / 100; c >= 1 && c <= 5 {
		return c
	}
	return 0
}

// What a request's upstream connection was.
const (
	connNone   = iota // it got none: refused, failed, answered by the proxy
	connNew           // a connection dialed for it
	connReused        // a pooled connection
	numConn
)

var connClasses = [numConn]string{"none", "new", "reused"}

// Buckets, in seconds.
var (
	requestBuckets   = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	handshakeBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
)

// Options are what Metrics report on besides the requests they observe.
type Options struct {
	// Tracker is the upstream tracker whose connections are reported
	// (the /debug/pool page); nil reports none.
	Tracker *upstream.Tracker
	// Tunnels, if set, returns how many CONNECT and upgrade tunnels are
	// open.
	Tunnels func() int
	// DNS, if set, is the dialer's DNS cache whose lookups are reported.
	DNS *dnscache.Cache
}

// Metrics holds warmproxy's collectors. Every labelled child is resolved
// once, in New, so observing a request is array indexing and atomic adds.
type Metrics struct {
	reg         *prometheus.Registry
	tracker     *upstream.Tracker
	tunnelsOpen func() int
	dns         *dnscache.Cache

	requests   [numMethods][len(statusClasses)]prometheus.Counter
	duration   [numConn]prometheus.Observer
	upstream   [numConn]prometheus.Counter
	connect    prometheus.Observer
	avoidedTCP prometheus.Counter
	avoidedTLS prometheus.Counter
	retries    prometheus.Counter
	errors     map[string]prometheus.Counter
	errOther   prometheus.Counter
	tunnels    [2]prometheus.Counter // connect, upgrade
	bytesUp    prometheus.Counter
	bytesDown  prometheus.Counter
	handshake  [2]prometheus.Observer // full, resumed
	trailers   [2]prometheus.Counter  // request, response
}

// New registers warmproxy's collectors, the Go runtime's and the
// process's on a new private registry. With a tracker it hooks itself
// into the TLS handshakes it counts.
func New(o Options) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg, tracker: o.Tracker, tunnelsOpen: o.Tunnels, dns: o.DNS}
	reg.MustRegister(m.requestCollectors()...)
	reg.MustRegister(m.connCollectors()...)
	reg.MustRegister(m.errorCollector(), m.trailerCollector())
	reg.MustRegister(m.tunnelCollectors()...)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.Tunnels != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "warmproxy_tunnels_open",
			Help: "CONNECT and upgrade tunnels open now.",
		}, func() float64 { return float64(o.Tunnels()) }))
	}
	if o.DNS != nil {
		reg.MustRegister(newDNSCollector(o.DNS))
	}
	if o.Tracker != nil {
		reg.MustRegister(newTrackerCollector(o.Tracker))
		o.Tracker.SetTLSObserver(m.observeHandshake)
	}
	return m
}

// requestCollectors are the per-request series: requests by method and
// status class, and their duration and upstream requests by the upstream
// connection they got.
func (m *Metrics) requestCollectors() []prometheus.Collector {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warmproxy_requests_total",
		Help: "Requests and tunnels the proxy finished, by method and status class.",
	}, []string{"method", "code"})
	for i, meth := range methodClasses {
		for j, code := range statusClasses {
			m.requests[i][j] = requests.WithLabelValues(meth, code)
		}
	}
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "warmproxy_request_duration_seconds",
		Help:    "Time from request head to the end of the response, by the upstream connection the request got (none, new, reused). Tunnels are not included.",
		Buckets: requestBuckets,
	}, []string{"conn"})
	upstreamReqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warmproxy_upstream_requests_total",
		Help: "Requests sent upstream, by whether they went out on a new or a reused (pooled) connection.",
	}, []string{"conn"})
	for i, c := range connClasses {
		m.duration[i] = duration.WithLabelValues(c)
		if i != connNone {
			m.upstream[i] = upstreamReqs.WithLabelValues(c)
		}
	}
	return []prometheus.Collector{requests, duration, upstreamReqs}
}

// connCollectors are the series of upstream connections: what a new one
// costs (connect, TLS handshakes), what reuse saves, and the retries on a
// fresh one.
func (m *Metrics) connCollectors() []prometheus.Collector {
	connect := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "warmproxy_upstream_connect_duration_seconds",
		Help:    "Time a request spent getting a new upstream connection: TCP connect plus TLS handshake. What each reused request saves.",
		Buckets: handshakeBuckets,
	})
	m.connect = connect
	avoided := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warmproxy_handshakes_avoided_total",
		Help: "Handshakes saved by reusing a pooled connection: one tcp per reused request, one tls more when it speaks TLS to the origin.",
	}, []string{"kind"})
	m.avoidedTCP = avoided.WithLabelValues("tcp")
	m.avoidedTLS = avoided.WithLabelValues("tls")
	retries := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "warmproxy_upstream_retries_total",
		Help: "Requests sent again on a fresh connection because a pooled one turned out closed.",
	})
	m.retries = retries
	handshake := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "warmproxy_tls_handshake_duration_seconds",
		Help:    "Duration of successful TLS handshakes with origins, by kind (full, resumed).",
		Buckets: handshakeBuckets,
	}, []string{"kind"})
	m.handshake[0] = handshake.WithLabelValues("full")
	m.handshake[1] = handshake.WithLabelValues("resumed")
	return []prometheus.Collector{connect, avoided, retries, handshake}
}

// errorCollector counts failures by Proxy-Status error type. Every type
// of RFC 9209 has its series; anything else (none that the proxy writes)
// is counted as "other".
func (m *Metrics) errorCollector() prometheus.Collector {
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warmproxy_errors_total",
		Help: "Failed requests and tunnels, by Proxy-Status (RFC 9209) error type.",
	}, []string{"type"})
	m.errors = make(map[string]prometheus.Counter, len(proxystatus.Types()))
	for _, t := range proxystatus.Types() {
		m.errors[t] = errs.WithLabelValues(t)
	}
	m.errOther = errs.WithLabelValues("other")
	return errs
}

// trailerCollector counts the trailer fields dropped, by direction.
func (m *Metrics) trailerCollector() prometheus.Collector {
	trailers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warmproxy_trailer_fields_dropped_total",
		Help: "Trailer fields dropped because RFC 9110 section 6.5.1 keeps them out of trailers (framing, routing, credentials, cookies, response controls, content format), by direction (request: client to origin).",
	}, []string{"direction"})
	m.trailers[0] = trailers.WithLabelValues(proxy.TrailerRequest)
	m.trailers[1] = trailers.WithLabelValues(proxy.TrailerResponse)
	return trailers
}

// tunnelCollectors count the tunnels that ended, and the bytes they
// relayed.
func (m *Metrics) tunnelCollectors() []prometheus.Collector {
	tunnels := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warmproxy_tunnels_total",
		Help: "Tunnels that ended after relaying, by kind (connect, upgrade).",
	}, []string{"kind"})
	m.tunnels[0] = tunnels.WithLabelValues(accesslog.KindConnect)
	m.tunnels[1] = tunnels.WithLabelValues(accesslog.KindUpgrade)
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warmproxy_tunnel_bytes_total",
		Help: "Bytes relayed by tunnels, counted when a tunnel ends, by direction (up: client to origin).",
	}, []string{"direction"})
	m.bytesUp = bytes.WithLabelValues("up")
	m.bytesDown = bytes.WithLabelValues("down")
	return []prometheus.Collector{tunnels, bytes}
}

func (m *Metrics) observeHandshake(resumed bool, d time.Duration) {
	i := 0
	if resumed {
		i = 1
	}
	m.handshake[i].Observe(d.Seconds())
}

// TrailersDropped counts n trailer fields dropped going in direction
// (proxy.TrailerRequest or proxy.TrailerResponse); it is the proxy's
// Options.TrailersDropped.
func (m *Metrics) TrailersDropped(direction string, n int) {
	i := 0
	if direction == proxy.TrailerResponse {
		i = 1
	}
	m.trailers[i].Add(float64(n))
}

// Record returns a record function that observes each entry, then hands
// it to next.
func (m *Metrics) Record(next func(*accesslog.Entry)) func(*accesslog.Entry) {
	if next == nil {
		return m.Observe
	}
	return func(e *accesslog.Entry) {
		m.Observe(e)
		next(e)
	}
}

// Observe counts one finished request or tunnel.
func (m *Metrics) Observe(e *accesslog.Entry) {
	m.requests[methodClass(e.Method)][statusClass(e.Status)].Inc()
	if e.Error != "" {
		if c, ok := m.errors[e.Error]; ok {
			c.Inc()
		} else {
			m.errOther.Inc()
		}
	}
	if e.Retries > 0 {
		m.retries.Add(float64(e.Retries))
	}
	switch e.Kind {
	case accesslog.KindConnect:
		if e.End != "" {
			m.tunnels[0].Inc()
			m.tunnelBytes(e)
		}
		return
	case accesslog.KindUpgrade:
		if e.End != "" {
			m.tunnels[1].Inc()
			m.tunnelBytes(e)
		}
	}
	conn := connNone
	switch {
	case e.Reused:
		conn = connReused
		m.avoidedTCP.Inc()
		if strings.HasPrefix(e.URL, "https:") {
			m.avoidedTLS.Inc()
		}
	case e.Connect > 0:
		conn = connNew
		m.connect.Observe(e.Connect.Seconds())
	}
	if conn != connNone {
		m.upstream[conn].Inc()
	}
	if e.Kind == accesslog.KindRequest || e.Kind == accesslog.KindIntercepted && e.Method != http.MethodConnect {
		m.duration[conn].Observe(e.Duration.Seconds())
	}
}

func (m *Metrics) tunnelBytes(e *accesslog.Entry) {
	m.bytesUp.Add(float64(e.BytesIn))
	m.bytesDown.Add(float64(e.BytesOut))
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// PoolReport is what /debug/pool serves.
type PoolReport struct {
	Time time.Time `json:"time"`
	// Totals has one entry per scheme; Upstreams one per origin and
	// scheme.
	Totals    []upstream.Stats `json:"totals"`
	Upstreams []upstream.Stats `json:"upstreams"`
}

// PoolHandler serves the pool's state as indented JSON.
func (m *Metrics) PoolHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rep := m.poolReport()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	})
}

// poolReport is the pool's state now.
func (m *Metrics) poolReport() PoolReport {
	rep := PoolReport{Time: time.Now().UTC(), Totals: []upstream.Stats{}, Upstreams: []upstream.Stats{}}
	if m.tracker != nil {
		for _, s := range upstream.Schemes {
			rep.Totals = append(rep.Totals, m.tracker.Totals(s))
		}
		rep.Upstreams = m.tracker.Hosts()
	}
	return rep
}

// trackerCollector reads the tracker's counters at scrape time, so the
// tracker costs the request path nothing beyond its own atomic adds.
type trackerCollector struct {
	tracker                                           *upstream.Tracker
	opened, closed, conns, inflight, dialErrors, tlsH *prometheus.Desc
	h2                                                *prometheus.Desc
}

func newTrackerCollector(t *upstream.Tracker) *trackerCollector {
	return &trackerCollector{
		tracker: t,
		opened: prometheus.NewDesc("warmproxy_upstream_connections_opened_total",
			"Connections opened to origins, by scheme.", []string{"scheme"}, nil),
		closed: prometheus.NewDesc("warmproxy_upstream_connections_closed_total",
			"Connections to origins closed, by scheme.", []string{"scheme"}, nil),
		conns: prometheus.NewDesc("warmproxy_upstream_connections",
			"Connections to origins open now, by scheme and state: active ones carry a request, idle ones wait in the pool.", []string{"scheme", "state"}, nil),
		h2: prometheus.NewDesc("warmproxy_upstream_http2_connections",
			"Connections to origins open now that speak HTTP/2; each carries many concurrent requests.", nil, nil),
		inflight: prometheus.NewDesc("warmproxy_upstream_requests_in_flight",
			"Requests under way upstream, including those waiting for a connection, by scheme.", []string{"scheme"}, nil),
		dialErrors: prometheus.NewDesc("warmproxy_upstream_dial_errors_total",
			"Failed connection attempts to origins, by scheme.", []string{"scheme"}, nil),
		tlsH: prometheus.NewDesc("warmproxy_tls_handshakes_total",
			"TLS handshakes with origins, by result: full, resumed (session resumption) or error.", []string{"result"}, nil),
	}
}

func (c *trackerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.opened, c.closed, c.conns, c.h2, c.inflight, c.dialErrors, c.tlsH} {
		ch <- d
	}
}

func (c *trackerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range upstream.Schemes {
		st := c.tracker.Totals(s)
		name := st.Scheme
		ch <- prometheus.MustNewConstMetric(c.opened, prometheus.CounterValue, float64(st.Opened), name)
		ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, float64(st.Closed), name)
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(st.Active), name, "active")
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(st.Idle), name, "idle")
		ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(st.InFlight), name)
		ch <- prometheus.MustNewConstMetric(c.dialErrors, prometheus.CounterValue, float64(st.DialErrors), name)
		if s == upstream.SchemeHTTPS {
			ch <- prometheus.MustNewConstMetric(c.h2, prometheus.GaugeValue, float64(st.HTTP2))
			ch <- prometheus.MustNewConstMetric(c.tlsH, prometheus.CounterValue, float64(st.TLSFull), "full")
			ch <- prometheus.MustNewConstMetric(c.tlsH, prometheus.CounterValue, float64(st.TLSResumed), "resumed")
			ch <- prometheus.MustNewConstMetric(c.tlsH, prometheus.CounterValue, float64(st.TLSErrors), "error")
		}
	}
}

// dnsCollector reads the DNS cache's counters at scrape time.
type dnsCollector struct {
	cache                                *dnscache.Cache
	lookups, queries, entries, abandoned *prometheus.Desc
}

func newDNSCollector(c *dnscache.Cache) *dnsCollector {
	return &dnsCollector{
		cache: c,
		lookups: prometheus.NewDesc("warmproxy_dns_lookups_total",
			"Names the dialer resolved through the DNS cache, by result: hit (a fresh entry), miss (waited for the resolver), stale (an expired answer served because the resolver failed or was slow) or refused (too many lookups in flight).", []string{"result"}, nil),
		queries: prometheus.NewDesc("warmproxy_dns_queries_total",
			"Lookups the DNS cache sent to the resolver, background refreshes included.", nil, nil),
		entries: prometheus.NewDesc("warmproxy_dns_cache_entries",
			"Names held in the DNS cache now.", nil, nil),
		abandoned: prometheus.NewDesc("warmproxy_dns_queries_abandoned_total",
			"Lookups the DNS cache cancelled because every request waiting for them had gone.", nil, nil),
	}
}

func (c *dnsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lookups
	ch <- c.queries
	ch <- c.entries
	ch <- c.abandoned
}

func (c *dnsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.cache.Stats()
	ch <- prometheus.MustNewConstMetric(c.lookups, prometheus.CounterValue, float64(st.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(c.lookups, prometheus.CounterValue, float64(st.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(c.lookups, prometheus.CounterValue, float64(st.Stale), "stale")
	ch <- prometheus.MustNewConstMetric(c.lookups, prometheus.CounterValue, float64(st.Refused), "refused")
	ch <- prometheus.MustNewConstMetric(c.abandoned, prometheus.CounterValue, float64(st.Abandoned))
	ch <- prometheus.MustNewConstMetric(c.queries, prometheus.CounterValue, float64(st.Queries))
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(st.Entries))
}
