// Package proxy owns warmproxy's http.Handler. It classifies each request
// (absolute-form, CONNECT, upgrade, origin-form), cleans hop-by-hop
// headers, streams bodies and trailers both ways and maps failures to
// statuses. It dials nothing itself: it is given a RoundTripper and a dial
// function.
package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
)

// DialFunc opens a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Handler is the proxy. Build it with New.
type Handler struct {
	transport      http.RoundTripper
	dial           DialFunc
	protocolHeader string
	viaName        string
	via            viaValues
	retryBodyBytes int64
	connectPorts   config.Ports
	tunnelIdle     time.Duration
	// clientBodyTimeout ends a request whose body stalls (body.go).
	clientBodyTimeout time.Duration

	// dialTLS opens TLS connections for upgrades to https origins, which
	// go out on a connection of their own (upgrade.go).
	dialTLS               DialFunc
	responseHeaderTimeout time.Duration

	// admin serves origin-form requests for its paths (/metrics,
	// /healthz, ...); other origin-form requests get usage help.
	admin *http.ServeMux
	// record receives each finished request's entry.
	record func(*accesslog.Entry)
	// tunnels registers hijacked connections so shutdown can close them.
	tunnels ConnTracker
	log     *slog.Logger
	// access checks clients and credentials (access.go); nil checks none.
	// SetAccess swaps it on a configuration reload.
	access atomic.Pointer[Access]
	// routes are the base-URL routes (route.go), longest prefix first.
	routes routes
	// intercept, when not nil, picks the CONNECT targets whose TLS is
	// terminated here (intercept.go); inner are the limits of the server
	// inside such a tunnel.
	intercept    Interceptor
	inner        innerSettings
	innerServers innerSet
	// trailersDropped counts trailer fields not allowed in trailers.
	trailersDropped func(direction string, n int)
	// innerH1, when set, serves HTTP/1.1 inside intercepted tunnels.
	innerH1 InnerServer
}

// Directions of a trailer, as Options.TrailersDropped gets them.
const (
	TrailerRequest  = "request"
	TrailerResponse = "response"
)

// ConnTracker registers hijacked connections for shutdown. Track returns
// a function that removes c again.
type ConnTracker interface {
	Track(c net.Conn) (untrack func())
}

// Options are the parts a Handler is built from.
type Options struct {
	Transport http.RoundTripper
	Dial      DialFunc
	Config    config.Parsed
	Admin     *http.ServeMux
	Record    func(*accesslog.Entry)
	Tunnels   ConnTracker
	Log       *slog.Logger

	// DialTLS dials and completes a TLS handshake with the pool's TLS
	// settings, for upgrade requests to https origins.
	DialTLS DialFunc
	// Access, when not nil, checks clients and credentials first.
	Access *Access
	// Intercept, when not nil, intercepts the CONNECT targets it matches
	// (-intercept).
	Intercept Interceptor
	// TrailersDropped, when not nil, is told of the trailer fields
	// dropped because RFC 9110 section 6.5.1 keeps them out of trailers:
	// n fields of one message, going in direction (TrailerRequest or
	// TrailerResponse). It may run on a transport goroutine.
	TrailersDropped func(direction string, n int)
}

// InnerServer serves the HTTP/1.1 connection c inside an intercepted
// tunnel to target (internal/h1server); what it does not serve it hands
// to fallback, with the bytes it read. It returns when c is done.
type InnerServer func(c net.Conn, target string, fallback func(net.Conn))

// SetInnerServer makes s serve the HTTP/1.1 connections inside
// intercepted tunnels; without one, net/http's server does.
func (h *Handler) SetInnerServer(s InnerServer) { h.innerH1 = s }

// New returns a Handler for o.Config, a Config that passed Parse.
func New(o Options) *Handler {
	h := &Handler{
		transport:      o.Transport,
		dial:           o.Dial,
		protocolHeader: http.CanonicalHeaderKey(o.Config.ProtocolHeader),
		viaName:        o.Config.ViaName,
		via:            newViaValues(o.Config.ViaName),
		retryBodyBytes: o.Config.RetryBodyBytes,
		connectPorts:   o.Config.ConnectPorts,
		tunnelIdle:     o.Config.TunnelIdleTimeout,

		clientBodyTimeout: o.Config.ClientBodyTimeout,
		admin:             o.Admin,
		record:            o.Record,
		tunnels:           o.Tunnels,
		log:               o.Log,
	}
	h.access.Store(o.Access)
	h.intercept = o.Intercept
	h.inner = innerSettings{
		handshakeTimeout:  o.Config.ClientHeaderTimeout,
		readHeaderTimeout: o.Config.ClientHeaderTimeout,
		idleTimeout:       o.Config.ClientIdleTimeout,
		maxHeaderBytes:    o.Config.MaxHeaderBytes,
		maxStreams:        o.Config.ClientH2CMaxStreams,
	}
	h.routes = newRoutes(o.Config.Routes)
	h.dialTLS, h.responseHeaderTimeout = o.DialTLS, o.Config.ResponseHeaderTimeout
	h.trailersDropped = o.TrailersDropped
	if h.trailersDropped == nil {
		h.trailersDropped = func(string, int) {}
	}
	if h.record == nil {
		h.record = func(*accesslog.Entry) {}
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h
}

// ambiguousFraming reports whether r may have arrived with both
// Content-Length and Transfer-Encoding.
func ambiguousFraming(r *http.Request) bool {
	if len(r.TransferEncoding) == 0 {
		return false
	}
	f, _ := r.Context().Value(framingKey{}).(*atomic.Bool)
	return f != nil && f.Load()
}

// ServeHTTP classifies r and serves it.
//
// An absolute-form request is forwarded, a CONNECT opens a tunnel. An
// origin-form request ("GET /path") is forwarded to the host it names
// where a proxy client sends that form: over HTTP/2 (":authority" is the
// target) and on a Unix socket listener (curl --unix-socket sends the
// target in Host), unless that host is the proxy itself. Sent to the
// proxy itself, it is matched against the base-URL routes, then the admin
// paths, and gets usage help (400) otherwise.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ambiguousFraming(r) {
		w.Header()["Connection"] = []string{"close"}
	}
	r, requested, routeErr := h.classify(r)
	if a := h.access.Load(); a != nil {
		if e := h.checkAccess(a, r); e != nil {
			h.refuse(w, r, e)
			return
		}
	}
	switch {
	case routeErr != nil:
		h.refuse(w, r, routeErr)
	case r.Method == http.MethodConnect && r.ProtoMajor >= 2:
		// An HTTP/2 CONNECT (RFC 9113 section 8.5) is a stream, not a
		// connection to take over, and splice, half-close and the tunnel
		// registry all work on connections. No client that speaks h2c to a
		// proxy needs it: curl and PHP open tunnels over HTTP/1.1.
		h.refuse(w, r, notImplemented("CONNECT "+r.RequestURI+" over HTTP/2 is not supported: open tunnels over HTTP/1.1"))
	case r.Method == http.MethodConnect:
		entry := newEntry(r, r.RequestURI, accesslog.KindConnect)
		h.End(w, entry, h.serveConnect(w, r, entry))
	case r.URL.Host == "" && !r.URL.IsAbs():
		h.serveOrigin(w, r)
	default:
		h.forward(w, r, requested)
	}
}

// classify returns the request as the Handler serves it, and the URL the
// client asked for, as logged. That is r itself, except for an
// origin-form request that names its target (namesTarget) or matches a
// base-URL route: a copy of r for that target (retarget), which the
// route's error, if any, refuses instead.
func (h *Handler) classify(r *http.Request) (_ *http.Request, requested string, routeErr *Error) {
	if r.URL.Host != "" || r.Method == http.MethodConnect || r.URL.IsAbs() {
		return r, r.RequestURI, nil
	}
	if h.namesTarget(r) {
		u := *r.URL
		u.Scheme, u.Host = "http", r.Host
		out := retarget(r.Context(), r, &u, "http://"+r.Host+r.RequestURI, "")
		return out, out.RequestURI, nil
	}
	if rt, rest := h.routes.match(r.URL.EscapedPath()); rt != nil {
		out, err := h.routeRequest(r, rt, rest)
		if err != nil {
			return r, r.RequestURI, err
		}
		return out, r.RequestURI, nil
	}
	return r, r.RequestURI, nil
}

// retarget returns a copy of r that goes to u (its authority is the
// Host), with uri as its request target and ctx as its context; r stays
// as the server gave it. A header field drop, when r has one, is left out
// of a header map of the copy's own. r first gets the trailer map that
// net/http's server fills in and the copy shares (trailerMap).
func retarget(ctx context.Context, r *http.Request, u *url.URL, uri, drop string) *http.Request {
	trailerMap(r)
	out := r.WithContext(ctx)
	out.URL, out.Host, out.RequestURI = u, u.Host, uri
	if _, ok := r.Header[drop]; ok {
		out.Header = r.Header.Clone()
		delete(out.Header, drop)
	}
	return out
}

// newEntry starts the record of r, which the client asked for as
// requested.
func newEntry(r *http.Request, requested, kind string) *accesslog.Entry {
	return &accesslog.Entry{Start: time.Now(), Client: r.RemoteAddr, Method: r.Method, URL: r.RequestURI, RequestedURL: requested, Kind: kind}
}

// namesTarget reports whether the origin-form request r names a target
// host other than the proxy: its Host (":authority" over HTTP/2) where r
// came over HTTP/2 or a Unix socket. Over HTTP/1 on TCP, Host names the
// proxy (a proxy client sends the absolute form), so it never does.
func (h *Handler) namesTarget(r *http.Request) bool {
	if r.Host == "" || !strings.HasPrefix(r.RequestURI, "/") {
		return false
	}
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	unix := local != nil && local.Network() == "unix"
	if r.ProtoMajor < 2 && !unix {
		return false
	}
	return !isSelf(r.Host, local, unix)
}

// isSelf reports whether host, a request's Host, names the proxy itself,
// reached at local. On a Unix socket that is "localhost" (curl
// --unix-socket http://localhost/healthz); on TCP it is the listener's
// port with its IP, a loopback IP where it listens on loopback, or
// "localhost".
func isSelf(host string, local net.Addr, unix bool) bool {
	if unix {
		return host == "localhost"
	}
	if local == nil {
		return false
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = host, "80"
	}
	lh, lport, err := net.SplitHostPort(local.String())
	if err != nil || port != lport {
		return false
	}
	if h == lh || h == "localhost" {
		return true
	}
	hip, err1 := netip.ParseAddr(strings.Trim(h, "[]"))
	lip, err2 := netip.ParseAddr(lh)
	return err1 == nil && err2 == nil && (hip.Unmap() == lip.Unmap() || hip.IsLoopback() && lip.IsLoopback())
}

// usage is the answer to an origin-form request that is not an admin path.
const usage = "warmproxy is a forward proxy: send it absolute-form requests, e.g.\n" +
	"  curl -x 127.0.0.1:9999 http://example.com/\n" +
	"  curl -x 127.0.0.1:9999 -H 'X-Real-Protocol: https' http://example.com/  (TLS to the origin, reused)\n" +
	"or set http_proxy=http://127.0.0.1:9999 in the client's environment (lowercase: curl ignores HTTP_PROXY, and Go refuses it under CGI)."

// serveOrigin answers requests that name no target host.
func (h *Handler) serveOrigin(w http.ResponseWriter, r *http.Request) {
	if h.admin != nil {
		if handler, pattern := h.admin.Handler(r); pattern != "" {
			handler.ServeHTTP(w, r)
			return
		}
	}
	h.refuse(w, r, badRequest("request for %s names no target host; %s", r.URL.Path, Usage(h.protocolHeader)))
}

// Usage is the help text served for origin-form requests, with header as
// the protocol header's name.
func Usage(header string) string {
	return strings.ReplaceAll(usage, "X-Real-Protocol", header)
}
