package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"
)

// tlsStep is the TLS half of every new https connection to an origin: the
// origin's -upstream-tls rule over the transport's settings (roots,
// session cache, ALPN offer), then the handshake, bounded by
// -tls-handshake-timeout. The transport's TLS dials (track.go, which
// count the outcome) and DialTLS take it.
type tlsStep struct {
	rules *tlsRules
	// base is the transport's config: the transport adds "h2" to its
	// NextProtos on first use, and client clones it at every dial, so
	// the offer reaches each handshake (configureHTTP2). Nil when the
	// transport has none: clientConfig then starts from an empty one.
	base    *tls.Config
	timeout time.Duration
}

// newTLSStep is the TLS step of t's dials under rules.
func newTLSStep(rules *tlsRules, t *http.Transport) tlsStep {
	return tlsStep{rules: rules, base: t.TLSClientConfig, timeout: t.TLSHandshakeTimeout}
}

// client returns c as the client end of a TLS connection to addr, its
// handshake not yet run; protos, when set, replace the ALPN offer.
func (s tlsStep) client(c net.Conn, addr string, protos []string) *tls.Conn {
	cfg := s.rules.clientConfig(s.base, addr)
	if protos != nil {
		cfg.NextProtos = protos
	}
	return tls.Client(c, cfg)
}

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

// handshake runs tc's client handshake with addr, bounded by the step's
// timeout when it is above 0, and returns its failure as a
// *HandshakeError.
func (s tlsStep) handshake(ctx context.Context, tc *tls.Conn, addr string) error {
	timeout := s.timeout
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
