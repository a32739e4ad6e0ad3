// Command idleclients opens -n keep-alive client connections to -addr,
// sends -per-conn requests on each (targets taken round-robin from -target
// or -targets-file), leaves them open and idle, and prints one JSON line
// {"open":N,"failed":F,...} on stdout. It then holds them until SIGTERM,
// SIGINT, stdin closing (with -stdin) or -hold, and closes them all.
//
// S5 uses it twice: 10,000 connections with one request each (idle client
// connections), and a few connections sending one request to each of 1,000
// origin host:port pairs (so the proxy pools an idle upstream conn each).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warmproxy/warmproxy/bench/internal/httpc"
)

// Report is the JSON idleclients prints once everything is open.
type Report struct {
	Open       int     `json:"open"`
	Failed     int64   `json:"failed"`
	Requests   int64   `json:"requests"`
	FirstError string  `json:"first_error,omitempty"`
	OpenS      float64 `json:"open_s"`
}

func main() {
	var hdr httpc.HeaderFlag
	addr := flag.String("addr", "", "host:port to connect to")
	n := flag.Int("n", 1000, "connections to open and hold")
	perConn := flag.Int("per-conn", 1, "requests per connection before it goes idle")
	target := flag.String("target", "/bytes/1", "request-target (origin-form or absolute)")
	targetsFile := flag.String("targets-file", "", "file of request-targets, one a line, used round-robin")
	host := flag.String("host", "", "Host header for origin-form targets (default -addr)")
	flag.Var(&hdr, "H", "extra request header (repeatable)")
	c := flag.Int("c", 32, "connections being opened at once")
	hold := flag.Duration("hold", 2*time.Minute, "release everything this long after they are open")
	openTimeout := flag.Duration("open-timeout", time.Minute, "give up opening after this long")
	stdin := flag.Bool("stdin", false, "also release when stdin closes")
	timeout := flag.Duration("timeout", 10*time.Second, "per-dial and per-request timeout")
	flag.Parse()

	reqs, err := requests(*addr, *target, *targetsFile, *host, hdr)
	if err != nil || *n < 1 || *perConn < 1 || *c < 1 {
		fmt.Fprintln(os.Stderr, "idleclients: bad flags:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d := httpc.Dialer{Addr: *addr, Timeout: *timeout}
	openCtx, cancelOpen := context.WithTimeout(ctx, *openTimeout)
	conns, rep := open(openCtx, d, reqs, *n, *perConn, *c)
	cancelOpen()
	ctx, cancel := context.WithTimeout(ctx, *hold)
	defer cancel()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	json.NewEncoder(os.Stdout).Encode(rep)
	if *stdin {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
	}
	<-ctx.Done()
}

func requests(addr, target, file, host string, hdr []string) ([][]byte, error) {
	if addr == "" {
		return nil, errors.New("-addr is required")
	}
	targets := []string{target}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		targets = strings.Fields(string(b))
		if len(targets) == 0 {
			return nil, fmt.Errorf("%s: no targets", file)
		}
	}
	var out [][]byte
	for _, t := range targets {
		h := host
		if h == "" && strings.HasPrefix(t, "/") {
			h = addr
		}
		r, err := httpc.Request{Target: t, Host: h, Header: hdr}.Render()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// open opens n connections with par workers, sends perConn requests on each
// and returns the ones left open and idle.
func open(ctx context.Context, d httpc.Dialer, reqs [][]byte, n, perConn, par int) ([]net.Conn, Report) {
	start := time.Now()
	var (
		mu       sync.Mutex
		conns    []net.Conn
		next     atomic.Int64 // next connection index
		reqIdx   atomic.Int64 // next target index
		failed   atomic.Int64
		requests atomic.Int64
		errOnce  sync.Once
		first    string
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		failed.Add(1)
		errOnce.Do(func() { first = err.Error() })
	}
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				c, err := d.Dial(ctx)
				if err != nil {
					fail(fmt.Errorf("dial: %v", err))
					continue
				}
				br := bufio.NewReader(c)
				ok := true
				for range perConn {
					req := reqs[(reqIdx.Add(1)-1)%int64(len(reqs))]
					c.SetDeadline(time.Now().Add(d.Timeout))
					res, err := httpc.Do(c, br, req)
					if err == nil && res.Status != 200 {
						err = fmt.Errorf("status %d", res.Status)
					}
					if err == nil && !res.KeepAlive {
						err = errors.New("server closes the connection")
					}
					if err != nil {
						fail(err)
						ok = false
						break
					}
					requests.Add(1)
				}
				if !ok {
					c.Close()
					continue
				}
				c.SetDeadline(time.Time{})
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return conns, Report{
		Open:       len(conns),
		Failed:     failed.Load(),
		Requests:   requests.Load(),
		FirstError: first,
		OpenS:      time.Since(start).Seconds(),
	}
}
