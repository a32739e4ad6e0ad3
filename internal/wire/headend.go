package wire

import "bytes"

// A HeadScanner finds where a head ends in a buffer that grows as bytes
// arrive, without rescanning what it has already seen. A head ends at the
// first empty line: CRLF CRLF, or, as net/http's textproto reader accepts,
// a line ended by a bare LF (LF LF, LF CRLF). The zero value is ready to
// use; Reset it before each new head.
type HeadScanner struct {
	// Max bounds the head's length, line endings included; a head not
	// ended within Max bytes is ErrHeadTooLarge. Zero means 64 KiB.
	Max  int
	seen int // bytes of the buffer already searched
}

// DefaultMaxHead is the head size limit of a zero HeadScanner.
const DefaultMaxHead = 64 << 10

// Reset forgets what the scanner has seen, for the next head.
func (s *HeadScanner) Reset() { s.seen = 0 }

// Scan looks for the end of the head that starts at buf[0]; buf holds
// every byte received so far (the same prefix as on the previous call,
// maybe more). It returns the head's length once the empty line is in buf,
// 0 and nil while more bytes are needed, or ErrHeadTooLarge.
func (s *HeadScanner) Scan(buf []byte) (n int, err error) {
	limit := s.Max
	if limit <= 0 {
		limit = DefaultMaxHead
	}
	// The last call stopped at an LF whose next bytes had not arrived, or
	// at the end of the buffer: start there.
	i := s.seen
	for ; i < len(buf); i++ {
		k := bytes.IndexByte(buf[i:], '\n')
		if k < 0 {
			i = len(buf)
			break
		}
		i += k
		if i+1 < len(buf) && buf[i+1] == '\n' {
			n = i + 2
		} else if i+2 < len(buf) && buf[i+1] == '\r' && buf[i+2] == '\n' {
			n = i + 3
		} else if i+2 >= len(buf) {
			break // the next bytes decide
		}
		if n > 0 {
			if n > limit {
				return 0, ErrHeadTooLarge
			}
			return n, nil
		}
	}
	s.seen = i
	if len(buf) >= limit {
		return 0, ErrHeadTooLarge
	}
	return 0, nil
}
