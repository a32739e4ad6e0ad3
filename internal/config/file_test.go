package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Issue 7: the configuration file holds every setting. Issue 16: each
// setting is declared once, in Config's tags, from which the file's keys,
// the flags and the environment are derived; a Config field with no key
// could be set by none of them.
func TestSettingsDeclared(t *testing.T) {
	ct := reflect.TypeFor[Config]()
	ss := Settings()
	if len(ss) != ct.NumField() {
		t.Errorf("Settings() has %d settings, Config %d fields: give every field a key tag", len(ss), ct.NumField())
	}
	seen := map[string]bool{}
	var zero Config
	for i := range ct.NumField() {
		if ct.Field(i).Tag.Get("key") == "" {
			t.Errorf("Config.%s has no key tag: add `key:\"kebab-name\" help:\"...\"`", ct.Field(i).Name)
		}
	}
	for _, s := range ss {
		if s.Key != strings.ToLower(s.Key) || strings.ContainsAny(s.Key, "_ ") || seen[s.Key] {
			t.Errorf("setting %q: want a unique kebab-case flag name", s.Key)
		}
		seen[s.Key] = true
		if s.Help == "" {
			t.Errorf("setting %s has no help tag", s.Key)
		}
		if s.Arg != "" && !strings.Contains(s.Help, s.Arg) {
			t.Errorf("setting %s: help %q does not name its value %q", s.Key, s.Help, s.Arg)
		}
		if s.Default != "" {
			if err := s.Set(&zero, s.Default); err != nil {
				t.Errorf("setting %s: default %q: %v", s.Key, s.Default, err)
			}
		}
	}
}

func TestParseFile(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		// want is Default() changed by edit.
		edit func(*Config)
		// errs are substrings, one per expected problem, in order.
		errs []string
	}{
		{name: "empty", yaml: "", edit: func(*Config) {}},
		{name: "comments only", yaml: "# nothing\n", edit: func(*Config) {}},
		{
			name: "some keys",
			yaml: "listen: 127.0.0.1:8888\nmax-idle-per-host: 16\ndial-timeout: 3s\nconnect-ports: 443,8443\nlog-format: json\n",
			edit: func(c *Config) {
				c.Listen, c.MaxIdlePerHost, c.DialTimeout, c.ConnectPorts, c.LogFormat = "127.0.0.1:8888", 16, 3*time.Second, "443,8443", "json"
			},
		},
		{
			// A key given as zero is applied: pointers tell it from unset.
			name: "zero is not unset",
			yaml: "retry-body-bytes: 0\nmax-conns-per-host: 0\n",
			edit: func(c *Config) { c.RetryBodyBytes, c.MaxConnsPerHost = 0, 0 },
		},
		{name: "port as a number", yaml: "connect-ports: 8443\n", edit: func(c *Config) { c.ConnectPorts = "8443" }},
		{
			name: "every problem listed",
			yaml: "listen: 127.0.0.1:1\nmax-idel-per-host: 3\ndial-timeout: 10\nidle-timeout: soon\nmax-idle: many\nlog_format: json\n",
			edit: func(c *Config) { c.Listen = "127.0.0.1:1" },
			errs: []string{
				`line 2: unknown key "max-idel-per-host"`,
				`line 3: dial-timeout: value "10" (int): want a duration such as 30s`,
				`line 4: idle-timeout: value "soon" (str): want a duration`,
				`line 5: max-idle: value "many" (str): want a whole number`,
				`line 6: unknown key "log_format"`,
			},
		},
		{name: "two documents", yaml: "listen: :1\n---\nlisten: :2\n", edit: func(*Config) {}, errs: []string{"more than one YAML document"}},
		{name: "not a mapping", yaml: "- listen\n", edit: func(*Config) {}, errs: []string{"line 1: want a mapping"}},
		{name: "repeated key", yaml: "listen: :1\nlisten: :2\n", edit: func(c *Config) { c.Listen = ":1" }, errs: []string{`line 2: key "listen" repeats line 1`}},
		{name: "syntax", yaml: "listen: [\n", edit: func(*Config) {}, errs: []string{"warmproxy.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFile("warmproxy.yaml", []byte(tt.yaml))
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tt.errs) {
				t.Fatalf("ParseFile(%q) errors = %q, want %d matching %q", tt.yaml, got, len(tt.errs), tt.errs)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.errs[i]) || !strings.Contains(got[i], "warmproxy.yaml") {
					t.Errorf("ParseFile(%q) error %d = %q, want it to name the file and contain %q", tt.yaml, i, got[i], tt.errs[i])
				}
			}
			c, want := Default(), Default()
			f.Apply(&c)
			tt.edit(&want)
			if c != want {
				t.Errorf("Apply(ParseFile(%q)) = %+v, want %+v", tt.yaml, c, want)
			}
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("LoadFile(missing) = %v, want an error naming the file", err)
	}
}

// FileFrom and Marshal print the effective configuration; reading it back
// must give the same Config.
func TestFileRoundTrip(t *testing.T) {
	c := Default()
	c.CAFile, c.LogFormat, c.DialTimeout, c.ConnectPorts = "/etc/ssl/extra.pem", "json", 1500*time.Millisecond, "*"
	data, err := FileFrom(c).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFile(path)
	if err != nil {
		t.Fatalf("LoadFile(Marshal(FileFrom(c))) = %v\n%s", err, data)
	}
	var got Config
	f.Apply(&got)
	if got != c {
		t.Errorf("round trip = %+v, want %+v\n%s", got, c, data)
	}
	if !strings.Contains(string(data), "dial-timeout: 1.5s") {
		t.Errorf("Marshal wrote durations as:\n%s\nwant dial-timeout: 1.5s", data)
	}
}

func TestKeysAndDiff(t *testing.T) {
	keys := Keys()
	if len(keys) != reflect.TypeFor[Config]().NumField() || keys[0] != "listen" || !slices.Contains(keys, "log-format") {
		t.Errorf("Keys() = %q", keys)
	}
	a, b := Default(), Default()
	if d := Diff(a, b); d != nil {
		t.Errorf("Diff(Default, Default) = %q, want none", d)
	}
	b.LogFormat, b.Listen = "json", ":1"
	if d := Diff(a, b); !slices.Equal(d, []string{"listen", "log-format"}) {
		t.Errorf("Diff = %q, want [listen log-format]", d)
	}
}
