package e2e_test

// PHP-FPM with interception (issue 13): an unchanged script, configured
// only by the pool's env[...] lines and php.ini values, gets the pool.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// fpmIndex is the unchanged application script: https://, the curl
// extension, no proxy and no CA option in its code.
const fpmIndex = `<?php
$ch = curl_init('%s');
curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);
$body = curl_exec($ch);
if ($body === false) {
    http_response_code(502);
    echo 'curl: ', curl_error($ch);
    exit;
}
echo $body;
`

// fpmPool is php-fpm's configuration: one static pool on a Unix socket,
// clear_env left at its default (on), so only env[...] reaches workers.
const fpmPool = `[global]
error_log = %[1]s/fpm.log
pid = %[1]s/fpm.pid
daemonize = no

[app]
%[2]slisten = %[1]s/fpm.sock
pm = static
pm.max_children = 4
env[HTTPS_PROXY] = http://%[3]s
env[https_proxy] = http://%[3]s
php_admin_value[curl.cainfo] = %[4]s
php_admin_value[openssl.cafile] = %[4]s
`

// fpmStart runs php-fpm in the foreground in dir with the pool above and
// waits for its socket.
func fpmStart(t *testing.T, dir, proxyAddr, caFile string) string {
	t.Helper()
	fpm := cliNeed(t, "php-fpm8.2", "/usr/sbin/php-fpm8.2", "/usr/sbin/php-fpm")
	var args []string
	userLines := ""
	if os.Getuid() == 0 {
		// Root may run it only when told so, and workers need a user.
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			t.Fatal(err)
		}
		userLines = "user = " + u.Username + "\ngroup = " + g.Name + "\n"
		args = append(args, "-R")
	}
	conf := filepath.Join(dir, "fpm.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, fpmPool, dir, userLines, proxyAddr, caFile), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, fpm, append(args, "-F", "-y", conf)...)
	// php-fpm's own environment carries no proxy setting either.
	cmd.Env = cliEnv()
	cmd.WaitDelay = 5 * time.Second
	out := &testnet.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			t.Error("php-fpm did not exit within 15s")
		}
	})
	sock := filepath.Join(dir, "fpm.sock")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "fpm.log"))
			t.Fatalf("php-fpm exited: %v\n%s\n%s", err, out, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "fpm.log"))
			t.Fatalf("php-fpm socket not up within 30s\n%s\n%s", out, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fpmRequest asks php-fpm for script through cgi-fcgi, as a web server
// would, and returns the response's status and body.
func fpmRequest(t *testing.T, cgiFCGI, sock, script string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cgiFCGI, "-bind", "-connect", sock)
	cmd.Env = []string{"SCRIPT_FILENAME=" + script, "SCRIPT_NAME=/" + filepath.Base(script), "REQUEST_METHOD=GET",
		"REQUEST_URI=/", "QUERY_STRING=", "SERVER_PROTOCOL=HTTP/1.1", "GATEWAY_INTERFACE=CGI/1.1", "REMOTE_ADDR=127.0.0.1"}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cgi-fcgi: %v\n%s", err, out)
	}
	// A CGI response: header lines, a blank line, the body.
	head, body, ok := strings.Cut(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n\n")
	if !ok {
		t.Fatalf("cgi-fcgi: no header block in %q", out)
	}
	status := "200"
	sc := bufio.NewScanner(strings.NewReader(head))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Status: "); ok {
			status, _, _ = strings.Cut(v, " ")
		}
	}
	return status, body
}

// Issue 13: a real PHP-FPM (Debian's php8.2-fpm) runs an unchanged
// script that calls https://api.test:PORT/ with the curl extension; the
// pool's env[HTTPS_PROXY]/env[https_proxy] and php.ini's curl.cainfo are
// the whole configuration. 50 page requests cause one TLS handshake at
// the origin.
func TestInterceptPHPFPM(t *testing.T) {
	cgiFCGI := cliNeed(t, "cgi-fcgi")
	origin := icptStartOrigin(t)
	caDir := icptCAInit(t, icptName)
	proxy := icptProxy(t, origin, icptName, caDir)
	dir := t.TempDir()
	// php-fpm's workers may run as another user: the files must be theirs
	// to read.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	target := "https://" + icptName + ":" + origin.Port + "/fpm"
	script := filepath.Join(dir, "index.php")
	if err := os.WriteFile(script, fmt.Appendf(nil, fpmIndex, target), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := fpmStart(t, dir, proxy.Addr, filepath.Join(caDir, "ca.pem"))
	const pages = 50
	for i := range pages {
		status, body := fpmRequest(t, cgiFCGI, sock, script)
		if status != "200" || body != "origin GET /fpm" {
			t.Fatalf("page %d: status %s body %q, want 200 %q", i, status, body, "origin GET /fpm")
		}
	}
	if conns, hs := origin.Conns.Load(), origin.Handshakes.Load(); conns != 1 || hs != 1 {
		t.Errorf("%d PHP-FPM pages caused %d TCP connections and %d TLS handshakes at the origin, want 1 and 1", pages, conns, hs)
	}
	recs := proxy.cliAccessRecords(t, pages, "\t"+target+"\t")
	for _, r := range recs {
		if r[cliFieldKind] != "intercepted" {
			t.Errorf("access record %q: want kind intercepted", r)
		}
	}
}
