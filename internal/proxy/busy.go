package proxy

import (
	"net/http"
	"strconv"

	"github.com/warmproxy/warmproxy/internal/proxystatus"
)

// The proxy-wide client bounds refuse before any request is classified:
// the server counts and decides, and these are its answers, in the one
// error vocabulary.

// ConnsBusy is the answer to a client connection over -max-client-conns
// (max), written before its first request is read.
func ConnsBusy(max int64) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Type: proxystatus.ConnectionLimitReached, RetryAfter: 1,
		Msg: "too many client connections (max-client-conns " + strconv.FormatInt(max, 10) + "); retry later"}
}

// RequestsBusy is the answer to a request over -max-requests-in-flight
// (max); err is the gate's refusal.
func RequestsBusy(max int, err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Type: proxystatus.ConnectionLimitReached, RetryAfter: 1,
		Msg: "too many requests in flight (max-requests-in-flight " + strconv.Itoa(max) + "); retry later", Err: err}
}
