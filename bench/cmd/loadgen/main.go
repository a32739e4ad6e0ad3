// Command loadgen is the bench's PHP-like client. Each of -c workers sends
// GET requests to -addr until -n requests or -d time, whichever comes
// first, and it prints one JSON line: req/s and p50/p90/p99 latency.
//
// Modes:
//
//	fresh      a new TCP (and TLS, with -tls) connection per request: write
//	           one request, read the whole response, close. This is what a
//	           PHP-FPM worker calling curl does.
//	keepalive  one persistent connection per worker (the physical limit).
//
// Point it at a forward proxy with an absolute -target
// ("http://127.0.0.1:8080/bytes/1024", plus -H 'X-Real-Protocol: https'),
// at a reverse proxy or the origin with an origin-form one ("/bytes/1024").
// Latency is measured from before the dial to the last body byte. Each
// worker first sends -warmup requests that are not measured.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warmproxy/warmproxy/bench/internal/httpc"
	"github.com/warmproxy/warmproxy/bench/internal/stats"
)

type options struct {
	dialer       httpc.Dialer
	req          []byte
	keepalive    bool
	c, n, warmup int
	d            time.Duration
	expectStatus int
	expectBytes  int64
}

// Report is the JSON loadgen prints.
type Report struct {
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	ElapsedS    float64 `json:"elapsed_s"`
	RPS         float64 `json:"rps"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	MeanMs      float64 `json:"mean_ms"`
	Bytes       int64   `json:"bytes"`
	MBps        float64 `json:"mb_per_s"`
	// CPUUsPerReq is this process's CPU time (user and system) over the
	// measured phase per request: the client's share, TLS handshakes
	// included.
	CPUUsPerReq float64 `json:"cpu_us_per_req"`
}

func main() {
	var o options
	var hdr httpc.HeaderFlag
	addr := flag.String("addr", "", "host:port to connect to (proxy, peer or origin)")
	target := flag.String("target", "/bytes/1024", "request-target: origin-form path or absolute URL")
	host := flag.String("host", "", "Host header (default: authority of an absolute -target, else -addr)")
	flag.Var(&hdr, "H", "extra request header 'Name: value' (repeatable)")
	mode := flag.String("mode", "fresh", "fresh (new connection per request) or keepalive")
	useTLS := flag.Bool("tls", false, "speak TLS to -addr (direct to an HTTPS origin)")
	ca := flag.String("ca", "", "CA file for -tls")
	serverName := flag.String("server-name", "127.0.0.1", "TLS server name for -tls")
	resume := flag.Bool("resume", false, "with -tls, share a session cache so handshakes resume")
	connectTo := flag.String("connect", "", "open each connection as a CONNECT tunnel to this `host:port` through -addr, then -tls inside (an https:// client through a proxy)")
	flag.IntVar(&o.c, "c", 1, "concurrent workers")
	flag.IntVar(&o.n, "n", 1000, "stop after this many measured requests")
	flag.DurationVar(&o.d, "d", 10*time.Second, "stop after this long (measured phase)")
	flag.IntVar(&o.warmup, "warmup", 0, "unmeasured requests per worker before measuring")
	flag.IntVar(&o.expectStatus, "expect-status", 200, "status that counts as success")
	flag.Int64Var(&o.expectBytes, "expect-bytes", -1, "body size that counts as success (-1: any)")
	timeout := flag.Duration("timeout", 30*time.Second, "per-request (and per-dial) timeout")
	flag.Parse()

	if err := setup(&o, *addr, *target, *host, hdr, *mode, *useTLS, *ca, *serverName, *resume, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	o.dialer.Connect = *connectTo
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := run(ctx, o)
	rep.Mode = *mode
	json.NewEncoder(os.Stdout).Encode(rep)
	if rep.Requests == 0 {
		os.Exit(1)
	}
}

func setup(o *options, addr, target, host string, hdr []string, mode string, useTLS bool, ca, serverName string, resume bool, timeout time.Duration) error {
	if addr == "" {
		return errors.New("-addr is required")
	}
	switch mode {
	case "fresh":
	case "keepalive":
		o.keepalive = true
	default:
		return fmt.Errorf("-mode %q: want fresh or keepalive", mode)
	}
	if o.c < 1 || o.n < 1 {
		return errors.New("-c and -n must be at least 1")
	}
	if host == "" && len(target) > 0 && target[0] == '/' {
		host = addr
	}
	req, err := httpc.Request{Target: target, Host: host, Header: hdr}.Render()
	if err != nil {
		return err
	}
	o.req = req
	o.dialer = httpc.Dialer{Addr: addr, Timeout: timeout}
	if useTLS {
		if ca == "" {
			return errors.New("-tls needs -ca")
		}
		if o.dialer.TLS, err = httpc.ClientTLS(ca, serverName, resume); err != nil {
			return err
		}
	}
	return nil
}

// worker state shared for one run.
type shared struct {
	o       options
	issued  atomic.Int64 // measured requests started
	errs    atomic.Int64
	errOnce sync.Once
	first   string
	bytes   atomic.Int64
}

func (s *shared) fail(err error) {
	s.errs.Add(1)
	s.errOnce.Do(func() { s.first = err.Error() })
}

func run(ctx context.Context, o options) Report {
	s := &shared{o: o}
	var warm sync.WaitGroup
	start := make(chan struct{})
	samples := make([][]time.Duration, o.c)
	var wg sync.WaitGroup
	var deadline atomic.Pointer[time.Time]
	for i := range o.c {
		warm.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples[i] = s.worker(ctx, &warm, start, &deadline)
		}()
	}
	warm.Wait()
	cpu0 := cpuTime()
	t0 := time.Now()
	end := t0.Add(o.d)
	deadline.Store(&end)
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	cpu := cpuTime() - cpu0

	var all []time.Duration
	for _, ss := range samples {
		all = append(all, ss...)
	}
	sum := stats.Summarize(all)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	rep := Report{
		Concurrency: o.c,
		Requests:    sum.Count,
		Errors:      s.errs.Load(),
		FirstError:  s.first,
		ElapsedS:    elapsed.Seconds(),
		RPS:         float64(sum.Count) / elapsed.Seconds(),
		P50Ms:       ms(sum.P50),
		P90Ms:       ms(sum.P90),
		P99Ms:       ms(sum.P99),
		MaxMs:       ms(sum.Max),
		MeanMs:      ms(sum.Mean),
		Bytes:       s.bytes.Load(),
	}
	rep.MBps = float64(rep.Bytes) / 1e6 / elapsed.Seconds()
	if sum.Count > 0 {
		rep.CPUUsPerReq = float64(cpu) / 1e3 / float64(sum.Count)
	}
	return rep
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// worker does its warmup, waits for start, then measures until the shared
// request budget or the deadline runs out. It returns its latency samples.
func (s *shared) worker(ctx context.Context, warm *sync.WaitGroup, start <-chan struct{}, deadline *atomic.Pointer[time.Time]) []time.Duration {
	w := &conn{s: s}
	defer w.close()
	for range s.o.warmup {
		if ctx.Err() != nil {
			break
		}
		if _, err := w.one(ctx); err != nil {
			s.fail(fmt.Errorf("warmup: %v", err))
		}
	}
	warm.Done()
	select {
	case <-start:
	case <-ctx.Done():
		return nil
	}
	end := *deadline.Load()
	var out []time.Duration
	for ctx.Err() == nil && time.Now().Before(end) && s.issued.Add(1) <= int64(s.o.n) {
		t := time.Now()
		n, err := w.one(ctx)
		if err != nil {
			s.fail(err)
			continue
		}
		out = append(out, time.Since(t))
		s.bytes.Add(n)
	}
	return out
}

// conn is one worker's connection state.
type conn struct {
	s  *shared
	nc net.Conn
	br *bufio.Reader
}

func (w *conn) close() {
	if w.nc != nil {
		w.nc.Close()
		w.nc = nil
	}
}

// one sends a request (dialing first when needed) and reads the response.
func (w *conn) one(ctx context.Context) (int64, error) {
	o := w.s.o
	if w.nc == nil {
		c, err := o.dialer.Dial(ctx)
		if err != nil {
			return 0, fmt.Errorf("dial: %v", err)
		}
		w.nc, w.br = c, bufio.NewReaderSize(c, 64<<10)
	}
	w.nc.SetDeadline(time.Now().Add(o.dialer.Timeout))
	res, err := httpc.Do(w.nc, w.br, o.req)
	if !o.keepalive || err != nil || !res.KeepAlive {
		w.close()
	}
	if err != nil {
		return 0, err
	}
	if res.Status != o.expectStatus {
		return 0, fmt.Errorf("status %d, want %d", res.Status, o.expectStatus)
	}
	if o.expectBytes >= 0 && res.BodyBytes != o.expectBytes {
		return 0, fmt.Errorf("body %d bytes, want %d", res.BodyBytes, o.expectBytes)
	}
	return res.BodyBytes, nil
}
