// Package headlimit bounds the response heads warmproxy reads by hand:
// the answer to an upgrade request, which goes out on a connection of its
// own, and a parent proxy's reply to CONNECT. net/http's ReadResponse
// reads header lines for as long as they come; a Reader under the
// bufio.Reader it parses from stops it at MaxResponseBytes, as
// http.Transport's MaxResponseHeaderBytes does for pooled requests.
package headlimit

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
)

// MaxResponseBytes bounds every response head warmproxy reads, from an
// origin or a parent proxy: status line and header fields, 1 MiB, interim
// (1xx) heads before the final one included. The pool's Transport uses
// the same value as MaxResponseHeaderBytes, so a head too large on one
// path is too large on all.
const MaxResponseBytes = 1 << 20

// TooLargeError is the error for a head over its bound.
type TooLargeError struct {
	// Limit is the bound in bytes.
	Limit int64
}

func (e *TooLargeError) Error() string {
	return "response head over " + strconv.FormatInt(e.Limit, 10) + " bytes"
}

// Reader passes reads through to R while counting them against a limit;
// a read past the limit fails with a *TooLargeError. Lift removes the
// limit once the head is read, so that the body reads on unbounded.
type Reader struct {
	r     io.Reader
	limit int64
	left  int64 // -1 once lifted
}

// NewReader returns a Reader over r that allows limit bytes.
func NewReader(r io.Reader, limit int64) *Reader {
	return &Reader{r: r, limit: limit, left: limit}
}

func (l *Reader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return l.r.Read(p)
	}
	if l.left == 0 {
		return 0, &TooLargeError{Limit: l.limit}
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// Exceeded reports whether reads hit the limit.
func (l *Reader) Exceeded() bool { return l.left == 0 }

// Lift removes the limit.
func (l *Reader) Lift() { l.left = -1 }

// ReadResponse reads a response head (and sets up its body) from br,
// which reads from l, as http.ReadResponse does for req. A head that does
// not fit in what is left of l's limit fails with a *TooLargeError,
// whatever error the parser saw once reads stopped.
func ReadResponse(l *Reader, br *bufio.Reader, req *http.Request) (*http.Response, error) {
	resp, err := http.ReadResponse(br, req)
	if err != nil && l.Exceeded() {
		return nil, &TooLargeError{Limit: l.limit}
	}
	return resp, err
}
