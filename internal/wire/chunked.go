package wire

// A ChunkedScanner validates a chunked body (RFC 9112 section 7.1) as it
// arrives, in slices of any size, without decoding it: a relay forwards
// the bytes it accepts unchanged, so a large read of chunk data costs one
// bounds check, not a copy.
//
// The scanner stops where the trailer section starts (InTrailer), so the
// relay can hold the trailer back: ScanTrailer collects and checks it, and
// AppendTrailer writes it again without the fields the relay drops. A
// relay loop:
//
//	n, err := s.Scan(p)        // p[:n] is chunk framing and data: relay it
//	p = p[n:]
//	if s.InTrailer() {
//		m, err := s.ScanTrailer(p) // p[:m] is trailer: held, not relayed
//		p = p[m:]
//		if s.Done() {
//			out = s.AppendTrailer(out[:0], AllowedInTrailer) // write out
//		}
//	}
//	// once Done, p holds the start of the next message
//
// It accepts what net/http's chunked reader and trailer reader accept,
// except where fuzz_test.go says it is stricter. The zero value is ready.
type ChunkedScanner struct {
	// MaxTrailer bounds the trailer section; zero means DefaultMaxTrailer.
	MaxTrailer int

	state   chunkState
	size    uint64 // data bytes left in the chunk (stData), or its size
	digits  int    // hex digits of the chunk-size read so far
	lineLen int    // bytes of the chunk-size line read so far
	excess  int64  // framing overhead, as net/http counts it
	off     int64  // bytes of the body scanned, for error offsets
	data    int64  // chunk-data bytes scanned
	trailer []byte // the trailer section, when InTrailer or Done
	fields  []Field
}

// DefaultMaxTrailer is the trailer limit of a zero ChunkedScanner, about
// what net/http reads (its 4 KiB connection buffer).
const DefaultMaxTrailer = 4 << 10

// maxChunkLine bounds a chunk-size line, CRLF included, as net/http's
// 4 KiB buffer does; maxExcess is net/http's bound on framing overhead.
const (
	maxChunkLine = 4096
	maxExcess    = 16 << 10
)

type chunkState uint8

const (
	stSize    chunkState = iota // hex digits of a chunk-size
	stSizeOWS                   // whitespace after the size
	stExt                       // a chunk extension
	stSizeLF                    // the LF ending the size line
	stData                      // chunk data
	stDataCR                    // the CRLF after chunk data
	stDataLF                    //
	stTrailer                   // the trailer section
	stDone                      // the message has ended
)

// Reset readies s for the next body, keeping its trailer buffer.
func (s *ChunkedScanner) Reset() {
	*s = ChunkedScanner{MaxTrailer: s.MaxTrailer, trailer: s.trailer[:0], fields: s.fields[:0]}
}

// InTrailer reports whether the last chunk has been scanned and the
// trailer section (maybe empty) is next: feed the rest to ScanTrailer.
func (s *ChunkedScanner) InTrailer() bool { return s.state == stTrailer }

// Done reports whether the whole message, trailer section included, has
// been scanned.
func (s *ChunkedScanner) Done() bool { return s.state == stDone }

// DataBytes is the number of chunk-data bytes scanned: the body's
// length once decoded.
func (s *ChunkedScanner) DataBytes() int64 { return s.data }

// Remaining is the number of chunk-data bytes the scanner expects before
// the next framing byte (0 outside chunk data): a relay may copy that many
// bytes straight through and then call Skip.
func (s *ChunkedScanner) Remaining() uint64 {
	if s.state == stData {
		return s.size
	}
	return 0
}

// Skip accounts for n bytes of chunk data relayed without Scan; n must
// not exceed Remaining.
func (s *ChunkedScanner) Skip(n uint64) {
	if s.state != stData || n > s.size {
		panic("wire: ChunkedScanner.Skip past the chunk data")
	}
	s.size -= n
	s.off += int64(n)
	s.data += int64(n)
	if s.size == 0 {
		s.state = stDataCR
	}
}

// Scan validates p, the next bytes of the body, and returns how many of
// them are chunk framing and data. It returns n < len(p) only with an
// error or once InTrailer; the error is a *SyntaxError.
func (s *ChunkedScanner) Scan(p []byte) (int, error) {
	i := 0
	for i < len(p) && s.state < stTrailer {
		if s.state == stData {
			k := uint64(len(p) - i)
			if k > s.size {
				k = s.size
			}
			s.Skip(k)
			i += int(k)
			continue
		}
		if err := s.step(p[i]); err != nil {
			return i, err
		}
		i++
		s.off++
	}
	return i, nil
}

// step advances the framing states by one byte.
func (s *ChunkedScanner) step(c byte) error {
	if s.state <= stSizeLF {
		if s.lineLen++; s.lineLen > maxChunkLine {
			return s.err("chunk-size line (too long)")
		}
	}
	switch s.state {
	case stSize:
		return s.sizeByte(c)
	case stSizeOWS:
		switch {
		case isOWS(c):
		case c == '\r':
			s.state = stSizeLF
		default:
			// net/http trims whitespace after the size only at the end
			// of the line: "5 ;ext" is malformed.
			return s.err("chunk-size line")
		}
	case stExt:
		switch {
		case c == '\r':
			s.state = stSizeLF
		case !valueByte(c):
			return s.err("chunk extension")
		}
	case stSizeLF:
		if c != '\n' {
			return s.err("chunk-size line (bare cr)")
		}
		return s.endSizeLine()
	case stDataCR:
		if c != '\r' {
			return s.err("chunk data end")
		}
		s.state = stDataLF
	case stDataLF:
		if c != '\n' {
			return s.err("chunk data end")
		}
		s.state, s.size, s.digits, s.lineLen = stSize, 0, 0, 0
	}
	return nil
}

// sizeByte handles a byte of the chunk-size or what ends it.
func (s *ChunkedScanner) sizeByte(c byte) error {
	if isHex(c) {
		if s.digits++; s.digits > 16 {
			return s.err("chunk size (too long)")
		}
		s.size = s.size<<4 | uint64(unhex(c))
		return nil
	}
	if s.digits == 0 {
		return s.err("chunk size")
	}
	switch {
	case c == ';':
		s.state = stExt
	case isOWS(c):
		s.state = stSizeOWS
	case c == '\r':
		s.state = stSizeLF
	case c == '\n':
		return s.err("chunk-size line (bare lf)")
	default:
		return s.err("chunk size")
	}
	return nil
}

// endSizeLine applies net/http's overhead bound once a size line ends,
// then starts the chunk's data or, for the last chunk, the trailer.
func (s *ChunkedScanner) endSizeLine() error {
	s.excess += int64(s.lineLen)
	s.excess -= 16 + 2*int64(s.size)
	s.excess = max(s.excess, 0)
	if s.excess > maxExcess {
		return s.err("chunked body (too much framing)")
	}
	if s.size == 0 {
		s.state = stTrailer
		return nil
	}
	s.state = stData
	return nil
}

func (s *ChunkedScanner) err(what string) error {
	return &SyntaxError{What: what, Off: int(s.off)}
}

func unhex(c byte) byte {
	if isDigit(c) {
		return c - '0'
	}
	return lower(c) - 'a' + 10
}
