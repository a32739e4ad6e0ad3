package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Issue 8: the -upstream-tls rule form.
func TestTLSRulesParse(t *testing.T) {
	tests := []struct {
		in   string
		want []TLSRule
		err  string
	}{
		{in: "", want: nil},
		{in: " ; ", want: nil},
		{
			in: "*.partner.example,partner.example,ca=/c.pem,cert=/x.pem,key=/x.key,sni=api.partner.example; dev.test:8443,insecure",
			want: []TLSRule{
				{Hosts: []string{"*.partner.example", "partner.example"}, CAFile: "/c.pem", CertFile: "/x.pem", KeyFile: "/x.key", ServerName: "api.partner.example"},
				{Hosts: []string{"dev.test:8443"}, InsecureSkipVerify: true},
			},
		},
		{in: "10.0.0.0/8, sni=internal.test", want: []TLSRule{{Hosts: []string{"10.0.0.0/8"}, ServerName: "internal.test"}}},
		{in: "ca=/c.pem", err: "no host pattern"},
		{in: "a.test", err: "no option"},
		{in: "a.test,cert=/x.pem", err: "cert= and key= go together"},
		{in: "a.test,pin=abc", err: `unknown option "pin"`},
		{in: "a.test,ca=", err: "option ca has no value"},
		{in: "a test,insecure", err: "bad host name"},
		{in: "a.test,insecure; b.test", err: `rule 2 "b.test"`},
		{in: "a.test,sni=x.test,b.test", err: "after the options"},
	}
	for _, tt := range tests {
		got, err := TLSRules(tt.in).Parse()
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("TLSRules(%q).Parse() error = %v, want one with %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("TLSRules(%q).Parse() = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

// Issue 8: upstream-tls in the file, as a list of mappings or as the
// flag's string; a misspelt key is an error, not a rule without it.
func TestTLSRulesFile(t *testing.T) {
	tests := []struct {
		name, yaml, want, err string
	}{
		{"mappings", "upstream-tls:\n  - hosts: \"*.p.example, p.example\"\n    ca-file: /c.pem\n    server-name: api.p.example\n  - {hosts: dev.test, insecure-skip-verify: true}\n",
			"*.p.example,p.example,ca=/c.pem,sni=api.p.example; dev.test,insecure", ""},
		{"string", "upstream-tls: \"dev.test,insecure\"\n", "dev.test,insecure", ""},
		{"empty list", "upstream-tls: []\n", "", ""},
		{"misspelt key", "upstream-tls:\n  - hosts: x.test\n    cert_file: /c.pem\n", "", `unknown key "cert_file"`},
		{"separator in a value", "upstream-tls:\n  - {hosts: x.test, ca-file: \"/a,b.pem\"}\n", "", "may not hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFile("w.yaml", []byte(tt.yaml))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseFile error = %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := Default()
			f.Apply(&c)
			if string(c.UpstreamTLS) != tt.want {
				t.Errorf("upstream-tls = %q, want %q", c.UpstreamTLS, tt.want)
			}
			// The effective configuration prints and reads back the same.
			out, err := FileFrom(c).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseFile("out.yaml", out)
			if err != nil {
				t.Fatalf("re-reading %s: %v", out, err)
			}
			c2 := Default()
			back.Apply(&c2)
			if c2 != c {
				t.Errorf("round trip: upstream-tls %q, want %q", c2.UpstreamTLS, c.UpstreamTLS)
			}
		})
	}
}

// Issue 8: -parent-proxy and -no-parent-for are checked by Validate.
func TestValidateParent(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "parent.auth")
	if err := os.WriteFile(authFile, []byte("u:p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		parent, noParent string
		err              string
		authFile         string
	}{
		// Issue 12: the credentials may come from a file instead of argv.
		{"http://corp-proxy:3128", "", "", authFile},
		{"http://u:p@corp-proxy:3128", "", "keep the credentials in the file only", authFile},
		{"", "", "parent-proxy-auth-file is set but parent-proxy is not", authFile},
		{"http://corp-proxy:3128", "", "parent-proxy-auth-file: stat /nonexistent/parent.auth", "/nonexistent/parent.auth"},
		{"http://user:pa%3Ass@corp-proxy:3128", "*.internal.example,10.0.0.0/8", "", ""},
		{"socks5://127.0.0.1:1080", "", "", ""},
		{"socks5h://u:p@[::1]:1080", "", "", ""},
		{"https://corp:3128", "", `scheme "https"`, ""},
		{"http://corp-proxy", "", "want host:port", ""},
		{"http://corp-proxy:99999", "", `port "99999"`, ""},
		{"http://corp-proxy:3128/path", "", "no path", ""},
		{"corp-proxy:3128", "", "scheme", ""},
		{"", "x.test", "parent-proxy is not", ""},
		{"http://c:1", "bad host!", "no-parent-for", ""},
	}
	for _, tt := range tests {
		c := Default()
		c.ParentProxy, c.NoParentFor, c.ParentProxyAuthFile = tt.parent, tt.noParent, tt.authFile
		err := c.Validate()
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Validate(parent %q, no-parent-for %q) = %v, want %q", tt.parent, tt.noParent, err, tt.err)
		}
		if err != nil && strings.Contains(err.Error(), "pa:ss") {
			t.Errorf("Validate error %q shows the password", err)
		}
	}
}
