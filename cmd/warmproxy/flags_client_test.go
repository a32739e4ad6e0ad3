package main

import (
	"io"
	"testing"
)

// Issue 8: -route repeats on the command line; the environment and the
// file give the whole list, each layer replacing the one below.
func TestRouteFlagLayers(t *testing.T) {
	file := writeConfig(t, "route: /f/=https://f.test/\n")
	a, b, e := "/a/=https://a.test/", "/b/=https://b.test/", "/e/=https://e.test/"
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"file", []string{"-config", file}, nil, "/f/=https://f.test/"},
		{"env over file", []string{"-config", file}, map[string]string{"WARMPROXY_ROUTE": e}, e},
		{"flags over env", []string{"-config", file, "-route", a, "-route", b}, map[string]string{"WARMPROXY_ROUTE": e}, a + "," + b},
		{"commas", []string{"-route", a + "," + b}, nil, a + "," + b},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := parseArgs(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Routes != tt.want {
				t.Errorf("Routes = %q, want %q", cfg.Routes, tt.want)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}
