package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/warmproxy/warmproxy/bench/internal/procs"
)

// lgReport mirrors loadgen's JSON.
type lgReport struct {
	Requests   int     `json:"requests"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error"`
	RPS        float64 `json:"rps"`
	P50Ms      float64 `json:"p50_ms"`
	P90Ms      float64 `json:"p90_ms"`
	P99Ms      float64 `json:"p99_ms"`
	Bytes      int64   `json:"bytes"`
	MBps       float64 `json:"mb_per_s"`
	ElapsedS   float64 `json:"elapsed_s"`
	// CPUUsPerReq is the client process's CPU per request.
	CPUUsPerReq float64 `json:"cpu_us_per_req"`
}

const mib = 1024.0 // KiB per MiB

func (b *bench) runScenario(ctx context.Context, sc string, rep int) {
	switch sc {
	case "S1":
		b.s1(ctx, rep)
	case "S2":
		b.s2(ctx, rep)
	case "S3":
		b.s3(ctx, rep)
	case "S4":
		b.s4(ctx, rep)
	case "S5":
		b.s5idle(ctx, rep)
		b.s5hosts(ctx, rep)
	}
}

// loadgen runs the loadgen tool with args and parses its report. A run
// with errors is still returned, and noted as a problem.
func (b *bench) loadgen(ctx context.Context, what string, e endpoint, args ...string) (lgReport, error) {
	argv := append(b.loadgenArgs(e), args...)
	ctx, cancel := context.WithTimeout(ctx, b.c.duration+10*time.Minute)
	defer cancel()
	out, err := procs.Run(ctx, argv)
	var r lgReport
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		if err == nil {
			err = jerr
		}
		return r, fmt.Errorf("%s: loadgen: %v", what, err)
	}
	if r.Errors > 0 {
		b.problem("%s: %d failed requests (first: %s)", what, r.Errors, r.FirstError)
	}
	if r.Requests == 0 {
		return r, fmt.Errorf("%s: no successful request", what)
	}
	return r, nil
}

func per1k(x int64, requests int) float64 { return float64(x) * 1000 / float64(requests) }

// per100k is CPU seconds per 100,000 requests.
func per100k(cpu time.Duration, requests int64) float64 {
	return cpu.Seconds() * 100_000 / float64(requests)
}

// cpuDuring runs load and returns the CPU time in's processes used while
// it ran.
func (b *bench) cpuDuring(in *instance, load func()) (time.Duration, error) {
	before, err := b.cpu(in)
	load()
	after, err2 := b.cpu(in)
	if err := errors.Join(err, err2); err != nil {
		return 0, fmt.Errorf("cpu: %v", err)
	}
	return after - before, nil
}

// s1 is the PHP pattern: a fresh client connection per 1 KiB request, the
// HTTPS origin behind the RTT relay.
func (b *bench) s1(ctx context.Context, rep int) {
	const path, size = "/bytes/1024", "1024"
	for _, t := range []string{"direct-fresh", "direct-ka", "warmproxy", s1InterceptTarget, "nginx", "haproxy"} {
		base, _, _ := strings.Cut(t, "-")
		if !b.usable(base) {
			continue
		}
		var (
			in  *instance
			e   endpoint
			err error
			ca  string
		)
		if t == s1InterceptTarget {
			in, ca, err = b.startIntercept(ctx)
		} else {
			in, err = b.start(ctx, base, b.relayAddr, true, 1000)
		}
		if err != nil {
			b.problem("S1 %s: %v", t, err)
			continue
		}
		e = in.endpoint(b.relayAddr, path, true)
		if t == s1InterceptTarget {
			e = b.interceptEndpoint(in, path, ca)
		}
		for _, c := range b.c.s1C {
			what := fmt.Sprintf("S1 C=%d %s", c, t)
			mode, warm := "fresh", "0"
			if t == "direct-ka" {
				mode, warm = "keepalive", "1"
			}
			if in.form != "direct" {
				// Fill the proxy's pool before counting.
				if _, err := b.loadgen(ctx, what+" warmup", e, "-c", fmt.Sprint(c), "-n", fmt.Sprint(4*c), "-d", "10s"); err != nil {
					b.problem("%v", err)
					continue
				}
			}
			if _, err := b.originStats(ctx, true); err != nil {
				b.problem("%s: %v", what, err)
				continue
			}
			r, err := b.loadgen(ctx, what, e, "-mode", mode, "-warmup", warm, "-c", fmt.Sprint(c),
				"-n", "1000000", "-d", b.c.duration.String(), "-expect-bytes", size)
			if err != nil {
				b.problem("%v", err)
				continue
			}
			st, err := b.originStats(ctx, false)
			if err != nil {
				b.problem("%s: %v", what, err)
				continue
			}
			up := st.Kinds["https"]
			if up.Requests < int64(r.Requests) {
				b.problem("%s: origin served %d requests but the client got %d responses", what, up.Requests, r.Requests)
			}
			b.record("S1", fmt.Sprintf("C=%d", c), t, rep, map[string]float64{
				"p50_ms": r.P50Ms, "p90_ms": r.P90Ms, "p99_ms": r.P99Ms, "rps": r.RPS,
				"requests":           float64(r.Requests),
				"conns_per_1k":       per1k(up.Accepted, r.Requests),
				"tls_full_per_1k":    per1k(up.TLSFull, r.Requests),
				"tls_resumed_per_1k": per1k(up.TLSResumed, r.Requests),
				"client_cpu_us":      r.CPUUsPerReq,
			})
		}
		b.stop(in)
	}
	b.s1h2(ctx, rep)
	b.s1first(ctx, rep)
	b.s1dns(ctx, rep)
}

// forwardTargets are S2-S4's rows: every target that can do plain HTTP.
var plainTargets = []string{"direct", "warmproxy", "nginx", "haproxy", "squid"}

// s2 is keep-alive throughput with wrk.
func (b *bench) s2(ctx context.Context, rep int) {
	if b.peerMissing["wrk"] {
		return
	}
	for _, t := range plainTargets {
		if !b.usable(t) {
			continue
		}
		in, err := b.start(ctx, t, b.oi.HTTP, false, 1000)
		if err != nil {
			b.problem("S2 %s: %v", t, err)
			continue
		}
		b.s2one(ctx, rep, in)
		if b.c.profile && rep == 1 && t == "warmproxy" {
			b.profileRun(ctx, "S2", func(ctx context.Context, pin *instance) {
				b.wrk(ctx, pin, b.c.duration+2*time.Second)
			})
		}
		b.stop(in)
	}
}

type wrkReport struct {
	Requests      int64   `json:"requests"`
	DurationUs    int64   `json:"duration_us"`
	ErrorsStatus  int64   `json:"errors_status"`
	ErrorsConnect int64   `json:"errors_connect"`
	ErrorsRead    int64   `json:"errors_read"`
	ErrorsWrite   int64   `json:"errors_write"`
	ErrorsTimeout int64   `json:"errors_timeout"`
	P50Us         float64 `json:"p50_us"`
	P99Us         float64 `json:"p99_us"`
}

// wrk runs wrk against in for d and parses the JSON its Lua done() prints.
func (b *bench) wrk(ctx context.Context, in *instance, d time.Duration) (wrkReport, error) {
	e := in.endpoint(b.oi.HTTP, "/bytes/1024", false)
	host := e.addr
	if in.form == "forward" {
		host = b.oi.HTTP
	}
	script := filepath.Join(b.c.workDir, "wrk-"+in.name+".lua")
	lua := fmt.Sprintf(wrkLua, e.target, host)
	var r wrkReport
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		return r, err
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	argv := []string{"wrk", "-t", fmt.Sprint(b.c.wrkThreads), "-c", fmt.Sprint(b.c.wrkConns),
		"-d", fmt.Sprintf("%ds", secs), "--timeout", "5s", "-s", script, "http://" + e.addr + "/"}
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := procs.Run(ctx, argv)
	if err != nil {
		return r, fmt.Errorf("wrk: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return r, fmt.Errorf("wrk: no report in output: %s", out)
	}
	return r, nil
}

// wrkLua sends the request-target (absolute-form for forward proxies) with
// the origin's Host, and prints a JSON summary.
const wrkLua = `wrk.method = "GET"
wrk.path = %q
wrk.headers["Host"] = %q
done = function(summary, latency, requests)
  io.write(string.format('{"requests":%%d,"duration_us":%%d,"errors_status":%%d,"errors_connect":%%d,"errors_read":%%d,"errors_write":%%d,"errors_timeout":%%d,"p50_us":%%f,"p99_us":%%f}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50.0), latency:percentile(99.0)))
end
`

func (b *bench) s2one(ctx context.Context, rep int, in *instance) {
	what := "S2 " + in.name
	if _, err := b.wrk(ctx, in, time.Second); err != nil { // warm up
		b.problem("%s warmup: %v", what, err)
		return
	}
	if _, err := b.originStats(ctx, true); err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	var r wrkReport
	var err error
	cpu, cerr := b.cpuDuring(in, func() { r, err = b.wrk(ctx, in, b.c.duration) })
	if err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	st, err := b.originStats(ctx, false)
	if err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	up := st.Kinds["http"]
	if errs := r.ErrorsStatus + r.ErrorsConnect + r.ErrorsRead + r.ErrorsWrite + r.ErrorsTimeout; errs > 0 {
		b.problem("%s: wrk saw errors: status %d, connect %d, read %d, write %d, timeout %d",
			what, r.ErrorsStatus, r.ErrorsConnect, r.ErrorsRead, r.ErrorsWrite, r.ErrorsTimeout)
	}
	// Proof the requests went through: the origin served at least as many.
	if up.Requests < r.Requests {
		b.problem("%s: origin served %d requests, wrk counted %d: not all were proxied", what, up.Requests, r.Requests)
	}
	if r.Requests == 0 || r.DurationUs == 0 {
		b.problem("%s: wrk completed no request", what)
		return
	}
	m := map[string]float64{
		"rps":            float64(r.Requests) / (float64(r.DurationUs) / 1e6),
		"p50_ms":         r.P50Us / 1000,
		"p99_ms":         r.P99Us / 1000,
		"upstream_conns": float64(up.Accepted),
		"upstream_open":  float64(up.Open),
	}
	if cerr != nil {
		b.problem("%s: %v", what, cerr)
	} else {
		m["cpu_s_per_100k"] = per100k(cpu, r.Requests)
	}
	b.record("S2", "", in.name, rep, m)
}

// s3 is non-keep-alive clients: a fresh connection per request, C=32.
func (b *bench) s3(ctx context.Context, rep int) {
	for _, t := range plainTargets {
		if !b.usable(t) {
			continue
		}
		in, err := b.start(ctx, t, b.oi.HTTP, false, 1000)
		if err != nil {
			b.problem("S3 %s: %v", t, err)
			continue
		}
		b.s3one(ctx, rep, in)
		b.stop(in)
	}
}

// s3one warms in up, then measures it with fresh-connection clients.
func (b *bench) s3one(ctx context.Context, rep int, in *instance) {
	what := "S3 " + in.name
	e := in.endpoint(b.oi.HTTP, "/bytes/1024", false)
	c := fmt.Sprint(b.c.s3C)
	if _, err := b.loadgen(ctx, what+" warmup", e, "-c", c, "-n", "200", "-d", "5s"); err != nil {
		b.problem("%v", err)
		return
	}
	if _, err := b.originStats(ctx, true); err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	var r lgReport
	var err error
	cpu, cerr := b.cpuDuring(in, func() {
		r, err = b.loadgen(ctx, what, e, "-c", c, "-n", "10000000", "-d", b.c.duration.String(), "-expect-bytes", "1024")
	})
	if err != nil {
		b.problem("%v", err)
		return
	}
	st, err := b.originStats(ctx, false)
	if err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	m := map[string]float64{
		"rps": r.RPS, "p50_ms": r.P50Ms, "p99_ms": r.P99Ms,
		"conns_per_1k": per1k(st.Kinds["http"].Accepted, r.Requests),
	}
	if cerr != nil {
		b.problem("%s: %v", what, cerr)
	} else {
		m["cpu_s_per_100k"] = per100k(cpu, int64(r.Requests))
	}
	b.record("S3", "", in.name, rep, m)
}

// s4 is one large chunked download through each target.
func (b *bench) s4(ctx context.Context, rep int) {
	size := fmt.Sprint(b.c.s4Bytes)
	for _, t := range plainTargets {
		if !b.usable(t) {
			continue
		}
		what := "S4 " + t
		in, err := b.start(ctx, t, b.oi.HTTP, false, 1000)
		if err != nil {
			b.problem("%s: %v", what, err)
			continue
		}
		e := in.endpoint(b.oi.HTTP, "/stream/"+size, false)
		before, merr := b.memory(in)
		r, err := b.loadgen(ctx, what, e, "-c", "1", "-n", "1", "-d", "10m", "-timeout", "5m", "-expect-bytes", size)
		after, merr2 := b.memory(in)
		switch {
		case err != nil:
			b.problem("%v", err)
		case merr != nil || merr2 != nil:
			b.problem("%s: memory: %v %v", what, merr, merr2)
		default:
			m := map[string]float64{"mbps": r.MBps, "seconds": r.ElapsedS}
			if in.proc != nil {
				m["base_rss_mib"] = float64(before.RSS) / mib
				m["peak_rss_mib"] = float64(after.HWM) / mib
			}
			b.record("S4", "", t, rep, m)
		}
		if b.c.profile && rep == 1 && t == "warmproxy" {
			b.profileRun(ctx, "S4", func(ctx context.Context, pin *instance) {
				pe := pin.endpoint(b.oi.HTTP, "/stream/"+size, false)
				for ctx.Err() == nil {
					if _, err := b.loadgen(ctx, what+" profile", pe, "-c", "1", "-n", "1", "-d", "10m", "-timeout", "5m"); err != nil {
						return
					}
				}
			})
		}
		b.stop(in)
	}
}

// idleclients starts the idleclients tool and waits for its report. The
// caller stops it.
func (b *bench) idleclients(what string, e endpoint, args ...string) (*procs.Proc, map[string]any, error) {
	argv := []string{b.bin("idleclients"), "-addr", e.addr, "-target", e.target, "-hold", "5m"}
	for _, h := range e.header {
		argv = append(argv, "-H", h)
	}
	argv = append(argv, args...)
	p, err := b.startProc("idleclients", argv)
	if err != nil {
		return nil, nil, err
	}
	line, err := p.WaitLine(3*time.Minute, jsonLine)
	if err != nil {
		b.stopProc(p)
		return nil, nil, fmt.Errorf("%s: idleclients: %v", what, err)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		b.stopProc(p)
		return nil, nil, fmt.Errorf("%s: idleclients: %v", what, err)
	}
	return p, rep, nil
}

func num(m map[string]any, k string) float64 {
	f, _ := m[k].(float64)
	return f
}

// s5idle holds many idle keep-alive client connections open to each target.
func (b *bench) s5idle(ctx context.Context, rep int) {
	for _, t := range plainTargets {
		if !b.usable(t) {
			continue
		}
		what := "S5 idle " + t
		upstream := b.oi.HTTP
		var in *instance
		var err error
		if t == "direct" {
			// A fresh origin, so its memory is not what earlier
			// scenarios (or repeats) left behind in the shared one.
			in, err = b.startOrigin()
			if in != nil {
				upstream = in.addr
			}
		} else {
			in, err = b.start(ctx, t, upstream, false, b.c.idleConns+100)
		}
		if err != nil {
			b.problem("%s: %v", what, err)
			continue
		}
		b.s5idleOne(ctx, rep, what, in, upstream)
		b.stop(in)
	}
}

func (b *bench) s5idleOne(ctx context.Context, rep int, what string, in *instance, upstream string) {
	time.Sleep(200 * time.Millisecond)
	before, err := b.memory(in)
	if err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	e := in.endpoint(upstream, "/bytes/1", false)
	p, r, err := b.idleclients(what, e, "-n", fmt.Sprint(b.c.idleConns), "-c", "32")
	if err != nil {
		b.problem("%v", err)
		return
	}
	defer b.stopProc(p)
	open := num(r, "open")
	if int(open) != b.c.idleConns {
		b.problem("%s: %v of %d connections open, %v failed (first: %v)", what, open, b.c.idleConns, r["failed"], r["first_error"])
	}
	time.Sleep(time.Second)
	after, err := b.memory(in)
	if err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	m := map[string]float64{
		"base_rss_mib": float64(before.RSS) / mib,
		"rss_mib":      float64(after.RSS) / mib,
		"open":         open,
		"open_s":       num(r, "open_s"),
	}
	if open > 0 {
		m["kib_per_conn"] = float64(after.RSS-before.RSS) / open
	}
	b.record("S5", "idle", in.name, rep, m)
}

// s5hosts makes each forward proxy pool one idle upstream conn to each of
// many origin host:port pairs.
func (b *bench) s5hosts(ctx context.Context, rep int) {
	if len(b.oi.Many) == 0 {
		return
	}
	list := filepath.Join(b.c.workDir, "hosts.txt")
	var sb strings.Builder
	for _, h := range b.oi.Many {
		sb.WriteString("http://" + h + "/bytes/1\n")
	}
	if err := os.WriteFile(list, []byte(sb.String()), 0o644); err != nil {
		b.problem("S5 hosts: %v", err)
		return
	}
	for _, t := range []string{"warmproxy", "squid"} {
		if !b.usable(t) {
			continue
		}
		what := "S5 hosts " + t
		in, err := b.start(ctx, t, b.oi.HTTP, false, 1000)
		if err != nil {
			b.problem("%s: %v", what, err)
			continue
		}
		b.s5hostsOne(ctx, rep, what, in, list)
		b.stop(in)
	}
}

func (b *bench) s5hostsOne(ctx context.Context, rep int, what string, in *instance, list string) {
	time.Sleep(200 * time.Millisecond)
	before, err := b.memory(in)
	if err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	if _, err := b.originStats(ctx, true); err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	n := len(b.oi.Many)
	e := endpoint{addr: in.addr, target: "/unused"}
	p, r, err := b.idleclients(what, e, "-n", "1", "-per-conn", fmt.Sprint(n), "-c", "1", "-targets-file", list)
	if err != nil {
		b.problem("%v", err)
		return
	}
	defer b.stopProc(p)
	if int(num(r, "requests")) != n {
		b.problem("%s: %v of %d requests succeeded (first error: %v)", what, r["requests"], n, r["first_error"])
	}
	time.Sleep(time.Second)
	after, err := b.memory(in)
	if err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	st, err := b.originStats(ctx, false)
	if err != nil {
		b.problem("%s: %v", what, err)
		return
	}
	up := st.Kinds["many"]
	if up.Open < int64(n) {
		b.problem("%s: only %d of %d upstream connections stayed open in the pool", what, up.Open, n)
	}
	b.record("S5", "hosts", in.name, rep, map[string]float64{
		"base_rss_mib":      float64(before.RSS) / mib,
		"rss_mib":           float64(after.RSS) / mib,
		"kib_per_host":      float64(after.RSS-before.RSS) / float64(n),
		"upstream_open":     float64(up.Open),
		"upstream_accepted": float64(up.Accepted),
	})
}
