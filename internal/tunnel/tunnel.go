// Package tunnel relays bytes both ways between two connections, for
// CONNECT tunnels and 101 upgrades. It knows nothing of HTTP.
package tunnel

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// Result says how a relay went.
type Result struct {
	// Up counts bytes from the client to the origin, Down the other way.
	Up, Down int64
	// End says how it ended: "eof" (both sides finished), "idle" (no byte
	// moved for the idle timeout), "closed" (closed from outside, e.g. at
	// shutdown) or "error" (a reset or other failure on either side).
	End string
}

// closeWriter is a connection that can half-close (TCP, TLS, Unix).
type closeWriter interface {
	CloseWrite() error
}

// Relay copies client→origin and origin→client until both directions are
// done, then closes both connections. A FIN from one side becomes a
// CloseWrite on the other, so data still flowing the other way is
// delivered. If no byte moves either way for idle, both are closed.
// clientBuf holds bytes the client sent that were already read (pipelined
// after a CONNECT head); they go to the origin first.
func Relay(client, origin net.Conn, clientBuf []byte, idle time.Duration) Result {
	var activity atomic.Int64
	activity.Store(time.Now().UnixNano())
	up := make(chan copyResult, 1)
	down := make(chan copyResult, 1)
	go copyUp(origin, client, clientBuf, &activity, idle, up)
	go copyDown(client, origin, &activity, idle, down)

	var res Result
	var first, second copyResult
	select {
	case first = <-up:
		res.Up = first.n
		second = <-down
		res.Down = second.n
	case first = <-down:
		res.Down = first.n
		second = <-up
		res.Up = second.n
	}
	client.Close()
	origin.Close()
	res.End = endOf(first, second)
	return res
}

type copyResult struct {
	n    int64
	err  error
	idle bool
}

// copyUp is the client→origin half.
func copyUp(origin, client net.Conn, pending []byte, activity *atomic.Int64, idle time.Duration, done chan<- copyResult) {
	var n int64
	if len(pending) > 0 {
		w, err := origin.Write(pending)
		n += int64(w)
		if err != nil {
			closeBoth(client, origin)
			done <- copyResult{n: n, err: err}
			return
		}
	}
	r := pipe(origin, client, activity, idle)
	r.n += n
	done <- r
}

// copyDown is the origin→client half.
func copyDown(client, origin net.Conn, activity *atomic.Int64, idle time.Duration, done chan<- copyResult) {
	done <- pipe(client, origin, activity, idle)
}

// chunk is how many bytes one splice call may move before the relay looks
// at its counters and deadlines again.
const chunk = 1 << 20

// pipe copies src to dst until EOF, then half-closes dst. io.Copy from a
// LimitedReader over a *net.TCPConn into a *net.TCPConn uses splice(2) on
// Linux, so the bytes never enter user space. The read deadline is renewed
// per chunk; when it expires while the other direction was active within
// idle, the tunnel is not idle and the copy goes on.
func pipe(dst, src net.Conn, activity *atomic.Int64, idle time.Duration) copyResult {
	var total int64
	lr := &io.LimitedReader{R: src}
	for {
		src.SetReadDeadline(time.Now().Add(idle))
		lr.N = chunk
		n, err := io.Copy(dst, lr)
		total += n
		if n > 0 {
			activity.Store(time.Now().UnixNano())
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, activity.Load())) < idle {
				continue
			}
			r := copyResult{n: total, err: err, idle: errors.Is(err, os.ErrDeadlineExceeded)}
			closeBoth(dst, src)
			return r
		}
		if n < chunk {
			// Clean EOF from src: pass the FIN on.
			if cw, ok := dst.(closeWriter); ok {
				cw.CloseWrite()
			} else {
				dst.Close()
			}
			return copyResult{n: total}
		}
	}
}

func closeBoth(a, b net.Conn) {
	a.Close()
	b.Close()
}

func endOf(first, second copyResult) string {
	switch {
	case first.idle || second.idle:
		return "idle"
	case first.err == nil && second.err == nil:
		return "eof"
	case errors.Is(first.err, net.ErrClosed) && errors.Is(second.err, net.ErrClosed):
		return "closed"
	default:
		return "error"
	}
}
