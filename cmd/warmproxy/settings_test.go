package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
)

// Issue 16: -h lists every declared setting once, with its declared help
// and default, and names the settings SIGHUP applies as config declares
// them (reload tag).
func TestHelpFromDeclarations(t *testing.T) {
	var help bytes.Buffer
	if _, act, err := parseArgs([]string{"-h"}, envMap(nil), &help); err != nil || act != actionHelp {
		t.Fatalf("parseArgs(-h) = %v, %v", act, err)
	}
	lines := strings.Split(help.String(), "\n")
	for _, s := range config.Settings() {
		var head, body string
		for _, line := range lines {
			if name, _, _ := strings.Cut(strings.TrimPrefix(line, "  -"), " "); strings.HasPrefix(line, "  -") && name == s.Key {
				head = line
			} else if head != "" && body == "" {
				body = line
			}
			if body != "" {
				break
			}
		}
		if head == "" {
			t.Errorf("-h has no line for -%s", s.Key)
			continue
		}
		if s.Arg != "" && head != "  -"+s.Key+" "+s.Arg {
			t.Errorf("-h line %q, want the value named %q", head, s.Arg)
		}
		if want := strings.ReplaceAll(s.Help, "`", ""); !strings.Contains(body, want) {
			t.Errorf("-h for -%s: %q, want the declared help %q", s.Key, body, want)
		}
		if s.Default != "" && s.Default != "false" && !strings.Contains(body, "(default ") {
			t.Errorf("-h for -%s: %q names no default (declared %q)", s.Key, body, s.Default)
		}
	}
	keys := config.ReloadKeys()
	if want := "applies what can change while running: " + strings.Join(keys, ", ") + "."; !strings.Contains(strings.Join(strings.Fields(usageHead), " "), want) {
		t.Errorf("usageHead does not say %q (config's reload tags)", want)
	}
}

// Issue 16: -check-config prints every declared setting, in declaration
// order, and what it prints reads back (as a -config file) to the
// configuration checked, each setting given by flag and by environment
// variable under the names config derives.
func TestCheckConfigFromDeclarations(t *testing.T) {
	args := []string{"-check-config", "-dial-timeout", "3s", "-upstream-queue-timeout", "1s", "-route", "/a/=https://a.test/"}
	env := map[string]string{config.Setting{Key: "max-idle"}.Env(): "9", "WARMPROXY_UPSTREAM_PREWARM_TIMEOUT": "7s"}
	var stdout, stderr bytes.Buffer
	if code := run(args, envMap(env), &stdout, &stderr); code != 0 {
		t.Fatalf("run(%q) = %d\n%s", args, code, &stderr)
	}
	out := stdout.String()
	last := -1
	for _, key := range config.Keys() {
		i := strings.Index(out, "\n"+key+":")
		if i < 0 {
			t.Errorf("-check-config printed no %s", key)
			continue
		}
		if i < last {
			t.Errorf("-check-config printed %s out of declaration order", key)
		}
		last = i
	}
	f, err := config.ParseFile("check-config output", stdout.Bytes())
	if err != nil {
		t.Fatalf("-check-config output does not read back: %v\n%s", err, out)
	}
	got := config.Default()
	f.Apply(&got)
	want := config.Default()
	want.DialTimeout, want.UpstreamQueueTimeout, want.Routes = 3*time.Second, time.Second, "/a/=https://a.test/"
	want.MaxIdle, want.UpstreamPrewarmTimeout = 9, 7*time.Second
	if d := config.Diff(got, want); d != nil {
		t.Errorf("-check-config output read back differs from the configuration in %q\n%s", d, out)
	}
}
