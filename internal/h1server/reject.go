package h1server

import "github.com/warmproxy/warmproxy/internal/proxy"

// ErrorResponse renders e as a whole HTTP/1.1 response that closes the
// connection, for a client connection refused before a request is read
// (over -max-client-conns): the head and body every other error gets.
// name is the proxy's name in Proxy-Status.
func ErrorResponse(name string, e *proxy.Error) []byte {
	hw := newHeadWriter()
	proxy.WriteError(hw, name, e)
	return hw.render(true, true)
}
