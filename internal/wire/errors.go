package wire

import "errors"

var (
	// ErrHeadTooLarge means a head or a trailer section is longer than its
	// limit. A server answers 431 to a request head.
	ErrHeadTooLarge = errors.New("wire: head too large")
	// ErrVersion means the message's HTTP version is not 1.x. A server
	// answers 505.
	ErrVersion = errors.New("wire: unsupported http version")
	// ErrTransferEncoding means a Transfer-Encoding other than a single
	// "chunked". A server answers 501, as net/http does.
	ErrTransferEncoding = errors.New("wire: unsupported transfer-encoding")
)

// A SyntaxError reports input that does not follow RFC 9112 (or that
// net/http rejects). What names the element, Off is the byte offset in the
// input where it was found.
type SyntaxError struct {
	What string
	Off  int
}

func (e *SyntaxError) Error() string { return "wire: malformed " + e.What }

// syntaxErr builds a *SyntaxError; only rejected input pays for it.
func syntaxErr(what string, off int) error { return &SyntaxError{What: what, Off: off} }
