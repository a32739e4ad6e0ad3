package testnet

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// ServeRequests is Serve for a raw HTTP/1.1 origin, for answers net/http's
// server would not write. On each connection, under a 15 s deadline, it
// reads request after request, each with its body, and calls answer,
// which writes the response on c; the connection closes when answer
// returns false or a request cannot be read.
func ServeRequests(t testing.TB, answer func(c net.Conn, r *http.Request, body []byte) bool) string {
	t.Helper()
	return Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(15 * time.Second))
		br := bufio.NewReader(c)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, err := io.ReadAll(r.Body)
			if err != nil || !answer(c, r, body) {
				return
			}
		}
	})
}

// OnNew returns an http.Server ConnState hook that calls fn for each
// connection accepted (http.StateNew): how a test counts the connections
// an origin sees, to tell reuse from new dials.
func OnNew(fn func()) func(net.Conn, http.ConnState) {
	return func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			fn()
		}
	}
}
