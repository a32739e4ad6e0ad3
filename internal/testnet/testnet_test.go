package testnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestServeEchoesAndCleansUp(t *testing.T) {
	var done = make(chan struct{})
	t.Run("serve", func(t *testing.T) {
		addr := Serve(t, func(c net.Conn) {
			io.Copy(c, c) // returns once the cleanup closes c
		})
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "ping")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo = %q, %v; want ping", buf, err)
		}
		close(done)
	})
	<-done
	// The subtest's cleanup closed the connection its client still holds
	// open, so the serve call returned and Serve's wait ended.
}

// DNS answers A queries for its names in order, SERVFAIL for a ServFail
// name, NXDOMAIN for the rest, and no records for AAAA.
func TestDNS(t *testing.T) {
	addr := DNS(t, map[string][]string{"two.test": {"127.0.0.2", "127.0.0.3"}, "fail.test": {ServFail}})
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := r.LookupHost(ctx, "TWO.test."); err != nil || strings.Join(got, " ") != "127.0.0.2 127.0.0.3" {
		t.Errorf("LookupHost(two.test) = %v, %v; want [127.0.0.2 127.0.0.3]", got, err)
	}
	var dnsErr *net.DNSError
	if _, err := r.LookupHost(ctx, "none.test."); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("LookupHost(none.test) error = %v, want not found", err)
	}
	if _, err := r.LookupHost(ctx, "fail.test."); !errors.As(err, &dnsErr) || dnsErr.IsNotFound {
		t.Errorf("LookupHost(fail.test) error = %v, want a server failure", err)
	}
	if got, err := r.LookupIP(ctx, "ip6", "two.test."); err == nil {
		t.Errorf("LookupIP(ip6, two.test) = %v, want no address", got)
	}
}

// ServeRequests answers request after request on one connection, bodies
// read, until answer says to close.
func TestServeRequests(t *testing.T) {
	addr := ServeRequests(t, func(c net.Conn, r *http.Request, body []byte) bool {
		out := r.URL.Path + " " + string(body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(out), out)
		return r.URL.Path != "/last"
	})
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /last HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"/a hi", "/last "} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer %q: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Errorf("answer = %q, want %q", b, want)
		}
	}
	if n, err := br.ReadByte(); err == nil {
		t.Errorf("read %q after the last answer, want the connection closed", n)
	}
}
