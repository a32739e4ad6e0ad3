package proxy

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
)

// serveConnect opens a CONNECT tunnel: dial the target, answer 200, then
// relay bytes both ways (RFC 9110 section 9.3.6).
func (h *Handler) serveConnect(w http.ResponseWriter, r *http.Request) {
	entry := &accesslog.Entry{
		Start:        time.Now(),
		Client:       r.RemoteAddr,
		Method:       r.Method,
		URL:          r.RequestURI,
		RequestedURL: r.RequestURI,
		Kind:         accesslog.KindConnect,
	}
	target := r.RequestURI
	host, portStr, err := net.SplitHostPort(target)
	port, perr := strconv.Atoi(portStr)
	if err != nil || host == "" || perr != nil || port < 1 || port > 65535 {
		h.fail(w, entry, badRequest("CONNECT target %q: want host:port, e.g. CONNECT example.com:443", target))
		return
	}
	if !h.connectPorts.Allows(port) {
		h.fail(w, entry, &Error{Status: http.StatusForbidden, Type: PSHTTPRequestDenied,
			Msg: "CONNECT to port " + portStr + " is not allowed; allow it with -connect-ports (now " + h.connectPorts.String() + ")"})
		return
	}
	origin, err := h.dial(r.Context(), "tcp", target)
	if err != nil {
		if r.Context().Err() != nil {
			h.fail(w, entry, &Error{Status: StatusClientClosed, Type: PSConnectionTerminated, Msg: "client went away", Err: err})
			return
		}
		h.fail(w, entry, errorFor(target, err))
		return
	}
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		origin.Close()
		entry.Status, entry.Error, entry.Detail = http.StatusOK, PSConnectionTerminated, "client went away"
		h.record(entry)
		return
	}
	client, brw, err := rc.Hijack()
	if err != nil {
		origin.Close()
		entry.Status, entry.Error, entry.Detail = http.StatusOK, PSProxyInternalError, "hijack: "+err.Error()
		h.record(entry)
		return
	}
	entry.Status = http.StatusOK
	h.relay(client, origin, buffered(brw.Reader), entry)
}
