// Package server runs warmproxy: the proxy's listener (TCP or a Unix
// socket) and the admin one; the HTTP/1.1 connection server, with
// net/http's http.Server behind it for h2c and what the connection server
// hands over, and their timeouts; the client-side bounds (-allow-clients
// at accept, -max-client-conns, -max-requests-in-flight, h2c streams reset
// early); the registry of hijacked connections; reloads; and the drain
// order at shutdown. It knows no request semantics: it counts and decides
// when a bound is reached, and the answers, like every request, are
// written by internal/proxy and internal/h1server.
package server
