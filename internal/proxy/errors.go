package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/auth"
	"github.com/warmproxy/warmproxy/internal/headlimit"
	"github.com/warmproxy/warmproxy/internal/limit"
	"github.com/warmproxy/warmproxy/internal/parentproxy"
	"github.com/warmproxy/warmproxy/internal/proxystatus"
)

// StatusClientClosed is logged when the client went away before a
// response; nothing is written to it (nginx's 499).
const StatusClientClosed = 499

// Error is a failure before any answer went out, with the status and
// Proxy-Status type it maps to. Every error answer of the proxy is one:
// errorFor maps the failures of a dial or a round trip to one, and the
// constructors below name the shapes a handler finds itself; End answers
// and records it.
type Error struct {
	Status int
	// Type is the RFC 9209 error type.
	Type string
	// Msg is the one-line text the client reads; it names the target.
	Msg string
	// RetryAfter, in seconds, is sent as Retry-After when above zero.
	RetryAfter int
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// LateError is a failure after the response head went out: no status
// can be sent any more, so the record keeps the one sent and names the
// failure. Abort says the client connection is cut, so that the client
// sees a truncated message, never a complete short one.
type LateError struct {
	// Type is the RFC 9209 error type, Detail the record's text.
	Type, Detail string
	Abort        bool
}

func (e *LateError) Error() string { return e.Detail }

// ClientGone is the 499 of a client that went away before its answer:
// it is recorded, and nothing is written to it.
func ClientGone(err error) *Error {
	return &Error{Status: StatusClientClosed, Type: proxystatus.ConnectionTerminated, Msg: "client went away", Err: err}
}

// badRequest is a 400 for a request warmproxy cannot or will not forward.
func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: proxystatus.HTTPRequestError, Msg: fmt.Sprintf(format, args...)}
}

// BadBody is the 400 for a request body to target that broke its framing
// or ended short (err says how).
func BadBody(target string, err error) *Error {
	return &Error{Status: http.StatusBadRequest, Type: proxystatus.HTTPRequestError, Msg: "bad request body for " + target, Err: err}
}

// shortBody is the 400 for a request body held for a replay that ended
// before its Content-Length.
func shortBody(err error) *Error {
	return &Error{Status: http.StatusBadRequest, Type: proxystatus.HTTPRequestError, Msg: "request body shorter than its Content-Length", Err: err}
}

// BodyStalled is the 408 for a request body to target of which nothing
// arrived for timeout (-client-body-timeout).
func BodyStalled(target string, timeout time.Duration) *Error {
	return &Error{Status: http.StatusRequestTimeout, Type: proxystatus.HTTPRequestError,
		Msg: "request body for " + target + " stalled: nothing arrived for " + timeout.String() + " (-client-body-timeout)", Err: errBodyStalled}
}

// denied is a refusal of the request by policy: status is 403, 407 or
// 421.
func denied(status int, msg string) *Error {
	return &Error{Status: status, Type: proxystatus.HTTPRequestDenied, Msg: msg}
}

// busy is a 503 with Retry-After for a limit reached; typ says which.
func busy(typ, msg string, err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Type: typ, RetryAfter: 1, Msg: msg, Err: err}
}

// loopDetected is the 508 for a request that would come back to this
// proxy.
func loopDetected(msg string, err error) *Error {
	return &Error{Status: http.StatusLoopDetected, Type: proxystatus.ProxyLoopDetected, Msg: msg, Err: err}
}

// notImplemented is the 501 for a request warmproxy does not serve.
func notImplemented(msg string) *Error {
	return &Error{Status: http.StatusNotImplemented, Type: proxystatus.HTTPRequestError, Msg: msg}
}

// hijackFailed is the 500 for a client connection that could not be
// taken over for what (a CONNECT, an upgrade).
func hijackFailed(what string, err error) *Error {
	return &Error{Status: http.StatusInternalServerError, Type: proxystatus.ProxyInternalError, Msg: "cannot take over the client connection for " + what, Err: err}
}

// unclassified is the 500 for an error no handler mapped to an answer:
// none returns one, and one that did would be this proxy's fault.
func unclassified(err error) *Error {
	return &Error{Status: http.StatusInternalServerError, Type: proxystatus.ProxyInternalError, Msg: "internal error", Err: err}
}

// badGateway is a 502 of RFC 9209 type typ.
func badGateway(typ, msg string, err error) *Error {
	return &Error{Status: http.StatusBadGateway, Type: typ, Msg: msg, Err: err}
}

// BadResponse is the 502 for a response from target that is not one
// (err says why).
func BadResponse(target string, err error) *Error {
	return badGateway(proxystatus.HTTPProtocolError, "bad response from "+target, err)
}

// badStatus is the 502 for a status code out of 100-999 from target.
func badStatus(code int, target string) *Error {
	return badGateway(proxystatus.HTTPProtocolError, "bad status code "+strconv.Itoa(code)+" from "+target, nil)
}

// HeadTooLarge is the 502 for a response head from target over limit
// bytes.
func HeadTooLarge(target string, limit int64, err error) *Error {
	return badGateway(proxystatus.HTTPResponseHeaderSize, target+" sent a response head over "+strconv.FormatInt(limit, 10)+" bytes", err)
}

// upgradeFailed is a 502 for a 101 the client cannot take.
func upgradeFailed(msg string) *Error {
	return badGateway(proxystatus.HTTPUpgradeFailed, msg, nil)
}

// UnaskedSwitch is the 502 for a 101 to a request that asked for no
// upgrade; proto is the protocol switched to, quoted by the caller.
func UnaskedSwitch(target, proto string) *Error {
	return upgradeFailed("origin " + target + " switched to protocol " + proto + " though the client asked for no upgrade")
}

// MidBody is the failure err of a response body after its head went out:
// a client that went away (a write to it failed, WrapClientWrite) is
// only recorded; an origin that failed cuts the client connection.
func MidBody(err error) *LateError {
	if errors.As(err, new(clientWriteError)) {
		return clientGoneMidResponse
	}
	return &LateError{Type: proxystatus.HTTPResponseIncomplete, Detail: "origin failed mid-body: " + err.Error(), Abort: true}
}

var clientGoneMidResponse = &LateError{Type: proxystatus.ConnectionTerminated, Detail: "client went away mid-response"}

// StalledMidResponse is a request body that stalled for timeout
// (-client-body-timeout) after the response head went out.
func StalledMidResponse(timeout time.Duration) *LateError {
	return &LateError{Type: proxystatus.HTTPRequestError, Abort: true,
		Detail: "request body stalled for " + timeout.String() + " (-client-body-timeout) after the response started: connection aborted"}
}

// clientHandshakeFailed is the failure of the client's TLS handshake in
// an intercepted tunnel to target, after its 200.
func clientHandshakeFailed(target string, err error) *LateError {
	return &LateError{Type: proxystatus.TLSProtocolError, Detail: "client tls handshake for " + target + " failed: " + err.Error()}
}

// AfterHead is e, found once the head that answers the request (a
// tunnel's 200 or 101, or a response already under way) went out: it is
// recorded, not answered.
func AfterHead(e *Error) *LateError { return &LateError{Type: e.Type, Detail: e.Error()} }

// errorFor maps an upstream failure on target to the response the client
// gets. It looks at typed errors only, never at error strings.
func errorFor(target string, err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	if ae := accessError(target, err); ae != nil {
		return ae
	}
	var parentErr *parentproxy.Error
	if errors.As(err, &parentErr) {
		return parentError(target, parentErr, err)
	}
	var tooLarge *headlimit.TooLargeError
	if errors.As(err, &tooLarge) {
		return HeadTooLarge(target, tooLarge.Limit, err)
	}
	e := &Error{Status: http.StatusBadGateway, Err: err}
	var (
		dnsErr   *net.DNSError
		opErr    *net.OpError
		certErr  *tls.CertificateVerificationError
		unkAuth  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invErr   x509.CertificateInvalidError
		alertErr tls.AlertError
		recErr   tls.RecordHeaderError
		hsErr    handshakeTimeout
		netErr   net.Error
	)
	switch {
	case errors.As(err, &dnsErr):
		switch {
		case dnsErr.IsTimeout:
			e.Status, e.Type, e.Msg = http.StatusGatewayTimeout, proxystatus.DNSTimeout, "dns lookup of "+target+" timed out"
		case dnsErr.IsNotFound:
			e.Type, e.Msg = proxystatus.DNSError, "dns lookup of "+target+" failed: no such host"
		default:
			e.Type, e.Msg = proxystatus.DNSError, "dns lookup of "+target+" failed"
		}
	case errors.As(err, &certErr), errors.As(err, &unkAuth), errors.As(err, &hostErr), errors.As(err, &invErr):
		e.Type, e.Msg = proxystatus.TLSCertificateError, certMessage(target, err)
	case errors.As(err, &hsErr) && handshakeTimedOut(hsErr):
		// RFC 9209 has no TLS timeout type: the connection to the next
		// hop is not made until its handshake is done.
		limit, _ := hsErr.HandshakeTimedOut()
		e.Status, e.Type = http.StatusGatewayTimeout, proxystatus.ConnectionTimeout
		e.Msg = "tls handshake with " + target + " timed out after " + limit.String() +
			": the origin accepted the TCP connection but did not complete the handshake (bounded by -tls-handshake-timeout)"
	case errors.As(err, &alertErr):
		e.Type, e.Msg = proxystatus.TLSAlertReceived, "tls handshake with "+target+" failed: alert received"
	case errors.As(err, &recErr):
		e.Type, e.Msg = proxystatus.TLSProtocolError, "tls handshake with "+target+" failed: not a tls server"
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Type, e.Msg = proxystatus.ConnectionRefused, "connection to "+target+" refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		e.Type, e.Msg = proxystatus.ConnectionTerminated, "connection to "+target+" reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		e.Type, e.Msg = proxystatus.DestinationIPUnroutable, target+" is unreachable"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		e.Status, e.Type, e.Msg, e.RetryAfter = http.StatusServiceUnavailable, proxystatus.ConnectionLimitReached, "no file descriptor left to reach "+target, 1
	case errors.As(err, &opErr) && opErr.Op == "dial" && opErr.Timeout():
		e.Status, e.Type, e.Msg = http.StatusGatewayTimeout, proxystatus.ConnectionTimeout,
			"connection to "+target+" timed out: no TCP connection within -dial-timeout"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		// The connect and the handshake are classified above: what is
		// left is the wait for the response head.
		e.Status, e.Type, e.Msg = http.StatusGatewayTimeout, proxystatus.HTTPResponseTimeout,
			target+" sent no response head in time (bounded by -response-header-timeout)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		e.Type, e.Msg = proxystatus.HTTPResponseIncomplete, target+" closed the connection before a complete response"
	default:
		e.Type, e.Msg = proxystatus.HTTPProtocolError, "bad response from "+target
	}
	return e
}

// accessError maps the policy's and the limits' refusals to the responses
// the client gets: a denied destination is 403 naming the rule, a loop
// back into the proxy 508, a saturated origin or a full gate (too many
// DNS lookups or requests in flight) 503 with Retry-After. It
// returns nil for other errors.
func accessError(target string, err error) *Error {
	var de *acl.DeniedError
	var se *limit.SaturatedError
	var ie *limit.InFlightError
	switch {
	case errors.As(err, &de):
		typ := proxystatus.DestinationIPProhibited
		if !de.IP.IsValid() {
			typ = proxystatus.HTTPRequestDenied
		}
		return &Error{Status: http.StatusForbidden, Type: typ,
			Msg: "destination " + target + " denied by rule " + de.Decision.Rule + " (" + de.Decision.Reason + ")", Err: err}
	case errors.Is(err, acl.ErrLoop):
		return loopDetected("request to "+target+" would loop back into this proxy", err)
	case errors.As(err, &se):
		return busy(proxystatus.ConnectionLimitReached, "too many requests waiting for "+target+"; retry later", err)
	case errors.As(err, &ie) && ie.What == limit.WhatDNS:
		return busy(proxystatus.DNSError, "dns lookup of "+target+" not started: "+strconv.Itoa(ie.Max)+" lookups in flight already; retry later", err)
	case errors.As(err, &ie):
		return busy(proxystatus.ConnectionLimitReached, "too many "+ie.What+" in flight ("+strconv.Itoa(ie.Max)+"); retry later", err)
	}
	return nil
}

// handshakeTimeout is implemented by *upstream.HandshakeError, the failed
// TLS handshake with an origin.
type handshakeTimeout interface {
	HandshakeTimedOut() (limit time.Duration, timedOut bool)
}

func handshakeTimedOut(e handshakeTimeout) bool {
	_, ok := e.HandshakeTimedOut()
	return ok
}

// certMessage says why target's certificate was refused, in crypto/x509's
// words, and which flag makes warmproxy accept it.
func certMessage(target string, err error) string {
	var (
		certErr *tls.CertificateVerificationError
		unkAuth x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
	)
	host := target
	if h, _, splitErr := net.SplitHostPort(target); splitErr == nil {
		host = h
	}
	reason, fix := err.Error(), "see -ca-file and -upstream-tls"
	switch {
	case errors.As(err, &unkAuth):
		reason = unkAuth.Error()
		fix = "to trust it, add the CA that signed it with -ca-file FILE (every origin) or -upstream-tls '" + host + ",ca=FILE' (this host)"
	case errors.As(err, &hostErr):
		reason = hostErr.Error()
		fix = "-upstream-tls '" + host + ",sni=NAME' verifies (and sends) a name the certificate holds"
	case errors.As(err, &invErr):
		reason = invErr.Error()
		fix = "the origin must fix its certificate; for a development origin only, -upstream-tls '" + host + ",insecure' skips the check"
	case errors.As(err, &certErr) && certErr.Err != nil:
		reason = certErr.Err.Error()
	}
	return "tls certificate of " + target + " not accepted: " + reason + "; " + fix
}

// parentError maps a failure of the parent proxy (-parent-proxy) to a
// 502 that says whether the parent could not be reached, refused
// warmproxy, or could not reach target itself. err is the whole error,
// for the details.
func parentError(target string, pe *parentproxy.Error, err error) *Error {
	via := "parent proxy " + pe.Parent
	e := &Error{Status: http.StatusBadGateway, Err: err}
	switch {
	case pe.AuthFailed:
		e.Type, e.Msg = proxystatus.HTTPRequestDenied, via+" refused warmproxy's credentials for "+target+" ("+pe.Reply+"); check the user:password in -parent-proxy"
	case pe.HTTPStatus == http.StatusForbidden, pe.SOCKSReply == 2:
		e.Type, e.Msg = proxystatus.HTTPRequestDenied, via+" does not allow a connection to "+target+" ("+pe.Reply+")"
	case pe.SOCKSReply == 5:
		e.Type, e.Msg = proxystatus.ConnectionRefused, via+" reports connection to "+target+" refused"
	case pe.SOCKSReply == 3, pe.SOCKSReply == 4:
		e.Type, e.Msg = proxystatus.DestinationIPUnroutable, via+" cannot reach "+target+" ("+pe.Reply+")"
	case pe.SOCKSReply == 6, pe.HTTPStatus == http.StatusGatewayTimeout:
		e.Type, e.Msg = proxystatus.ConnectionTimeout, via+" timed out reaching "+target+" ("+pe.Reply+")"
	case pe.HTTPStatus != 0, pe.SOCKSReply != 0:
		e.Type, e.Msg = proxystatus.DestinationUnavailable, via+" could not connect to "+target+" ("+pe.Reply+")"
	case pe.BadReply:
		e.Type, e.Msg = proxystatus.HTTPProtocolError, via+" sent a bad answer ("+pe.Reply+")"
	case pe.Err != nil:
		// The parent could not be reached, or went silent or away: the
		// causes of a direct dial, told of the parent.
		inner := errorFor(via, pe.Err)
		inner.Err = err
		inner.Msg += " (on the way to " + target + ")"
		return inner
	default:
		e.Type, e.Msg = proxystatus.DestinationUnavailable, via+" could not connect to "+target+" ("+pe.Reply+")"
	}
	return e
}

// writeError sends e as a one-line text/plain response with a Proxy-Status
// field, and a 407 with the Basic challenge. The caller has written
// nothing yet.
func writeError(w http.ResponseWriter, name string, e *Error) int64 {
	h := w.Header()
	// A "Connection: close" set for this exchange (see ambiguousFraming)
	// outlives the cleanup.
	conn := h["Connection"]
	clear(h)
	if conn != nil {
		h["Connection"] = conn
	}
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["Proxy-Status"] = []string{proxyStatus(name, e)}
	if e.RetryAfter > 0 {
		h["Retry-After"] = []string{strconv.Itoa(e.RetryAfter)}
	}
	if e.Status == http.StatusProxyAuthRequired {
		h["Proxy-Authenticate"] = []string{auth.Challenge}
	}
	body := "warmproxy: " + e.Msg + "\n"
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(e.Status)
	n, _ := io.WriteString(w, body)
	return int64(n)
}

// proxyStatus renders an RFC 9209 Proxy-Status field value.
func proxyStatus(name string, e *Error) string {
	v := name + "; error=" + e.Type
	if e.Err != nil {
		v += "; details=" + sfString(e.Err.Error())
	}
	return v
}

// sfString renders s as an RFC 8941 structured-field string: printable
// ASCII, with quote and backslash escaped.
func sfString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s) && i < 256; i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
