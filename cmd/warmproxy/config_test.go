package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "warmproxy.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// Issue 7: precedence is defaults < config file < environment < flags (and
// positional arguments), each layer overriding only what it sets.
func TestConfigPrecedence(t *testing.T) {
	file := writeConfig(t, "listen: 127.0.0.1:1001\nmax-idle-per-host: 11\ndial-timeout: 1s\nlog-format: json\nretry-body-bytes: 0\n")
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(*config.Config) // applied to Default()
	}{
		{name: "defaults", want: func(*config.Config) {}},
		{
			name: "file over defaults",
			args: []string{"-config", file},
			want: func(c *config.Config) {
				c.Listen, c.MaxIdlePerHost, c.DialTimeout, c.LogFormat, c.RetryBodyBytes = "127.0.0.1:1001", 11, time.Second, "json", 0
			},
		},
		{
			name: "file named by the environment",
			env:  map[string]string{"WARMPROXY_CONFIG": file},
			want: func(c *config.Config) {
				c.Listen, c.MaxIdlePerHost, c.DialTimeout, c.LogFormat, c.RetryBodyBytes = "127.0.0.1:1001", 11, time.Second, "json", 0
			},
		},
		{
			name: "environment over file",
			args: []string{"-config", file},
			env:  map[string]string{"WARMPROXY_MAX_IDLE_PER_HOST": "22", "WARMPROXY_IDLE_TIMEOUT": "7s"},
			want: func(c *config.Config) {
				c.Listen, c.MaxIdlePerHost, c.DialTimeout, c.LogFormat, c.RetryBodyBytes = "127.0.0.1:1001", 22, time.Second, "json", 0
				c.IdleTimeout = 7 * time.Second
			},
		},
		{
			name: "flags over environment over file",
			args: []string{"-max-idle-per-host", "33", "-config", file, "-log-format", "tsv"},
			env:  map[string]string{"WARMPROXY_MAX_IDLE_PER_HOST": "22", "WARMPROXY_LOG_FORMAT": "off", "WARMPROXY_DIAL_TIMEOUT": "2s"},
			want: func(c *config.Config) {
				c.Listen, c.MaxIdlePerHost, c.DialTimeout, c.LogFormat, c.RetryBodyBytes = "127.0.0.1:1001", 33, 2*time.Second, "tsv", 0
			},
		},
		{
			name: "flag -config over WARMPROXY_CONFIG",
			args: []string{"-config", file},
			env:  map[string]string{"WARMPROXY_CONFIG": "/nonexistent.yaml"},
			want: func(c *config.Config) {
				c.Listen, c.MaxIdlePerHost, c.DialTimeout, c.LogFormat, c.RetryBodyBytes = "127.0.0.1:1001", 11, time.Second, "json", 0
			},
		},
		{
			name: "positional over environment and file",
			args: []string{"-config", file, "127.0.0.1:1003", "44"},
			env:  map[string]string{"WARMPROXY_LISTEN": "127.0.0.1:1002", "WARMPROXY_MAX_IDLE_PER_HOST": "22"},
			want: func(c *config.Config) {
				c.Listen, c.MaxIdlePerHost, c.DialTimeout, c.LogFormat, c.RetryBodyBytes = "127.0.0.1:1003", 44, time.Second, "json", 0
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, act, err := parseArgs(tt.args, envMap(tt.env), io.Discard)
			if err != nil || act != actionRun {
				t.Fatalf("parseArgs(%q) = %v, %v; want no error", tt.args, act, err)
			}
			want := config.Default()
			tt.want(&want)
			if got != want {
				t.Errorf("parseArgs(%q) with env %v = %+v, want %+v", tt.args, tt.env, got, want)
			}
		})
	}
}

// Issue 7: every setting can be set in the file, under its flag's name.
func TestConfigKeysAreFlags(t *testing.T) {
	var help bytes.Buffer
	parseArgs([]string{"-h"}, envMap(nil), &help)
	var flags []string
	for _, line := range strings.Split(help.String(), "\n") {
		if f, ok := strings.CutPrefix(strings.TrimSpace(line), "-"); ok {
			name, _, _ := strings.Cut(f, " ")
			flags = append(flags, name)
		}
	}
	keys := config.Keys()
	for _, f := range flags {
		switch f {
		case "config", "check-config", "version":
			continue
		}
		if !slices.Contains(keys, f) {
			t.Errorf("flag -%s has no key in the config file: add it to config.File", f)
		}
	}
	for _, k := range keys {
		if !slices.Contains(flags, k) {
			t.Errorf("config file key %s has no flag -%s", k, k)
		}
	}
}

// Issue 7: -check-config validates and exits 0 or 2, listing every problem.
func TestCheckConfig(t *testing.T) {
	good := writeConfig(t, "listen: 127.0.0.1:1001\nlog-format: json\n")
	bad := writeConfig(t, "listen: nowhere\nmax-idel-per-host: 3\ndial-timeout: 10\nlog-format: xml\n")
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		code     int
		stdout   []string
		stderr   []string
		noStderr []string
		noStdout []string
	}{
		{name: "defaults", args: []string{"-check-config"}, code: 0, stdout: []string{"configuration ok", "listen: 127.0.0.1:9999\n"}},
		{
			name: "good file and a flag", args: []string{"-check-config", "-config", good, "-max-idle", "9"}, code: 0,
			stdout: []string{"listen: 127.0.0.1:1001\n", "log-format: json\n", "max-idle: 9\n"},
		},
		{
			name: "every problem", args: []string{"-config", bad, "-check-config", "-shutdown-grace", "0s"},
			env:  map[string]string{"WARMPROXY_MAX_IDLE": "lots"},
			code: 2,
			stderr: []string{
				`line 2: unknown key "max-idel-per-host"`,
				`line 3: dial-timeout: value "10" (int)`,
				`WARMPROXY_MAX_IDLE="lots"`,
				`listen "nowhere"`,
				`log-format "xml"`,
				`shutdown-grace 0s`,
			},
			// A bad environment value leaves the layer below in place
			// rather than a zero.
			noStderr: []string{"max-idle 0"},
		},
		// Issue 8: the parent proxy's password is never printed.
		{
			name: "secrets masked", args: []string{"-check-config", "-parent-proxy", "http://corp:s3cret@127.0.0.1:3128"}, code: 0,
			stdout: []string{"parent-proxy: http://corp:xxxxx@127.0.0.1:3128\n"}, noStdout: []string{"s3cret"},
		},
		{name: "missing file", args: []string{"-check-config", "-config", "/nonexistent/w.yaml"}, code: 2, stderr: []string{"/nonexistent/w.yaml"}},
		{name: "bad flag", args: []string{"-check-config", "-no-such-flag"}, code: 2, stderr: []string{"see warmproxy -h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, envMap(tt.env), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("run(%q) = %d, want %d\nstdout: %s\nstderr: %s", tt.args, code, tt.code, &stdout, &stderr)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("run(%q) stdout = %q, want %q in it", tt.args, &stdout, s)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("run(%q) stderr = %q, want %q in it", tt.args, &stderr, s)
				}
			}
			for _, s := range tt.noStdout {
				if strings.Contains(stdout.String(), s) {
					t.Errorf("run(%q) stdout = %q, want no %q in it", tt.args, &stdout, s)
				}
			}
			for _, s := range tt.noStderr {
				if strings.Contains(stderr.String(), s) {
					t.Errorf("run(%q) stderr = %q, want no %q in it", tt.args, &stderr, s)
				}
			}
		})
	}
}

// Issue 7: a SIGHUP whose configuration does not load keeps the old one and
// logs why; one that loads is handed to the server.
func TestWatchReload(t *testing.T) {
	var logs testnet.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	hup := make(chan os.Signal, 1)
	reloads := make(chan config.Parsed)
	results := []error{errors.New("config file w.yaml: line 2: unknown key \"x\""), nil}
	var calls int
	load := func() (config.Parsed, error) {
		err := results[calls]
		calls++
		c := config.Default()
		c.LogFormat = "json"
		if err != nil {
			c.Listen = "bad"
		}
		return config.Parsed{Config: c}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { watchReload(ctx, hup, load, reloads, log) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	hup <- syscall.SIGHUP // the bad one
	hup <- syscall.SIGHUP // the good one
	select {
	case c := <-reloads:
		if c.LogFormat != "json" || c.Listen == "bad" {
			t.Errorf("reloaded %+v, want the good configuration (log-format json)", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s of a good SIGHUP")
	}
	if got := logs.String(); !strings.Contains(got, "reload failed, keeping the old configuration") || !strings.Contains(got, `unknown key`) {
		t.Errorf("log after a bad reload = %q, want the failure and its cause", got)
	}
}
