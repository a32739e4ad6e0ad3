// Package httpc is the bench's minimal HTTP/1.1 client: it writes a
// pre-rendered request on a conn the caller owns and reads the response
// fully, so the tools control exactly when connections open and close and
// can send absolute-form proxy requests.
package httpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Request is what to send.
type Request struct {
	// Target is the request-target: "/bytes/1024" (origin-form) or
	// "http://127.0.0.1:8080/bytes/1024" (absolute-form, for a forward proxy).
	Target string
	// Host is the Host header. Empty means the authority of an absolute
	// Target.
	Host string
	// Header lines ("Name: value") added as they are.
	Header []string
}

// Render returns the bytes of a GET request. It sends no Connection header:
// like PHP's curl, a fresh-connection client simply closes after reading.
func (r Request) Render() ([]byte, error) {
	host := r.Host
	if host == "" {
		u, err := url.Parse(r.Target)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("request: no host for target %q", r.Target)
		}
		host = u.Host
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: warmproxy-bench\r\n", r.Target, host)
	for _, h := range r.Header {
		if !strings.Contains(h, ":") {
			return nil, fmt.Errorf("request: header %q has no colon", h)
		}
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String()), nil
}

// Result is one response.
type Result struct {
	Status    int
	BodyBytes int64
	// KeepAlive is false when the server said it will close.
	KeepAlive bool
}

// Do writes req on conn and reads the whole response through br, which
// must wrap conn (and be reused for the next request on the same conn).
func Do(conn net.Conn, br *bufio.Reader, req []byte) (Result, error) {
	if _, err := conn.Write(req); err != nil {
		return Result{}, fmt.Errorf("write: %v", err)
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return Result{}, fmt.Errorf("read response: %v", err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil {
		return Result{}, fmt.Errorf("read body: %v", err)
	}
	return Result{Status: res.StatusCode, BodyBytes: n, KeepAlive: !res.Close}, nil
}

// Dialer opens the client side of a connection, with TLS if TLS is set.
type Dialer struct {
	Addr string
	// TLS, if set, makes Dial do a TLS handshake with this config.
	TLS *tls.Config
	// Connect, if set, is an authority host:port: Dial first opens a
	// CONNECT tunnel to it through Addr (a forward proxy), then does the
	// TLS handshake inside, as curl does for https:// through a proxy.
	Connect string
	Timeout time.Duration
}

// Dial connects (and handshakes) within d.Timeout.
func (d Dialer) Dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, err
	}
	if d.Connect != "" {
		if err := connect(c, d.Connect, d.Timeout); err != nil {
			c.Close()
			return nil, err
		}
	}
	if d.TLS == nil {
		return c, nil
	}
	tc := tls.Client(c, d.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("tls handshake: %v", err)
	}
	return tc, nil
}

// connect sends CONNECT authority on c and reads the proxy's answer,
// which must be a 200 with nothing behind it (the proxy speaks first
// only in the tunnel's TLS).
func connect(c net.Conn, authority string, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "CONNECT "+authority+" HTTP/1.1\r\nHost: "+authority+"\r\n\r\n"); err != nil {
		return fmt.Errorf("connect: %v", err)
	}
	br := bufio.NewReaderSize(c, 512)
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return fmt.Errorf("connect: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("connect %s: status %d", authority, res.StatusCode)
	}
	if br.Buffered() > 0 {
		return fmt.Errorf("connect %s: bytes behind the 200", authority)
	}
	return nil
}

// ClientTLS builds a TLS 1.3 client config trusting caFile. With resume
// set it shares a session cache so later handshakes can resume.
func ClientTLS(caFile, serverName string, resume bool) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("read ca: no certificate in %s", caFile)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool,
		ServerName: serverName,
		NextProtos: []string{"http/1.1"},
	}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	}
	return cfg, nil
}

// HeaderFlag is a repeatable -H flag.
type HeaderFlag []string

func (h *HeaderFlag) String() string { return strings.Join(*h, ", ") }

// Set adds one header line.
func (h *HeaderFlag) Set(v string) error {
	if !strings.Contains(v, ":") {
		return fmt.Errorf("header %q: want Name: value", v)
	}
	*h = append(*h, v)
	return nil
}
