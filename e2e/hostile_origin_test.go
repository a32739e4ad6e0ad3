package e2e_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/testnet"
)

// hostileOrigin is a raw loopback origin answering every request with
// resp, for answers net/http's server would not write.
func hostileOrigin(t *testing.T, resp string) string {
	t.Helper()
	return testnet.ServeRequests(t, func(c net.Conn, _ *http.Request, _ []byte) bool {
		_, err := io.WriteString(c, resp)
		return err == nil
	})
}

// Issue 12: what curl gets through the built proxy from a hostile origin:
// no trailer field that RFC 9110 section 6.5.1 keeps out of trailers
// (libcurl hands trailers to the header callback, so a Set-Cookie there
// is a cookie), and no Content-Type the origin did not send.
func TestHostileOriginCurl(t *testing.T) {
	requireProgram(t, "curl")
	p := startProxy(t)

	t.Run("trailers", func(t *testing.T) {
		origin := hostileOrigin(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Good, Set-Cookie\r\n\r\n"+
			"4\r\nbody\r\n0\r\nX-Good: g\r\nSet-Cookie: s=1\r\nContent-Length: 99\r\nLocation: /x\r\n\r\n")
		out := curlProxy(t, p.Addr, "--raw", "-D", "-", "-H", "TE: trailers", "http://"+origin+"/")
		if !strings.Contains(out, "X-Good: g\r\n") {
			t.Errorf("curl output lacks the X-Good trailer:\n%s", out)
		}
		for _, bad := range []string{"Set-Cookie", "Content-Length: 99", "Location"} {
			if strings.Contains(out, bad) {
				t.Errorf("curl got %s from the origin's trailers:\n%s", bad, out)
			}
		}
	})
	t.Run("no sniffed content type", func(t *testing.T) {
		const page = "<html><body>hi</body></html>"
		origin := hostileOrigin(t, "HTTP/1.1 200 OK\r\nX-Content-Type-Options: nosniff\r\nContent-Length: "+
			strconv.Itoa(len(page))+"\r\n\r\n"+page)
		out := curlProxy(t, p.Addr, "-D", "-", "-o", "/dev/null", "http://"+origin+"/")
		if strings.Contains(strings.ToLower(out), "\ncontent-type:") {
			t.Errorf("curl got a Content-Type the origin did not send:\n%s", out)
		}
		if !strings.Contains(out, "200") {
			t.Errorf("curl got no 200:\n%s", out)
		}
	})
}

// Issue 12: -client-body-timeout on the built proxy: a chunked body that
// sends one byte and then nothing gets 408 and an access line saying so.
func TestClientBodyTimeoutFlag(t *testing.T) {
	origin := hostileOrigin(t, "HTTP/1.1 204 No Content\r\n\r\n")
	p := startProxy(t, "-client-body-timeout", "300ms")
	c, err := net.DialTimeout("tcp", p.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, "POST http://"+origin+"/upload HTTP/1.1\r\nHost: "+origin+"\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
	line := p.accessLines(t, 1)[0]
	f := strings.Split(line, "\t")
	if len(f) < 5 || f[4] != "408" || !strings.Contains(line, "http_request_error") {
		t.Errorf("access line %q, want status 408 and error http_request_error", line)
	}
}
