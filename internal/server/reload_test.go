package server

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
)

// Issue 7: SIGHUP changes the access log format while running; a reload
// that any reloader rejects changes nothing and logs why.
func TestReload(t *testing.T) {
	var out, logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	started := config.MustParse(config.Default())
	access := newLiveAccessLog(&out, started.LogFormat)
	failing := false
	var committed int
	rules := reloader{
		keys: []string{"rules"},
		prepare: func(config.Parsed) (func(), error) {
			if failing {
				return nil, errors.New("rules: line 3: bad cidr")
			}
			return func() { committed++ }, nil
		},
	}
	rs := []reloader{access.reloader(started.LogFormat), rules}
	entry := func(url string) *accesslog.Entry {
		return &accesslog.Entry{Start: time.Unix(0, 0), Method: "GET", URL: url, Status: 200, Kind: accesslog.KindRequest}
	}

	access.Log(entry("http://one.test/"))
	next := started
	next.LogFormat, next.Listen = "json", "127.0.0.1:1"
	running := reload(log, started, started, next, rs)
	if running.Config != next.Config {
		t.Errorf("reload returned %+v, want %+v", running, next)
	}
	access.Log(entry("http://two.test/"))

	failing = true
	bad := next
	bad.LogFormat = "tsv"
	if got := reload(log, started, running, bad, rs); got.Config != running.Config {
		t.Errorf("failed reload returned %+v, want the running %+v", got, running)
	}
	access.Log(entry("http://three.test/"))
	access.Close()

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 ||
		!strings.Contains(lines[0], "\thttp://one.test/\t") ||
		!strings.HasPrefix(lines[1], "{") || !strings.Contains(lines[1], `"url":"http://two.test/"`) ||
		!strings.HasPrefix(lines[2], "{") || !strings.Contains(lines[2], `"url":"http://three.test/"`) {
		t.Errorf("access log =\n%s\nwant one TSV line, then two JSON lines (the failed reload kept json)", out.String())
	}
	if committed != 1 {
		t.Errorf("rules committed %d times, want 1 (not on the failed reload)", committed)
	}
	l := logs.String()
	for _, want := range []string{
		`msg="configuration reloaded" applied=[log-format] needs_restart=[listen]`,
		`level=ERROR msg="reload failed, keeping the old configuration"`,
		"bad cidr",
	} {
		if !strings.Contains(l, want) {
			t.Errorf("log = %q, want %q in it", l, want)
		}
	}
}

// Issue 16: the settings the reloaders apply are the ones config declares
// reloadable (its reload tags, which -h and the log's needs_restart
// follow), no more and no fewer.
func TestReloadersMatchDeclarations(t *testing.T) {
	started := config.MustParse(config.Default())
	var got []string
	for _, r := range []reloader{newLiveAccessLog(io.Discard, started.LogFormat).reloader(started.LogFormat), clientsReloader(nil), policyReloader(nil, started)} {
		got = append(got, r.keys...)
	}
	slices.Sort(got)
	want := config.ReloadKeys()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("reloaders apply %q; config declares %q reloadable (reload tag)", got, want)
	}
}
