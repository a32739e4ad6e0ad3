package proxy

import (
	"net/http"
	"net/netip"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/auth"
	"github.com/warmproxy/warmproxy/internal/config"
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

// checkAccess returns the refusal of r when the client may not use the
// proxy. Origin-form requests need no credentials (usage help, /healthz,
// /readyz reach nothing beyond the proxy), except the admin paths that
// tell about traffic (/metrics, /debug/...): those need the proxy
// credentials, in Proxy-Authorization or, for scrapers and browsers, in
// Authorization. The credentials go no further: removeHopByHop drops
// Proxy-Authorization from what is forwarded.
func (h *Handler) checkAccess(a *Access, r *http.Request) *Error {
	if a.clients != nil {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if d := a.clients.Check(ap.Addr()); err != nil || !d.Allow {
			return denied(http.StatusForbidden, "client "+r.RemoteAddr+" may not use this proxy ("+d.Rule+")")
		}
	}
	if a.auth == nil {
		return nil
	}
	vals := r.Header["Proxy-Authorization"]
	if r.Method != http.MethodConnect && r.URL.Host == "" && !r.URL.IsAbs() {
		if !h.privateAdmin(r) {
			return nil
		}
		if len(vals) == 0 {
			vals = r.Header["Authorization"]
		}
	}
	_, ok, err := a.auth.CheckContext(r.Context(), vals)
	if err != nil {
		return busy(proxystatus.ConnectionLimitReached, "too many credential checks in progress; retry later", err)
	}
	if !ok {
		msg := "proxy authentication required: send Proxy-Authorization: Basic"
		if len(vals) > 0 {
			msg = "proxy credentials not accepted"
		}
		return denied(http.StatusProxyAuthRequired, msg)
	}
	return nil
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

// refuse answers a request that is not let through with e, and records
// it.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, e *Error) {
	kind := accesslog.KindRequest
	if r.Method == http.MethodConnect {
		kind = accesslog.KindConnect
	}
	h.End(w, newEntry(r, r.RequestURI, kind), e)
}
