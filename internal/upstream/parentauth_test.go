package upstream_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// Issue 12: -parent-proxy-auth-file holds user:password on one line; the
// parent gets those credentials, a file others may read is used with a
// warning, and a malformed one is refused at start, without its content in
// the error.
func TestParentAuthFile(t *testing.T) {
	par := startHTTPParent(t, "alice", "s3cret:x")
	o, _ := countingOrigin(t)
	dir := t.TempDir()
	tests := []struct {
		name, content string
		mode          os.FileMode
		wantErr       string
		wantWarn      bool
	}{
		{"good", "alice:s3cret:x\n", 0o600, "", false},
		{"crlf", "alice:s3cret:x\r\n", 0o400, "", false},
		{"others may read", "alice:s3cret:x\n", 0o644, "", true},
		{"no colon", "alice\n", 0o600, "want one line user:password", false},
		{"two lines", "alice:s3cret:x\nbob:y\n", 0o600, "want one line user:password", false},
		{"empty user", ":s3cret:x\n", 0o600, "want one line user:password", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(file, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(file, tt.mode)
			cfg := testConfig()
			cfg.ParentProxy = "http://" + par.addr
			cfg.ParentProxyAuthFile = file
			if tt.wantErr != "" {
				_, err := upstream.New(config.MustParse(cfg))
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("upstream.New = %v, want an error saying %q without the password", err, tt.wantErr)
				}
				return
			}
			up, logs := testUpstream(t, cfg)
			before := par.refused.Load()
			if got := get(t, up.RoundTripper(), o.URL+"/"); !strings.HasPrefix(got, "hello from ") || par.refused.Load() != before {
				t.Fatalf("through the parent: %q, refused %d; want the origin's answer (credentials accepted)", got, par.refused.Load()-before)
			}
			l := logs.String()
			if strings.Contains(l, "s3cret") {
				t.Errorf("log shows the password: %s", l)
			}
			if warned := strings.Contains(l, "chmod 600"); warned != tt.wantWarn {
				t.Errorf("mode warning %v, want %v: %s", warned, tt.wantWarn, l)
			}
		})
	}
}
