package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/warmproxy/warmproxy/bench/internal/origin"
	"github.com/warmproxy/warmproxy/bench/internal/peers"
	"github.com/warmproxy/warmproxy/bench/internal/procfs"
	"github.com/warmproxy/warmproxy/bench/internal/procs"
)

// originInfo is the origin's ready line.
type originInfo struct {
	Admin  string   `json:"admin"`
	HTTP   string   `json:"http"`
	HTTPS  string   `json:"https"`
	H2     string   `json:"https_h2"`
	Many   []string `json:"many"`
	CAFile string   `json:"ca_file"`
}

// measurement is one run of a row: its repeat number and metric values.
type measurement struct {
	Rep     int                `json:"rep"`
	Metrics map[string]float64 `json:"metrics"`
}

// row is one line of a report table, accumulated over repeats.
type row struct {
	Scenario string        `json:"scenario"`
	Variant  string        `json:"variant"` // "C=8", "idle", "hosts", ...
	Target   string        `json:"target"`
	Runs     []measurement `json:"runs"`
}

type bench struct {
	c         *config
	origin    *procs.Proc
	oi        originInfo
	relay     *procs.Proc
	relayAddr string
	// relayH2Addr is an RTT relay to the origin's HTTP/2 listener.
	relayH2Addr string
	live        []*procs.Proc
	rows        []*row
	problems    []string
	calibration map[string]any
	elapsed     time.Duration
	fdLimit     int
	peerMissing map[string]bool
	versions    map[string]string
	seq         int
	http        *http.Client
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s benchrun: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// problem records something the report must mention.
func (b *bench) problem(format string, args ...any) {
	p := fmt.Sprintf(format, args...)
	// One line each, so the report's list stays a list.
	p = strings.Join(strings.Fields(p), " ")
	if len(p) > 400 {
		p = p[:400] + "…"
	}
	b.logf("PROBLEM: %s", p)
	if !slices.Contains(b.problems, p) {
		b.problems = append(b.problems, p)
	}
}

// record adds one run's metrics to a row.
func (b *bench) record(scenario, variant, target string, rep int, m map[string]float64) {
	for _, r := range b.rows {
		if r.Scenario == scenario && r.Variant == variant && r.Target == target {
			r.Runs = append(r.Runs, measurement{rep, m})
			return
		}
	}
	b.rows = append(b.rows, &row{scenario, variant, target, []measurement{{rep, m}}})
}

func (b *bench) bin(name string) string { return filepath.Join(b.c.binDir, name) }

// startProc starts a child and remembers it for close.
func (b *bench) startProc(name string, argv []string, env ...string) (*procs.Proc, error) {
	b.seq++
	p, err := procs.Start(name, filepath.Join(b.c.workDir, fmt.Sprintf("%03d-%s.log", b.seq, name)), argv, env...)
	if err != nil {
		return nil, err
	}
	b.live = append(b.live, p)
	return p, nil
}

func (b *bench) stopProc(p *procs.Proc) {
	if p == nil {
		return
	}
	if err := p.Stop(5 * time.Second); err != nil {
		b.problem("%v", err)
	}
	b.live = slices.DeleteFunc(b.live, func(q *procs.Proc) bool { return q == p })
}

func (b *bench) close() {
	for _, p := range slices.Clone(b.live) {
		b.stopProc(p)
	}
}

func jsonLine(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "{") }

func newBench(ctx context.Context, c *config) (*bench, error) {
	b := &bench{c: c, peerMissing: map[string]bool{}, versions: map[string]string{},
		http: &http.Client{Timeout: 10 * time.Second}}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		b.fdLimit = int(rl.Max)
	}
	b.logf("work dir %s, fd limit %d", c.workDir, b.fdLimit)
	if b.fdLimit < c.idleConns+1000 && slices.Contains(c.scenarios, "S5") {
		b.problem("fd hard limit %d is below %d idle conns + slack; S5 will fail to open them all (raise ulimit -Hn)", b.fdLimit, c.idleConns)
	}
	b.detectPeers()

	var err error
	b.origin, err = b.startProc("origin", []string{b.bin("origin"),
		"-ca-out", filepath.Join(c.workDir, "origin-ca.pem"),
		"-many", fmt.Sprint(c.hosts), "-max-time", c.maxTime.String()})
	if err != nil {
		b.close()
		return nil, err
	}
	line, err := b.origin.WaitLine(10*time.Second, jsonLine)
	if err == nil {
		err = json.Unmarshal([]byte(line), &b.oi)
	}
	if err != nil {
		b.close()
		return nil, fmt.Errorf("origin: %v", err)
	}
	if b.relay, b.relayAddr, err = b.startRelay(b.oi.HTTPS); err != nil {
		b.close()
		return nil, err
	}
	if b.oi.H2 != "" && slices.Contains(c.scenarios, "S1") {
		if _, b.relayH2Addr, err = b.startRelay(b.oi.H2); err != nil {
			b.close()
			return nil, err
		}
	}
	b.calibrate(ctx)
	return b, nil
}

// startRelay starts an RTT relay to target and returns it and its address.
func (b *bench) startRelay(target string) (*procs.Proc, string, error) {
	p, err := b.startProc("rttrelay", []string{b.bin("rttrelay"), "-target", target,
		"-rtt", b.c.rtt.String(), "-max-time", b.c.maxTime.String()})
	if err != nil {
		return nil, "", err
	}
	line, err := p.WaitLine(10*time.Second, jsonLine)
	if err != nil {
		return nil, "", fmt.Errorf("rttrelay: %v", err)
	}
	var ra struct{ Addr string }
	if err := json.Unmarshal([]byte(line), &ra); err != nil || ra.Addr == "" {
		return nil, "", fmt.Errorf("rttrelay: bad ready line %q", line)
	}
	return p, ra.Addr, nil
}

// calibrate measures what the configured RTT really costs per round trip.
func (b *bench) calibrate(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := procs.Run(ctx, []string{b.bin("rttrelay"), "-calibrate", "200", "-rtt", b.c.rtt.String()})
	if err != nil {
		b.problem("rtt calibration: %v", err)
		return
	}
	b.calibration = map[string]any{}
	if err := json.Unmarshal(out, &b.calibration); err != nil {
		b.problem("rtt calibration: %v", err)
	}
}

// detectPeers notes which peers are installed and their versions.
func (b *bench) detectPeers() {
	for _, t := range b.c.targets {
		var argv []string
		switch t {
		case "nginx":
			argv = []string{"nginx", "-v"}
		case "haproxy":
			argv = []string{"haproxy", "-v"}
		case "squid":
			argv = []string{"squid", "-v"}
		case "warmproxy":
			out, err := exec.Command(b.c.warmproxy, "-version").Output()
			b.versions[t] = strings.TrimSpace(string(out))
			if err != nil || b.versions[t] == "" {
				b.versions[t] = b.c.warmproxy
			}
			continue
		default:
			continue
		}
		if _, err := exec.LookPath(argv[0]); err != nil {
			b.peerMissing[t] = true
			b.problem("%s not installed: left out (bench/run.sh installs it with apt-get)", t)
			continue
		}
		out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		b.versions[t] = versionOf(string(out))
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		b.problem("wrk not installed: S2 left out")
		b.peerMissing["wrk"] = true
	} else {
		out, _ := exec.Command("wrk", "-v").CombinedOutput()
		b.versions["wrk"] = versionOf(string(out))
	}
}

var versionRE = regexp.MustCompile(`[0-9]+\.[0-9]+(\.[0-9]+)?[-+~.a-z0-9]*`)

// versionOf picks the first version number out of a -v output.
func versionOf(out string) string {
	if v := versionRE.FindString(out); v != "" {
		return v
	}
	return "?"
}

// originStats fetches the origin's counters, resetting them if reset.
func (b *bench) originStats(ctx context.Context, reset bool) (origin.Stats, error) {
	u := "http://" + b.oi.Admin + "/stats"
	if reset {
		u += "?reset=1"
	}
	var s origin.Stats
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return s, err
	}
	res, err := b.http.Do(req)
	if err != nil {
		return s, fmt.Errorf("origin stats: %v", err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("origin stats: %v", err)
	}
	return s, nil
}

// startOrigin starts an extra plain origin as a direct target of its own.
func (b *bench) startOrigin() (*instance, error) {
	p, err := b.startProc("origin", []string{b.bin("origin"),
		"-ca-out", filepath.Join(b.c.workDir, "origin2-ca.pem"), "-max-time", b.c.maxTime.String()})
	if err != nil {
		return nil, err
	}
	line, err := p.WaitLine(10*time.Second, jsonLine)
	var oi originInfo
	if err == nil {
		err = json.Unmarshal([]byte(line), &oi)
	}
	if err != nil {
		b.stopProc(p)
		return nil, fmt.Errorf("origin: %v", err)
	}
	return &instance{name: "direct", form: "direct", addr: oi.HTTP, proc: p}, nil
}

// instance is a running target.
type instance struct {
	name  string
	form  string // "direct", "forward" (absolute-form) or "reverse"
	addr  string // where clients connect
	admin string // warmproxy admin address for pprof, if known
	proc  *procs.Proc
}

func formOf(target string) string {
	switch target {
	case "warmproxy", "squid":
		return "forward"
	case "nginx", "haproxy":
		return "reverse"
	}
	return "direct"
}

// usable says whether target can run here at all.
func (b *bench) usable(target string) bool {
	return slices.Contains(b.c.targets, target) && !b.peerMissing[target]
}

// start starts target in front of upstream (tlsUp: the upstream speaks TLS)
// for at most maxConns clients. Direct needs no process.
func (b *bench) start(ctx context.Context, target, upstream string, tlsUp bool, maxConns int, extra ...string) (*instance, error) {
	in := &instance{name: target, form: formOf(target)}
	switch target {
	case "direct":
		in.addr = upstream
		return in, nil
	case "warmproxy":
		if maxConns > warmproxyDefaultMaxClientConns {
			// Like the peers' maxconn / worker_connections: S5 holds
			// more idle clients than warmproxy's default cap allows.
			extra = append([]string{"-max-client-conns", fmt.Sprint(maxConns)}, extra...)
		}
		return b.startWarmproxy(ctx, in, extra)
	}
	dir, err := os.MkdirTemp(b.c.workDir, target+"-")
	if err != nil {
		return nil, err
	}
	// nginx workers and squid drop to unprivileged users.
	os.Chmod(dir, 0o777)
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := peers.Params{Dir: dir, Listen: listen, Upstream: upstream, TLS: tlsUp,
		CAFile: b.oi.CAFile, ServerName: origin.ServerName, MaxConns: maxConns,
		FDs: peers.FDsFor(maxConns, b.fdLimit), Threads: 2}
	text, err := peers.Config(target, p)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, peers.FileName(target))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return nil, err
	}
	in.addr = listen
	in.proc, err = b.startProc(target, peers.Argv(target, dir, path))
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, in.proc, listen, 20*time.Second); err != nil {
		b.stopProc(in.proc)
		return nil, fmt.Errorf("%s: %v", target, err)
	}
	return in, nil
}

// warmproxyDefaultMaxClientConns is warmproxy's default -max-client-conns;
// over it clients get a 503.
const warmproxyDefaultMaxClientConns = 4096

var addrRE = regexp.MustCompile(`addr="?([0-9a-fA-F.:\[\]]+)"?`)

// startWarmproxy runs the binary on 127.0.0.1:0 and reads the address from
// its "msg=listening ... addr=HOST:PORT" line. Lines that mention admin,
// metrics or pprof give the admin address instead.
func (b *bench) startWarmproxy(ctx context.Context, in *instance, extra []string) (*instance, error) {
	argv := []string{b.c.warmproxy, "-listen", "127.0.0.1:0", "-ca-file", b.oi.CAFile}
	argv = append(argv, strings.Fields(b.c.warmproxyArgs)...)
	argv = append(argv, extra...)
	p, err := b.startProc("warmproxy", argv)
	if err != nil {
		return nil, err
	}
	in.proc = p
	isAdmin := func(l string) bool {
		return strings.Contains(l, "admin") || strings.Contains(l, "metrics") || strings.Contains(l, "pprof")
	}
	line, err := p.WaitLine(10*time.Second, func(l string) bool {
		return strings.Contains(l, "msg=listening") && addrRE.MatchString(l) && !isAdmin(l)
	})
	if err != nil {
		b.stopProc(p)
		return nil, fmt.Errorf("warmproxy: %v", err)
	}
	in.addr = addrRE.FindStringSubmatch(line)[1]
	// The admin line, if any, comes right after; don't wait long for it.
	if l, err := p.WaitLine(300*time.Millisecond, func(l string) bool {
		return strings.Contains(l, "listening") && addrRE.MatchString(l) && isAdmin(l)
	}); err == nil {
		in.admin = addrRE.FindStringSubmatch(l)[1]
	}
	if err := waitListening(ctx, p, in.addr, 5*time.Second); err != nil {
		b.stopProc(p)
		return nil, fmt.Errorf("warmproxy: %v", err)
	}
	return in, nil
}

func (b *bench) stop(in *instance) {
	if in != nil && in.proc != nil {
		b.stopProc(in.proc)
	}
}

// targetProc is the process that serves in's clients: its own, or the
// origin for direct.
func (b *bench) targetProc(in *instance) *procs.Proc {
	if in.proc == nil {
		return b.origin
	}
	return in.proc
}

// memory returns the target's resident memory (summed over its process
// tree), or the origin's for direct.
func (b *bench) memory(in *instance) (procfs.Mem, error) {
	return procfs.TreeMem(b.targetProc(in).PID())
}

// cpu returns the CPU time the target's processes (nginx's master and
// workers, say; the origin for direct, never the origin behind a proxy)
// have used so far.
func (b *bench) cpu(in *instance) (time.Duration, error) {
	return procfs.TreeCPU(b.targetProc(in).PID())
}

// freeAddr finds a free loopback port (a small race is fine here).
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitListening polls until addr accepts a connection.
func waitListening(ctx context.Context, p *procs.Proc, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			_, werr := p.WaitLine(0, func(string) bool { return false })
			return fmt.Errorf("not listening on %s: %v (%v)", addr, err, werr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// endpoint is how a client reaches upstream path through an instance.
type endpoint struct {
	addr   string
	target string
	header []string
	tls    bool // client speaks TLS (direct to an HTTPS upstream)
	// connect, host and ca are for an https:// client through a proxy
	// (S1's interception row): a CONNECT to connect, TLS inside trusting
	// ca (default the origin's), Host host.
	connect, host, ca string
}

func (in *instance) endpoint(upstream, path string, tlsUp bool) endpoint {
	switch in.form {
	case "forward":
		e := endpoint{addr: in.addr, target: "http://" + upstream + path}
		if tlsUp {
			e.header = []string{"X-Real-Protocol: https"}
		}
		return e
	case "reverse":
		return endpoint{addr: in.addr, target: path}
	}
	return endpoint{addr: upstream, target: path, tls: tlsUp}
}

func (b *bench) loadgenArgs(e endpoint) []string {
	a := []string{b.bin("loadgen"), "-addr", e.addr, "-target", e.target}
	for _, h := range e.header {
		a = append(a, "-H", h)
	}
	if e.tls {
		ca := b.oi.CAFile
		if e.ca != "" {
			ca = e.ca
		}
		a = append(a, "-tls", "-ca", ca, "-server-name", "127.0.0.1")
	}
	if e.connect != "" {
		a = append(a, "-connect", e.connect)
	}
	if e.host != "" {
		a = append(a, "-host", e.host)
	}
	return a
}
