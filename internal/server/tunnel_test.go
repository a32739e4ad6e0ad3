package server_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/server"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// tunnelAddrHandler is a slog.Handler that reports the address of the
// "listening" record.
type tunnelAddrHandler struct{ addr chan string }

func (h tunnelAddrHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h tunnelAddrHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h tunnelAddrHandler) WithGroup(string) slog.Handler            { return h }
func (h tunnelAddrHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "listening" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "addr" {
				h.addr <- a.Value.String()
			}
			return true
		})
	}
	return nil
}

// tunnelEchoOrigin echoes each connection until EOF, then half-closes.
func tunnelEchoOrigin(t *testing.T) string {
	t.Helper()
	return testnet.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

func tunnelOpen(t *testing.T, proxyAddr, target string) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", target, resp, err)
	}
	return c.(*net.TCPConn), br
}

func tunnelEcho(c net.Conn, br *bufio.Reader, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(br, buf)
	return err
}

// Issue 3: at shutdown, open tunnels get the grace period (they keep
// relaying, and one that ends in time ends normally), then the ones left
// are closed; each gets its access-log line before Run returns.
func TestRunDrainsTunnels(t *testing.T) {
	const grace = 700 * time.Millisecond
	origin := tunnelEchoOrigin(t)
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.ConnectPorts = "*"
	cfg.ShutdownGrace = grace
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	var access testnet.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- server.Run(ctx, config.MustParse(cfg), slog.New(tunnelAddrHandler{addrc}), &access) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-runErr:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not listen within 5s")
	}

	stay, stayR := tunnelOpen(t, addr, origin) // outlives the grace period
	done, doneR := tunnelOpen(t, addr, origin) // ends within it
	if err := tunnelEcho(stay, stayR, "before"); err != nil {
		t.Fatal(err)
	}

	cancel()
	start := time.Now()
	time.Sleep(grace / 4)
	if err := tunnelEcho(stay, stayR, "during grace"); err != nil {
		t.Fatalf("tunnel stopped relaying %v into a %v grace period: %v", time.Since(start), grace, err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("proxy still accepts connections while draining")
	}
	io.WriteString(done, "last words")
	done.CloseWrite()
	if b, err := io.ReadAll(doneR); err != nil || string(b) != "last words" {
		t.Errorf("tunnel that ends within the grace period: read %q, %v", b, err)
	}

	stay.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := stayR.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a tunnel past the grace period, want it closed", n)
	}
	// Only a lower bound: a busy machine may close it late (the read
	// deadline above is the hang guard).
	if took := time.Since(start); took < grace-50*time.Millisecond {
		t.Errorf("open tunnel closed %v after the signal, want after the %v grace period", took, grace)
	}
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of the grace period's end")
	}

	// One TSV line per tunnel, written before Run returned: fields 14
	// and 16 (accesslog.TSVHeader) are kind and end.
	var ends []string
	for _, line := range strings.Split(strings.TrimSpace(access.String()), "\n") {
		f := strings.Split(line, "\t")
		if len(f) > 15 && f[13] == "connect" {
			if f[3] != origin {
				t.Errorf("access line names %q, want the target %q: %q", f[3], origin, line)
			}
			ends = append(ends, f[15])
		}
	}
	if strings.Join(ends, ",") != "eof,shutdown" {
		t.Errorf("tunnel access lines end with %q, want one eof (ended in the grace period) then one shutdown (cut at its end)\n%s", ends, access.String())
	}
}
