package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/warmproxy/warmproxy/internal/acl"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/limit"
	"github.com/warmproxy/warmproxy/internal/proxystatus"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// Issue 6: refusals of the policy and the limits map to 403 naming the
// rule, 508 and 503 with Retry-After, through the one errorFor.
func TestAccessErrorMapping(t *testing.T) {
	denyIP := &acl.DeniedError{Decision: acl.Decision{Rule: "deny 127.0.0.2", Reason: "denied by configuration"}, Host: "evil.test", Port: 80, IP: netip.MustParseAddr("127.0.0.2")}
	denyName := &acl.DeniedError{Decision: acl.Decision{Rule: "deny *.bad.test", Reason: "denied by configuration"}, Host: "x.bad.test", Port: 80}
	tests := []struct {
		name       string
		err        error
		status     int
		typ        string
		retryAfter int
		inMsg      string
	}{
		{"ip denied", &net.OpError{Op: "dial", Err: denyIP}, 403, proxystatus.DestinationIPProhibited, 0, "deny 127.0.0.2"},
		{"name denied", fmt.Errorf("wrapped: %w", denyName), 403, proxystatus.HTTPRequestDenied, 0, "deny *.bad.test"},
		{"loop", fmt.Errorf("dial 127.0.0.1:9999: %w", acl.ErrLoop), 508, proxystatus.ProxyLoopDetected, 0, "loop"},
		{"saturated", &limit.SaturatedError{Host: "http://x.test", Max: 4}, 503, proxystatus.ConnectionLimitReached, 1, "retry later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := errorFor("x.test:80", tt.err)
			if e.Status != tt.status || e.Type != tt.typ || e.RetryAfter != tt.retryAfter || !strings.Contains(e.Msg, tt.inMsg) {
				t.Errorf("errorFor(%v) = %d %s retry %d %q, want %d %s retry %d containing %q",
					tt.err, e.Status, e.Type, e.RetryAfter, e.Msg, tt.status, tt.typ, tt.retryAfter, tt.inMsg)
			}
		})
	}
	if e := accessError("x", errors.New("other")); e != nil {
		t.Errorf("accessError(other) = %v, want nil", e)
	}
}

// authOptions is the Options of a handler that wants the credentials
// u:pw (the default config with a -proxy-auth-file) and whose transport
// passes each request it gets to sent and answers 200.
func authOptions(t *testing.T, sent func(*http.Request)) Options {
	t.Helper()
	cfg := config.Default()
	cfg.ProxyAuthFile = testnet.Htpasswd(t, "u", "pw", bcrypt.MinCost)
	acc, err := NewAccess(config.MustParse(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return Options{Config: config.MustParse(cfg), Access: acc,
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent(r)
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
		})}
}

// Issue 6: the handler asks for credentials before anything is dialed,
// and strips them before the request goes on.
func TestCheckAccessAuth(t *testing.T) {
	var sent []http.Header
	var dials int
	o := authOptions(t, func(r *http.Request) { sent = append(sent, r.Header.Clone()) })
	o.Dial = func(context.Context, string, string) (net.Conn, error) {
		dials++
		return nil, errors.New("no")
	}
	h := New(o)
	good := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:pw"))
	tests := []struct {
		method, target, auth string
		want                 int
	}{
		{"GET", "http://origin.test/", "", 407},
		{"CONNECT", "origin.test:443", "", 407},
		{"GET", "http://origin.test/", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:no")), 407},
		{"GET", "http://origin.test/", good, 200},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, tt.target, nil)
		if tt.method == "CONNECT" {
			req.RequestURI = tt.target
		}
		if tt.auth != "" {
			req.Header.Set("Proxy-Authorization", tt.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tt.want {
			t.Errorf("%s %s auth %q: %d, want %d", tt.method, tt.target, tt.auth, w.Code, tt.want)
		}
		if tt.want == 407 && w.Header().Get("Proxy-Authenticate") != `Basic realm="warmproxy"` {
			t.Errorf("%s %s: 407 without the Basic challenge: %v", tt.method, tt.target, w.Header())
		}
	}
	if dials != 0 || len(sent) != 1 {
		t.Fatalf("dials %d, requests sent %d; want 0 and 1", dials, len(sent))
	}
	if v, ok := sent[0]["Proxy-Authorization"]; ok {
		t.Errorf("Proxy-Authorization %q went upstream", v)
	}
}

// Issue 12: wrong credentials cost one bcrypt comparison per distinct
// value, however often and from however many connections they are sent:
// 400 tries of one wrong value plus a few distinct ones, from 40 client
// connections on a loopback socket, make at most one comparison per
// distinct value.
func TestWrongCredentialsCompareOnce(t *testing.T) {
	o := authOptions(t, func(*http.Request) {})
	srv := httptest.NewServer(New(o))
	t.Cleanup(srv.Close)
	const conns, tries, distinct = 40, 10, 4
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			for j := range tries {
				pass := "wrong"
				if j == 0 {
					pass = fmt.Sprint("wrong-", i%distinct)
				}
				auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+pass))
				fmt.Fprintf(c, "GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\nProxy-Authorization: %s\r\n\r\n", auth)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Errorf("try %d: %v", j, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusProxyAuthRequired {
					t.Errorf("wrong credentials answered %d, want 407", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	if got := o.Access.auth.Compares(); got > 1+distinct {
		t.Errorf("bcrypt comparisons for %d wrong tries of %d distinct values = %d, want at most %d", conns*tries, 1+distinct, got, 1+distinct)
	}
}
