package server

import (
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/intercept"
	"github.com/warmproxy/warmproxy/internal/proxy"
)

// newInterceptor loads the interception CA when -intercept is set, and
// checks that its Name Constraints cover the patterns (issue 13). It
// returns nil, an interface holding nothing, when interception is off.
func newInterceptor(cfg config.Parsed, log *slog.Logger) (proxy.Interceptor, error) {
	if len(cfg.Intercept) == 0 {
		return nil, nil
	}
	i, err := intercept.New(intercept.Options{Patterns: cfg.Intercept, AnyHost: cfg.InterceptAnyHostIKnow, Dir: cfg.InterceptCA})
	if err != nil {
		return nil, err
	}
	if i.Warning != "" {
		log.Warn("interception ca has no name constraints", "intercept_ca", cfg.InterceptCA, "detail", i.Warning)
	}
	insecure := insecureRules(cfg.UpstreamTLS)
	log.Info("intercepting tls", "intercept", cfg.Config.Intercept, "intercept_ca", cfg.InterceptCA)
	return &verifiedOnly{Interceptor: i, insecure: insecure}, nil
}

// verifiedOnly intercepts no host whose -upstream-tls rule turns
// verification off: the client, trusting warmproxy's CA, would take an
// unverified origin for a verified one. Such hosts stay end-to-end
// tunnels, where the client verifies the origin itself.
type verifiedOnly struct {
	*intercept.Interceptor
	// insecure is, per -upstream-tls rule in order, its host patterns and
	// whether it turns verification off; the first match decides.
	insecure []tlsRuleHosts
}

type tlsRuleHosts struct {
	hosts    []acl.Rule
	insecure bool
}

func (v *verifiedOnly) Match(host string, port int) bool {
	if !v.Interceptor.Match(host, port) {
		return false
	}
	for _, r := range v.insecure {
		for i := range r.hosts {
			if r.hosts[i].Match(host, port) {
				return !r.insecure
			}
		}
	}
	return true
}

func (v *verifiedOnly) Server(c net.Conn, host string) *tls.Conn {
	return v.Interceptor.Server(c, host)
}

func insecureRules(rules []config.UpstreamTLSRule) []tlsRuleHosts {
	out := make([]tlsRuleHosts, len(rules))
	for i, r := range rules {
		out[i] = tlsRuleHosts{hosts: r.Match, insecure: r.InsecureSkipVerify}
	}
	return out
}
