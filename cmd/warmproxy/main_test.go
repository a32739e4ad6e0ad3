package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// Issue 2: -h prints the usage; testdata/help.golden holds it (go test
// -update rewrites it).
func TestHelpGolden(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, env(), &stdout, &stderr); code != 0 {
		t.Fatalf("run(-h) = %d, want 0", code)
	}
	got := stdout.String() + stderr.String()
	golden := filepath.Join("testdata", "help.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if got != string(want) {
		t.Errorf("-h output differs from %s (go test -update rewrites it):\n%s", golden, got)
	}
	for _, f := range []string{"-listen", "-max-idle-per-host", "-protocol-header", "-response-header-timeout", "-dial-timeout",
		"-idle-timeout", "-max-conns-per-host", "-ca-file", "-log-format", "-shutdown-grace", "-version"} {
		if !strings.Contains(got, f+" ") && !strings.Contains(got, f+"\n") {
			t.Errorf("-h does not mention %s", f)
		}
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-version"}, env(), &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "warmproxy ") {
		t.Errorf("run(-version) = %d, %q", code, stdout.String())
	}
}

// Issue 15: -version names the commit that make build stamps, or the one
// go build found in the VCS, and says only "(devel)" when there is none
// (go run), instead of "commit unknown".
func TestFormatVersion(t *testing.T) {
	vcs := func(kv ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
		for i := 0; i+1 < len(kv); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return bi
	}
	tests := []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            string
	}{
		{"go run", "", "", vcs(), "warmproxy (devel)"},
		{"no build info", "", "", nil, "warmproxy (devel)"},
		{"make build", "v1.2.3", "0123abc", vcs(), "warmproxy v1.2.3 commit 0123abc"},
		{"make build beats vcs", "v1.2.3", "0123abc", vcs("vcs.revision", "ffff", "vcs.modified", "true"), "warmproxy v1.2.3 commit 0123abc"},
		{"go build in a checkout", "", "", vcs("vcs.revision", "ffff", "vcs.modified", "true"), "warmproxy (devel) commit ffff-dirty"},
		{"version only", "v1.2.3", "", vcs(), "warmproxy v1.2.3"},
		{"module version", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "warmproxy v1.4.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatVersion(tt.version, tt.commit, tt.bi); got != tt.want {
				t.Errorf("formatVersion(%q, %q, ...) = %q, want %q", tt.version, tt.commit, got, tt.want)
			}
		})
	}
}

// Issue 15: the linker flags of make build reach -version.
func TestVersionLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "warmproxy")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Not make build's -trimpath: it changes no -X variable, and it changes
	// every package's build cache key, so it would compile every package
	// (std included) a second time just for this link.
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=false",
		"-ldflags", "-X main.version=v9.8.7 -X main.commit=0123456789abcdef", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "-version").Output()
	if got, want := string(out), "warmproxy v9.8.7 commit 0123456789abcdef\n"; err != nil || got != want {
		t.Errorf("warmproxy -version = %q, %v; want %q", got, err, want)
	}
}

// Issue 2: a bad value is a clear error and exit code 2 (the original
// http_pool silently ignored it).
func TestBadValuesExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"positional pool size", []string{":9999", "abc"}, nil, `MaxIdleConnsPerHost "abc": want a whole number`},
		{"flag pool size", []string{"-max-idle-per-host", "abc"}, nil, `-max-idle-per-host "abc": want a whole number`},
		{"env pool size", nil, []string{"WARMPROXY_MAX_IDLE_PER_HOST", "abc"}, `WARMPROXY_MAX_IDLE_PER_HOST="abc"`},
		{"zero pool size", []string{"-max-idle-per-host", "0"}, nil, "max-idle-per-host 0: want a number above 0"},
		{"listen without port", []string{"localhost"}, nil, `listen address "localhost": want [host]:port`},
		{"too many", []string{":1", "2", "X-P", "extra"}, nil, "too many arguments"},
		{"bad duration", []string{"-dial-timeout", "soon"}, nil, `-dial-timeout "soon": want a duration such as 30s`},
		{"bad log format", []string{"-log-format", "xml"}, nil, `log-format "xml": want tsv, json or off`},
		{"missing ca file", []string{"-ca-file", "/nonexistent/ca.pem"}, nil, "ca-file"},
		{"positional repeats flag", []string{"-listen", ":1", ":2"}, nil, "repeats -listen"},
		{"unknown flag", []string{"-bogus"}, nil, "flag provided but not defined: -bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, env(tt.env...), &stdout, &stderr)
			if code != 2 {
				t.Errorf("run(%q) = %d, want 2", tt.args, code)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("run(%q) stderr = %q, want it to contain %q", tt.args, stderr.String(), tt.want)
			}
		})
	}
}

// Issue 15: a bad flag value is one line on stderr that says what the
// flag wants and where the usage is, not the error and 110 lines of usage.
func TestBadFlagOneLine(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-dial-timeout", "5"}, `warmproxy: -dial-timeout "5": want a duration such as 30s or 1m30s; see warmproxy -h`},
		{[]string{"-max-idle=5x"}, `warmproxy: -max-idle "5x": want a whole number such as 64; see warmproxy -h`},
		{[]string{"-upstream-http2=maybe"}, `warmproxy: -upstream-http2 "maybe": want true or false; see warmproxy -h`},
		{[]string{"-bogus"}, `warmproxy: flag provided but not defined: -bogus; see warmproxy -h`},
		{[]string{"-listen"}, `warmproxy: flag needs an argument: -listen; see warmproxy -h`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, env(), &stdout, &stderr); code != 2 {
				t.Errorf("run(%q) = %d, want 2", tt.args, code)
			}
			if got := stderr.String(); got != tt.want+"\n" {
				t.Errorf("run(%q) stderr = %q, want the one line %q", tt.args, got, tt.want)
			}
		})
	}
	var stdout, stderr bytes.Buffer
	run(nil, env("WARMPROXY_DIAL_TIMEOUT", "5"), &stdout, &stderr)
	if want := `WARMPROXY_DIAL_TIMEOUT="5": want a duration such as 30s`; !strings.Contains(stderr.String(), want) {
		t.Errorf("with WARMPROXY_DIAL_TIMEOUT=5, stderr = %q, want it to contain %q", stderr.String(), want)
	}
}

// Issue 2: the original http_pool command line works as it did, the same
// settings exist as flags, and WARMPROXY_* variables rank below both.
func TestParseArgs(t *testing.T) {
	def := config.Default()
	tests := []struct {
		name  string
		args  []string
		env   []string
		check func(c config.Config) bool
	}{
		{"defaults", nil, nil, func(c config.Config) bool {
			return c.Listen == "127.0.0.1:9999" && c.MaxIdlePerHost == def.MaxIdlePerHost && c.ProtocolHeader == "X-Real-Protocol" &&
				c.ResponseHeaderTimeout == 60*time.Second && c.IdleTimeout == 50*time.Second && c.MaxConnsPerHost == 0
		}},
		{"legacy port only", []string{":9999"}, nil, func(c config.Config) bool {
			return c.Listen == ":9999" && c.MaxIdlePerHost == def.MaxIdlePerHost
		}},
		{"legacy full", []string{"127.0.0.1:8080", "16", "X-Protocol"}, nil, func(c config.Config) bool {
			return c.Listen == "127.0.0.1:8080" && c.MaxIdlePerHost == 16 && c.ProtocolHeader == "X-Protocol"
		}},
		{"flags", []string{"-listen", "127.0.0.1:1", "-max-idle-per-host", "8", "-protocol-header", "X-P",
			"-response-header-timeout", "5s", "-dial-timeout", "2s", "-idle-timeout", "30s", "-max-conns-per-host", "4"}, nil,
			func(c config.Config) bool {
				return c.Listen == "127.0.0.1:1" && c.MaxIdlePerHost == 8 && c.ProtocolHeader == "X-P" && c.ResponseHeaderTimeout == 5*time.Second &&
					c.DialTimeout == 2*time.Second && c.IdleTimeout == 30*time.Second && c.MaxConnsPerHost == 4
			}},
		{"flags then legacy", []string{"-dial-timeout", "2s", ":7000", "12"}, nil, func(c config.Config) bool {
			return c.Listen == ":7000" && c.MaxIdlePerHost == 12 && c.DialTimeout == 2*time.Second
		}},
		{"env", nil, []string{"WARMPROXY_MAX_IDLE_PER_HOST", "32", "WARMPROXY_LISTEN", "127.0.0.1:7", "WARMPROXY_LOG_FORMAT", "json"},
			func(c config.Config) bool {
				return c.MaxIdlePerHost == 32 && c.Listen == "127.0.0.1:7" && c.LogFormat == "json"
			}},
		{"flag beats env", []string{"-max-idle-per-host", "8"}, []string{"WARMPROXY_MAX_IDLE_PER_HOST", "32"},
			func(c config.Config) bool { return c.MaxIdlePerHost == 8 }},
		{"positional beats env", []string{":9999", "16"}, []string{"WARMPROXY_LISTEN", "127.0.0.1:7", "WARMPROXY_MAX_IDLE_PER_HOST", "32"},
			func(c config.Config) bool { return c.Listen == ":9999" && c.MaxIdlePerHost == 16 }},
		{"env fills what flags leave", []string{"-listen", ":1"}, []string{"WARMPROXY_PROTOCOL_HEADER", "X-Env"},
			func(c config.Config) bool { return c.Listen == ":1" && c.ProtocolHeader == "X-Env" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			c, act, err := parseArgs(tt.args, env(tt.env...), &out)
			if err != nil || act != actionRun {
				t.Fatalf("parseArgs(%q) = %v, %v; want run, nil", tt.args, act, err)
			}
			if !tt.check(c) {
				t.Errorf("parseArgs(%q) with env %q = %+v", tt.args, tt.env, c)
			}
			// The legacy bare ":port" binds every interface, which
			// Validate refuses without an access rule (issue 6); the
			// opt-in shows the rest of the parsed config is valid.
			if strings.HasPrefix(c.Listen, ":") {
				c.OpenProxyIKnow = true
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}
