package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"time"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/intercept"
)

// Parsed is a Config that passed Validate together with every setting
// that has a text form, parsed into the type its consumer uses. Parse
// makes it, once; server, proxy and upstream take it, so none of them
// parses a setting's text again, and none can skip a bad entry quietly.
//
// Its typed fields shadow the Config fields of the same name; the text
// stays at p.Config.Name, for printing and for comparing two Configs.
type Parsed struct {
	Config

	// ListenMode is listen-mode, the file mode of a unix: listener.
	ListenMode fs.FileMode
	// Routes are route, in the order given.
	Routes []Route
	// ConnectPorts is connect-ports.
	ConnectPorts Ports
	// AllowClients is allow-clients; nil lets every client in.
	AllowClients *acl.Clients
	// Policy is the destination policy of allow, deny and deny-private.
	Policy *acl.Policy
	// UpstreamTLS are upstream-tls's rules, in order.
	UpstreamTLS []UpstreamTLSRule
	// ParentProxy is parent-proxy; nil when origins are dialed directly.
	// It is shared: copy it before changing it.
	ParentProxy *url.URL
	// NoParentFor are no-parent-for's host patterns.
	NoParentFor []acl.Rule
	// Prewarm are prewarm's targets.
	Prewarm []PrewarmTarget
	// Intercept are intercept's host patterns.
	Intercept []intercept.Pattern

	// UpstreamQueueTimeout, UpstreamParentTimeout and
	// UpstreamPrewarmTimeout are the settings' values with their 0
	// ("as -dial-timeout") resolved.
	UpstreamQueueTimeout, UpstreamParentTimeout, UpstreamPrewarmTimeout time.Duration
}

// parseTimeouts checks the upstream- timeouts that default to
// dial-timeout, and resolves them.
func (p *Parsed) parseTimeouts(bad func(format string, args ...any)) {
	c := &p.Config
	for _, d := range []struct {
		name     string
		v, deflt time.Duration
		to       *time.Duration
	}{
		{"upstream-queue-timeout", c.UpstreamQueueTimeout, c.DialTimeout, &p.UpstreamQueueTimeout},
		{"upstream-parent-timeout", c.UpstreamParentTimeout, c.DialTimeout, &p.UpstreamParentTimeout},
		{"upstream-prewarm-timeout", c.UpstreamPrewarmTimeout, c.DialTimeout + c.TLSHandshakeTimeout, &p.UpstreamPrewarmTimeout},
	} {
		switch {
		case d.v < 0:
			bad("%s %v: want 0 (as -dial-timeout) or a duration, e.g. 5s", d.name, d.v)
		case d.v == 0:
			*d.to = d.deflt
		default:
			*d.to = d.v
		}
	}
}

// Parse checks c as Validate does and returns it parsed. On error the
// Parsed holds what did parse; use it only when the error is nil.
func (c Config) Parse() (Parsed, error) {
	p := Parsed{Config: c}
	return p, errors.Join(p.parse()...)
}

// MustParse is Parse for a Config known to be valid, as tests build
// them; it panics if c does not pass Validate.
func MustParse(c Config) Parsed {
	p, err := c.Parse()
	if err != nil {
		panic(fmt.Sprintf("config.MustParse: %v", err))
	}
	return p
}
