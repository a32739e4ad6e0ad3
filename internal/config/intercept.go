package config

import (
	"fmt"
	"os"

	"github.com/warmproxy/warmproxy/internal/intercept"
)

// parseIntercept checks the TLS interception settings (issue 13) and puts
// the patterns in p. The CA itself is loaded, and its Name Constraints
// checked against the patterns, when the server starts.
func (p *Parsed) parseIntercept() []error {
	c := &p.Config
	var errs []error
	if c.Intercept == "" {
		if c.InterceptCA != "" {
			errs = append(errs, fmt.Errorf("intercept-ca is set but intercept is not: list the hosts to intercept with -intercept, or drop -intercept-ca"))
		}
		return errs
	}
	patterns, err := intercept.ParsePatterns(c.Intercept)
	if err != nil {
		errs = append(errs, fmt.Errorf("intercept: %v", err))
	}
	p.Intercept = patterns
	for _, pat := range patterns {
		if pat.Any() && !c.InterceptAnyHostIKnow {
			errs = append(errs, fmt.Errorf("intercept: pattern %s matches every host, so every tunnel's TLS would end here: list the hosts, or pass -intercept-any-host-i-know (and a CA without name constraints)", pat))
		}
	}
	if c.InterceptCA == "" {
		errs = append(errs, fmt.Errorf("intercept is set but intercept-ca is not: make a CA with warmproxy ca init -intercept '%s' DIR and pass -intercept-ca DIR", c.Intercept))
	} else if st, err := os.Stat(c.InterceptCA); err != nil {
		errs = append(errs, fmt.Errorf("intercept-ca: %v (make one with warmproxy ca init -intercept '%s' %s)", err, c.Intercept, c.InterceptCA))
	} else if !st.IsDir() {
		errs = append(errs, fmt.Errorf("intercept-ca %s: want the directory holding %s and %s", c.InterceptCA, intercept.CertFile, intercept.KeyFile))
	}
	return errs
}
