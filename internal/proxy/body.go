package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// errBodyStalled is the cause a request is canceled with when its body
// stalled longer than -client-body-timeout.
var errBodyStalled = errors.New("request body stalled")

// bodyWatch ends a request whose body stops arriving. Its clock runs only
// while a read of the client's body waits (the transport's, on its write
// goroutine, or the handler's own), so an origin that reads slowly never
// counts against the client. When a read has waited longer than the
// timeout, the watch unblocks it (a read deadline in the past on the
// client's connection or stream) and cancels the upstream request with
// errBodyStalled; the handler then answers 408, or aborts a response
// already under way.
//
// The timer runs on a goroutine of its own. Like the interim responses
// (clientGuard), it touches the client's connection only until the
// handler closes the watch, before it returns.
type bodyWatch struct {
	timeout time.Duration
	rc      *http.ResponseController
	cancel  context.CancelCauseFunc
	timer   *time.Timer
	stalled atomic.Bool
	// eof is set once the body was read to its end.
	eof atomic.Bool
	// duplex is set (by bodyWriter, on the handler's goroutine) when the
	// final head went out before eof: the rest of the body is not read.
	duplex bool
	// body is the client's request body, as the server gave it.
	body io.Closer

	mu     sync.Mutex
	closed bool
}

// watchBody returns the context the upstream request of r goes out with,
// the watch on r's body, and the writer the handler answers through (see
// bodyWriter); as given, with a nil watch, where r has no body or there
// is no timeout.
func (h *Handler) watchBody(ctx context.Context, w http.ResponseWriter, r *http.Request) (context.Context, *bodyWatch, http.ResponseWriter) {
	if h.clientBodyTimeout <= 0 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return ctx, nil, w
	}
	rc := http.NewResponseController(w)
	ctx, cancel := context.WithCancelCause(ctx)
	b := &bodyWatch{timeout: h.clientBodyTimeout, rc: rc, cancel: cancel, body: r.Body}
	b.timer = time.AfterFunc(b.timeout, b.fire)
	b.timer.Stop()
	return ctx, b, &bodyWriter{ResponseWriter: w, watch: b, http1: r.ProtoMajor < 2}
}

// wrap returns rc read under the watch (rc itself for a nil watch).
func (b *bodyWatch) wrap(rc io.ReadCloser) io.ReadCloser {
	if b == nil {
		return rc
	}
	return &watchedBody{rc: rc, watch: b}
}

// fire ends the request: the client's body read has waited too long.
func (b *bodyWatch) fire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.stalled.Store(true)
	// A read deadline in the past wakes the read that waits; the
	// connection is not reused after (the 408 says Connection: close).
	b.rc.SetReadDeadline(time.Now())
	b.cancel(errBodyStalled)
}

// hasStalled reports whether the body stalled and the watch fired.
func (b *bodyWatch) hasStalled() bool { return b != nil && b.stalled.Load() }

// stop ends the watch for good, waiting for a fire in progress. Before a
// hijack the upgrade path calls it: from then on the connection is the
// tunnel's.
func (b *bodyWatch) stop() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.timer.Stop()
	b.cancel(context.Canceled)
}

// LingerWait bounds a lingering close: how long what a client still
// sends after an answer that ended its connection is read and dropped.
const LingerWait = 500 * time.Millisecond

// close stops the watch; the handler calls it before it returns. After
// an answer that went out before the body ended (the connection closes
// after it), it lingers: the answer is flushed, then the rest of the body
// is read and dropped for at most LingerWait. Closing at once, with the
// client's bytes unread, would send a reset that can destroy the answer
// before the client reads it (RFC 9112 section 9.6); and net/http's
// server, left to itself, would read and discard up to 256 KiB of the
// rest with no deadline, for as long as the client trickles.
func (b *bodyWatch) close() {
	if b == nil {
		return
	}
	b.stop()
	if b.duplex && !b.eof.Load() {
		b.rc.Flush()
		b.rc.SetReadDeadline(time.Now().Add(LingerWait))
		b.body.Close()
	}
}

// stallError is the 408 for a body that stalled on its way to target.
func (b *bodyWatch) stallError(target string) *Error { return BodyStalled(target, b.timeout) }

// watchedBody is a client's request body read under a bodyWatch.
type watchedBody struct {
	rc    io.ReadCloser
	watch *bodyWatch
}

func (w *watchedBody) Read(p []byte) (int, error) {
	if w.watch.stalled.Load() {
		return 0, errBodyStalled
	}
	w.watch.timer.Reset(w.watch.timeout)
	n, err := w.rc.Read(p)
	w.watch.timer.Stop()
	switch {
	case err == io.EOF:
		w.watch.eof.Store(true)
	case err != nil && w.watch.stalled.Load():
		err = errBodyStalled
	}
	return n, err
}

func (w *watchedBody) Close() error { return w.rc.Close() }

// closeAfter marks the response to r so the client's HTTP/1 connection
// closes after it: the rest of a stalled body is never read. An HTTP/2
// stream needs nothing (its body was closed alone), and "Connection:
// close" would shut down every stream of the connection.
func closeAfter(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor < 2 {
		w.Header()["Connection"] = []string{"close"}
	}
}

// bodyWriter is the client's ResponseWriter while its request body may
// still be on its way upstream (an origin that answers an upload before
// the upload ends, or an error). When the final head goes out before the
// body was read to its end, it makes the exchange full duplex: otherwise
// net/http's HTTP/1 server would read and discard the rest of the body
// itself, there and then, taking those bytes from the transport (the
// origin got a short body that looked whole) or holding the head back
// until the client sent them. And it closes the connection after the
// response, as the rest of the body is not read to its end for sure.
type bodyWriter struct {
	http.ResponseWriter
	watch *bodyWatch
	http1 bool
	wrote bool
}

func (w *bodyWriter) WriteHeader(code int) {
	if code >= 200 && !w.wrote {
		w.wrote = true
		if w.http1 && !w.watch.eof.Load() {
			w.watch.rc.EnableFullDuplex()
			w.watch.duplex = true
			w.Header()["Connection"] = []string{"close"}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *bodyWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *bodyWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer
// (Hijack for upgrades).
func (w *bodyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
