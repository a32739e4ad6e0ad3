package upstream

import (
	"context"
	"net/http"
	"sync/atomic"
)

// Dials that end with their request. net/http's Transport detaches a
// new-connection dial from the request that asked for it (the connection
// may serve the next request), so a request cancelled while its dial is
// under way (a client gone, an HTTP/2 stream reset) leaves the dial, its
// DNS lookup and its TLS handshake behind: 20,000 reset h2c streams made
// 2,150 new origin connections. Here the request's RoundTrip hands its
// dial a binding through the context values (which the Transport keeps):
// when the request's context ends before RoundTrip got a response, the
// dial, its lookup and its handshake are cancelled. A dial whose request
// got its response (on another connection) goes on and pools its
// connection as before.
//
// New-connection dials are also bounded per origin: at most
// MaxDialsPerHost dial (TCP, plus TLS for https) at once, the others
// wait in line, each leaving the line when its request is abandoned. So a
// burst of requests to a slow origin opens connections at the pace the
// origin accepts them, not all at once.

// MaxDialsPerHost is the most new connections dialed at once per origin
// (host:port and scheme; a parent proxy counts as one); more wait.
const MaxDialsPerHost = 32

// abandonKey is the context key of the request's *dialBinding.
type abandonKey struct{}

// dialBinding ties the dials the transport starts for a request to it. It
// is the request's context, plus itself as the value of abandonKey: one
// allocation per request (and the request's copy); the AfterFunc is only
// set up by a dial.
type dialBinding struct {
	context.Context
	// responded is set when the request's RoundTrip got a response.
	responded atomic.Bool
}

func (b *dialBinding) Value(key any) any {
	if key == (abandonKey{}) {
		return b
	}
	return b.Context.Value(key)
}

// gone reports whether the request ended without a response.
func (b *dialBinding) gone() bool { return b.Err() != nil && !b.responded.Load() }

// bindDials returns req carrying a *dialBinding for the dials the
// transport starts for it, and done, to call with RoundTrip's outcome.
// After an error the dial goes on until the request's context ends (the
// proxy's handler returns), then stops.
func bindDials(req *http.Request) (_ *http.Request, done func(gotResponse bool)) {
	b := &dialBinding{Context: req.Context()}
	return req.WithContext(b), func(gotResponse bool) {
		if gotResponse {
			b.responded.Store(true) // the dial, if any, goes on for the pool
		}
	}
}

// dialContext returns ctx, cancelled also when the request that started
// the dial ends without a response, the func that releases it, and a check
// of that which does not wait for the cancellation to arrive (AfterFunc
// runs on its own goroutine).
func dialContext(ctx context.Context) (_ context.Context, release context.CancelFunc, gone func() bool) {
	b, _ := ctx.Value(abandonKey{}).(*dialBinding)
	if b == nil {
		return ctx, func() {}, func() bool { return false }
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(b, func() {
		if !b.responded.Load() {
			cancel(errAbandoned)
		}
	})
	return ctx, func() { stop(); cancel(nil) }, b.gone
}

// errAbandoned is the cause of a dial cancelled with its request.
var errAbandoned = errAbandonedT{}

type errAbandonedT struct{}

func (errAbandonedT) Error() string { return "upstream: dial cancelled: its request ended" }

// dialSlot waits for one of the origin's MaxDialsPerHost dial slots, and
// returns the func that gives it back; none for a request gone.
func (h *hostStats) dialSlot(ctx context.Context, gone func() bool) (func(), error) {
	release := func() { <-h.dialing }
	select {
	case h.dialing <- struct{}{}:
	default:
		h.dialWaits.Add(1)
		select {
		case h.dialing <- struct{}{}:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	// A slot freed as the request ended: select picks either case.
	if ctx.Err() != nil {
		release()
		return nil, context.Cause(ctx)
	}
	if gone() {
		release()
		return nil, errAbandoned
	}
	return release, nil
}
