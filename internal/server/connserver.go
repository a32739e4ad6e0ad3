package server

import (
	"errors"
	"net"
	"time"

	"github.com/warmproxy/warmproxy/internal/h1server"
)

// The proxy listener's connections go to the HTTP/1.1 connection server
// (h1server.ConnServer) first; what it hands over reaches the http.Server
// through a netx.Listener.

// acceptLoop accepts from ln and serves each connection on its own
// goroutine until ln is closed (hand is the http.Server's, which closes
// it). Temporary accept errors (EMFILE) back off as net/http's server
// does.
func acceptLoop(ln net.Listener, cs *h1server.ConnServer) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // as net/http's server
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		go cs.Serve(c)
	}
}
