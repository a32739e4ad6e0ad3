package server

import (
	"log/slog"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/intercept"
	"github.com/warmproxy/warmproxy/internal/proxy"
)

// newInterceptor loads the interception CA when -intercept is set, and
// checks that its Name Constraints cover the patterns (issue 13). It
// returns nil, an interface holding nothing, when interception is off.
func newInterceptor(cfg config.Config, log *slog.Logger) (proxy.Interceptor, error) {
	if cfg.Intercept == "" {
		return nil, nil
	}
	i, err := intercept.New(intercept.Options{Patterns: cfg.Intercept, AnyHost: cfg.InterceptAnyHostIKnow, Dir: cfg.InterceptCA})
	if err != nil {
		return nil, err
	}
	if i.Warning != "" {
		log.Warn("intercept: "+i.Warning, "intercept_ca", cfg.InterceptCA)
	}
	log.Info("intercepting tls", "intercept", cfg.Intercept, "intercept_ca", cfg.InterceptCA)
	return i, nil
}
