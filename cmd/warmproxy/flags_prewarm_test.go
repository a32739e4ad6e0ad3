package main

import (
	"io"
	"testing"
)

// Issue 8: -prewarm repeats and adds up on the command line; each layer
// (file, environment, flags) replaces the one below, as for any setting.
func TestPrewarmFlagLayers(t *testing.T) {
	file := writeConfig(t, "prewarm: https://file.test*2\nhonor-keepalive-timeout: false\n")
	for _, tt := range []struct {
		name   string
		args   []string
		env    map[string]string
		want   string
		wantKA bool
	}{
		{name: "default", want: "", wantKA: true},
		{name: "repeated", args: []string{"-prewarm", "https://a.test*4", "-prewarm", "http://b.test"}, want: "https://a.test*4,http://b.test", wantKA: true},
		{name: "file", args: []string{"-config", file}, want: "https://file.test*2"},
		{name: "env over file", args: []string{"-config", file}, env: map[string]string{"WARMPROXY_PREWARM": "http://env.test,http://env2.test"}, want: "http://env.test,http://env2.test"},
		{
			name: "flags over env over file",
			args: []string{"-config", file, "-prewarm", "https://a.test", "-prewarm", "https://b.test", "-honor-keepalive-timeout"},
			env:  map[string]string{"WARMPROXY_PREWARM": "http://env.test"},
			want: "https://a.test,https://b.test", wantKA: true,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := parseArgs(tt.args, envMap(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Prewarm != tt.want || cfg.HonorKeepAliveTimeout != tt.wantKA {
				t.Errorf("parseArgs(%q) prewarm %q, honor-keepalive-timeout %v, want %q, %v", tt.args, cfg.Prewarm, cfg.HonorKeepAliveTimeout, tt.want, tt.wantKA)
			}
		})
	}
}
