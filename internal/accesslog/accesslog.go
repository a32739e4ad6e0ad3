// Package accesslog writes one record per proxied request or tunnel. It
// decides nothing: the proxy fills an Entry and hands it over.
//
// Records are buffered and flushed on a timer (and when the buffer fills),
// so a busy proxy makes one write syscall per batch, not one per request.
package accesslog

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Attribute keys of the JSON format, and the field names of TSV's header.
const (
	KeyTime         = "time"
	KeyClient       = "client"
	KeyMethod       = "method"
	KeyURL          = "url"
	KeyStatus       = "status"
	KeyBytesOut     = "bytes_out"
	KeyBytesIn      = "bytes_in"
	KeyDuration     = "duration_s"
	KeyRequestedURL = "requested_url"
	KeyReused       = "reused"
	KeyConnect      = "connect_s"
	KeyTLSResumed   = "tls_resumed"
	KeyRetries      = "retries"
	KeyKind         = "kind"
	KeyError        = "error"
	KeyDetail       = "detail"
	KeyEnd          = "end"
	// KeyALPN is the protocol a client picked by ALPN (intercepted tunnels).
	KeyALPN = "alpn"
)

// Kinds of record.
const (
	KindRequest = "request"
	KindConnect = "connect"
	KindUpgrade = "upgrade"
	// KindIntercepted is a request served inside an intercepted CONNECT
	// tunnel (-intercept), and that tunnel's own record.
	KindIntercepted = "intercepted"
)

// EndShutdown is the end of a request or tunnel cut because the shutdown
// grace period ran out.
const EndShutdown = "shutdown"

// Entry is one request or tunnel.
type Entry struct {
	Start  time.Time
	Client string
	Method string
	// URL is the URL warmproxy fetched (after the protocol header applied);
	// RequestedURL is the one the client asked for.
	URL, RequestedURL string
	Status            int
	// BytesOut counts body bytes sent to the client; BytesIn body bytes sent
	// upstream.
	BytesOut, BytesIn int64
	Duration          time.Duration
	// Reused is true when the request went out on a pooled connection.
	Reused bool
	// Connect is the time spent on a new upstream connection: TCP connect
	// plus TLS handshake. Zero when Reused.
	Connect time.Duration
	// TLSResumed is true when a new upstream TLS connection resumed a
	// session.
	TLSResumed bool
	// Retries counts extra upstream attempts (a stale pooled connection).
	Retries int
	// Kind is KindRequest, KindConnect, KindUpgrade or KindIntercepted.
	Kind string
	// Error is the RFC 9209 Proxy-Status error type, if any; Detail says
	// more.
	Error, Detail string
	// End says how a tunnel ended (tunnel.End*), or EndShutdown for a
	// request or tunnel cut when the shutdown grace period ran out.
	End string
}

// Logger writes entries in one format. A nil *Logger discards everything.
type Logger struct {
	mu   sync.Mutex
	w    *bufio.Writer
	json *slog.Logger
	buf  []byte
	done chan struct{}
	wg   sync.WaitGroup
}

// flushInterval bounds how long a record waits in the buffer.
const flushInterval = 200 * time.Millisecond

// New returns a Logger writing format ("tsv" or "json") to w, or nil for
// "off". Close flushes it.
func New(w io.Writer, format string) *Logger {
	if format == "off" {
		return nil
	}
	l := &Logger{w: bufio.NewWriterSize(w, 64<<10), done: make(chan struct{})}
	if format == "json" {
		l.json = slog.New(slog.NewJSONHandler(lockedWriter{l}, nil))
	}
	l.wg.Add(1)
	go l.flushLoop()
	return l
}

// lockedWriter lets slog write into the buffer under the logger's lock.
type lockedWriter struct{ l *Logger }

func (lw lockedWriter) Write(p []byte) (int, error) {
	lw.l.mu.Lock()
	defer lw.l.mu.Unlock()
	return lw.l.w.Write(p)
}

func (l *Logger) flushLoop() {
	defer l.wg.Done()
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
			l.Flush()
		}
	}
}

// Flush writes out what is buffered.
func (l *Logger) Flush() {
	if l == nil {
		return
	}
	l.mu.Lock()
	if l.w.Buffered() > 0 {
		l.w.Flush()
	}
	l.mu.Unlock()
}

// Close stops the flush timer and flushes.
func (l *Logger) Close() {
	if l == nil {
		return
	}
	close(l.done)
	l.wg.Wait()
	l.Flush()
}

// Log writes e.
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	if l.json != nil {
		l.logJSON(e)
		return
	}
	l.mu.Lock()
	l.buf = AppendTSV(l.buf[:0], e)
	l.w.Write(l.buf)
	l.mu.Unlock()
}

func (l *Logger) logJSON(e *Entry) {
	attrs := []slog.Attr{
		slog.String(KeyKind, e.Kind),
		slog.String(KeyClient, e.Client),
		slog.String(KeyMethod, e.Method),
		slog.String(KeyURL, e.URL),
		slog.Int(KeyStatus, e.Status),
		slog.Int64(KeyBytesOut, e.BytesOut),
		slog.Int64(KeyBytesIn, e.BytesIn),
		slog.Float64(KeyDuration, e.Duration.Seconds()),
		slog.String(KeyRequestedURL, e.RequestedURL),
		slog.Bool(KeyReused, e.Reused),
		slog.Float64(KeyConnect, e.Connect.Seconds()),
		slog.Bool(KeyTLSResumed, e.TLSResumed),
		slog.Int(KeyRetries, e.Retries),
	}
	if e.Error != "" {
		attrs = append(attrs, slog.String(KeyError, e.Error), slog.String(KeyDetail, e.Detail))
	}
	if e.End != "" {
		attrs = append(attrs, slog.String(KeyEnd, e.End))
	}
	// The record's time is the request's start, as in the TSV format, not
	// the moment it is logged.
	r := slog.NewRecord(e.Start, slog.LevelInfo, e.Kind, 0)
	r.AddAttrs(attrs...)
	l.json.Handler().Handle(context.Background(), r)
}

// TSVHeader names the TSV fields in order. The first eight are those of the
// original http_pool; new fields go at the end, so that the position of
// every older one stays.
const TSVHeader = "#time\tclient\tmethod\turl\tstatus\tbytes_out\tseconds\trequested_url\treused\tconnect_s\ttls_resumed\tretries\tbytes_in\tkind\terror\tend\tdetail"

// maxTSVDetail bounds the detail field of a TSV line, in bytes; JSON
// records carry the whole detail.
const maxTSVDetail = 240

// AppendTSV appends e as one tab-separated line, without allocating.
func AppendTSV(b []byte, e *Entry) []byte {
	b = e.Start.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, '\t')
	b = appendField(b, e.Client)
	b = appendField(b, e.Method)
	b = appendField(b, e.URL)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, e.BytesOut, 10)
	b = append(b, '\t')
	b = strconv.AppendFloat(b, e.Duration.Seconds(), 'f', 6, 64)
	b = append(b, '\t')
	b = appendField(b, e.RequestedURL)
	b = appendBool(b, e.Reused)
	b = strconv.AppendFloat(b, e.Connect.Seconds(), 'f', 6, 64)
	b = append(b, '\t')
	b = appendBool(b, e.TLSResumed)
	b = strconv.AppendInt(b, int64(e.Retries), 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, e.BytesIn, 10)
	b = append(b, '\t')
	b = appendField(b, e.Kind)
	b = appendField(b, dash(e.Error))
	b = appendField(b, dash(e.End))
	b = appendDetail(b, e.Detail)
	return append(b, '\n')
}

// appendDetail appends the first line of detail, at most maxTSVDetail
// bytes of it (cut on a character boundary, marked with "..."), or "-".
func appendDetail(b []byte, detail string) []byte {
	if i := strings.IndexAny(detail, "\r\n"); i >= 0 {
		detail = detail[:i]
	}
	if detail == "" {
		return append(b, '-')
	}
	cut := len(detail) > maxTSVDetail
	if cut {
		n := maxTSVDetail
		for n > 0 && !utf8.RuneStart(detail[n]) {
			n--
		}
		detail = detail[:n]
	}
	b = appendField(b, detail)
	b = b[:len(b)-1] // appendField's tab: this is the last field
	if cut {
		b = append(b, "..."...)
	}
	return b
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, "yes\t"...)
	}
	return append(b, "no\t"...)
}

// appendField appends s and a tab, replacing control characters so that a
// hostile URL cannot forge a line or a field.
func appendField(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			c = '?'
		}
		b = append(b, c)
	}
	return append(b, '\t')
}
