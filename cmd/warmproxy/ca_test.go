package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 13: warmproxy ca init and print, and their refusals.
func TestCACommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	tests := []struct {
		name     string
		args     []string
		getenv   map[string]string
		code     int
		out, err string
	}{
		{"no command", []string{"ca"}, nil, 2, "", "Usage:"},
		{"unknown", []string{"ca", "rotate"}, nil, 2, "", `unknown command "rotate"`},
		{"init without patterns", []string{"ca", "init", dir}, nil, 2, "", "-intercept"},
		{"init catch-all", []string{"ca", "init", "-intercept", "*", dir}, nil, 1, "", "-intercept-any-host-i-know"},
		{"init", []string{"ca", "init", "-intercept", "api.test", dir}, nil, 0, "ca-key.pem (mode 0600", ""},
		{"init again", []string{"ca", "init", "-intercept", "api.test", dir}, nil, 1, "", "-force"},
		{"init from env", []string{"ca", "init", "-force", dir}, map[string]string{"WARMPROXY_INTERCEPT": "api.test,b.test"}, 0, "api.test,b.test", ""},
		{"print", []string{"ca", "print", dir}, nil, 0, "DNS api.test, b.test", ""},
		{"print from env", []string{"ca", "print"}, map[string]string{"WARMPROXY_INTERCEPT_CA": dir}, 0, "NODE_EXTRA_CA_CERTS=", ""},
		{"print nothing", []string{"ca", "print"}, nil, 2, "", "WARMPROXY_INTERCEPT_CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			getenv := func(k string) string { return tt.getenv[k] }
			code := run(tt.args, getenv, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stdout.String(), tt.out) || !strings.Contains(stderr.String(), tt.err) {
				t.Errorf("run(%q) = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q", tt.args, code, &stdout, &stderr, tt.code, tt.out, tt.err)
			}
			if strings.Contains(stdout.String()+stderr.String(), "PRIVATE KEY") {
				t.Errorf("run(%q) printed the key", tt.args)
			}
		})
	}
	if st, err := os.Stat(filepath.Join(dir, "ca-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("ca-key.pem: %v %v, want mode 0600", st.Mode(), err)
	}
}
