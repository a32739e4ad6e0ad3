package main

import (
	"flag"

	"github.com/warmproxy/warmproxy/internal/config"
)

// upstreamFlags defines the per-host origin TLS and parent proxy flags.
func upstreamFlags(fs *flag.FlagSet, cfg *config.Config) {
	fs.Var(&cfg.UpstreamTLS, "upstream-tls", "per-host origin TLS `rules`, separated by ;, first match wins: "+
		"PATTERN[,PATTERN...][,ca=FILE][,cert=FILE,key=FILE][,sni=NAME][,insecure], "+
		"e.g. '*.partner.example,cert=c.pem,key=k.pem; dev.test,insecure' (insecure: self-signed development origins only)")
	fs.StringVar(&cfg.ParentProxy, "parent-proxy", cfg.ParentProxy, "reach origins through this proxy `URL`: http://[user:pass@]host:port, socks5://... or socks5h://... (names resolved by the parent)")
	fs.StringVar(&cfg.ParentProxyAuthFile, "parent-proxy-auth-file", cfg.ParentProxyAuthFile, "`file` holding the parent proxy's user:password on one line (mode 0600), instead of user:pass in -parent-proxy, which ps and /proc show")
	fs.StringVar(&cfg.NoParentFor, "no-parent-for", cfg.NoParentFor, "host `patterns`, comma-separated (as -allow), reached directly instead of through -parent-proxy")
}
