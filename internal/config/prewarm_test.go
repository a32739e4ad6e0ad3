package config

import (
	"strings"
	"testing"
)

func TestParsePrewarm(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    []PrewarmTarget
		wantErr string
	}{
		{in: ""},
		{in: "https://api.example.com*4", want: []PrewarmTarget{{"https", "api.example.com:443", 4}}},
		{in: "https://API.example.com:8443", want: []PrewarmTarget{{"https", "API.example.com:8443", 1}}},
		{in: "http://10.0.0.5, http://[::1]:81*2", want: []PrewarmTarget{{"http", "10.0.0.5:80", 1}, {"http", "[::1]:81", 2}}},
		{in: "http://a.test/", want: []PrewarmTarget{{"http", "a.test:80", 1}}},
		{in: "ftp://a.test", wantErr: "want http://"},
		{in: "a.test:443", wantErr: "want http://"},
		{in: "https://a.test*0", wantErr: "want *N"},
		{in: "https://a.test*x", wantErr: "want *N"},
		{in: "https://a.test/path", wantErr: "origin only"},
		{in: "https://u@a.test", wantErr: "origin only"},
		{in: "https://a.test:99999", wantErr: "port"},
		{in: "https://a.test,https://a.test:443*2", wantErr: "listed twice"},
	} {
		got, err := ParsePrewarm(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePrewarm(%q) = %v, %v, want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("ParsePrewarm(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("ParsePrewarm(%q)[%d] = %+v, want %+v", tt.in, i, got[i], tt.want[i])
			}
		}
	}
}

// Issue 8: prewarm never exceeds the pool's limits; Validate says so.
func TestValidatePrewarm(t *testing.T) {
	checkValidate(t, []validateCase{
		{"ok", func(c *Config) { c.Prewarm = "https://a.test*4" }, ""},
		{"bad spec", func(c *Config) { c.Prewarm = "a.test" }, "prewarm:"},
		{"over max-idle-per-host", func(c *Config) { c.Prewarm = "https://a.test*5"; c.MaxIdlePerHost = 4 }, "max-idle-per-host 4"},
		{"over max-conns-per-host", func(c *Config) { c.Prewarm = "https://a.test*5"; c.MaxConnsPerHost = 2 }, "max-conns-per-host 2"},
		{"over max-idle", func(c *Config) { c.Prewarm = "https://a.test*3,https://b.test*3"; c.MaxIdle = 5 }, "max-idle 5"},
	})
}
