package wire

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Issue 14: net/http's own client sends proxy requests (absolute-form,
// keep-alive, a chunked POST body) over a loopback socket to a loop shaped
// like the future connection server: one goroutine, one reused
// RequestHead, HeadScanner and ChunkedScanner, no per-request allocation
// in wire. Every request must parse with the fields in the order sent.
func TestLoopbackClientRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 8)
	go serveWireLoop(ln, got)

	proxy, _ := url.Parse("http://" + ln.Addr().String())
	tr := &http.Transport{Proxy: http.ProxyURL(proxy)}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second} // hang guard only
	// The bodies: none, a known length, and one of unknown length, which
	// net/http sends chunked.
	for i, body := range []io.Reader{nil, strings.NewReader("abc"), io.MultiReader(strings.NewReader("chunked body"))} {
		method := "GET"
		if body != nil {
			method = "POST"
		}
		req, _ := http.NewRequest(method, "http://origin.invalid:8080/p?i=1", body)
		req.Header.Set("X-First", "1")
		req.Header.Set("X-Second", "2")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want := "ok " + []string{"none", "length", "chunked"}[i]
		if s := <-got; resp.StatusCode != 200 || s != want {
			t.Fatalf("request %d: wire loop said %q, want %q", i, s, want)
		}
	}
}

// serveWireLoop accepts one connection and serves requests on it until
// it closes, answering 200 to each request wire parses and 400 otherwise.
func serveWireLoop(ln net.Listener, got chan<- string) {
	c, err := ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	var (
		h   RequestHead
		hs  HeadScanner
		cs  ChunkedScanner
		buf = make([]byte, 0, 4096)
		rd  = make([]byte, 4096)
	)
	for {
		hs.Reset()
		n := 0
		for n == 0 {
			if n, err = hs.Scan(buf); err != nil || n > 0 {
				break
			}
			k, rerr := c.Read(rd)
			if rerr != nil {
				return
			}
			buf = append(buf, rd[:k]...)
		}
		status, verdict := "200 OK", "ok"
		if err == nil {
			err = h.Parse(buf[:n])
		}
		if err == nil {
			verdict = checkClientHead(&h)
		} else {
			verdict = err.Error()
		}
		if verdict != "ok" {
			status = "400 Bad Request"
		}
		buf = append(buf[:0], buf[n:]...)
		if h.Framing == BodyLength {
			for int64(len(buf)) < h.ContentLength {
				k, rerr := c.Read(rd)
				if rerr != nil {
					return
				}
				buf = append(buf, rd[:k]...)
			}
			buf = append(buf[:0], buf[h.ContentLength:]...)
		} else if h.Framing == BodyChunked {
			cs.Reset()
			for !cs.Done() {
				k, _ := cs.Scan(buf)
				if cs.InTrailer() {
					m, _ := cs.ScanTrailer(buf[k:])
					k += m
				}
				buf = append(buf[:0], buf[k:]...)
				if !cs.Done() {
					k, rerr := c.Read(rd)
					if rerr != nil {
						return
					}
					buf = append(buf, rd[:k]...)
				}
			}
		}
		io.WriteString(c, "HTTP/1.1 "+status+"\r\nContent-Length: 0\r\n\r\n")
		got <- verdict + " " + h.Framing.String()
	}
}

func checkClientHead(h *RequestHead) string {
	b := h.Bytes()
	if h.Form != AbsoluteForm || string(h.Authority.In(b)) != "origin.invalid:8080" {
		return "target " + string(h.Target.In(b))
	}
	var names []string
	for _, f := range h.Fields {
		names = append(names, string(f.Name.In(b)))
	}
	// net/http writes Host, User-Agent, then the header sorted; the
	// order must survive parsing.
	list := strings.Join(names, ",")
	if !strings.HasPrefix(list, "Host,User-Agent,") || !strings.Contains(list, "X-First,X-Second") {
		return "fields " + list
	}
	return "ok"
}
