package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestCanonicalAddr(t *testing.T) {
	for _, tt := range []struct {
		s    Scheme
		in   string
		want string
	}{
		{SchemeHTTP, "a.test", "a.test:80"},
		{SchemeHTTPS, "a.test", "a.test:443"},
		{SchemeHTTPS, "a.test:8443", "a.test:8443"},
		{SchemeHTTP, "127.0.0.1:8080", "127.0.0.1:8080"},
		{SchemeHTTPS, "[::1]", "[::1]:443"},
		{SchemeHTTP, "[::1]:81", "[::1]:81"},
	} {
		if got := canonicalAddr(tt.s, tt.in); got != tt.want {
			t.Errorf("canonicalAddr(%v, %q) = %q, want %q", tt.s, tt.in, got, tt.want)
		}
	}
}

// A URL host without a port and the address the transport dials share
// one entry.
func TestPoolHostAliases(t *testing.T) {
	p := NewTracker()
	a := p.host(SchemeHTTPS, "a.test")
	if b := p.host(SchemeHTTPS, "a.test:443"); a != b {
		t.Error("host(https, a.test) and host(https, a.test:443) differ, want one entry")
	}
	if c := p.host(SchemeHTTP, "a.test"); c == a {
		t.Error("http and https share an entry, want one per scheme")
	}
	if got := len(p.Hosts()); got != 2 {
		t.Errorf("len(Hosts()) = %d, want 2", got)
	}
}

// Past maxHosts, origins with nothing open or in flight are forgotten.
func TestTrackerPrunesIdleHosts(t *testing.T) {
	// Issue 16: CPU only (thousands of hosts); runs in parallel, after
	// the leak-checked tests (see TestH1PoolNoPoisonedHandOut).
	t.Parallel()
	p := NewTracker()
	busy := p.host(SchemeHTTP, "busy.test")
	busy.open.Add(1)
	for i := range maxHosts + 10 {
		p.host(SchemeHTTP, "h"+strconv.Itoa(i)+".test")
	}
	hosts := p.Hosts()
	if len(hosts) > maxHosts {
		t.Errorf("len(Hosts()) = %d, want at most %d", len(hosts), maxHosts)
	}
	found := false
	for _, h := range hosts {
		found = found || h.Host == "busy.test:80"
	}
	if !found {
		t.Error("the origin with an open connection was forgotten")
	}
	if p.host(SchemeHTTP, "busy.test") != busy {
		t.Error("busy.test got a new entry")
	}
}

type fakeRT struct {
	resp *http.Response
	err  error
}

func (f fakeRT) RoundTrip(*http.Request) (*http.Response, error) { return f.resp, f.err }

type rwc struct {
	io.Reader
	io.Writer
	closed bool
}

func (r *rwc) Close() error { r.closed = true; return nil }

// A request is in flight from RoundTrip until its body hits EOF or is
// closed; a 101 stream stays writable and in flight until closed.
func TestWrapTracksInFlight(t *testing.T) {
	tests := []struct {
		name string
		resp *http.Response
		err  error
		// finish ends the request as the proxy would.
		finish       func(t *testing.T, resp *http.Response)
		inflightMid  int64
		wantLastErr  bool
		wantRequests uint64
	}{
		{
			name:        "body read to EOF",
			resp:        &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("hello"))},
			inflightMid: 1,
			finish: func(t *testing.T, resp *http.Response) {
				io.ReadAll(resp.Body)
			},
		},
		{
			name:        "body closed early, twice",
			resp:        &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("hello"))},
			inflightMid: 1,
			finish: func(t *testing.T, resp *http.Response) {
				resp.Body.Close()
				resp.Body.Close()
			},
		},
		{
			name:        "no body",
			resp:        &http.Response{StatusCode: 204, Body: http.NoBody},
			inflightMid: 0,
			finish:      func(*testing.T, *http.Response) {},
		},
		{
			name:        "upgrade",
			resp:        &http.Response{StatusCode: 101, Body: &rwc{Reader: strings.NewReader(""), Writer: io.Discard}},
			inflightMid: 1,
			finish: func(t *testing.T, resp *http.Response) {
				s, ok := resp.Body.(io.ReadWriteCloser)
				if !ok {
					t.Fatal("101 body is no longer an io.ReadWriteCloser")
				}
				if n, err := s.Write([]byte("ping")); n != 4 || err != nil {
					t.Errorf("Write = %d, %v, want 4, nil", n, err)
				}
				s.Close()
			},
		},
		{
			name:        "error",
			err:         errors.New("connection refused"),
			inflightMid: 0,
			wantLastErr: true,
			finish:      func(*testing.T, *http.Response) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewTracker()
			rt := p.Wrap(fakeRT{resp: tt.resp, err: tt.err})
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://a.test/x", nil)
			resp, err := rt.RoundTrip(req)
			if (err != nil) != (tt.err != nil) {
				t.Fatalf("RoundTrip error = %v, want %v", err, tt.err)
			}
			h := p.Hosts()[0]
			if h.InFlight != tt.inflightMid || h.Requests != 1 || h.Host != "a.test:443" || h.Scheme != "https" {
				t.Errorf("after RoundTrip: %+v, want a.test:443 https, 1 request, %d in flight", h, tt.inflightMid)
			}
			if (h.LastError != "") != tt.wantLastErr || (h.Failed == 1) != tt.wantLastErr {
				t.Errorf("last error %q, want set: %v", h.LastError, tt.wantLastErr)
			}
			if resp != nil {
				tt.finish(t, resp)
			}
			if h := p.Hosts()[0]; h.InFlight != 0 {
				t.Errorf("after the response: in flight %d, want 0", h.InFlight)
			}
			if tot := p.Totals(SchemeHTTPS); tot.InFlight != 0 || tot.Requests != 1 {
				t.Errorf("totals %+v, want 1 request, 0 in flight", tot)
			}
		})
	}
}

// Closing a tracked connection twice counts it closed once.
func TestTrackedConnClosesOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := NewTracker()
	dial := p.dialer((&net.Dialer{}).DialContext)
	c, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if tot := p.Totals(SchemeHTTP); tot.Open != 1 || tot.Opened != 1 {
		t.Errorf("after dial: %+v, want 1 open, 1 opened", tot)
	}
	c.Close()
	c.Close()
	if tot := p.Totals(SchemeHTTP); tot.Open != 0 || tot.Closed != 1 {
		t.Errorf("after two Close: %+v, want 0 open, 1 closed", tot)
	}
}
