package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"time"
)

// HandshakeError is a TLS handshake with an origin that failed after the
// TCP connection was made, so the proxy can tell this phase from the
// connect before it and the response after it. Timeout is the bound the
// handshake ran under (-tls-handshake-timeout, 0 for none); TimedOut says
// it ran out: the origin accepted the connection and never finished the
// handshake.
type HandshakeError struct {
	Addr     string
	Timeout  time.Duration
	TimedOut bool
	Err      error
}

// Error is the handshake's own error, or for a timeout what ran out
// instead of "context deadline exceeded".
func (e *HandshakeError) Error() string {
	if e.TimedOut {
		return "tls handshake timed out after " + e.Timeout.String()
	}
	return e.Err.Error()
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// HandshakeTimedOut reports whether the handshake ran out of time, and
// the bound it had. The proxy (which does not import this package) finds
// it with errors.As on an interface with this method.
func (e *HandshakeError) HandshakeTimedOut() (time.Duration, bool) { return e.Timeout, e.TimedOut }

// handshake runs tc's client handshake with addr, bounded by timeout when
// it is above 0, and returns its failure as a *HandshakeError.
func handshake(ctx context.Context, tc *tls.Conn, addr string, timeout time.Duration) error {
	hctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	err := tc.HandshakeContext(hctx)
	if err == nil {
		return nil
	}
	return &HandshakeError{
		Addr:     addr,
		Timeout:  timeout,
		TimedOut: timeout > 0 && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded),
		Err:      err,
	}
}
