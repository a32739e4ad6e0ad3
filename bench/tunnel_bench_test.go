package bench

// Issue 3 acceptance: a 1 GiB transfer through a CONNECT tunnel runs at
// 0.8x or more of a direct loopback copy measured in the same run, with
// the proxy's RSS flat.
//
//	go test -run '^$' -bench Tunnel -benchtime 1x -count 3 ./bench/
//
// The proxy is the real binary, in its own process, so that its RSS is
// its own. Helpers are prefixed "tunnel": other files of this package are
// written in parallel.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// tunnelTransfer is how many bytes each measured copy moves.
const tunnelTransfer = 1 << 30

// BenchmarkTunnel1GiB reports, per iteration, the throughput of a 1 GiB
// origin→client copy made directly and through a CONNECT tunnel, their
// ratio, and the proxy's RSS before and after (and its peak).
//
// It also measures the same copy through a bare relay (io.Copy between
// two *net.TCPConn, which splices, with nothing else): the most any relay
// gets on this machine. On a small machine the three parties of a relayed
// copy (source, relay, sink) compete for cores where a direct copy has
// two, and that, not the relay's code, sets the ratio; ratio_vs_bare
// shows what warmproxy's own relay costs.
func BenchmarkTunnel1GiB(b *testing.B) {
	if testing.Short() {
		b.Skip("moves 2 GiB per iteration")
	}
	bin := tunnelBuildProxy(b)
	origin := tunnelStartSource(b)
	proxy := tunnelStartProxy(b, bin)

	// Warm up: one small tunnel, so that the RSS baseline includes the
	// goroutines, buffers and splice pipes of a tunnel.
	tunnelCopy(b, proxy.addr, origin, 1<<20)
	rssBefore := tunnelRSS(b, proxy.pid, "VmRSS")

	bare := tunnelStartBareRelay(b)
	var direct, connect, bareRelay time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate the order, so that neither copy always runs on a
		// warmer (or busier) machine.
		if i%2 == 0 {
			direct += tunnelCopy(b, "", origin, tunnelTransfer)
			connect += tunnelCopy(b, proxy.addr, origin, tunnelTransfer)
			bareRelay += tunnelCopy(b, bare, origin, tunnelTransfer)
		} else {
			bareRelay += tunnelCopy(b, bare, origin, tunnelTransfer)
			connect += tunnelCopy(b, proxy.addr, origin, tunnelTransfer)
			direct += tunnelCopy(b, "", origin, tunnelTransfer)
		}
	}
	b.StopTimer()
	rssAfter := tunnelRSS(b, proxy.pid, "VmRSS")
	hwm := tunnelRSS(b, proxy.pid, "VmHWM")

	mbps := func(d time.Duration) float64 {
		return float64(tunnelTransfer) * float64(b.N) / d.Seconds() / 1e6
	}
	b.ReportMetric(mbps(direct), "direct_MB/s")
	b.ReportMetric(mbps(connect), "connect_MB/s")
	b.ReportMetric(direct.Seconds()/connect.Seconds(), "ratio")
	b.ReportMetric(mbps(bareRelay), "bare_relay_MB/s")
	b.ReportMetric(bareRelay.Seconds()/connect.Seconds(), "ratio_vs_bare")
	b.ReportMetric(rssBefore/(1<<20), "rss_before_MiB")
	b.ReportMetric(rssAfter/(1<<20), "rss_after_MiB")
	b.ReportMetric(hwm/(1<<20), "rss_peak_MiB")
}

// tunnelBuildProxy builds ./cmd/warmproxy into a temp dir, or returns
// $WARMPROXY_BIN when set (a prebuilt binary, e.g. on a machine without Go).
func tunnelBuildProxy(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv("WARMPROXY_BIN"); bin != "" {
		return bin
	}
	root, err := filepath.Abs("..")
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "warmproxy")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./cmd/warmproxy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// tunnelSource is an origin that writes as many bytes as each client
// asks for (an 8-byte decimal count, newline), from one buffer, then
// closes.
func tunnelStartSource(b *testing.B) string {
	b.Helper()
	chunk := make([]byte, 1<<20)
	return testnet.Serve(b, func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		n, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
		if err != nil {
			return
		}
		for n > 0 {
			m := min(n, int64(len(chunk)))
			if _, err := c.Write(chunk[:m]); err != nil {
				return
			}
			n -= m
		}
	})
}

// tunnelStartBareRelay is the least a CONNECT relay can do: answer 200,
// then io.Copy both ways between TCP conns. It returns its address.
func tunnelStartBareRelay(b *testing.B) string {
	b.Helper()
	return testnet.Serve(b, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || br.Buffered() > 0 {
			return
		}
		o, err := net.Dial("tcp", req.RequestURI)
		if err != nil {
			return
		}
		defer o.Close()
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		done := make(chan struct{})
		go func() {
			io.Copy(o, c)
			o.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		io.Copy(c, o)
		c.(*net.TCPConn).CloseWrite()
		<-done
	})
}

type tunnelProc struct {
	addr string
	pid  int
}

var tunnelReadyRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// tunnelStartProxy runs the binary, allowing CONNECT to any port.
func tunnelStartProxy(b *testing.B, bin string) tunnelProc {
	b.Helper()
	cmd := exec.Command(bin, "-listen", "127.0.0.1:0", "-connect-ports", "*", "-log-format", "off")
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	addrc := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := tunnelReadyRE.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
		cmd.Wait()
		close(exited)
	}()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case addr := <-addrc:
		return tunnelProc{addr: addr, pid: cmd.Process.Pid}
	case <-time.After(15 * time.Second):
		b.Fatal("proxy printed no ready line within 15s")
		return tunnelProc{}
	}
}

// tunnelCopy asks origin for n bytes, through a CONNECT tunnel of proxy
// unless proxy is "", reads them all, and returns how long that took from
// the request on.
func tunnelCopy(b *testing.B, proxy, origin string, n int64) time.Duration {
	b.Helper()
	addr := origin
	if proxy != "" {
		addr = proxy
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	r := io.Reader(c)
	if proxy != "" {
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("CONNECT %s: %v %v", origin, resp, err)
		}
		r = br // empty after the head: nothing else was sent yet
	}
	buf := make([]byte, 256<<10)
	start := time.Now()
	fmt.Fprintf(c, "%d\n", n)
	var got int64
	for {
		m, err := r.Read(buf)
		got += int64(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatalf("read after %d bytes: %v", got, err)
		}
	}
	took := time.Since(start)
	if got != n {
		b.Fatalf("read %d bytes, want %d", got, n)
	}
	return took
}

// tunnelRSS reads a memory field (VmRSS, VmHWM) of process pid, in bytes.
func tunnelRSS(b *testing.B, pid int, field string) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb * 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
