// Command soak runs mixed load against a built warmproxy for a while and
// samples its resident memory, goroutines and open file descriptors, to
// show they stay flat. All traffic is on loopback: the origins are started
// here.
//
//	go build -o /tmp/warmproxy ./cmd/warmproxy
//	go run ./bench/soak -bin /tmp/warmproxy -duration 10m
//
// The load mixes keep-alive and fresh-connection requests (small, large,
// slow, POST), CONNECT tunnels, and faults: origin resets mid-body, origin
// stalls past the proxy's response-header timeout, clients that abort
// mid-response.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxDuration bounds a run, whatever -duration says.
const maxDuration = 30 * time.Minute

func main() {
	bin := flag.String("bin", "", "warmproxy `binary` to run (required)")
	duration := flag.Duration("duration", 10*time.Minute, "how long to run (at most 30m)")
	interval := flag.Duration("interval", 10*time.Second, "sampling interval")
	workers := flag.Int("workers", 8, "concurrent load workers")
	rate := flag.Int("rate", 400, "operations per second over all workers")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "soak: -bin is required; build it with go build -o /tmp/warmproxy ./cmd/warmproxy")
		os.Exit(2)
	}
	if *duration > maxDuration {
		*duration = maxDuration
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *duration, *interval, *workers, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// counters of the load.
type counters struct {
	ops, ok, expectedErr, unexpected atomic.Int64
	mu                               sync.Mutex
	lastUnexpected                   string
	kinds                            map[string]int
}

func (c *counters) bad(format string, args ...any) {
	c.unexpected.Add(1)
	msg := fmt.Sprintf(format, args...)
	c.mu.Lock()
	if c.kinds == nil {
		c.kinds = map[string]int{}
	}
	kind := msg
	if len(kind) > 60 {
		kind = kind[:60]
	}
	c.kinds[kind]++
	c.lastUnexpected = msg
	c.mu.Unlock()
}

func run(ctx context.Context, bin string, duration, interval time.Duration, workers, rate int) error {
	origin, err := startOrigin()
	if err != nil {
		return err
	}
	defer origin.Close()
	echo, err := startEcho()
	if err != nil {
		return err
	}
	defer echo.Close()

	pctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// pprof is served only on -admin-listen (issue 12).
	cmd := exec.CommandContext(pctx, bin, "-listen", "127.0.0.1:0", "-log-format", "off", "-pprof", "-admin-listen", "127.0.0.1:0",
		"-response-header-timeout", "1s", "-connect-ports", "*", "-tunnel-idle-timeout", "10s")
	cmd.Env = append(os.Environ(), "HTTP_PROXY=", "http_proxy=")
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	addr, err := waitListening(stderr, 15*time.Second)
	if err != nil {
		return err
	}
	adminAddr := addr
	if m := adminListeningRE.FindStringSubmatch(stderr.String()); m != nil {
		adminAddr = m[1]
	}
	pid := cmd.Process.Pid
	fmt.Printf("soak: warmproxy pid %d on %s, origin %s, echo %s, %d workers at %d ops/s for %v\n\n",
		pid, addr, origin.Addr(), echo.Addr(), workers, rate, duration)

	proxyURL := &url.URL{Scheme: "http", Host: addr}
	keepAlive := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	fresh := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true}, Timeout: 10 * time.Second}
	admin := &http.Client{Timeout: 5 * time.Second}

	var c counters
	loadCtx, loadCancel := context.WithTimeout(ctx, duration)
	defer loadCancel()
	tokens := make(chan struct{}, workers)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pace(loadCtx, tokens, rate)
	}()
	base := "http://" + origin.Addr().String()
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for range tokens {
				c.ops.Add(1)
				one(loadCtx, rng, &c, keepAlive, fresh, addr, base, echo.Addr().String())
			}
		}()
	}

	header := fmt.Sprintf("| %7s | %8s | %10s | %7s | %4s | %9s | %8s | %10s |", "t", "rss_MiB", "goroutines", "threads", "fds", "ops", "ok", "unexpected")
	fmt.Println(header)
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|")
	start := time.Now()
	type sample struct {
		rss        float64
		goroutines int
		fds        int
		threads    int
	}
	var samples []sample
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-loadCtx.Done():
			done = true
		case <-tick.C:
		}
		s := sample{rss: rssMiB(pid), goroutines: goroutines(admin, adminAddr), fds: fds(pid), threads: threads(pid)}
		samples = append(samples, s)
		g := "-"
		if s.goroutines >= 0 {
			g = strconv.Itoa(s.goroutines)
		}
		fmt.Printf("| %7s | %8.1f | %10s | %7d | %4d | %9d | %8d | %10d |\n",
			time.Since(start).Truncate(time.Second), s.rss, g, s.threads, s.fds, c.ops.Load(), c.ok.Load(), c.unexpected.Load())
	}
	close(tokensDone(tokens))
	wg.Wait()
	keepAlive.CloseIdleConnections()
	// After the load: idle pools drain; what is left is the baseline.
	time.Sleep(2 * time.Second)
	after := sample{rss: rssMiB(pid), goroutines: goroutines(admin, adminAddr), fds: fds(pid)}
	fmt.Printf("\nafter load (2s idle): rss %.1f MiB, goroutines %d, fds %d\n", after.rss, after.goroutines, after.fds)
	fmt.Printf("ops %d, ok %d, expected errors (faults) %d, unexpected %d\n", c.ops.Load(), c.ok.Load(), c.expectedErr.Load(), c.unexpected.Load())
	if s := c.lastUnexpected; s != "" {
		fmt.Printf("last unexpected: %s\n", s)
		for k, n := range c.kinds {
			fmt.Printf("  %6d × %s\n", n, k)
		}
	}
	if len(samples) >= 3 {
		third, last := samples[len(samples)/3], samples[len(samples)-1]
		fmt.Printf("from t=1/3 to the end: rss %+.1f MiB, threads %+d, fds %+d",
			last.rss-third.rss, last.threads-third.threads, last.fds-third.fds)
		if last.goroutines >= 0 && third.goroutines >= 0 {
			fmt.Printf(", goroutines %+d", last.goroutines-third.goroutines)
		}
		fmt.Println()
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return fmt.Errorf("warmproxy died during the soak: %v\n%s", err, stderr)
	}
	return nil
}

// pace hands out rate tokens per second until ctx is done, then closes
// nothing: tokensDone closes the channel once the pacer has stopped.
func pace(ctx context.Context, tokens chan<- struct{}, rate int) {
	t := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			select {
			case tokens <- struct{}{}:
			default: // workers busy: drop the token, do not queue
			}
		}
	}
}

// tokensDone returns tokens for closing once the pacer has returned (the
// caller's context is done by then).
func tokensDone(tokens chan struct{}) chan struct{} {
	time.Sleep(100 * time.Millisecond)
	return tokens
}

// one runs one randomly chosen operation.
func one(ctx context.Context, rng *rand.Rand, c *counters, keepAlive, fresh *http.Client, proxyAddr, base, echoAddr string) {
	n := rng.IntN(100)
	switch {
	case n < 35:
		get(ctx, c, keepAlive, base+"/small", 1<<10)
	case n < 50:
		get(ctx, c, fresh, base+"/small", 1<<10)
	case n < 60:
		get(ctx, c, keepAlive, base+"/large", 256<<10)
	case n < 65:
		get(ctx, c, fresh, base+"/large", 256<<10)
	case n < 72:
		post(ctx, c, keepAlive, base+"/echo")
	case n < 82:
		tunnel(c, proxyAddr, echoAddr)
	case n < 86:
		get(ctx, c, keepAlive, base+"/slow", 1<<10)
	case n < 90:
		fault(ctx, c, keepAlive, base+"/reset")
	case n < 93:
		fault(ctx, c, keepAlive, base+"/stall")
	default:
		abort(ctx, c, keepAlive, base+"/large")
	}
}

func get(ctx context.Context, c *counters, client *http.Client, u string, want int) {
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			c.bad("GET %s: %v", u, err)
		}
		return
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || n != int64(want) {
		if ctx.Err() == nil {
			c.bad("GET %s: %d, %d bytes, %v", u, resp.StatusCode, n, err)
		}
		return
	}
	c.ok.Add(1)
}

func post(ctx context.Context, c *counters, client *http.Client, u string) {
	body := bytes.Repeat([]byte("p"), 8<<10)
	req, _ := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			c.bad("POST %s: %v", u, err)
		}
		return
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
		if ctx.Err() == nil {
			c.bad("POST %s: %d, %d bytes, %v", u, resp.StatusCode, len(got), err)
		}
		return
	}
	c.ok.Add(1)
}

// fault requests a path that fails on purpose: any error or 5xx is the
// expected outcome, a clean 200 is not.
func fault(ctx context.Context, c *counters, client *http.Client, u string) {
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := client.Do(req)
	if err != nil {
		c.expectedErr.Add(1)
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode == 200 {
		c.bad("fault %s: clean 200", u)
		return
	}
	c.expectedErr.Add(1)
}

// abort reads the start of a large response, then gives up.
func abort(ctx context.Context, c *counters, client *http.Client, u string) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(actx, "GET", u, nil)
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			c.bad("abort %s: %v", u, err)
		}
		return
	}
	io.CopyN(io.Discard, resp.Body, 4<<10)
	cancel()
	resp.Body.Close()
	c.expectedErr.Add(1)
}

// tunnel opens a CONNECT tunnel to the echo server and checks an echo.
func tunnel(c *counters, proxyAddr, echoAddr string) {
	conn, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		c.bad("tunnel dial: %v", err)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", echoAddr, echoAddr)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		c.bad("tunnel CONNECT: %v %v", resp, err)
		return
	}
	msg := bytes.Repeat([]byte("t"), 4<<10)
	if _, err := conn.Write(msg); err != nil {
		c.bad("tunnel write: %v", err)
		return
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, msg) {
		c.bad("tunnel echo: %v", err)
		return
	}
	c.ok.Add(1)
}

// startOrigin serves /small, /large, /slow, /echo and the faults /reset
// (reset mid-body) and /stall (no answer for 2s).
func startOrigin() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	small := bytes.Repeat([]byte("s"), 1<<10)
	large := bytes.Repeat([]byte("l"), 256<<10)
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) { w.Write(small) })
	mux.HandleFunc("/large", func(w http.ResponseWriter, r *http.Request) { w.Write(large) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		w.Write(small)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// Read it all first: net/http's server stops reading a request
		// body once the response has started.
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.Write(small)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	})
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return ln, nil
}

// startEcho is a TCP echo server for CONNECT tunnels.
func startEcho() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	return ln, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	listeningRE      = regexp.MustCompile(`msg=listening addr=(\S+)`)
	adminListeningRE = regexp.MustCompile(`msg="admin listening" addr=(\S+)`)
)

func waitListening(stderr *lockedBuffer, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if m := listeningRE.FindStringSubmatch(stderr.String()); m != nil {
			return m[1], nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", errors.New("warmproxy never printed its listening line:\n" + stderr.String())
}

func rssMiB(pid int) float64 {
	kb := procStatus(pid, "VmRSS:")
	if kb < 0 {
		return -1
	}
	return float64(kb) / 1024
}

// threads is the number of OS threads, a stand-in when goroutines cannot
// be read.
func threads(pid int) int { return procStatus(pid, "Threads:") }

// procStatus reads a number field of /proc/PID/status, or -1.
func procStatus(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

func fds(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

var goroutineRE = regexp.MustCompile(`goroutine profile: total (\d+)`)

// goroutines reads /debug/pprof/goroutine?debug=1 from the proxy, or
// returns -1 when it does not serve it.
func goroutines(client *http.Client, addr string) int {
	resp, err := client.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if m := goroutineRE.FindSubmatch(b); resp.StatusCode == 200 && m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	return -1
}
