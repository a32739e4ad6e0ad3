// Package wire parses and validates the HTTP/1.1 wire format (RFC 9112) for
// warmproxy's data path: request and response heads, message framing, and a
// chunked-body scanner that lets a relay forward raw bytes without decoding
// and re-encoding them.
//
// It knows no sockets and does no I/O: every function works on byte slices
// the caller owns, so it can be fuzzed on its own and differentially against
// net/http (see fuzz_test.go, whose oracle lists every place where wire is
// deliberately stricter than net/http, and why).
//
// The intended caller is a per-connection server goroutine that reads into
// a pooled buffer, finds the end of a head with a HeadScanner, parses it into
// a RequestHead or ResponseHead it reuses for every message on the
// connection, forwards the field lines byte-exact (kept in received order,
// with their case), and relays the body: Content-Length bodies by count,
// chunked bodies through a ChunkedScanner that says how many bytes of each
// read belong to the message and hands back the trailer section so the
// relay can drop the fields AllowedInTrailer rejects. Parsing allocates
// nothing once the reused structures have grown to fit.
//
// What stays with the connection server: the h2c preface (PRI * HTTP/2.0),
// skipping the CR/LF bytes some clients send after a POST body (net/http
// discards up to four), answering 100-continue or 417 from ExpectContinue
// and ExpectOther, and closing after CLAndTE.
//
// Heads hold Spans (offsets) into the buffer they were parsed from, never
// copies: the buffer must stay unchanged while the head is in use.
//
// Errors are typed so the server can choose a status without matching
// strings: ErrHeadTooLarge (431), ErrVersion (505), ErrTransferEncoding
// (501), and *SyntaxError for everything else (400 for a request, 502 for an
// origin's response).
package wire
