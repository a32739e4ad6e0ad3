// Command benchrun is the bench orchestrator behind `make bench` (via
// bench/run.sh). It starts the origin and the RTT relay, then for each
// repeat, scenario and target starts a fresh proxy (warmproxy, nginx,
// haproxy, squid or none for direct), drives it with loadgen, wrk or
// idleclients, reads the origin's counters and the proxy's memory, stops it
// by PID, and finally writes medians over the repeats to RESULTS.md.
//
// All traffic stays on loopback. Every child is stopped by PID on exit,
// including on SIGINT/SIGTERM, and the whole run has a hard time limit.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	var c config
	c.register()
	flagParse()
	if err := c.finish(); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.maxTime)
	defer cancel()
	if err := run(ctx, &c); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c *config) error {
	b, err := newBench(ctx, c)
	if err != nil {
		return err
	}
	defer b.close()
	start := time.Now()
	for rep := 1; rep <= c.repeat; rep++ {
		for _, sc := range c.scenarios {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.logf("repeat %d/%d %s", rep, c.repeat, sc)
			b.runScenario(ctx, sc, rep)
		}
	}
	b.elapsed = time.Since(start)
	if err := b.writeRaw(filepath.Join(c.workDir, "results.json")); err != nil {
		return err
	}
	md := b.report()
	if err := os.WriteFile(c.out, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write %s: %v", c.out, err)
	}
	b.logf("wrote %s in %v", c.out, b.elapsed.Round(time.Second))
	if len(b.problems) > 0 {
		b.logf("problems:\n  %s", strings.Join(b.problems, "\n  "))
	}
	return nil
}

func (b *bench) writeRaw(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"rows": b.rows, "problems": b.problems, "calibration": b.calibration})
}
