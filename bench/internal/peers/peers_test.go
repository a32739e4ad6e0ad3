package peers

import (
	"strings"
	"testing"
)

// The settings that make each peer a fair keep-alive competitor must be in
// its config; a typo here would silently bench a non-pooling proxy.
func TestConfig(t *testing.T) {
	p := Params{Dir: "/tmp/x", Listen: "127.0.0.1:1", Upstream: "127.0.0.1:2", TLS: true,
		CAFile: "/tmp/ca.pem", ServerName: "origin.bench", MaxConns: 100, FDs: FDsFor(100, 20000), Threads: 2}
	tests := []struct {
		peer string
		want []string
	}{
		{"nginx", []string{"worker_processes 2;", "keepalive 64;", "proxy_http_version 1.1;",
			`proxy_set_header Connection "";`, "proxy_ssl_session_reuse on;", "proxy_ssl_verify on;",
			"proxy_pass https://origin;", "listen 127.0.0.1:1", "server 127.0.0.1:2;", "worker_connections 456;"}},
		{"haproxy", []string{"nbthread 2", "http-reuse always", "bind 127.0.0.1:1",
			"server origin 127.0.0.1:2 ssl verify required ca-file /tmp/ca.pem", "maxconn 100"}},
		{"squid", []string{"http_port 127.0.0.1:1", "server_persistent_connections on", "cache deny all"}},
	}
	for _, tt := range tests {
		t.Run(tt.peer, func(t *testing.T) {
			got, err := Config(tt.peer, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("Config(%s) lacks %q:\n%s", tt.peer, w, got)
				}
			}
			if len(Argv(tt.peer, p.Dir, "/tmp/x/c")) == 0 {
				t.Errorf("Argv(%s) is empty", tt.peer)
			}
		})
	}
	plain := p
	plain.TLS = false
	got, _ := Config("nginx", plain)
	if strings.Contains(got, "proxy_ssl") || !strings.Contains(got, "proxy_pass http://origin;") {
		t.Errorf("Config(nginx, plain) has TLS settings:\n%s", got)
	}
	if _, err := Config("varnish", p); err == nil {
		t.Errorf("Config(varnish): want error")
	}
	if got := FDsFor(10100, 20000); got != 20000 {
		t.Errorf("FDsFor(10100, 20000) = %d, want 20000 (capped)", got)
	}
}
