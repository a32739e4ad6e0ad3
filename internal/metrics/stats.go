package metrics

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/warmproxy/warmproxy/internal/dnscache"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// The stats page refreshes itself every DefaultStatsRefresh seconds;
// ?refresh=N asks for N (0: never), at most maxStatsRefresh.
const (
	DefaultStatsRefresh = 5
	maxStatsRefresh     = 3600
)

//go:embed stats.html
var statsHTML string

// statsTmpl renders the stats page. html/template escapes every value for
// its context: origins and error messages come from requests and origins,
// so they are attacker-influenced.
var statsTmpl = template.Must(template.New("stats").Funcs(template.FuncMap{
	"pct":   func(r float64) string { return strconv.FormatFloat(100*r, 'f', 1, 64) + "%" },
	"width": func(r float64) int { return int(min(max(100*r, 0), 100) + 0.5) },
	"ago":   ago,
}).Parse(statsHTML))

// statsPage is what the template renders.
type statsPage struct {
	Time    time.Time
	Refresh int
	// All sums the per-scheme Totals.
	All       upstream.Stats
	Totals    []upstream.Stats
	Upstreams []upstream.Stats
	// Tunnels is the number of open tunnels, nil when not reported; DNS
	// the DNS cache's counters, nil without a cache.
	Tunnels *int
	DNS     *dnscache.Stats
}

// StatsHandler serves the pool's state as an HTML page for people: totals
// at the top, then one row per origin. It refreshes itself (?refresh=N
// seconds, 0 for never) and loads nothing else: no script, no external
// style, enforced by its Content-Security-Policy.
func (m *Metrics) StatsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refresh, err := statsRefresh(r.URL.Query().Get("refresh"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var buf bytes.Buffer
		if err := statsTmpl.Execute(&buf, m.statsPage(refresh)); err != nil {
			http.Error(w, "stats: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		w.Write(buf.Bytes())
	})
}

// statsRefresh parses the refresh query parameter; empty is the default.
func statsRefresh(v string) (int, error) {
	if v == "" {
		return DefaultStatsRefresh, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxStatsRefresh {
		return 0, fmt.Errorf("stats: refresh %q: want whole seconds from 0 (never) to %d", v, maxStatsRefresh)
	}
	return n, nil
}

func (m *Metrics) statsPage(refresh int) statsPage {
	rep := m.poolReport()
	p := statsPage{Time: rep.Time, Refresh: refresh, Totals: rep.Totals, Upstreams: rep.Upstreams}
	for _, t := range rep.Totals {
		p.All = addStats(p.All, t)
	}
	if m.tunnelsOpen != nil {
		n := m.tunnelsOpen()
		p.Tunnels = &n
	}
	if m.dns != nil {
		st := m.dns.Stats()
		p.DNS = &st
	}
	return p
}

// addStats sums the counters of a and b, and their reuse ratio anew.
func addStats(a, b upstream.Stats) upstream.Stats {
	s := upstream.Stats{
		Open: a.Open + b.Open, Active: a.Active + b.Active, Idle: a.Idle + b.Idle,
		HTTP2: a.HTTP2 + b.HTTP2, InFlight: a.InFlight + b.InFlight,
		Requests: a.Requests + b.Requests, Failed: a.Failed + b.Failed,
		Opened: a.Opened + b.Opened, Closed: a.Closed + b.Closed,
		Reused: a.Reused + b.Reused, RoundTripsSaved: a.RoundTripsSaved + b.RoundTripsSaved,
		DialErrors: a.DialErrors + b.DialErrors,
		TLSFull:    a.TLSFull + b.TLSFull, TLSResumed: a.TLSResumed + b.TLSResumed, TLSErrors: a.TLSErrors + b.TLSErrors,
	}
	if answered := s.Requests - min(s.Failed, s.Requests); answered > 0 {
		s.ReuseRatio = float64(s.Reused) / float64(answered)
	}
	return s
}

// ago says how long before now t was, to the second.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := max(now.Sub(t), 0).Round(time.Second)
	return d.String() + " ago"
}
