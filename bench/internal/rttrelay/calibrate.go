package rttrelay

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Calibration is what a ping-pong through the relay measured.
type Calibration struct {
	RTT     time.Duration   // configured RTT
	Connect time.Duration   // dial + first 1-byte round trip (expect ~2 RTT)
	Rounds  []time.Duration // each later 1-byte round trip (expect ~1 RTT)
}

// Calibrate starts a loopback echo server and a relay in front of it, then
// measures n 1-byte ping-pongs through one connection. It shows what the
// configured RTT really costs once Go's timers and scheduling are included.
func Calibrate(ctx context.Context, rtt, spin time.Duration, n int) (Calibration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	echoLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Calibration{}, fmt.Errorf("calibrate: listen echo: %v", err)
	}
	relayLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		echoLn.Close()
		return Calibration{}, fmt.Errorf("calibrate: listen relay: %v", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		serveEcho(ctx, echoLn)
	}()
	r := &Relay{Target: echoLn.Addr().String(), RTT: rtt, Spin: spin}
	go func() {
		defer wg.Done()
		r.Serve(ctx, relayLn)
	}()

	cal := Calibration{RTT: rtt}
	start := time.Now()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", relayLn.Addr().String())
	if err != nil {
		return cal, fmt.Errorf("calibrate: dial relay: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Duration(n+10) * (rtt + time.Second)))
	b := []byte{'x'}
	for i := range n + 1 {
		t0 := time.Now()
		if _, err := c.Write(b); err != nil {
			return cal, fmt.Errorf("calibrate: write: %v", err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return cal, fmt.Errorf("calibrate: read: %v", err)
		}
		if i == 0 {
			cal.Connect = time.Since(start)
			continue
		}
		cal.Rounds = append(cal.Rounds, time.Since(t0))
	}
	return cal, nil
}

// serveEcho echoes every connection on ln until ctx is done.
func serveEcho(ctx context.Context, ln net.Listener) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			stopc := context.AfterFunc(ctx, func() { c.Close() })
			defer stopc()
			io.Copy(c, c)
		}()
	}
}
