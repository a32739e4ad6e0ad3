package upstream

import "net/http"

// Attempt is what is known of a request that failed on a connection, for
// MayReplay.
type Attempt struct {
	// Method and Header are the request's.
	Method string
	Header http.Header
	// Reused: the connection came from the pool (or the prewarm stash).
	Reused bool
	// NothingWritten: not a byte of the request reached the connection
	// (the first write failed: the origin's close or RST was already
	// there, or the connection was retired an instant before).
	NothingWritten bool
	// ResponseStarted: a byte of the response arrived.
	ResponseStarted bool
	// HasBody: the request has a body; Rewindable: the proxy holds it
	// whole (-retry-body-bytes) and can send it again.
	HasBody, Rewindable bool
	// Replays counts the times it was already sent again.
	Replays int
}

// MayReplay is today's stale-connection rule, that of net/http's
// Transport (shouldRetryRequest) under the proxy's buffering of small
// bodies (bufferRetryBody): a request that failed on a reused connection
// before any byte of the response arrived is sent once more, on a fresh
// connection, when
//   - not a byte of it was written (it never reached the origin), and its
//     body, if any, can be sent again; or
//   - it was written but is idempotent (GET, HEAD, OPTIONS, TRACE, or it
//     carries Idempotency-Key or X-Idempotency-Key) with no body or one
//     that can be sent again: the origin closed an idle connection as the
//     request arrived, and the request may be repeated by definition
//     (RFC 9110 section 9.2.2).
//
// Anything else may have reached the origin and is never replayed: a
// POST whose bytes went out fails with 502. A failure on a new connection
// is the origin's answer, not a stale connection, and is not replayed.
func MayReplay(a Attempt) bool {
	if !a.Reused || a.ResponseStarted || a.Replays > 0 {
		return false
	}
	if a.HasBody && !a.Rewindable {
		return false
	}
	return a.NothingWritten || idempotent(a.Method, a.Header)
}

// idempotent is net/http's isReplayable test of the method and fields.
func idempotent(method string, h http.Header) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, ok := h["Idempotency-Key"]
	if !ok {
		_, ok = h["X-Idempotency-Key"]
	}
	return ok
}
