package acl

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		in, want string // want "" means a parse error
	}{
		{"example.com", "example.com"},
		{"Example.COM.", "example.com"},
		{"*.example.com", "*.example.com"},
		{"*", "*"},
		{"*:443", "*:443"},
		{":25", "*:25"},
		{"example.com:8000-8999", "example.com:8000-8999"},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"127.0.0.2", "127.0.0.2"},
		{"127.0.0.2:80", "127.0.0.2:80"},
		{"::1", "::1"},
		{"fd00::/8", "fd00::/8"},
		{"[fd00::/8]:443", "[fd00::/8]:443"},
		{"[::1]:8080", "[::1]:8080"},
		{"::ffff:10.0.0.1", "10.0.0.1"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"", ""},
		{":", ""},
		{"example.com:", ""},
		{"example.com:0", ""},
		{"example.com:65536", ""},
		{"example.com:9-8", ""},
		{"example.com:http", ""},
		{"exa mple.com", ""},
		{"ex/ample.com", ""},
		{"*.", ""},
		{"**.example.com", ""},
		{"a..b", ""},
		{"10.0.0.0/33", ""},
		{"300.1.1.1", ""},
		{"[example.com]:80", ""},
		{"[::1", ""},
		{"[::1]80", ""},
		{"fe80::1%eth0", ""},
		{strings.Repeat("a", 64) + ".com", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRule(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ParseRule(%q) = %q, want an error", tt.in, r)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRule(%q) error %v, want %q", tt.in, err, tt.want)
			}
			if got := r.String(); got != tt.want {
				t.Errorf("ParseRule(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func mustPolicy(t *testing.T, cfg Config) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return p
}

// Issue 6: metadata addresses are denied by default, -deny-private denies
// loopback, RFC 1918, link-local and ULA, and the decision names the rule.
func TestCheck(t *testing.T) {
	type dst struct {
		host string
		port int
		ip   string
	}
	tests := []struct {
		name     string
		cfg      Config
		dst      dst
		allow    bool
		wantRule string
	}{
		{"public allowed", Config{}, dst{"example.com", 80, "93.184.215.14"}, true, "default"},
		{"loopback allowed by default", Config{}, dst{"localhost", 80, "127.0.0.1"}, true, "default"},
		{"aws metadata", Config{}, dst{"169.254.169.254", 80, "169.254.169.254"}, false, "metadata 169.254.0.0/16"},
		{"name resolving to metadata", Config{}, dst{"evil.test", 80, "169.254.169.254"}, false, "metadata 169.254.0.0/16"},
		{"ecs metadata", Config{}, dst{"x.test", 80, "169.254.170.2"}, false, "metadata 169.254.0.0/16"},
		{"aws ipv6 metadata", Config{}, dst{"x.test", 80, "fd00:ec2::254"}, false, "metadata fd00:ec2::254/128"},
		{"alibaba metadata", Config{}, dst{"x.test", 80, "100.100.100.200"}, false, "metadata 100.100.100.200/32"},
		{"mapped metadata", Config{}, dst{"x.test", 80, "::ffff:169.254.169.254"}, false, "metadata 169.254.0.0/16"},
		{"nat64 metadata", Config{}, dst{"x.test", 80, "64:ff9b::a9fe:a9fe"}, false, "metadata 169.254.0.0/16"},
		{"host allow does not lift metadata", Config{Allow: []string{"*.example.com"}}, dst{"a.example.com", 80, "169.254.169.254"}, false, "metadata 169.254.0.0/16"},
		{"ip allow lifts metadata", Config{Allow: []string{"169.254.169.254/32"}}, dst{"x.test", 80, "169.254.169.254"}, true, "allow 169.254.169.254"},
		{"ip allow lift is port bound", Config{Allow: []string{"*", "169.254.169.254:8080"}}, dst{"x.test", 80, "169.254.169.254"}, false, "metadata 169.254.0.0/16"},
		{"deny-private loopback", Config{DenyPrivate: true}, dst{"localhost", 80, "127.0.0.1"}, false, "deny-private 127.0.0.0/8"},
		{"deny-private v6 loopback", Config{DenyPrivate: true}, dst{"::1", 80, "::1"}, false, "deny-private ::1/128"},
		{"deny-private rfc1918", Config{DenyPrivate: true}, dst{"evil.test", 80, "10.0.0.1"}, false, "deny-private 10.0.0.0/8"},
		{"deny-private 172", Config{DenyPrivate: true}, dst{"evil.test", 443, "172.20.1.1"}, false, "deny-private 172.16.0.0/12"},
		{"deny-private 192.168", Config{DenyPrivate: true}, dst{"evil.test", 443, "192.168.1.1"}, false, "deny-private 192.168.0.0/16"},
		{"deny-private ula", Config{DenyPrivate: true}, dst{"evil.test", 443, "fd12::1"}, false, "deny-private fc00::/7"},
		{"deny-private link-local", Config{DenyPrivate: true}, dst{"evil.test", 443, "169.254.1.1"}, false, "metadata 169.254.0.0/16"},
		{"deny-private v6 link-local", Config{DenyPrivate: true}, dst{"evil.test", 443, "fe80::1"}, false, "metadata fe80::/10"},
		{"deny-private zero", Config{DenyPrivate: true}, dst{"0.0.0.0", 80, "0.0.0.0"}, false, "deny-private 0.0.0.0/8"},
		{"deny-private unspecified v6", Config{DenyPrivate: true}, dst{"::", 80, "::"}, false, "deny-private ::/128"},
		{"deny-private mapped", Config{DenyPrivate: true}, dst{"x.test", 80, "::ffff:10.1.1.1"}, false, "deny-private 10.0.0.0/8"},
		{"deny-private public ok", Config{DenyPrivate: true}, dst{"example.com", 443, "93.184.215.14"}, true, "default"},
		{"deny-private lifted by cidr", Config{DenyPrivate: true, Allow: []string{"*", "10.1.0.0/16"}}, dst{"svc.test", 80, "10.1.2.3"}, true, "allow *"},
		{"deny-private not lifted outside cidr", Config{DenyPrivate: true, Allow: []string{"*", "10.1.0.0/16"}}, dst{"svc.test", 80, "10.2.2.3"}, false, "deny-private 10.0.0.0/8"},
		{"deny ip", Config{Deny: []string{"127.0.0.2"}}, dst{"x.test", 80, "127.0.0.2"}, false, "deny 127.0.0.2"},
		{"deny ip other ok", Config{Deny: []string{"127.0.0.2"}}, dst{"x.test", 80, "127.0.0.1"}, true, "default"},
		{"deny host", Config{Deny: []string{"bad.test"}}, dst{"BAD.test.", 80, "127.0.0.1"}, false, "deny bad.test"},
		{"deny suffix", Config{Deny: []string{"*.bad.test"}}, dst{"a.b.bad.test", 80, "127.0.0.1"}, false, "deny *.bad.test"},
		{"deny suffix not apex", Config{Deny: []string{"*.bad.test"}}, dst{"bad.test", 80, "127.0.0.1"}, true, "default"},
		{"deny suffix not lookalike", Config{Deny: []string{"*.bad.test"}}, dst{"notbad.test", 80, "127.0.0.1"}, true, "default"},
		{"deny port", Config{Deny: []string{":25"}}, dst{"mail.test", 25, "127.0.0.1"}, false, "deny *:25"},
		{"deny port range", Config{Deny: []string{"*:6000-6999"}}, dst{"x.test", 6379, "127.0.0.1"}, false, "deny *:6000-6999"},
		{"deny beats allow", Config{Allow: []string{"*.test"}, Deny: []string{"bad.test"}}, dst{"bad.test", 80, "127.0.0.1"}, false, "deny bad.test"},
		{"allow list hit", Config{Allow: []string{"*.example.com:443"}}, dst{"api.example.com", 443, "93.184.215.14"}, true, "allow *.example.com:443"},
		{"allow list wrong port", Config{Allow: []string{"*.example.com:443"}}, dst{"api.example.com", 80, "93.184.215.14"}, false, "allow-list"},
		{"allow list miss", Config{Allow: []string{"example.com"}}, dst{"other.com", 80, "93.184.215.14"}, false, "allow-list"},
		{"allow list by cidr", Config{Allow: []string{"127.0.0.0/8"}}, dst{"x.test", 80, "127.0.0.5"}, true, "allow 127.0.0.0/8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPolicy(t, tt.cfg)
			d := p.Check(tt.dst.host, tt.dst.port, netip.MustParseAddr(tt.dst.ip))
			if d.Allow != tt.allow || d.Rule != tt.wantRule {
				t.Errorf("Check(%v) = %+v, want allow=%v rule %q", tt.dst, d, tt.allow, tt.wantRule)
			}
			if d.Reason == "" {
				t.Errorf("Check(%v) has no reason", tt.dst)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		host  string
		port  int
		allow bool
	}{
		{"ip literal metadata", Config{}, "169.254.169.254", 80, false},
		{"ip literal v6 metadata", Config{}, "fd00:ec2::254", 80, false},
		{"name undecided", Config{DenyPrivate: true}, "evil.test", 80, true},
		{"deny host", Config{Deny: []string{"*.bad.test"}}, "x.bad.test", 80, false},
		{"deny cidr waits for ip", Config{Deny: []string{"10.0.0.0/8"}}, "x.test", 80, true},
		{"name allow list miss", Config{Allow: []string{"ok.test"}}, "x.test", 80, false},
		{"name allow list hit", Config{Allow: []string{"ok.test"}}, "ok.test", 80, true},
		{"ip allow list waits for ip", Config{Allow: []string{"ok.test", "10.0.0.0/8"}}, "x.test", 80, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustPolicy(t, tt.cfg).CheckName(tt.host, tt.port)
			if d.Allow != tt.allow {
				t.Errorf("CheckName(%q, %d) = %+v, want allow=%v", tt.host, tt.port, d, tt.allow)
			}
		})
	}
}

func TestNewReportsEveryBadRule(t *testing.T) {
	_, err := New(Config{Allow: []string{"ok.test", "bad rule"}, Deny: []string{"10.0.0.0/99"}})
	if err == nil {
		t.Fatal("New with bad rules: want an error")
	}
	for _, want := range []string{"bad rule", "10.0.0.0/99"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New error %q does not name %q", err, want)
		}
	}
}

func TestClients(t *testing.T) {
	c, err := ParseClients([]string{"127.0.0.1/32", "10.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr  string
		allow bool
	}{
		{"127.0.0.1", true},
		{"::ffff:127.0.0.1", true},
		{"127.0.0.2", false},
		{"10.9.9.9", true},
		{"::1", true},
		{"192.168.1.1", false},
	}
	for _, tt := range tests {
		if d := c.Check(netip.MustParseAddr(tt.addr)); d.Allow != tt.allow {
			t.Errorf("Clients.Check(%s) = %+v, want allow=%v", tt.addr, d, tt.allow)
		}
	}
	var none *Clients
	if d := none.Check(netip.MustParseAddr("192.0.2.1")); !d.Allow {
		t.Errorf("nil Clients.Check = %+v, want allow", d)
	}
	if _, err := ParseClients([]string{"nonsense"}); err == nil {
		t.Error("ParseClients(nonsense): want an error")
	}
}

func TestDeniedError(t *testing.T) {
	err := error(&DeniedError{Decision: Decision{Rule: "deny 127.0.0.2", Reason: "denied by configuration"}, Host: "x.test", Port: 80, IP: netip.MustParseAddr("127.0.0.2")})
	if !errors.Is(err, ErrDenied) {
		t.Error("errors.Is(DeniedError, ErrDenied) = false")
	}
	if s := err.Error(); !strings.Contains(s, "deny 127.0.0.2") || !strings.Contains(s, "x.test (127.0.0.2)") {
		t.Errorf("DeniedError.Error() = %q, want the rule and the destination", s)
	}
}
