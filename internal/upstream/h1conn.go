package upstream

import (
	"context"
	"crypto/tls"
	"net"
	"syscall"
	"time"
)

// dialNew dials a connection for h, whose slot take reserved, through the
// dial stack.
func (p *H1Pool) dialNew(ctx context.Context, h *h1Host) (*PConn, error) {
	start := time.Now()
	dial := p.dial
	if h.key.Scheme == SchemeHTTPS {
		dial = p.dialTLS
	}
	c, err := dial(ctx, "tcp", h.key.Addr)
	if err != nil {
		p.freeSlot(h)
		p.countFailed(h.key)
		return nil, err
	}
	pc := newPConn(c, h.key)
	pc.Info.Connect = time.Since(start)
	if pc.tls != nil {
		st := pc.tls.ConnectionState()
		pc.Info.TLSResumed = st.DidResume
		if st.NegotiatedProtocol == ProtoH2 {
			// The origin chose HTTP/2: the connection is the HTTP/2 pool's.
			pc.Proto = ProtoH2
			p.freeSlot(h)
			return pc, nil
		}
	}
	if pc.tracked != nil && pc.tracked.Prewarmed() {
		pc.Info = ConnInfo{Reused: true}
	}
	pc.pool, pc.host = p, h
	p.checkOut(pc)
	return pc, nil
}

// newPConn wraps what the dial stack returned, finding the socket beneath
// for the hand-out peek and for splicing.
func newPConn(c net.Conn, key H1Key) *PConn {
	pc := &PConn{Conn: c, Key: key, Proto: ProtoHTTP1}
	under := c
	if tc, ok := c.(*tls.Conn); ok {
		pc.tls = tc
		under = tc.NetConn()
	}
	if t, ok := under.(*trackedConn); ok {
		pc.tracked = t
		under = t.Conn
	}
	if tcp, ok := under.(*net.TCPConn); ok && pc.tls == nil {
		pc.TCP = tcp
	}
	if sc, ok := under.(syscall.Conn); ok {
		pc.raw, _ = sc.SyscallConn()
	}
	pc.peekFn = pc.peek
	return pc
}

// checkOut counts pc held by a request: in flight in /debug/pool, and busy
// for the keep-alive retirement timer (keepalive.go), which never retires
// a connection a request holds.
func (p *H1Pool) checkOut(pc *PConn) {
	pc.out = true
	if p.stats == nil {
		return
	}
	hs := p.stats.host(pc.Key.Scheme, pc.Key.Addr)
	total := &p.stats.totals[pc.Key.Scheme]
	hs.requests.Add(1)
	hs.inflight.Add(1)
	total.requests.Add(1)
	total.inflight.Add(1)
	pc.hs = hs
	if t := pc.tracked; t != nil {
		t.traced.Store(true)
		t.busy.Add(1)
	}
}

// countFailed counts a request that got no connection.
func (p *H1Pool) countFailed(key H1Key) {
	if p.stats == nil {
		return
	}
	hs := p.stats.host(key.Scheme, key.Addr)
	total := &p.stats.totals[key.Scheme]
	hs.requests.Add(1)
	hs.failed.Add(1)
	total.requests.Add(1)
	total.failed.Add(1)
}

// NoteKeepAlive passes the Keep-Alive field values of a response that came
// on pc to the pool: an origin announcing "timeout=N" gets its idle
// connections retired shortly before N (-honor-keepalive-timeout).
func (pc *PConn) NoteKeepAlive(values []string) {
	if pc.pool != nil && pc.pool.stats != nil && pc.pool.stats.honorKeepAlive && pc.hs != nil {
		pc.hs.learnKeepAlive(values)
	}
}

// Fail counts the request on pc as failed, with err as the origin's last
// error in /debug/pool and the stats page; Release still follows.
func (pc *PConn) Fail(err error) {
	if pc.hs == nil {
		return
	}
	pc.hs.failed.Add(1)
	pc.pool.stats.totals[pc.Key.Scheme].failed.Add(1)
	pc.hs.setErr(err.Error())
}

// Release ends the request's hold on pc, whose response was read to its
// end. With reusable (the framing allowed it, no "Connection: close"
// either way, nothing left unread in the caller's buffers) the connection
// goes back to the pool if nothing is waiting in its TLS buffers, else it
// is closed. A second Release, and Release of a ProtoH2 PConn, do
// nothing.
func (pc *PConn) Release(reusable bool) {
	p, h := pc.pool, pc.host
	if p == nil || !pc.out {
		return
	}
	pc.out = false
	if hs := pc.hs; hs != nil {
		hs.inflight.Add(-1)
		p.stats.totals[pc.Key.Scheme].inflight.Add(-1)
	}
	if t := pc.tracked; t != nil {
		t.busy.Add(-1)
		t.touch()
	}
	if !reusable || p.closed.Load() || !pc.drained() || pc.Conn.SetDeadline(time.Time{}) != nil {
		pc.destroy()
		return
	}
	pc.idleSince = p.now()
	var evicted *PConn
	h.mu.Lock()
	// Close marks the pool closed before it empties each key, under the
	// key's lock: seen here, or the emptying comes after.
	if h.dead || p.closed.Load() {
		h.mu.Unlock()
		pc.destroy()
		return
	}
	if len(h.idle) >= p.maxIdlePerHost {
		evicted = h.idle[0]
		copy(h.idle, h.idle[1:])
		h.idle[len(h.idle)-1] = nil
		h.idle = h.idle[:len(h.idle)-1]
	} else {
		p.idleTotal.Add(1)
	}
	h.idle = append(h.idle, pc)
	h.wakeLocked()
	h.mu.Unlock()
	if evicted != nil {
		evicted.destroy()
	}
	if p.idleTotal.Load() > int64(p.maxIdle) {
		p.evictOldest()
	}
}

// destroy closes pc and frees its slot.
func (pc *PConn) destroy() {
	pc.Conn.Close()
	if pc.pool != nil {
		pc.pool.freeSlot(pc.host)
	}
}

// freeSlot gives back a slot of h and wakes a waiter for it.
func (p *H1Pool) freeSlot(h *h1Host) {
	h.mu.Lock()
	h.conns--
	h.wakeLocked()
	h.mu.Unlock()
}

// drained reports whether the TLS layer of pc holds no byte the caller
// has not read: a record read from the socket with the response's last
// one (a stray byte, an alert) makes the connection unfit. One read of
// the tls.Conn with the socket beneath answering "nothing now" (probe,
// keepalive.go) processes any whole record it buffered. A record only
// partly buffered is not seen; its rest, arriving, is (healthy).
func (pc *PConn) drained() bool {
	if pc.tls == nil {
		return true
	}
	t := pc.tracked
	if t == nil {
		return false
	}
	t.probe = true
	n, err := pc.tls.Read(pc.peekBuf[:])
	t.probe = false
	return n == 0 && err == errProbe
}

// healthy is the hand-out check: nothing readable and no close pending on
// the socket, peeked without blocking, without a goroutine and without
// reading.
func (pc *PConn) healthy() bool {
	if pc.raw == nil || pc.tracked != nil && pc.tracked.closed.Load() {
		return false
	}
	pc.peekOK = false
	if err := pc.raw.Read(pc.peekFn); err != nil {
		return false
	}
	return pc.peekOK
}

// peek is the RawConn.Read callback: EAGAIN is the one healthy answer; a
// byte, an EOF (0) or an error is not. It never asks to wait.
func (pc *PConn) peek(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), pc.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	pc.peekOK = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	return true
}

// countRetired counts pc retired before the origin's keep-alive timeout.
func (pc *PConn) countRetired() {
	if pc.hs != nil {
		pc.hs.retired.Add(1)
		pc.pool.stats.totals[pc.Key.Scheme].retired.Add(1)
	}
}

// evictOldest closes the oldest idle connection of all keys, once the
// pool holds more than MaxIdle.
func (p *H1Pool) evictOldest() {
	var oldest *h1Host
	var at int64
	for _, h := range *p.hosts.Load() {
		h.mu.Lock()
		if len(h.idle) > 0 && (oldest == nil || h.idle[0].idleSince < at) {
			oldest, at = h, h.idle[0].idleSince
		}
		h.mu.Unlock()
	}
	if oldest == nil {
		return
	}
	oldest.mu.Lock()
	if len(oldest.idle) == 0 || p.idleTotal.Load() <= int64(p.maxIdle) {
		oldest.mu.Unlock()
		return
	}
	pc := oldest.idle[0]
	copy(oldest.idle, oldest.idle[1:])
	oldest.idle[len(oldest.idle)-1] = nil
	oldest.idle = oldest.idle[:len(oldest.idle)-1]
	oldest.mu.Unlock()
	p.idleTotal.Add(-1)
	pc.destroy()
}

// reap closes, every reapInterval, the idle connections past the idle
// timeout or the origin's keep-alive limit, and forgets keys with no
// connection, so an origin seen once holds nothing for long.
func (p *H1Pool) reap() {
	defer close(p.reaped)
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	var doomed []*PConn
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		doomed = p.sweep(doomed[:0])
		for i, pc := range doomed {
			pc.destroy()
			doomed[i] = nil
		}
	}
}

// reapInterval is how often the reaper looks. A connection a Get would
// find expired is closed by Get; the reaper only bounds how long an
// unused one keeps its socket.
const reapInterval = time.Second

// sweep appends to doomed the expired idle connections, oldest first, and
// drops the empty keys.
func (p *H1Pool) sweep(doomed []*PConn) []*PConn {
	now := p.now()
	empty := 0
	for _, h := range *p.hosts.Load() {
		h.mu.Lock()
		n := 0
		for n < len(h.idle) && p.expired(h.idle[n], now) {
			doomed = append(doomed, h.idle[n])
			n++
		}
		if n > 0 {
			copy(h.idle, h.idle[n:])
			clear(h.idle[len(h.idle)-n:])
			h.idle = h.idle[:len(h.idle)-n]
			p.idleTotal.Add(int64(-n))
		}
		if h.conns == 0 && len(h.waiters) == 0 {
			empty++
		}
		h.mu.Unlock()
	}
	if empty > 0 {
		p.prune()
	}
	return doomed
}

// expired reports whether an idle pc is past the idle timeout or its
// origin's keep-alive limit (counted as retired).
func (p *H1Pool) expired(pc *PConn, now int64) bool {
	idle := time.Duration(now - pc.idleSince)
	if p.idleTimeout > 0 && idle >= p.idleTimeout || pc.tracked != nil && pc.tracked.closed.Load() {
		return true
	}
	if pc.hs != nil {
		if limit := pc.hs.retireLimit(); limit > 0 && idle >= limit {
			pc.countRetired()
			return true
		}
	}
	return false
}

// prune drops the keys with no connection and no waiter from the map.
func (p *H1Pool) prune() {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.hosts.Load()
	m := make(map[H1Key]*h1Host, len(old))
	for k, h := range old {
		h.mu.Lock()
		if h.conns == 0 && len(h.waiters) == 0 {
			h.dead = true
		} else {
			m[k] = h
		}
		h.mu.Unlock()
	}
	p.hosts.Store(&m)
}

// Close closes the idle connections and stops the reaper; connections
// held are closed at their Release. Get fails from then on.
func (p *H1Pool) Close() {
	if !p.closed.CompareAndSwap(false, true) {
		return
	}
	close(p.stop)
	<-p.reaped
	for _, h := range *p.hosts.Load() {
		h.mu.Lock()
		idle := h.idle
		h.idle = nil
		h.mu.Unlock()
		p.idleTotal.Add(int64(-len(idle)))
		for _, pc := range idle {
			pc.destroy()
		}
	}
}

// H1Stats are the pool's own counts of one key.
type H1Stats struct {
	Key H1Key
	// Idle counts the connections waiting in the pool, Conns all of the
	// key's (idle, held, being dialed), Waiting the requests queued for
	// one under MaxConnsPerHost.
	Idle, Conns, Waiting int
}

// Stats returns the counts per key. /debug/pool's per-origin idle and
// active counts come from the Tracker (track.go), where this pool counts its
// requests and the dial stack its connections.
func (p *H1Pool) Stats() []H1Stats {
	m := *p.hosts.Load()
	out := make([]H1Stats, 0, len(m))
	for _, h := range m {
		h.mu.Lock()
		out = append(out, H1Stats{Key: h.key, Idle: len(h.idle), Conns: h.conns, Waiting: len(h.waiters)})
		h.mu.Unlock()
	}
	return out
}

// Idle is the number of idle connections over all keys.
func (p *H1Pool) Idle() int { return int(p.idleTotal.Load()) }
