package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// Issue 15: a TLS handshake that hangs (the origin takes the TCP
// connection and never answers the ClientHello) fails as a
// *HandshakeError that says it timed out and under which bound, on the
// pooled path and on DialTLS (upgrades) alike, so the proxy can tell it
// from a slow response.
func TestHandshakeTimeoutError(t *testing.T) {
	// Issue 16: waits on real time or sockets; runs in parallel. Go
	// starts the parallel tests once the others, whose leak checks
	// (newTestUpstream's) see every goroutine, have ended.
	t.Parallel()
	silent := testnet.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
	})
	cfg := config.Default()
	cfg.TLSHandshakeTimeout = 200 * time.Millisecond
	up, err := New(config.MustParse(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Transport().CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, dialErr := up.DialTLS(ctx, "tcp", silent)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+silent+"/", nil)
	_, rtErr := up.Transport().RoundTrip(req)
	for name, err := range map[string]error{"DialTLS": dialErr, "RoundTrip": rtErr} {
		var he *HandshakeError
		if !errors.As(err, &he) {
			t.Errorf("%s: %v (%T), want a *HandshakeError", name, err, err)
			continue
		}
		if limit, timedOut := he.HandshakeTimedOut(); !timedOut || limit != 200*time.Millisecond {
			t.Errorf("%s: HandshakeTimedOut() = %v, %v; want 200ms, true", name, limit, timedOut)
		}
		if got, want := he.Error(), "tls handshake timed out after 200ms"; got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
