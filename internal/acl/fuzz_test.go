package acl

import (
	"net/netip"
	"strings"
	"testing"
)

// Issue 6: FuzzRule checks rule parsing and matching: nothing panics, a
// parsed rule's normal form parses to itself, and an IP rule matches
// exactly the addresses netip.Prefix.Contains says it holds.
func FuzzRule(f *testing.F) {
	seeds := []struct {
		rule, host string
		port       int
		ip         string
	}{
		{"example.com", "EXAMPLE.com.", 80, "93.184.215.14"},
		{"*.example.com:443", "a.example.com", 443, "93.184.215.14"},
		{"10.0.0.0/8", "x.test", 80, "10.1.2.3"},
		{"[fd00::/8]:1-1024", "x.test", 22, "fd00::1"},
		{"::ffff:127.0.0.0/104", "x.test", 80, "127.0.0.9"},
		{":25", "mail.test", 25, "::ffff:1.2.3.4"},
		{"*", "", 0, "64:ff9b::a9fe:a9fe"},
		{"[::1]", "", 65535, "::1"},
		{"127.0.0.2:80-80", "127.0.0.2", 80, "127.0.0.2"},
	}
	for _, s := range seeds {
		f.Add(s.rule, s.host, s.port, s.ip)
	}
	f.Fuzz(func(t *testing.T, rule, host string, port int, ipText string) {
		r, err := ParseRule(rule)
		ip, ipErr := netip.ParseAddr(ipText)
		if ipErr != nil {
			ip = netip.Addr{}
		}
		// Whatever the rule, the policies built around it never panic.
		for _, cfg := range []Config{
			{Allow: []string{rule}},
			{Deny: []string{rule}, DenyPrivate: true},
		} {
			if p, err := New(cfg); err == nil {
				p.Check(host, port, ip)
				p.CheckName(host, port)
			}
		}
		if err != nil {
			return
		}
		text := r.String()
		r2, err := ParseRule(text)
		if err != nil {
			t.Fatalf("ParseRule(%q) ok as %q, which does not parse: %v", rule, text, err)
		}
		if r2.String() != text {
			t.Fatalf("ParseRule(%q) = %q, reparsed = %q", rule, text, r2.String())
		}
		if strings.ContainsAny(text, " \t\r\n,") {
			t.Fatalf("ParseRule(%q) = %q holds a separator", rule, text)
		}
		got := r.match(host, port, ip.Unmap())
		if r.kind == kindPrefix {
			want := ip.IsValid() && r.portOK(port) && r.prefix.Contains(ip.Unmap())
			if got != want {
				t.Fatalf("rule %q match(%q, %d, %v) = %v, want %v", text, host, port, ip, got, want)
			}
		}
		if r.kind == kindHost && got && !strings.EqualFold(strings.TrimSuffix(host, "."), r.host) {
			t.Fatalf("host rule %q matched %q", text, host)
		}
		if r.kind == kindSuffix && got && !strings.HasSuffix(strings.ToLower(strings.TrimSuffix(host, ".")), "."+r.host) {
			t.Fatalf("suffix rule %q matched %q", text, host)
		}
	})
}
