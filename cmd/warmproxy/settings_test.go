package main

import (
	"bytes"
	"strings"
	"testing"

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
