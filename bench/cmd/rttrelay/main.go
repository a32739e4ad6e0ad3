// Command rttrelay is a TCP relay that simulates a network round-trip time
// on loopback (see package rttrelay).
//
//	rttrelay -listen 127.0.0.1:0 -target 127.0.0.1:8443 -rtt 5ms
//
// prints one JSON line {"addr":"127.0.0.1:PORT"} on stdout when ready and
// relays until SIGTERM/SIGINT or -max-time. With -calibrate N it instead
// measures N 1-byte ping-pongs through an in-process relay and echo server
// and prints the result as JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/warmproxy/warmproxy/bench/internal/rttrelay"
	"github.com/warmproxy/warmproxy/bench/internal/stats"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept on (loopback)")
	target := flag.String("target", "", "host:port to relay to")
	rtt := flag.Duration("rtt", 5*time.Millisecond, "simulated round-trip time")
	spin := flag.Duration("spin", rttrelay.DefaultSpin, "spin this long before each due time for precision (0: timers only)")
	maxTime := flag.Duration("max-time", 2*time.Hour, "exit after this long no matter what")
	calibrate := flag.Int("calibrate", 0, "measure N ping-pongs through an in-process relay and exit")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxTime)
	defer cancel()

	if *calibrate > 0 {
		if err := runCalibrate(ctx, *rtt, *spin, *calibrate); err != nil {
			fmt.Fprintln(os.Stderr, "rttrelay:", err)
			os.Exit(1)
		}
		return
	}
	if *target == "" {
		fmt.Fprintln(os.Stderr, "rttrelay: -target is required")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rttrelay:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]string{"addr": ln.Addr().String()})
	r := &rttrelay.Relay{Target: *target, RTT: *rtt, Spin: *spin}
	if err := r.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, "rttrelay:", err)
		os.Exit(1)
	}
}

func runCalibrate(ctx context.Context, rtt, spin time.Duration, n int) error {
	cal, err := rttrelay.Calibrate(ctx, rtt, spin, n)
	if err != nil {
		return err
	}
	s := stats.Summarize(cal.Rounds)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"rtt_ms":        ms(rtt),
		"spin_ms":       ms(spin),
		"rounds":        s.Count,
		"connect_ms":    ms(cal.Connect),
		"round_p50_ms":  ms(s.P50),
		"round_p90_ms":  ms(s.P90),
		"round_p99_ms":  ms(s.P99),
		"round_mean_ms": ms(s.Mean),
	})
}
