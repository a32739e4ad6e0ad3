package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/parentproxy"
)

// Pre-warming. For each origin in -prewarm, a keeper goroutine holds N
// connections open from the start: TCP, plus the TLS handshake for https,
// dialed with the transport's own dial functions (so the destination
// policy, the TLS settings and the pool's counting all apply). Those not
// yet used wait in a stash; the transport's dial for that origin takes one
// from there before dialing. The net/http transport has no way to be given
// a connection, so the stash sits in front of its dial instead.
//
// A watcher per stashed connection blocks in a read beneath TLS, to see
// the origin close it; whatever it reads (a TLS session ticket, an HTTP/2
// server's SETTINGS) is kept and handed to the transport's first reads, so
// the watch consumes nothing. Handing off interrupts the read with a past
// read deadline (recoverable: the read returns a timeout and the
// connection is fine; a write deadline would not be).
//
// The keeper re-opens connections so that the origin's open connections,
// pooled and stashed, stay at N or more: the transport's own connections
// count, so prewarm adds none while the pool holds N, and N may not exceed
// the pool's per-origin limits (config.Validate). An HTTP/2 origin carries
// every request on one connection, so N means one there. Failures back
// off exponentially up to maxBackoff, and are logged once when an origin
// starts failing and once when it recovers.
//
// Re-dials are paced. A stashed connection that ends unused (the origin
// closed it, or it was retired before the origin's keep-alive timeout)
// frees its slot no sooner than pace after it was opened; pace starts at
// max(the origin's keep-alive timeout, minRedial) and doubles, up to
// maxBackoff, each round of such endings, until a request uses a warm
// connection again. So an origin announcing timeout=1 to a proxy with no
// traffic costs a re-dial per slot per second at first, then one per 30 s,
// instead of one per slot every 0.5 s forever; a slot may sit empty
// meanwhile, and a request then dials as it would without prewarm.
// Retired stash connections count in the origin's retired metric.

const (
	// minBackoff and maxBackoff bound the wait after a failed attempt.
	minBackoff = 250 * time.Millisecond
	maxBackoff = 30 * time.Second
	// minLife: a connection the origin closes sooner than this after it
	// was opened counts as a failure, so an origin that accepts and hangs
	// up is retried with backoff, not in a loop.
	minLife = time.Second
	// maxPending bounds what a watcher keeps for the transport.
	maxPending = 64 << 10
	// minRedial is the least time between two dials of one slot whose
	// connection ended unused.
	minRedial = time.Second
)

// Log attribute keys.
const (
	keyOrigin  = "origin"
	keyConns   = "conns"
	keyRetryIn = "retry_in"
	keyFailed  = "failed_attempts"
)

// Prewarm keeps connections open to the origins in config.Prewarm. Build
// it with newPrewarm (New does), run it with Start, end it with Stop. Its
// methods are safe on a nil *Prewarm, which prewarms nothing.
type Prewarm struct {
	origins [numSchemes]map[string]*warmOrigin
	list    []*warmOrigin
	timeout time.Duration

	mu      sync.Mutex
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped bool
	ready   chan struct{}
	pending int // origins still on their first fill
}

// warmOrigin is one prewarmed origin: its stash and its keeper's state.
type warmOrigin struct {
	p       *Tracker
	scheme  Scheme
	addr    string
	want    int
	dial    DialFunc
	kick    chan struct{}
	wg      *sync.WaitGroup
	timeout time.Duration
	// life and redial are minLife and minRedial; tests shorten them.
	life, redial time.Duration

	mu     sync.Mutex
	stash  []*warmConn
	closed bool
	h2     bool
	used   int // conns handed to the transport since the keeper last looked

	// The keeper's pacing state, only its goroutine touches it: cooling
	// holds when each slot whose connection ended unused may dial again;
	// pace is the wait, from a connection's opening, applied to the next
	// such slot (0: the floor).
	cooling []time.Time
	pace    time.Duration
}

// warmConn is a stashed connection and its watcher.
type warmConn struct {
	conn   net.Conn     // what the dial returned
	tc     *trackedConn // beneath it
	opened time.Time
	done   chan struct{}
	err    error // why the watch ended; read after done
	// retired is set by sweep when it closed the connection for its age
	// rather than because the origin did.
	retired bool
}

// newPrewarm takes cfg.Prewarm's targets and puts the stash in front of t's dial
// functions, which must already count in p (instrument). It returns nil
// when nothing is to be prewarmed. With an http parent proxy, plain-http
// requests travel on the transport's connections to the parent, so a
// plain-http target not exempt from the parent prewarms those instead
// (the largest N of such targets).
func newPrewarm(cfg config.Parsed, p *Tracker, t *http.Transport, par *parent) (*Prewarm, error) {
	targets := cfg.Prewarm
	if len(targets) == 0 {
		return nil, nil
	}
	w := &Prewarm{timeout: cfg.UpstreamPrewarmTimeout, ready: make(chan struct{})}
	for s := range w.origins {
		w.origins[s] = map[string]*warmOrigin{}
	}
	for _, tg := range targets {
		if par != nil && par.Scheme == parentproxy.HTTP && tg.Scheme == "http" {
			host, port, _ := net.SplitHostPort(tg.Addr)
			if !par.bypassed(host, atoiPort(port)) {
				tg.Addr = par.Addr
			}
		}
		if o := w.origins[SchemeHTTP][strings.ToLower(tg.Addr)]; o != nil && tg.Scheme == "http" {
			o.want = max(o.want, tg.Conns)
			continue
		}
		s, dial := SchemeHTTP, DialFunc(t.DialContext)
		if tg.Scheme == "https" {
			s, dial = SchemeHTTPS, DialFunc(t.DialTLSContext)
		}
		o := &warmOrigin{p: p, scheme: s, addr: strings.ToLower(tg.Addr), want: tg.Conns, dial: dial, kick: make(chan struct{}, 1), wg: &w.wg, timeout: w.timeout,
			life: minLife, redial: minRedial}
		w.origins[s][o.addr] = o
		w.list = append(w.list, o)
	}
	// The transport adds "h2" to its TLSClientConfig.NextProtos on first
	// use (configureHTTP2); Clone does that now, with no other effect, so
	// that prewarmed TLS connections offer HTTP/2 as the transport's own
	// would.
	_ = t.Clone()
	t.DialContext = w.wrap(SchemeHTTP, t.DialContext)
	t.DialTLSContext = w.wrap(SchemeHTTPS, t.DialTLSContext)
	return w, nil
}

// wrap returns next, handing out a stashed connection first when one
// waits for the origin at addr.
func (w *Prewarm) wrap(s Scheme, next DialFunc) DialFunc {
	if next == nil || len(w.origins[s]) == 0 {
		return next
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if o := w.origins[s][strings.ToLower(addr)]; o != nil {
			if c := o.take(); c != nil {
				return c, nil
			}
		}
		return next(ctx, network, addr)
	}
}

// Start runs a keeper per origin; log hears of their state changes.
func (w *Prewarm) Start(log *slog.Logger) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil || w.stopped {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.pending = len(w.list)
	for _, o := range w.list {
		hs := o.p.host(o.scheme, o.addr)
		hs.warm.Store(o)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			o.keep(ctx, log, w.firstFillDone)
		}()
	}
}

func (w *Prewarm) firstFillDone() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending--; w.pending == 0 {
		close(w.ready)
	}
}

// Ready is closed once every origin had its first round of dials, whether
// they succeeded or not. A nil *Prewarm is always ready.
func (w *Prewarm) Ready() <-chan struct{} {
	if w == nil {
		return closedChan
	}
	return w.ready
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Stop ends the keepers and closes the stashed connections, and waits for
// every goroutine Start began. Connections already handed to the
// transport are the transport's.
func (w *Prewarm) Stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.stopped = true
	cancel := w.cancel
	w.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	for _, o := range w.list {
		o.close()
	}
	w.wg.Wait()
	for _, o := range w.list {
		o.p.host(o.scheme, o.addr).warm.CompareAndSwap(o, nil)
	}
}

// Flush closes the stashed connections; the keepers dial new ones. A
// change of the destination policy calls it, since those connections were
// checked against the old rules.
func (w *Prewarm) Flush() {
	if w == nil {
		return
	}
	for _, o := range w.list {
		o.mu.Lock()
		stash := o.stash
		o.stash = nil
		o.mu.Unlock()
		for _, wc := range stash {
			wc.stopWatch()
			wc.conn.Close()
		}
		o.poke()
	}
}

func (o *warmOrigin) close() {
	o.mu.Lock()
	o.closed = true
	stash := o.stash
	o.stash = nil
	o.mu.Unlock()
	for _, wc := range stash {
		wc.conn.Close()
	}
}

// poke wakes the keeper; it never blocks.
func (o *warmOrigin) poke() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

func (o *warmOrigin) stashed() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.stash)
}

func (o *warmOrigin) name() string { return o.scheme.String() + "://" + o.addr }

// take hands a stashed connection to the transport: the newest one whose
// watcher saw nothing wrong. It returns nil when none is left.
func (o *warmOrigin) take() net.Conn {
	for {
		o.mu.Lock()
		n := len(o.stash)
		if n == 0 || o.closed {
			o.mu.Unlock()
			return nil
		}
		wc := o.stash[n-1]
		o.stash = o.stash[:n-1]
		o.used++
		o.mu.Unlock()
		o.poke()
		if wc.handOff(o.p.host(o.scheme, o.addr).retireLimit()) {
			wc.tc.prewarmed = true
			return wc.conn
		}
		wc.conn.Close()
	}
}

// handOff ends the watch and reports whether the connection is fine: the
// origin did not close it, and it is younger than limit (0: no limit).
func (wc *warmConn) handOff(limit time.Duration) bool {
	wc.stopWatch()
	if !errors.Is(wc.err, os.ErrDeadlineExceeded) || wc.tc.closed.Load() {
		return false
	}
	if limit > 0 && time.Since(wc.opened) >= limit {
		return false
	}
	return wc.tc.Conn.SetReadDeadline(time.Time{}) == nil
}

// stopWatch interrupts the watcher's read and waits for it to return.
func (wc *warmConn) stopWatch() {
	select {
	case <-wc.done:
		return
	default:
	}
	wc.tc.Conn.SetReadDeadline(time.Unix(1, 0))
	<-wc.done
}

// watch blocks in a read beneath TLS until the origin closes the
// connection or stopWatch interrupts it. Bytes read from a TLS connection
// are kept for the transport; on plain HTTP/1.1 an origin has nothing to
// say before a request, so a byte there ends the connection.
func (wc *warmConn) watch(plain bool) {
	defer close(wc.done)
	var buf [1024]byte
	for {
		n, err := wc.tc.Conn.Read(buf[:])
		if n > 0 {
			if plain || len(wc.tc.pending)+n > maxPending {
				wc.err = errors.New("origin sent data before any request")
				return
			}
			wc.tc.pending = append(wc.tc.pending, buf[:n]...)
		}
		if err != nil {
			wc.err = err
			return
		}
	}
}

// keep is an origin's keeper loop; it returns when ctx is done.
func (o *warmOrigin) keep(ctx context.Context, log *slog.Logger, firstDone func()) {
	var (
		failing  bool
		failures int
		backoff  time.Duration
		nextTry  time.Time
		first    = true
		timer    = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	fail := func(err error) {
		failures++
		backoff = min(max(2*backoff, minBackoff), maxBackoff)
		// ±20% jitter, so that proxies started together do not retry in step.
		backoff = time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
		nextTry = time.Now().Add(backoff)
		if !failing {
			failing = true
			log.Warn("prewarm failing", keyOrigin, o.name(), accesslog.KeyError, err.Error(), keyRetryIn, backoff.Round(time.Millisecond).String())
		}
	}
	for {
		now := time.Now()
		hs := o.p.host(o.scheme, o.addr)
		limit := hs.retireLimit()
		var wake time.Time
		soon := func(t time.Time) {
			if wake.IsZero() || t.Before(wake) {
				wake = t
			}
		}
		// Drop what the origin closed and retire what it would close soon.
		gone := o.sweep(now, limit)
		for _, wc := range gone {
			if !wc.retired && now.Sub(wc.opened) < o.life {
				fail(fmt.Errorf("origin closed the connection after %v: %v", now.Sub(wc.opened).Round(time.Millisecond), wc.err))
			}
		}
		// A failing origin has recovered once a new connection was used,
		// or lived minLife.
		used, survivor, youngest, oldest := o.look(now)
		o.paceRedials(now, gone, used, hs.keepAliveTimeout())
		cooling, coolUntil := o.coolingSlots(now)
		if cooling > 0 {
			soon(coolUntil)
		}
		if failing && (used || survivor) {
			log.Info("prewarm recovered", keyOrigin, o.name(), keyFailed, failures)
			failing, failures, backoff, nextTry = false, 0, 0, time.Time{}
		}
		if failing && !youngest.IsZero() {
			soon(youngest.Add(o.life))
		}
		if need := o.target() - int(hs.open.Load()) - cooling; need > 0 {
			if now.Before(nextTry) {
				soon(nextTry)
			} else {
				opened, err := o.fill(ctx, need)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					fail(err)
					soon(nextTry)
				}
				if opened > 0 && failing {
					soon(time.Now().Add(o.life))
				}
				if first && err == nil {
					log.Info("prewarmed", keyOrigin, o.name(), keyConns, opened)
				}
				if oldest.IsZero() && opened > 0 {
					oldest = now
				}
			}
		}
		if first {
			first = false
			firstDone()
		}
		if !oldest.IsZero() && limit > 0 {
			soon(oldest.Add(limit))
		}
		d := time.Hour
		if !wake.IsZero() {
			d = max(time.Until(wake), time.Millisecond)
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-o.kick:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// paceRedials puts the slots of the unused connections in gone that lived
// less than pace to cool until pace after each was opened, and then
// doubles pace; a request that used a warm connection (used) ends the
// cooling and resets pace to the floor, max(ka, minRedial), ka being the
// origin's keep-alive timeout. Connections that lived longer are replaced
// at once and leave pace as it is.
func (o *warmOrigin) paceRedials(now time.Time, gone []*warmConn, used bool, ka time.Duration) {
	if used {
		o.cooling, o.pace = o.cooling[:0], 0
	}
	pace, short := max(o.pace, ka, o.redial), false
	for _, wc := range gone {
		if at := wc.opened.Add(pace); at.After(now) {
			o.cooling = append(o.cooling, at)
			short = true
		}
	}
	if short {
		o.pace = min(2*pace, maxBackoff)
	}
}

// coolingSlots drops the slots done cooling and returns how many still
// are and when the first of them is done.
func (o *warmOrigin) coolingSlots(now time.Time) (n int, first time.Time) {
	keep := o.cooling[:0]
	for _, at := range o.cooling {
		if at.After(now) {
			keep = append(keep, at)
			if first.IsZero() || at.Before(first) {
				first = at
			}
		}
	}
	o.cooling = keep
	return len(keep), first
}

// look reports whether a stashed connection was handed to the transport
// since the last look, whether one has lived minLife, and the open times
// of the youngest and the oldest in the stash.
func (o *warmOrigin) look(now time.Time) (used, survivor bool, youngest, oldest time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	used, o.used = o.used > 0, 0
	for _, wc := range o.stash {
		if now.Sub(wc.opened) >= o.life {
			survivor = true
		}
		if youngest.IsZero() || wc.opened.After(youngest) {
			youngest = wc.opened
		}
		if oldest.IsZero() || wc.opened.Before(oldest) {
			oldest = wc.opened
		}
	}
	return used, survivor, youngest, oldest
}

// target is how many connections the origin should have open.
func (o *warmOrigin) target() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.h2 {
		return 1
	}
	return o.want
}

// sweep removes from the stash the connections whose watcher ended (the
// origin closed them) and those older than limit (retired: counted so),
// closes them and returns them.
func (o *warmOrigin) sweep(now time.Time, limit time.Duration) []*warmConn {
	var gone []*warmConn
	o.mu.Lock()
	keep := o.stash[:0]
	for _, wc := range o.stash {
		select {
		case <-wc.done:
			gone = append(gone, wc)
			continue
		default:
		}
		if limit > 0 && now.Sub(wc.opened) >= limit {
			wc.retired = true
			gone = append(gone, wc)
			continue
		}
		keep = append(keep, wc)
	}
	clear(o.stash[len(keep):])
	o.stash = keep
	o.mu.Unlock()
	for _, wc := range gone {
		wc.stopWatch()
		if wc.retired {
			wc.tc.hs.retired.Add(1)
			wc.tc.total.retired.Add(1)
		}
		wc.conn.Close()
	}
	return gone
}

// fill dials need connections, the first alone for https to learn whether
// the origin speaks HTTP/2 (then one is all it needs), the rest at once.
// It returns how many it stashed and the first error.
func (o *warmOrigin) fill(ctx context.Context, need int) (int, error) {
	opened := 0
	if o.scheme == SchemeHTTPS {
		o.mu.Lock()
		known := o.h2
		o.mu.Unlock()
		if !known {
			h2, err := o.dialOne(ctx)
			if err != nil {
				return 0, err
			}
			opened, need = 1, need-1
			if h2 {
				return opened, nil
			}
		}
	}
	if need <= 0 {
		return opened, nil
	}
	errs := make(chan error, need)
	var wg sync.WaitGroup
	for range need {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := o.dialOne(ctx)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	var first error
	for err := range errs {
		if err == nil {
			opened++
		} else if first == nil {
			first = err
		}
	}
	return opened, first
}

// dialOne dials a connection through the transport's dial function and
// stashes it, watched. It reports whether the origin chose HTTP/2.
func (o *warmOrigin) dialOne(ctx context.Context) (bool, error) {
	if d := o.timeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	c, err := o.dial(ctx, "tcp", o.addr)
	if err != nil {
		return false, err
	}
	var tc *trackedConn
	h2 := false
	switch v := c.(type) {
	case *trackedConn:
		tc = v
	case *tls.Conn:
		tc, _ = v.NetConn().(*trackedConn)
		h2 = v.ConnectionState().NegotiatedProtocol == "h2"
	}
	if tc == nil {
		c.Close()
		return false, fmt.Errorf("prewarm %s: the dial returned a %T, not a pooled connection", o.name(), c)
	}
	wc := &warmConn{conn: c, tc: tc, opened: time.Now(), done: make(chan struct{})}
	o.mu.Lock()
	if o.closed || ctx.Err() != nil {
		o.mu.Unlock()
		c.Close()
		return false, ctx.Err()
	}
	if h2 {
		o.h2 = true
	}
	o.stash = append(o.stash, wc)
	o.wg.Add(1)
	o.mu.Unlock()
	go func() {
		defer o.wg.Done()
		wc.watch(o.scheme == SchemeHTTP)
		o.poke()
	}()
	return h2, nil
}
