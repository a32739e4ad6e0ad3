package upstream

import (
	"slices"
	"strings"
	"time"
)

// Stats describe the connections to one origin, or to all origins of a
// scheme.
type Stats struct {
	Scheme string `json:"scheme"`
	// Host is the origin's host:port; empty in totals.
	Host string `json:"host,omitempty"`
	// Open counts connections open now: Active ones carry a request, Idle
	// ones wait in the pool.
	Open   int64 `json:"open"`
	Active int64 `json:"active"`
	Idle   int64 `json:"idle"`
	// HTTP2 counts the open connections that speak HTTP/2; each carries
	// many concurrent requests, so Active and Idle count requests' share
	// of connections only for HTTP/1.1.
	HTTP2 int64 `json:"http2,omitempty"`
	// InFlight counts requests under way, including those still waiting
	// for a connection.
	InFlight int64 `json:"in_flight"`
	// Requests counts the requests sent, Failed those of them that got
	// no response; Opened and Closed count the connections.
	Requests uint64 `json:"requests"`
	Failed   uint64 `json:"failed"`
	Opened   uint64 `json:"opened"`
	Closed   uint64 `json:"closed"`
	// ReuseRatio is the share of answered requests that needed no new
	// connection: 1 - Opened/(Requests-Failed), at least 0; 0 with no
	// answered request.
	ReuseRatio float64 `json:"reuse_ratio"`
	// Reused counts the answered requests that needed no new connection,
	// at least 0: Requests-Failed-Opened. RoundTripsSaved is what they
	// saved, at least: one per reused request for the TCP handshake, one
	// more for https (a TLS 1.3 handshake; TLS 1.2 costs two).
	Reused          uint64 `json:"reused"`
	RoundTripsSaved uint64 `json:"round_trips_saved"`
	// Protocol is what the latest connection to the origin speaks,
	// "HTTP/1.1" or "HTTP/2"; empty in totals and before a connection.
	Protocol   string `json:"protocol,omitempty"`
	DialErrors uint64 `json:"dial_errors"`
	TLSFull    uint64 `json:"tls_full,omitempty"`
	TLSResumed uint64 `json:"tls_resumed,omitempty"`
	TLSErrors  uint64 `json:"tls_errors,omitempty"`
	// Retired counts connections closed shortly before the keep-alive
	// timeout the origin announced; KeepAliveTimeout is that timeout in
	// seconds (0: none announced).
	Retired          uint64  `json:"retired,omitempty"`
	KeepAliveTimeout float64 `json:"keepalive_timeout_s,omitempty"`
	// Warm counts the prewarmed connections waiting for a first request.
	Warm int `json:"warm,omitempty"`
	// DialWaits counts the new-connection dials that waited for one of
	// the origin's MaxDialsPerHost slots.
	DialWaits uint64 `json:"dial_waits,omitempty"`
	// LastError is the latest failure to reach the origin (dial, TLS, or a
	// request that got no response), and LastErrorAt when it happened.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

func (c *counters) stats(s Scheme) Stats {
	st := Stats{
		Scheme:     s.String(),
		Open:       max(c.open.Load(), 0),
		InFlight:   max(c.inflight.Load(), 0),
		HTTP2:      max(c.h2open.Load(), 0),
		Requests:   c.requests.Load(),
		Failed:     c.failed.Load(),
		Opened:     c.opened.Load(),
		Closed:     c.closed.Load(),
		DialErrors: c.dialErrors.Load(),
		TLSFull:    c.tlsFull.Load(),
		TLSResumed: c.tlsResumed.Load(),
		TLSErrors:  c.tlsErrors.Load(),
		Retired:    c.retired.Load(),
	}
	st.Active = min(st.InFlight, st.Open)
	st.Idle = st.Open - st.Active
	if answered := st.Requests - min(st.Failed, st.Requests); answered > st.Opened {
		st.ReuseRatio = 1 - float64(st.Opened)/float64(answered)
		st.Reused = answered - st.Opened
	}
	st.RoundTripsSaved = st.Reused * roundTripsPerHandshake(s)
	return st
}

// roundTripsPerHandshake is what a new connection of scheme s costs
// before its first request, at least: TCP, plus TLS 1.3 for https.
func roundTripsPerHandshake(s Scheme) uint64 {
	if s == SchemeHTTPS {
		return 2
	}
	return 1
}

// Totals returns the stats over every origin of scheme s.
func (p *Tracker) Totals(s Scheme) Stats { return p.totals[s].stats(s) }

// Hosts returns the stats of each origin, ordered by scheme and host.
func (p *Tracker) Hosts() []Stats {
	m := p.hosts.Load()
	out := make([]Stats, 0, m.n)
	for s := range m.byKey {
		for k, hs := range m.byKey[s] {
			if k != hs.addr {
				continue
			}
			st := hs.stats(Scheme(s))
			st.Host = hs.addr
			st.Protocol = protoNames[hs.proto.Load()]
			st.KeepAliveTimeout = hs.keepAliveTimeout().Seconds()
			st.DialWaits = hs.dialWaits.Load()
			if w := hs.warm.Load(); w != nil {
				st.Warm = w.stashed()
			}
			if le := hs.lastErr.Load(); le != nil {
				st.LastError, st.LastErrorAt = le.msg, le.at
			}
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b Stats) int {
		if c := strings.Compare(a.Scheme, b.Scheme); c != 0 {
			return c
		}
		return strings.Compare(a.Host, b.Host)
	})
	return out
}
