package main

import (
	"flag"

	"github.com/warmproxy/warmproxy/internal/config"
)

// interceptFlags defines the TLS interception flags (issue 13).
func interceptFlags(fs *flag.FlagSet, cfg *config.Config) {
	fs.StringVar(&cfg.Intercept, "intercept", cfg.Intercept, "host `patterns`, comma-separated (as -allow), whose CONNECT tunnels are intercepted: TLS ends here with a certificate from -intercept-ca, requests inside use the pool")
	fs.StringVar(&cfg.InterceptCA, "intercept-ca", cfg.InterceptCA, "`directory` of the interception CA, ca.pem and ca-key.pem (make one with: warmproxy ca init)")
	fs.BoolVar(&cfg.InterceptAnyHostIKnow, "intercept-any-host-i-know", cfg.InterceptAnyHostIKnow, "allow an -intercept pattern that matches every host (needs a CA without name constraints)")
}
