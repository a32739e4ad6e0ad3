package proxy

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/auth"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/limit"
	"github.com/warmproxy/warmproxy/internal/proxystatus"
)

// Access holds the per-request checks of who may use the proxy: the
// client address list and the proxy credentials. Where a request may go is
// checked by the upstream dialer on the resolved IP (upstream.Guard); its
// refusals are mapped to statuses by accessError.
type Access struct {
	clients *acl.Clients
	auth    *auth.Basic
}

// NewAccess builds the checks cfg asks for, reading the credentials file.
// It returns nil when there is nothing to check.
func NewAccess(cfg config.Parsed) (*Access, error) {
	clients := cfg.AllowClients
	var basic *auth.Basic
	var err error
	if cfg.ProxyAuthFile != "" {
		if basic, err = auth.Load(cfg.ProxyAuthFile); err != nil {
			return nil, err
		}
	}
	if clients == nil && basic == nil {
		return nil, nil
	}
	return &Access{clients: clients, auth: basic}, nil
}

// Clients returns the client list in force, nil when every client may use
// the proxy. The server's accept-time check reads it, so a reload changes
// both checks at once.
func (h *Handler) Clients() *acl.Clients {
	if a := h.access.Load(); a != nil {
		return a.clients
	}
	return nil
}

// SetAccess replaces the client and credential checks (nil: none) for the
// requests that start from now on; a configuration reload calls it.
func (h *Handler) SetAccess(a *Access) { h.access.Store(a) }

// checkAccess answers r itself and returns false when the client may not
// use the proxy. Origin-form requests need no credentials (usage help,
// /healthz, /readyz reach nothing beyond the proxy), except the admin
// paths that tell about traffic (/metrics, /debug/...): those need the
// proxy credentials, in Proxy-Authorization or, for scrapers and
// browsers, in Authorization.
func (h *Handler) checkAccess(a *Access, w http.ResponseWriter, r *http.Request) bool {
	if a.clients != nil {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if d := a.clients.Check(ap.Addr()); err != nil || !d.Allow {
			h.refuse(w, r, &Error{Status: http.StatusForbidden, Type: proxystatus.HTTPRequestDenied,
				Msg: "client " + r.RemoteAddr + " may not use this proxy (" + d.Rule + ")"})
			return false
		}
	}
	if a.auth == nil {
		return true
	}
	vals := r.Header["Proxy-Authorization"]
	if r.Method != http.MethodConnect && r.URL.Host == "" && !r.URL.IsAbs() {
		if !h.privateAdmin(r) {
			return true
		}
		if len(vals) == 0 {
			vals = r.Header["Authorization"]
		}
	}
	_, ok, err := a.auth.CheckContext(r.Context(), vals)
	if err != nil {
		h.refuse(w, r, &Error{Status: http.StatusServiceUnavailable, Type: proxystatus.ConnectionLimitReached, RetryAfter: 1,
			Msg: "too many credential checks in progress; retry later", Err: err})
		return false
	}
	if !ok {
		msg := "proxy authentication required: send Proxy-Authorization: Basic"
		if len(vals) > 0 {
			msg = "proxy credentials not accepted"
		}
		h.refuse(challengeWriter{w}, r, &Error{Status: http.StatusProxyAuthRequired, Type: proxystatus.HTTPRequestDenied, Msg: msg})
		return false
	}
	// Credentials are for this hop only; removeHopByHop drops them too.
	delete(r.Header, "Proxy-Authorization")
	return true
}

// privateAdmin reports whether the origin-form request r is for an admin
// path other than the health checks: one that needs credentials.
func (h *Handler) privateAdmin(r *http.Request) bool {
	if h.admin == nil || r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
		return false
	}
	_, pattern := h.admin.Handler(r)
	return pattern != ""
}

// refuse answers a request that is not let through and logs it.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, e *Error) {
	kind := accesslog.KindRequest
	if r.Method == http.MethodConnect {
		kind = accesslog.KindConnect
	}
	entry := &accesslog.Entry{Start: time.Now(), Client: r.RemoteAddr, Method: r.Method, URL: r.RequestURI, RequestedURL: r.RequestURI, Kind: kind}
	h.fail(w, entry, e)
}

// challengeWriter adds the Basic challenge to a 407 (writeError clears the
// header before writing).
type challengeWriter struct{ http.ResponseWriter }

func (c challengeWriter) WriteHeader(code int) {
	c.Header()["Proxy-Authenticate"] = []string{auth.Challenge}
	c.ResponseWriter.WriteHeader(code)
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
		return &Error{Status: http.StatusLoopDetected, Type: proxystatus.ProxyLoopDetected,
			Msg: "request to " + target + " would loop back into this proxy", Err: err}
	case errors.As(err, &se):
		return &Error{Status: http.StatusServiceUnavailable, Type: proxystatus.ConnectionLimitReached, RetryAfter: 1,
			Msg: "too many requests waiting for " + target + "; retry later", Err: err}
	case errors.As(err, &ie) && ie.What == limit.WhatDNS:
		return &Error{Status: http.StatusServiceUnavailable, Type: proxystatus.DNSError, RetryAfter: 1,
			Msg: "dns lookup of " + target + " not started: " + strconv.Itoa(ie.Max) + " lookups in flight already; retry later", Err: err}
	case errors.As(err, &ie):
		return &Error{Status: http.StatusServiceUnavailable, Type: proxystatus.ConnectionLimitReached, RetryAfter: 1,
			Msg: "too many " + ie.What + " in flight (" + strconv.Itoa(ie.Max) + "); retry later", Err: err}
	}
	return nil
}
