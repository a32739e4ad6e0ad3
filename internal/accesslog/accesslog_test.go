package accesslog

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var start = time.Date(2026, 11, 23, 9, 30, 1, 234_000_000, time.UTC)

// entries covers each kind of record, with a hostile URL.
var entries = []Entry{
	{
		Start: start, Client: "127.0.0.1:50001", Method: "GET",
		URL: "https://example.test/a?b=1", RequestedURL: "http://example.test/a?b=1",
		Status: 200, BytesOut: 2381, BytesIn: 0, Duration: 81188100 * time.Nanosecond,
		Reused: false, Connect: 12500 * time.Microsecond, TLSResumed: true, Kind: KindRequest,
	},
	{
		Start: start, Client: "127.0.0.1:50002", Method: "POST",
		URL: "http://example.test/up", RequestedURL: "http://example.test/up",
		Status: 201, BytesOut: 2, BytesIn: 1024, Duration: 3 * time.Millisecond,
		Reused: true, Retries: 1, Kind: KindRequest,
	},
	{
		Start: start, Client: "127.0.0.1:50003", Method: "GET",
		URL: "http://no-such-host.invalid/", RequestedURL: "http://no-such-host.invalid/",
		Status: 502, BytesOut: 61, Duration: time.Millisecond, Kind: KindRequest,
		Error: "dns_error", Detail: "dns lookup of no-such-host.invalid failed: no such host",
	},
	{
		Start: start, Client: "127.0.0.1:50004", Method: "CONNECT",
		URL: "example.test:443", RequestedURL: "example.test:443",
		Status: 200, BytesOut: 5000, BytesIn: 700, Duration: 2 * time.Second, Kind: KindConnect, End: "eof",
	},
	{
		Start: start, Client: "127.0.0.1:50005", Method: "GET",
		URL: "http://a.test/x\tforged\nline", RequestedURL: "http://a.test/x\tforged\nline",
		Status: 499, Kind: KindRequest, Error: "connection_terminated",
	},
	{
		Start: start, Client: "127.0.0.1:50006", Method: "CONNECT",
		URL: "example.test:22", RequestedURL: "example.test:22",
		Status: 403, BytesOut: 101, Kind: KindConnect, Error: "http_request_denied",
		Detail: "CONNECT to example.test:22 is not allowed: port not in -connect-ports (now 443); add it there, or * for any",
	},
	{
		// Only the first line, control characters replaced, cut short on
		// a character boundary.
		Start: start, Client: "127.0.0.1:50007", Method: "GET",
		URL: "/x", RequestedURL: "/x",
		Status: 400, BytesOut: 300, Kind: KindRequest, Error: "http_request_error",
		Detail: "request for /x\tnames no target host; use a proxy\nsecond line",
	},
	{
		Start: start, Client: "127.0.0.1:50008", Method: "GET",
		URL: "http://a.test/", RequestedURL: "http://a.test/",
		Status: 502, Kind: KindRequest, Error: "http_protocol_error",
		Detail: strings.Repeat("x", maxTSVDetail-1) + "é and more",
	},
}

// Issue 2: the TSV line keeps the original http_pool's first eight fields
// (time, client, method, real URL, status, bytes, seconds, requested URL)
// and adds reuse and connect time after them. Issue 15: a detail field
// at the end says why a request failed, as the JSON format's detail does,
// in one bounded line.
func TestTSVGolden(t *testing.T) {
	var got bytes.Buffer
	got.WriteString(TSVHeader + "\n")
	for i := range entries {
		got.Write(AppendTSV(nil, &entries[i]))
	}
	golden := filepath.Join("testdata", "tsv.golden")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("TSV lines differ from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", golden, got.Bytes(), want)
	}
	header := strings.Split(TSVHeader, "\t")
	for i, line := range strings.Split(strings.TrimSuffix(got.String(), "\n"), "\n") {
		if n := len(strings.Split(line, "\t")); n != len(header) {
			t.Errorf("line %d has %d fields, want %d: %q", i, n, len(header), line)
		}
	}
}

func TestAppendTSVAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = AppendTSV(buf[:0], &entries[0]) }); n != 0 {
		t.Errorf("AppendTSV allocates %v times per call, want 0", n)
	}
}

func TestJSON(t *testing.T) {
	var out bytes.Buffer
	l := New(&out, "json")
	l.Log(&entries[0])
	l.Log(&entries[2])
	l.Close()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d JSON lines, want 2:\n%s", len(lines), out.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("line 0 is not JSON: %v: %s", err, lines[0])
	}
	want := map[string]any{
		"time": "2026-11-23T09:30:01.234Z", "msg": "request", KeyKind: "request",
		KeyClient: "127.0.0.1:50001", KeyMethod: "GET", KeyURL: "https://example.test/a?b=1",
		KeyStatus: 200.0, KeyBytesOut: 2381.0, KeyBytesIn: 0.0, KeyDuration: 0.0811881,
		KeyRequestedURL: "http://example.test/a?b=1", KeyReused: false, KeyConnect: 0.0125,
		KeyTLSResumed: true, KeyRetries: 0.0,
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, rec[k], rec[k], v)
		}
	}
	if _, ok := rec[KeyError]; ok {
		t.Errorf("a record without an error has %s", KeyError)
	}
	if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec[KeyError] != "dns_error" || !strings.Contains(rec[KeyDetail].(string), "no such host") {
		t.Errorf("error record: %v", rec)
	}
}

func TestOff(t *testing.T) {
	var out bytes.Buffer
	l := New(&out, "off")
	if l != nil {
		t.Fatalf("New(off) = %v, want nil", l)
	}
	l.Log(&entries[0])
	l.Flush()
	l.Close()
	if out.Len() != 0 {
		t.Errorf("off wrote %q", out.String())
	}
}

// countingWriter counts Write calls.
type countingWriter struct {
	mu     sync.Mutex
	writes int
	buf    bytes.Buffer
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

// Logging is buffered: a burst of records costs a handful of writes, not
// one per record, and Close flushes what is left.
func TestBuffered(t *testing.T) {
	for _, format := range []string{"tsv", "json"} {
		t.Run(format, func(t *testing.T) {
			w := &countingWriter{}
			l := New(w, format)
			const n = 1000
			for range n {
				l.Log(&entries[1])
			}
			l.Close()
			w.mu.Lock()
			defer w.mu.Unlock()
			if lines := strings.Count(w.buf.String(), "\n"); lines != n {
				t.Errorf("got %d lines, want %d", lines, n)
			}
			if w.writes > 10 {
				t.Errorf("%d records took %d writes, want a few", n, w.writes)
			}
		})
	}
}

// The flush timer writes records out without a Close.
func TestFlushTimer(t *testing.T) {
	w := &countingWriter{}
	l := New(w, "tsv")
	defer l.Close()
	l.Log(&entries[0])
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		n := w.buf.Len()
		w.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("record not flushed within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkLogTSV(b *testing.B) {
	l := New(discard{}, "tsv")
	defer l.Close()
	b.ReportAllocs()
	for b.Loop() {
		l.Log(&entries[0])
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
