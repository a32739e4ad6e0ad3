package upstream

import (
	"context"
	"net/http"
)

// Dials that end with their request. net/http's Transport detaches a
// new-connection dial from the request that asked for it (the connection
// may serve the next request), so a request cancelled while its dial is
// under way (a client gone, an HTTP/2 stream reset) leaves the dial, its
// DNS lookup and its TLS handshake behind: 20,000 reset h2c streams made
// 2,150 new origin connections. Here the request's RoundTrip hands its
// dial an "abandoned" signal through the context values (which the
// Transport keeps): it fires when the request ends without a response,
// and cancels the dial, the lookup and the handshake. A dial whose request
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

// abandonKey is the context key of the request's abandoned signal: a
// context cancelled when the request ended without a response.
type abandonKey struct{}

// bindDials returns req carrying an abandoned signal for the dials the
// transport starts for it, and done, to call with RoundTrip's outcome.
func bindDials(req *http.Request) (_ *http.Request, done func(gotResponse bool)) {
	abandoned, abandon := context.WithCancel(context.Background())
	stop := context.AfterFunc(req.Context(), abandon)
	req = req.WithContext(context.WithValue(req.Context(), abandonKey{}, abandoned))
	return req, func(gotResponse bool) {
		if gotResponse && stop() {
			return // the dial, if any, goes on for the pool
		}
		abandon() // an error: nothing awaits the dial
	}
}

// dialContext returns ctx, cancelled also when the request that started
// the dial is abandoned, and the func that releases it.
func dialContext(ctx context.Context) (context.Context, context.CancelFunc) {
	abandoned, _ := ctx.Value(abandonKey{}).(context.Context)
	if abandoned == nil {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(abandoned, func() { cancel(errAbandoned) })
	return ctx, func() { stop(); cancel(nil) }
}

// errAbandoned is the cause of a dial cancelled with its request.
var errAbandoned = errAbandonedT{}

type errAbandonedT struct{}

func (errAbandonedT) Error() string { return "upstream: dial cancelled: its request ended" }

// dialSlot waits for one of the origin's MaxDialsPerHost dial slots, and
// returns the func that gives it back.
func (h *hostStats) dialSlot(ctx context.Context) (func(), error) {
	select {
	case h.dialing <- struct{}{}:
		return func() { <-h.dialing }, nil
	default:
	}
	h.dialWaits.Add(1)
	select {
	case h.dialing <- struct{}{}:
		return func() { <-h.dialing }, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}
