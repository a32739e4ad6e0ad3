package server

import (
	"log/slog"
	"net"
	"net/netip"

	"github.com/warmproxy/warmproxy/internal/config"
)

// exampleURL is the origin of the startup examples. It needs the
// internet; docs/integration.md shows the same against a local origin.
const exampleURL = "http://example.com/"

// logStartHints follows the "listening" record with two more: a request
// to paste into a shell, without and with the protocol header, and the
// URLs of the admin endpoints. ln is the proxy's listener, adminLn the
// admin one or nil.
func logStartHints(log *slog.Logger, cfg config.Parsed, ln, adminLn net.Listener) {
	via, user := "", ""
	if cfg.ProxyAuthFile != "" {
		user = " -U USER:PASSWORD"
	}
	admin := ""
	if a := ln.Addr(); a.Network() == "unix" {
		// Over the socket the client talks to warmproxy as to the
		// origin; Host: localhost is warmproxy itself.
		via = "curl --unix-socket " + a.String()
		admin = via + " http://localhost"
	} else {
		proxy := "http://" + dialable(a.String())
		via = "curl -x " + proxy + user
		admin = proxy
	}
	if adminLn != nil {
		admin = "http://" + dialable(adminLn.Addr().String())
	}
	log.Info("try it",
		"plain", via+" "+exampleURL,
		"tls_pooled", via+" -H '"+cfg.ProtocolHeader+": https' "+exampleURL)
	attrs := []any{"metrics", admin + "/metrics", "stats", admin + "/stats", "pool", admin + "/debug/pool"}
	if cfg.PProf {
		attrs = append(attrs, "pprof", admin+"/debug/pprof/")
	}
	log.Info("admin endpoints", attrs...)
}

// dialable turns a listener's host:port into one a client on this host
// can connect to: a wildcard address (0.0.0.0, or [::], which Go's
// dual-stack listener reports for both) becomes 127.0.0.1.
func dialable(hostport string) string {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil || !ap.Addr().IsUnspecified() {
		return hostport
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port()).String()
}
