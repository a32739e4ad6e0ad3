package headlimit

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Issue 12: a head that fits passes and its body reads past the bound
// once lifted; a head one byte over fails with a *TooLargeError.
func TestReadResponse(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
	tests := []struct {
		name  string
		limit int64
		ok    bool
	}{
		{"fits", int64(len(head)), true},
		{"one byte short", int64(len(head)) - 1, false},
		{"status line only", 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			go func() {
				defer s.Close()
				s.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(s, head+"hello")
			}()
			lr := NewReader(c, tt.limit)
			resp, err := ReadResponse(lr, bufio.NewReader(lr), &http.Request{Method: http.MethodGet})
			var tl *TooLargeError
			if !tt.ok {
				if !errors.As(err, &tl) || tl.Limit != tt.limit {
					t.Fatalf("ReadResponse = %v, want a *TooLargeError of %d", err, tt.limit)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadResponse: %v", err)
			}
			lr.Lift()
			body, err := io.ReadAll(resp.Body)
			if err != nil || string(body) != "hello" {
				t.Errorf("body = %q, %v; want hello", body, err)
			}
		})
	}
}

func TestTooLargeErrorText(t *testing.T) {
	if got := (&TooLargeError{Limit: MaxResponseBytes}).Error(); !strings.Contains(got, "1048576") {
		t.Errorf("Error() = %q, want the limit", got)
	}
}
