package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v, want nil", err)
	}
	if c.Listen != "127.0.0.1:9999" || c.MaxIdlePerHost < 32 || c.IdleTimeout >= 60*time.Second || c.ResponseHeaderTimeout != 60*time.Second {
		t.Errorf("Default() = %+v: want loopback 9999, a pool sized for dozens of workers, idle timeout under 60s, 60s response timeout", c)
	}
}

// validateCase is one row of a Validate table: mod edits Default(), and
// want is a phrase the error must mention ("" means valid).
type validateCase struct {
	name string
	mod  func(*Config)
	want string
}

// checkValidate runs Validate on Default() edited by each case's mod.
func checkValidate(t *testing.T, tests []validateCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want []string
	}{
		{"listen", func(c *Config) { c.Listen = "9999" }, []string{`listen "9999": want host:port`}},
		{"protocol header", func(c *Config) { c.ProtocolHeader = "X Bad" }, []string{`protocol-header "X Bad"`}},
		{"empty protocol header", func(c *Config) { c.ProtocolHeader = "" }, []string{`protocol-header ""`}},
		{"via name", func(c *Config) { c.ViaName = "a b" }, []string{`via-name "a b"`}},
		{"pool sizes", func(c *Config) { c.MaxIdlePerHost, c.MaxIdle = 0, -1 }, []string{"max-idle-per-host 0", "max-idle -1"}},
		{"max conns", func(c *Config) { c.MaxConnsPerHost = -1 }, []string{"max-conns-per-host -1"}},
		{"retry body", func(c *Config) { c.RetryBodyBytes = -1 }, []string{"retry-body-bytes -1"}},
		{"durations", func(c *Config) { c.DialTimeout, c.ShutdownGrace = 0, -time.Second }, []string{"dial-timeout 0s", "shutdown-grace -1s"}},
		// Issue 12: the request body stall timeout is always on.
		{"client body timeout", func(c *Config) { c.ClientBodyTimeout = 0 }, []string{"client-body-timeout 0s: want a duration above 0"}},
		{"ca file", func(c *Config) { c.CAFile = "/nonexistent/ca.pem" }, []string{"ca-file"}},
		{"ports", func(c *Config) { c.ConnectPorts = "443,x" }, []string{`connect-ports "443,x"`}},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, []string{`log-format "xml": want tsv, json or off`}},
		// Issue 12: pprof (whose cmdline shows argv) only on -admin-listen.
		{"pprof without admin-listen", func(c *Config) { c.PProf = true }, []string{"pprof needs admin-listen", "-admin-listen 127.0.0.1:9998"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mod(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want errors mentioning %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
	// Every problem is reported at once.
	c := Default()
	c.Listen, c.LogFormat, c.MaxIdle = "x", "y", 0
	if n := strings.Count(c.Validate().Error(), "\n") + 1; n != 3 {
		t.Errorf("Validate() with three problems reported %d", n)
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"443", "443", false},
		{" 8443, 443 ", "443,8443", false},
		{"*", "*", false},
		{"0", "", true},
		{"65536", "", true},
		{"", "", true},
		{"443,", "", true},
	}
	for _, tt := range tests {
		p, err := ParsePorts(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParsePorts(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && p.String() != tt.want {
			t.Errorf("ParsePorts(%q) = %s, want %s", tt.in, p, tt.want)
		}
	}
	p, _ := ParsePorts("443")
	if !p.Allows(443) || p.Allows(80) {
		t.Errorf("ParsePorts(443).Allows wrong")
	}
}

// Issue 16: the upstream- bounds that once were -dial-timeout default to
// it (0), take their own value when set, and refuse a negative one.
func TestParseUpstreamTimeouts(t *testing.T) {
	c := Default()
	c.DialTimeout, c.TLSHandshakeTimeout = 3*time.Second, 2*time.Second
	p, err := c.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if p.UpstreamQueueTimeout != 3*time.Second || p.UpstreamParentTimeout != 3*time.Second || p.UpstreamPrewarmTimeout != 5*time.Second {
		t.Errorf("Parse() timeouts queue %v, parent %v, prewarm %v; want 3s, 3s, 5s (from dial-timeout)", p.UpstreamQueueTimeout, p.UpstreamParentTimeout, p.UpstreamPrewarmTimeout)
	}
	c.UpstreamQueueTimeout, c.UpstreamParentTimeout, c.UpstreamPrewarmTimeout = time.Second, 2*time.Second, 4*time.Second
	if p, err = c.Parse(); err != nil || p.UpstreamQueueTimeout != time.Second || p.UpstreamParentTimeout != 2*time.Second || p.UpstreamPrewarmTimeout != 4*time.Second {
		t.Errorf("Parse() = %v; timeouts %v, %v, %v, want 1s, 2s, 4s", err, p.UpstreamQueueTimeout, p.UpstreamParentTimeout, p.UpstreamPrewarmTimeout)
	}
	c.UpstreamQueueTimeout = -time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "upstream-queue-timeout -1s") {
		t.Errorf("Validate(upstream-queue-timeout -1s) = %v", err)
	}
}
