package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/warmproxy/warmproxy/bench/internal/stats"
)

// s1h2C is the client concurrency of S1's HTTP/2-origin rows.
const s1h2C = 8

// s1h2 is S1 at C=8 from a freshly started warmproxy with no warmup, once
// against the HTTPS origin (HTTP/1.1 only) and once against the origin's
// listener that offers HTTP/2 (ALPN h2, behind its own RTT relay), so the
// connections per 1000 requests include the pool's first dials: about C
// for HTTP/1.1, one for HTTP/2, which carries every request on one
// connection.
func (b *bench) s1h2(ctx context.Context, rep int) {
	if !b.usable("warmproxy") || b.relayH2Addr == "" {
		return
	}
	for _, v := range []struct{ name, relay, kind string }{
		{"h1", b.relayAddr, "https"},
		{"h2", b.relayH2Addr, "h2"},
	} {
		b.s1h2one(ctx, rep, v.name, v.relay, v.kind)
	}
}

func (b *bench) s1h2one(ctx context.Context, rep int, name, relay, kind string) {
	const path, size = "/bytes/1024", "1024"
	what := fmt.Sprintf("S1 C=%d %s origin, warmproxy from cold", s1h2C, name)
	if _, err := b.originStats(ctx, true); err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	in, err := b.start(ctx, "warmproxy", relay, true, 1000)
	if err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	defer b.stop(in)
	e := in.endpoint(relay, path, true)
	r, err := b.loadgen(ctx, what, e, "-mode", "fresh", "-c", fmt.Sprint(s1h2C),
		"-n", "1000000", "-d", b.c.duration.String(), "-expect-bytes", size)
	if err != nil {
		b.problem("%v", err)
		return
	}
	st, err := b.originStats(ctx, false)
	if err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	up := st.Kinds[kind]
	if up.Requests < int64(r.Requests) {
		b.problem("%s: origin served %d requests but the client got %d responses", what, up.Requests, r.Requests)
	}
	b.record("S1", fmt.Sprintf("C=%d cold %s", s1h2C, name), "warmproxy", rep, map[string]float64{
		"p50_ms": r.P50Ms, "p90_ms": r.P90Ms, "p99_ms": r.P99Ms, "rps": r.RPS,
		"requests":      float64(r.Requests),
		"conns":         float64(up.Accepted),
		"conns_per_1k":  per1k(up.Accepted, r.Requests),
		"upstream_open": float64(up.Open),
	})
}

// s1first is S1's first request: a fresh warmproxy per sample, started
// with or without -prewarm for the HTTPS origin behind the relay, waited
// on until /readyz says ready (which, with -prewarm, is once the first
// round of dials is done), then one timed request. The origin's counters
// say whether that request opened a connection.
func (b *bench) s1first(ctx context.Context, rep int) {
	if !b.usable("warmproxy") {
		return
	}
	samples := 5
	if b.c.quick {
		samples = 3
	}
	for _, variant := range []string{"cold", "prewarm"} {
		var lat, conns []float64
		for i := range samples {
			what := fmt.Sprintf("S1 first request %s #%d", variant, i+1)
			var extra []string
			if variant == "prewarm" {
				extra = []string{"-prewarm", "https://" + b.relayAddr}
			}
			ms, up, err := b.firstRequest(ctx, extra)
			if err != nil {
				b.problem("%s: %v", what, err)
				continue
			}
			lat = append(lat, ms)
			conns = append(conns, float64(up.Accepted))
		}
		if len(lat) == 0 {
			continue
		}
		b.record("S1", "first", "warmproxy "+variant, rep, map[string]float64{
			"first_ms":     stats.Median(lat),
			"first_min_ms": slices.Min(lat),
			"first_max_ms": slices.Max(lat),
			"samples":      float64(len(lat)),
			"conns":        stats.Median(conns),
		})
	}
}

// firstRequest starts warmproxy with extra flags, waits for /readyz, and
// times one request through it to the HTTPS origin behind the relay. It
// returns the latency in ms and what the origin saw during the request.
func (b *bench) firstRequest(ctx context.Context, extra []string) (float64, originCounters, error) {
	in, err := b.start(ctx, "warmproxy", b.relayAddr, true, 1000, extra...)
	if err != nil {
		return 0, originCounters{}, err
	}
	defer b.stop(in)
	if err := b.waitReady(ctx, in.addr, 10*time.Second); err != nil {
		return 0, originCounters{}, err
	}
	if _, err := b.originStats(ctx, true); err != nil {
		return 0, originCounters{}, err
	}
	e := in.endpoint(b.relayAddr, "/bytes/1024", true)
	r, err := b.loadgen(ctx, "S1 first request", e, "-mode", "fresh", "-c", "1", "-n", "1", "-d", "10s", "-expect-bytes", "1024")
	if err != nil {
		return 0, originCounters{}, err
	}
	st, err := b.originStats(ctx, false)
	if err != nil {
		return 0, originCounters{}, err
	}
	up := st.Kinds["https"]
	return r.P50Ms, originCounters{Accepted: up.Accepted}, nil
}

type originCounters struct{ Accepted int64 }

// waitReady polls warmproxy's /readyz (served on the proxy's address to
// origin-form requests) until it answers 200, for at most limit.
func (b *bench) waitReady(ctx context.Context, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/readyz", nil)
		if err != nil {
			return err
		}
		res, err := b.http.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("warmproxy on %s not ready within %v (last: %v)", addr, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
