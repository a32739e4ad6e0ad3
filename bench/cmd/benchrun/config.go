package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

var allScenarios = []string{"S1", "S2", "S3", "S4", "S5"}

var allTargets = []string{"direct", "warmproxy", "nginx", "haproxy", "squid"}

type config struct {
	binDir        string
	warmproxy     string
	warmproxyArgs string
	repeat        int
	quick         bool
	scenarioList  string
	targetList    string
	scenarios     []string
	targets       []string
	duration      time.Duration
	out           string
	workDir       string
	cmdline       string
	profile       bool
	profileDir    string
	pprofFlags    string
	rtt           time.Duration
	s1Conc        string
	s1C           []int
	s3C           int
	wrkThreads    int
	wrkConns      int
	idleConns     int
	hosts         int
	s4Bytes       int64
	maxTime       time.Duration
	set           map[string]bool
}

func flagParse() { flag.Parse() }

func (c *config) register() {
	flag.StringVar(&c.binDir, "bin-dir", "bench/out/bin", "where the bench tools (origin, rttrelay, loadgen, idleclients) are built")
	flag.StringVar(&c.warmproxy, "warmproxy", "", "warmproxy binary (empty: leave warmproxy out)")
	flag.StringVar(&c.warmproxyArgs, "warmproxy-args", "-max-idle-per-host 64 -log-format off", "extra warmproxy flags")
	flag.IntVar(&c.repeat, "repeat", 3, "runs of every scenario; tables show medians")
	flag.BoolVar(&c.quick, "quick", false, "short runs (2 s loads, 1 repeat unless -repeat is given)")
	flag.StringVar(&c.scenarioList, "scenarios", strings.Join(allScenarios, ","), "scenarios to run")
	flag.StringVar(&c.targetList, "targets", strings.Join(allTargets, ","), "targets to run (direct is the baseline)")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "length of each measured load run")
	flag.StringVar(&c.out, "out", "bench/RESULTS.md", "report to write")
	flag.StringVar(&c.workDir, "work-dir", "", "configs, logs and raw results (default bench/out/run-TIME)")
	flag.StringVar(&c.cmdline, "cmdline", "", "the command that started this run, for the report")
	flag.BoolVar(&c.profile, "profile", false, "capture warmproxy CPU and alloc profiles during S2 and S4")
	flag.StringVar(&c.profileDir, "profile-dir", "bench/profiles", "where profile top-lists go")
	flag.StringVar(&c.pprofFlags, "pprof-flags", "-pprof -admin-listen 127.0.0.1:0", "warmproxy flags that enable /debug/pprof (with -profile); pprof is served only on -admin-listen")
	flag.DurationVar(&c.rtt, "rtt", 5*time.Millisecond, "simulated RTT between proxy and origin in S1")
	flag.StringVar(&c.s1Conc, "s1-c", "1,8", "S1 client concurrencies")
	flag.IntVar(&c.s3C, "s3-c", 32, "S3 client concurrency")
	flag.IntVar(&c.wrkThreads, "wrk-threads", 2, "S2 wrk threads")
	flag.IntVar(&c.wrkConns, "wrk-conns", 64, "S2 wrk connections")
	flag.IntVar(&c.idleConns, "idle-conns", 10000, "S5 idle client connections")
	flag.IntVar(&c.hosts, "hosts", 1000, "S5 distinct upstream host:port pairs")
	flag.Int64Var(&c.s4Bytes, "s4-bytes", 1<<30, "S4 chunked download size")
	flag.DurationVar(&c.maxTime, "max-time", 40*time.Minute, "abort the whole run after this long")
}

func (c *config) finish() error {
	c.set = map[string]bool{}
	flag.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	if c.quick {
		if !c.set["repeat"] {
			c.repeat = 1
		}
		if !c.set["duration"] {
			c.duration = 2 * time.Second
		}
	}
	var errs []error
	if c.repeat < 1 {
		errs = append(errs, errors.New("-repeat must be at least 1"))
	}
	var err error
	if c.scenarios, err = pick(c.scenarioList, allScenarios); err != nil {
		errs = append(errs, fmt.Errorf("-scenarios: %v", err))
	}
	if c.targets, err = pick(c.targetList, allTargets); err != nil {
		errs = append(errs, fmt.Errorf("-targets: %v", err))
	}
	if c.warmproxy == "" {
		c.targets = slices.DeleteFunc(c.targets, func(t string) bool { return t == "warmproxy" })
	} else if c.warmproxy, err = filepath.Abs(c.warmproxy); err != nil {
		errs = append(errs, err)
	}
	for _, s := range strings.Split(c.s1Conc, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("-s1-c: bad concurrency %q", s))
			continue
		}
		c.s1C = append(c.s1C, n)
	}
	if c.workDir == "" {
		c.workDir = filepath.Join("bench/out", "run-"+time.Now().Format("20060102-150405"))
	}
	if c.binDir, err = filepath.Abs(c.binDir); err != nil {
		errs = append(errs, err)
	}
	if c.workDir, err = filepath.Abs(c.workDir); err != nil {
		errs = append(errs, err)
	}
	if err := os.MkdirAll(c.workDir, 0o755); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// pick parses a comma list, keeping the canonical order of all.
func pick(list string, all []string) ([]string, error) {
	want := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(all, s) {
			return nil, fmt.Errorf("unknown %q (want some of %s)", s, strings.Join(all, ","))
		}
		want[s] = true
	}
	var out []string
	for _, s := range all {
		if want[s] {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}
