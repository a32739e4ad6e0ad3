package rttrelay

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/bench/internal/stats"
)

// The relay must never make an exchange cheaper than the RTT: one
// request/response costs at least one RTT, a fresh connection plus one
// exchange at least two. Only these lower bounds are asserted; how close
// to the RTT the relay stays depends on the machine's load, and
// BenchmarkRelayRoundTrip checks that.
//
// Issue 12: an upper bound here (connect + first round trip under 15 ms)
// failed make test on a busy machine.
func TestRelayRoundTripCostsRTT(t *testing.T) {
	const rtt = 5 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cal, err := Calibrate(ctx, rtt, DefaultSpin, 40)
	if err != nil {
		t.Fatalf("Calibrate: %v", err)
	}
	t.Logf("rtt %v: connect+first %v, median round trip %v", rtt, cal.Connect, stats.MedianDuration(cal.Rounds))
	for i, r := range cal.Rounds {
		if r < rtt {
			t.Errorf("round %d = %v, faster than RTT %v", i, r, rtt)
		}
	}
	if cal.Connect < 2*rtt {
		t.Errorf("connect + first round trip = %v, want at least %v", cal.Connect, 2*rtt)
	}
}

// BenchmarkRelayRoundTrip measures what a configured RTT really costs
// through the relay and fails when the median round trip or the connect
// strays past the slack for timers and scheduling. Run it on a quiet
// machine: go test -run '^$' -bench RelayRoundTrip ./bench/internal/rttrelay
func BenchmarkRelayRoundTrip(b *testing.B) {
	const (
		rtt   = 5 * time.Millisecond
		slack = 1500 * time.Microsecond // unloaded, the median is ~5.1 ms
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var med, connect time.Duration
	for b.Loop() {
		cal, err := Calibrate(ctx, rtt, DefaultSpin, 40)
		if err != nil {
			b.Fatalf("Calibrate: %v", err)
		}
		med, connect = stats.MedianDuration(cal.Rounds), cal.Connect
	}
	b.ReportMetric(float64(med.Microseconds()), "median-rtt-us")
	b.ReportMetric(float64(connect.Microseconds()), "connect-us")
	if med < rtt || med > rtt+slack {
		b.Errorf("median round trip = %v, want in [%v, %v]", med, rtt, rtt+slack)
	}
	if connect > 2*rtt+5*time.Millisecond {
		b.Errorf("connect + first round trip = %v, want about %v", connect, 2*rtt)
	}
}

// Data must arrive intact and in order in both directions, and a half-close
// from the client must reach the server while the reply still flows back.
func TestRelayOrderAndHalfClose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	// Server: read everything until EOF, then send it back and close.
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		got, _ := io.ReadAll(c)
		c.Write(got)
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Target: up.Addr().String(), RTT: 2 * time.Millisecond}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.Serve(ctx, ln)
	}()
	t.Cleanup(cancel)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() {
		// Many small writes so the relay sees many chunks.
		for off := 0; off < len(want); off += 1000 {
			c.Write(want[off:min(off+1000, len(want))])
		}
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("relayed %d bytes, want %d identical bytes", len(got), len(want))
	}
	if r.Accepted() != 1 {
		t.Errorf("Accepted() = %d, want 1", r.Accepted())
	}
}
