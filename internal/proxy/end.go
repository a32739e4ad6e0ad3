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
// A w that holds the answer until told (sender) sends it here, after
// the record, as net/http's side flushes its answer after the handler
// recorded: a client that has its answer finds the exchange counted. A
// send that fails is not recorded again (nor is a failed flush there).
func (h *Handler) End(w http.ResponseWriter, entry *accesslog.Entry, err error) {
	answered := false
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
	if s, ok := w.(sender); ok && answered {
		s.Send()
	}
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

// sender is a ResponseWriter that holds what it is given until Send
// writes it to the client (the connection server's, which renders its
// answers through net/http's header code).
type sender interface {
	Send() error
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
