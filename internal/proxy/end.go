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
// A w that holds the answer until told (sender) sends it here, before
// the record; a send that fails records the client as gone.
func (h *Handler) End(w http.ResponseWriter, entry *accesslog.Entry, err error) {
	switch e := err.(type) {
	case nil:
	case *LateError:
		entry.Error, entry.Detail = e.Type, e.Detail
	case *Error:
		h.answer(w, entry, e)
	default:
		h.answer(w, entry, unclassified(err))
	}
	entry.Duration = time.Since(entry.Start)
	h.record(entry)
}

// answer writes e to w and sets what it says in entry.
func (h *Handler) answer(w http.ResponseWriter, entry *accesslog.Entry, e *Error) {
	entry.Status, entry.Error, entry.Detail = e.Status, e.Type, e.Error()
	if e.Status == StatusClientClosed {
		return
	}
	entry.BytesOut = writeError(w, h.viaName, e)
	if s, ok := w.(sender); ok {
		if err := s.Send(); err != nil {
			gone := ClientGone(err)
			entry.Status, entry.Error, entry.Detail = gone.Status, gone.Type, gone.Error()
		}
	}
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
