package proxy

import (
	"net/http"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
)

// End ends an exchange, whichever side served it (the Handler, or the
// connection server of internal/h1server): it is the one place an error
// becomes an answer and a record. err is nil, an *Error (answered on w
// with its status, Proxy-Status and one-line body; a client gone gets
// nothing) or a *LateError (the head went out: only recorded). Then the
// entry gets its duration and is recorded.
//
// It reports whether it answered on w. The connection server's w holds
// the answer, and the connection server sends it once End returns: after
// the record, as net/http's side flushes its answer after the handler
// recorded, so a client that has its answer finds the exchange counted.
func (h *Handler) End(w http.ResponseWriter, entry *accesslog.Entry, err error) (answered bool) {
	switch e := err.(type) {
	case nil:
	case *LateError:
		entry.Error, entry.Detail = e.Type, e.Detail
	case *Error:
		answered = h.answer(w, entry, e)
	default:
		answered = h.answer(w, entry, unclassified(err))
	}
	entry.Duration = time.Since(entry.Start)
	h.record(entry)
	return answered
}

// Answers reports whether End answers err on its writer: err is a failure
// the client is told of, not a late one (the head went out) or a client
// gone.
func Answers(err error) bool {
	switch e := err.(type) {
	case nil, *LateError:
		return false
	case *Error:
		return e.Status != StatusClientClosed
	}
	return true
}

// answer writes e to w, unless the client is gone, and sets what it says
// in entry. It reports whether it wrote.
func (h *Handler) answer(w http.ResponseWriter, entry *accesslog.Entry, e *Error) bool {
	entry.Status, entry.Error, entry.Detail = e.Status, e.Type, e.Error()
	if e.Status == StatusClientClosed {
		return false
	}
	entry.BytesOut = writeError(w, h.viaName, e)
	return true
}

// abortIfCut ends the handler with http.ErrAbortHandler when err, as End
// recorded it, cuts the client connection: net/http's server then closes
// it without ending the response, so the client sees a truncated
// message.
func abortIfCut(err error) {
	if le, ok := err.(*LateError); ok && le.Abort {
		panic(http.ErrAbortHandler)
	}
}
