package origin

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func newServer(t *testing.T, o *Origin, kind string, tlsOn bool) (*httptest.Server, []byte) {
	t.Helper()
	ts := httptest.NewUnstartedServer(o.Handler(kind))
	ts.Config.ConnState = o.ConnState(kind)
	var caPEM []byte
	if tlsOn {
		cert, ca, err := NewCert([]net.IP{net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		caPEM = ca
		ts.TLS = TLSConfig(cert)
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	return ts, caPEM
}

func TestBodies(t *testing.T) {
	o := New()
	ts, _ := newServer(t, o, "http", false)
	tests := []struct {
		path    string
		status  int
		size    int64
		chunked bool
	}{
		{"/bytes/0", 200, 0, false},
		{"/bytes/1024", 200, 1024, false},
		{"/bytes/200000", 200, 200000, false},
		{"/stream/200000", 200, 200000, true},
		{"/delay/1", 200, 2, false},
		{"/bytes/-1", 400, -1, false},
		{"/nope", 404, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res, err := http.Get(ts.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			n, err := io.Copy(io.Discard, res.Body)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status {
				t.Fatalf("GET %s status = %d, want %d", tt.path, res.StatusCode, tt.status)
			}
			if tt.size >= 0 && n != tt.size {
				t.Errorf("GET %s body = %d bytes, want %d", tt.path, n, tt.size)
			}
			chunked := len(res.TransferEncoding) > 0 && res.TransferEncoding[0] == "chunked"
			if tt.status == 200 && chunked != tt.chunked {
				t.Errorf("GET %s chunked = %v, want %v", tt.path, chunked, tt.chunked)
			}
		})
	}
	if got := o.Snapshot(false).Total.Requests; got != int64(len(tests)) {
		t.Errorf("Requests = %d, want %d", got, len(tests))
	}
}

// A client with a session cache resumes on its second connection, and the
// origin counts one full and one resumed handshake, and two TCP accepts.
func TestCountsHandshakes(t *testing.T) {
	o := New()
	ts, caPEM := newServer(t, o, "https", true)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cache := tls.NewLRUClientSessionCache(8)
	for i := range 2 {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ClientSessionCache: cache}}
		c := &http.Client{Transport: tr}
		res, err := c.Get(ts.URL + "/bytes/10")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		tr.CloseIdleConnections()
	}
	got := o.Snapshot(true).Kinds["https"]
	if got.Accepted != 2 || got.TLSFull != 1 || got.TLSResumed != 1 || got.Requests != 2 {
		t.Errorf("Snapshot = %+v, want accepted 2, full 1, resumed 1, requests 2", got)
	}
	if after := o.Snapshot(false).Kinds["https"]; after.Accepted != 0 || after.TLSFull != 0 {
		t.Errorf("Snapshot after reset = %+v, want totals zeroed", after)
	}
}
