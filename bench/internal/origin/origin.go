// Package origin is the bench's upstream server: fixed-size, chunked and
// delayed responses, plus counters of accepted TCP connections and full vs
// resumed TLS handshakes so a run can tell how well a proxy reuses them.
package origin

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxBody caps /bytes/N and /stream/N.
const MaxBody = 16 << 30

// pieceSize is the write (and, for /stream, flush) unit.
const pieceSize = 64 << 10

// Counters counts what one listener saw. Open is a gauge; the rest are
// totals since the last Reset.
type Counters struct {
	Accepted   atomic.Int64 // TCP connections accepted
	Open       atomic.Int64 // connections open now
	TLSFull    atomic.Int64 // completed full TLS handshakes
	TLSResumed atomic.Int64 // completed resumed TLS handshakes
	Requests   atomic.Int64 // requests served (all paths but /stats)
}

// CounterValues is a snapshot of Counters.
type CounterValues struct {
	Accepted   int64 `json:"accepted"`
	Open       int64 `json:"open"`
	TLSFull    int64 `json:"tls_full"`
	TLSResumed int64 `json:"tls_resumed"`
	Requests   int64 `json:"requests"`
}

func (c *Counters) snapshot(reset bool) CounterValues {
	load := func(v *atomic.Int64) int64 {
		if reset {
			return v.Swap(0)
		}
		return v.Load()
	}
	return CounterValues{
		Accepted:   load(&c.Accepted),
		Open:       c.Open.Load(),
		TLSFull:    load(&c.TLSFull),
		TLSResumed: load(&c.TLSResumed),
		Requests:   load(&c.Requests),
	}
}

// Add returns the field-wise sum of v and w.
func (v CounterValues) Add(w CounterValues) CounterValues {
	return CounterValues{
		Accepted:   v.Accepted + w.Accepted,
		Open:       v.Open + w.Open,
		TLSFull:    v.TLSFull + w.TLSFull,
		TLSResumed: v.TLSResumed + w.TLSResumed,
		Requests:   v.Requests + w.Requests,
	}
}

// Stats is what /stats returns: counters per listener kind and their total.
type Stats struct {
	Kinds map[string]CounterValues `json:"kinds"`
	Total CounterValues            `json:"total"`
}

// Origin holds the counters of every listener kind ("http", "https",
// "many", ...) and serves the handlers.
type Origin struct {
	mu    sync.Mutex
	kinds map[string]*Counters
	// tlsSeen marks TLS conns whose handshake was already counted.
	tlsSeen map[net.Conn]struct{}
	body    []byte
}

// New returns an Origin with no listeners registered yet.
func New() *Origin {
	body := make([]byte, pieceSize)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	return &Origin{kinds: map[string]*Counters{}, tlsSeen: map[net.Conn]struct{}{}, body: body}
}

// Counters returns (creating if needed) the counters for kind.
func (o *Origin) Counters(kind string) *Counters {
	o.mu.Lock()
	defer o.mu.Unlock()
	c, ok := o.kinds[kind]
	if !ok {
		c = &Counters{}
		o.kinds[kind] = c
	}
	return c
}

// Snapshot returns the counters, zeroing the totals if reset is set.
func (o *Origin) Snapshot(reset bool) Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := Stats{Kinds: map[string]CounterValues{}}
	for k, c := range o.kinds {
		v := c.snapshot(reset)
		s.Kinds[k] = v
		s.Total = s.Total.Add(v)
	}
	return s
}

// ConnState returns an http.Server.ConnState hook that counts for kind.
// TLS handshakes are counted when a conn first becomes active, that is once
// its handshake has completed and a request has started.
func (o *Origin) ConnState(kind string) func(net.Conn, http.ConnState) {
	c := o.Counters(kind)
	return func(conn net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			c.Accepted.Add(1)
			c.Open.Add(1)
		case http.StateActive:
			tc, ok := conn.(*tls.Conn)
			if !ok {
				return
			}
			o.mu.Lock()
			_, seen := o.tlsSeen[conn]
			if !seen {
				o.tlsSeen[conn] = struct{}{}
			}
			o.mu.Unlock()
			if seen {
				return
			}
			if cs := tc.ConnectionState(); cs.HandshakeComplete {
				if cs.DidResume {
					c.TLSResumed.Add(1)
				} else {
					c.TLSFull.Add(1)
				}
			}
		case http.StateClosed, http.StateHijacked:
			c.Open.Add(-1)
			o.mu.Lock()
			delete(o.tlsSeen, conn)
			o.mu.Unlock()
		}
	}
}

// Handler serves, counting requests for kind:
//
//	/bytes/N   N bytes with Content-Length (?close: then close the connection)
//	/stream/N  N bytes without Content-Length (chunked), flushed every 64 KiB
//	/delay/MS  a 2-byte body after MS milliseconds
//	/stats     Stats as JSON; /stats?reset=1 also zeroes the totals
func (o *Origin) Handler(kind string) http.Handler {
	c := o.Counters(kind)
	mux := http.NewServeMux()
	mux.Handle("GET /stats", o.StatsHandler())
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		c.Requests.Add(1)
		n, ok := sizeParam(w, r)
		if !ok {
			return
		}
		if r.URL.Query().Has("close") {
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		o.write(w, n, false)
	})
	mux.HandleFunc("GET /stream/{n}", func(w http.ResponseWriter, r *http.Request) {
		c.Requests.Add(1)
		n, ok := sizeParam(w, r)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		o.write(w, n, true)
	})
	mux.HandleFunc("GET /delay/{ms}", func(w http.ResponseWriter, r *http.Request) {
		c.Requests.Add(1)
		ms, err := strconv.Atoi(r.PathValue("ms"))
		if err != nil || ms < 0 || ms > 60_000 {
			http.Error(w, "delay: want 0..60000 ms", http.StatusBadRequest)
			return
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Length", "2")
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.Requests.Add(1)
		http.Error(w, "origin: unknown path "+strings.TrimSpace(r.URL.Path), http.StatusNotFound)
	})
	return mux
}

// StatsHandler serves Stats as JSON; ?reset=1 also zeroes the totals. Serve
// it on a listener of its own to keep the bench's polling out of the counts.
func (o *Origin) StatsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(o.Snapshot(r.URL.Query().Get("reset") != ""))
	})
}

func sizeParam(w http.ResponseWriter, r *http.Request) (int64, bool) {
	n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
	if err != nil || n < 0 || n > MaxBody {
		http.Error(w, "size: want 0..16GiB", http.StatusBadRequest)
		return 0, false
	}
	return n, true
}

// write sends n bytes in pieces, flushing each one if flush is set.
func (o *Origin) write(w http.ResponseWriter, n int64, flush bool) {
	rc := http.NewResponseController(w)
	for n > 0 {
		p := o.body[:min(n, int64(len(o.body)))]
		if _, err := w.Write(p); err != nil {
			return
		}
		n -= int64(len(p))
		if flush {
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}
