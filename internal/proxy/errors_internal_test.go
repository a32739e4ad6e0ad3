package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/warmproxy/warmproxy/internal/proxystatus"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestErrorFor(t *testing.T) {
	dial := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	tests := []struct {
		name   string
		err    error
		status int
		ptype  string
	}{
		{"no such host", &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, 502, proxystatus.DNSError},
		{"dns timeout", &net.DNSError{Err: "timeout", Name: "x.invalid", IsTimeout: true}, 504, proxystatus.DNSTimeout},
		{"dns other", dial(&net.DNSError{Err: "server misbehaving", Name: "x.invalid"}), 502, proxystatus.DNSError},
		{"refused", dial(os.NewSyscallError("connect", syscall.ECONNREFUSED)), 502, proxystatus.ConnectionRefused},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, 502, proxystatus.ConnectionTerminated},
		{"dial timeout", dial(os.ErrDeadlineExceeded), 504, proxystatus.ConnectionTimeout},
		{"unreachable", dial(syscall.EHOSTUNREACH), 502, "destination_ip_unroutable"},
		{"out of fds", dial(syscall.EMFILE), 503, proxystatus.ConnectionLimitReached},
		{"response timeout", fmt.Errorf("wrapped: %w", context.DeadlineExceeded), 504, proxystatus.HTTPResponseTimeout},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, 502, proxystatus.TLSCertificateError},
		{"hostname", x509.HostnameError{Host: "a.test", Certificate: &x509.Certificate{}}, 502, proxystatus.TLSCertificateError},
		{"alert", tls.AlertError(40), 502, proxystatus.TLSAlertReceived},
		{"not tls", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, 502, proxystatus.TLSProtocolError},
		{"eof", io.ErrUnexpectedEOF, 502, proxystatus.HTTPResponseIncomplete},
		{"other", errors.New("malformed HTTP response"), 502, proxystatus.HTTPProtocolError},
		{"already classified", &Error{Status: 403, Type: proxystatus.HTTPRequestDenied, Msg: "denied"}, 403, proxystatus.HTTPRequestDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := errorFor("a.test:80", tt.err)
			if e.Status != tt.status || e.Type != tt.ptype {
				t.Errorf("errorFor(%v) = %d %s, want %d %s", tt.err, e.Status, e.Type, tt.status, tt.ptype)
			}
			if tt.ptype != proxystatus.HTTPRequestDenied && !strings.Contains(e.Msg, "a.test:80") {
				t.Errorf("errorFor(%v).Msg = %q, want it to name the target", tt.err, e.Msg)
			}
			if e.Status == 503 && e.RetryAfter <= 0 {
				t.Errorf("errorFor(%v): 503 without Retry-After", tt.err)
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("X-Stale", "1")
	rec.Header().Set("Connection", "close")
	n := writeError(rec, "warmproxy", &Error{Status: 503, Type: proxystatus.ConnectionLimitReached, Msg: "busy", RetryAfter: 2, Err: errors.New(`bad "quote" \ and` + "\x01")})
	res := rec.Result()
	body := rec.Body.String()
	if res.StatusCode != 503 || body != "warmproxy: busy\n" || n != int64(len(body)) {
		t.Errorf("writeError: %d %q (n=%d)", res.StatusCode, body, n)
	}
	want := `warmproxy; error=connection_limit_reached; details="bad \"quote\" \\ and?"`
	if got := res.Header.Get("Proxy-Status"); got != want {
		t.Errorf("Proxy-Status = %s, want %s", got, want)
	}
	for k, v := range map[string]string{"Retry-After": "2", "X-Stale": "", "Connection": "close", "Content-Type": "text/plain; charset=utf-8"} {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	_ = http.StatusOK
}
