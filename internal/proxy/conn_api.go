package proxy

import "net/http"

// What the HTTP/1.1 connection server (internal/h1server) shares with the
// Handler: its settings and the one error vocabulary; End (end.go) is
// its record too, so a request reads the same whichever side served it.

// PerRequestChecks reports whether requests need the Handler's own
// per-request checks of the client (-allow-clients, -proxy-auth-file).
func (h *Handler) PerRequestChecks() bool { return h.access.Load() != nil }

// RetryBodyBytes is -retry-body-bytes: the largest request body held
// whole, so a stale connection's request can be sent again.
func (h *Handler) RetryBodyBytes() int64 { return h.retryBodyBytes }

// ViaName is this proxy's pseudonym in Via and Proxy-Status.
func (h *Handler) ViaName() string { return h.viaName }

// ProtocolHeader is the name of the field that picks the origin's scheme,
// in canonical form.
func (h *Handler) ProtocolHeader() string { return h.protocolHeader }

// TrailersDropped counts n trailer fields dropped in direction.
func (h *Handler) TrailersDropped(direction string, n int) { h.trailersDropped(direction, n) }

// ErrorFor maps an upstream failure on target to the client's response
// (errorFor).
func ErrorFor(target string, err error) *Error { return errorFor(target, err) }

// CheckAuthority rejects a target authority with no host, a bad host or a
// bad port.
func CheckAuthority(hostport string) *Error { return checkAuthority(hostport) }

// MaxInterim bounds the interim (1xx) responses relayed for one request.
const MaxInterim = max1xx

// ErrTooManyInterim is the cause of a response with more than MaxInterim
// interim responses.
var ErrTooManyInterim = errTooManyInterim

// ErrBodyStalled is the cause of a request whose body stalled longer than
// -client-body-timeout.
var ErrBodyStalled = errBodyStalled

// WrapClientWrite marks err as a failure to write to the client.
func WrapClientWrite(err error) error { return clientWriteError{err} }

// WriteError answers e on w for a refusal made before any request
// reached the Handler (the server's client bounds): the head and body
// every other error gets. name is the proxy's name in Proxy-Status.
func WriteError(w http.ResponseWriter, name string, e *Error) { writeError(w, name, e) }
