package upstream

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Keep-Alive retirement. An HTTP/1.1 origin that announces its idle limit
// ("Keep-Alive: timeout=N" on its responses, as Apache does and nginx with
// keepalive_timeout's second parameter) closes a connection idle N
// seconds. A request the transport sends on it in that instant meets a
// closed connection: net/http retries it on a new one when it can (a
// request without a body, or one it can rewind), else the client gets an
// error. So each connection to such an origin is retired, closed while
// idle, shortly before N: the transport drops it at once and the next
// request dials, or takes a prewarmed connection.
//
// The cost is nothing for an origin that never sends the header (one map
// lookup per response, one atomic load per read) and, for one that does,
// a clock read per read and write, one timer per connection, and a trace
// per request that tells which connection the request holds.

// minRetireMargin is the least time before the origin's limit at which an
// idle connection is retired. It covers the round trip (the origin's timer
// starts when it sent the last byte, which arrives here half a round trip
// later, and a request needs another half to get there), the origin's own
// timer granularity, and this side's timer latency. Past 5 s a margin of
// 10% of the limit is used instead, for the slack of busier origins.
const minRetireMargin = 500 * time.Millisecond

// maxKeepAliveTimeout bounds the timeouts believed; a larger one is
// ignored (the transport's own idle timeout applies long before).
const maxKeepAliveTimeout = 24 * time.Hour

// retiredMark in trackedConn.last marks a retired connection.
const retiredMark = -1

// errRetired fails a write on a connection retired an instant before: the
// transport sees an error with nothing written and retries the request on
// another connection.
var errRetired = errors.New("upstream: connection retired before the origin's keep-alive timeout")

// retireAfter returns how long a connection to an origin that announced
// the idle limit timeout may stay idle: timeout - max(0.5 s, 10%).
func retireAfter(timeout time.Duration) time.Duration {
	return timeout - max(minRetireMargin, timeout/10)
}

// parseKeepAliveTimeout returns the timeout parameter of Keep-Alive header
// values such as "timeout=5, max=100" (RFC 2068 section 19.7.1.1).
func parseKeepAliveTimeout(values []string) (time.Duration, bool) {
	for _, v := range values {
		for v != "" {
			var param string
			param, v, _ = strings.Cut(v, ",")
			name, val, ok := strings.Cut(strings.TrimSpace(param), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "timeout") {
				continue
			}
			// Compare in seconds: n*time.Second overflows int64 above
			// about 292 years (timeout=18446744075 wrapped to 1.29 s).
			n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
			if err != nil || n < 1 || n > int64(maxKeepAliveTimeout/time.Second) {
				return 0, false
			}
			return time.Duration(n) * time.Second, true
		}
	}
	return 0, false
}

// learnKeepAlive notes the idle limit in an origin's Keep-Alive header
// values. Connections to it arm their retirement timers on their next
// read, which for an idle HTTP/1.1 connection is the transport's wait for
// the next response.
func (h *hostStats) learnKeepAlive(values []string) {
	d, ok := parseKeepAliveTimeout(values)
	if ok && retireAfter(d) > 0 && h.keepAlive.Load() != int64(d) {
		h.keepAlive.Store(int64(d))
	}
}

// keepAliveTimeout is the idle limit the origin announced, 0 if none.
func (h *hostStats) keepAliveTimeout() time.Duration {
	return time.Duration(h.keepAlive.Load())
}

// retireLimit is how long a connection to h may stay idle; 0: no limit.
func (h *hostStats) retireLimit() time.Duration {
	if d := h.keepAliveTimeout(); d > 0 {
		return retireAfter(d)
	}
	return 0
}

// Read returns what a prewarm watcher buffered first, then reads Conn. Once
// the origin announced a keep-alive timeout it arms the retirement timer,
// and notes each read that returns data as activity.
func (c *trackedConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		if c.pending = c.pending[n:]; len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	if c.probe {
		return 0, errProbe
	}
	if c.last.Load() == 0 && c.hs.keepAlive.Load() > 0 {
		c.arm()
	}
	n, err := c.Conn.Read(b)
	if n > 0 && c.last.Load() > 0 {
		c.touch()
	}
	return n, err
}

// Write notes the activity; on a connection retired an instant before it
// writes nothing and fails, so the transport retries elsewhere.
func (c *trackedConn) Write(b []byte) (int, error) {
	if c.policy != nil {
		if err := c.checkPolicy(); err != nil {
			return 0, err
		}
	}
	if c.last.Load() != 0 && !c.touch() {
		return 0, errRetired
	}
	return c.Conn.Write(b)
}

// touch notes activity now. It reports false on a retired connection.
func (c *trackedConn) touch() bool {
	now := time.Now().UnixNano()
	for {
		switch old := c.last.Load(); {
		case old == retiredMark:
			return false
		case old == 0:
			return true // not armed
		case c.last.CompareAndSwap(old, now):
			return true
		}
	}
}

// arm starts the retirement timer, once.
func (c *trackedConn) arm() {
	limit := c.hs.retireLimit()
	if limit <= 0 || !c.last.CompareAndSwap(0, time.Now().UnixNano()) {
		return
	}
	t := time.AfterFunc(limit, c.checkIdle)
	c.timer.Store(t)
	if c.closed.Load() {
		t.Stop()
	}
}

// checkIdle runs on the timer: it retires the connection when it has been
// idle for the origin's limit, else sets the timer for later. A
// connection is idle when nothing was read or written for that long and no
// request holds it (busy, counted by withConnTrace): a request may be
// waiting for a slow response on it, or reading a body that pauses, and is
// never cut. A connection no counted request has used yet (the one that
// brought the origin's first Keep-Alive header) is idle only when no
// request to its origin is in flight at all.
func (c *trackedConn) checkIdle() {
	t := c.timer.Load()
	if c.closed.Load() || t == nil {
		return
	}
	limit := int64(c.hs.retireLimit())
	last := c.last.Load()
	if last == retiredMark || limit <= 0 {
		return
	}
	now := time.Now().UnixNano()
	if wait := last + limit - now; wait > 0 {
		t.Reset(time.Duration(wait))
		return
	}
	if c.busy.Load() > 0 || !c.traced.Load() && c.hs.inflight.Load() > 0 {
		t.Reset(max(time.Duration(limit)/16, 100*time.Millisecond))
		return
	}
	if !c.last.CompareAndSwap(last, retiredMark) {
		t.Reset(time.Duration(limit)) // used this instant
		return
	}
	c.hs.retired.Add(1)
	c.total.retired.Add(1)
	c.Close()
}

// withConnTrace returns req counting, on the connection the transport
// gives it, that it holds it: from GotConn until the transport puts the
// connection back in its pool (PutIdleConn), the one moment an HTTP/1.1
// connection is known to be free again. Only requests to an origin that
// announced its keep-alive timeout pay for it (a trace and a request
// copy). The hooks run on different goroutines, and the transport may hand
// the connection to the next request before this one's PutIdleConn runs;
// a count, not a flag, keeps that right.
func withConnTrace(req *http.Request) *http.Request {
	var held atomic.Pointer[trackedConn]
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if c := trackedOf(info.Conn); c != nil {
				c.traced.Store(true)
				c.busy.Add(1)
				if old := held.Swap(c); old != nil {
					old.busy.Add(-1) // a retry moved the request elsewhere
				}
			}
		},
		PutIdleConn: func(error) {
			if c := held.Swap(nil); c != nil {
				c.busy.Add(-1)
				c.touch()
			}
		},
	}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
}

// errProbe answers a read of a trackedConn in probe mode: nothing now. It
// is temporary, so the tls.Conn above keeps its state (H1Pool's drained).
var errProbe = probeError{}

type probeError struct{}

func (probeError) Error() string   { return "upstream: probe: no data buffered" }
func (probeError) Timeout() bool   { return true }
func (probeError) Temporary() bool { return true }

// trackedOf returns the *trackedConn beneath a transport's connection, or
// nil.
func trackedOf(c net.Conn) *trackedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	t, _ := c.(*trackedConn)
	return t
}
