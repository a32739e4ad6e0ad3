package upstream

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// pipeOrigin is a fake origin for synctest bubbles: each dial returns one
// end of a net.Pipe and keeps the other, which never says anything.
type pipeOrigin struct {
	dials atomic.Int64
	mu    sync.Mutex
	ends  []net.Conn
}

func (o *pipeOrigin) dial(context.Context, string, string) (net.Conn, error) {
	o.dials.Add(1)
	c, s := net.Pipe()
	o.mu.Lock()
	o.ends = append(o.ends, s)
	o.mu.Unlock()
	return c, nil
}

func (o *pipeOrigin) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.ends {
		c.Close()
	}
}

// startPipePrewarm prewarms want connections to a pipeOrigin whose
// announced keep-alive timeout is ka, as if a response had said so.
func startPipePrewarm(t *testing.T, want int, ka time.Duration) (*Prewarm, *Tracker, *pipeOrigin) {
	t.Helper()
	po := &pipeOrigin{}
	p := NewTracker()
	const addr = "origin.test:80"
	w := &Prewarm{ready: make(chan struct{})}
	for s := range w.origins {
		w.origins[s] = map[string]*warmOrigin{}
	}
	o := &warmOrigin{p: p, scheme: SchemeHTTP, addr: addr, want: want, dial: p.dialer(po.dial), kick: make(chan struct{}, 1), wg: &w.wg,
		life: minLife, redial: minRedial}
	w.origins[SchemeHTTP][addr] = o
	w.list = append(w.list, o)
	p.host(SchemeHTTP, addr).keepAlive.Store(int64(ka))
	w.Start(slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		w.Stop()
		po.close()
	})
	return w, p, po
}

// startPipeUpstream builds for a synctest bubble what New and
// startPrewarm build from cfg (pool, transport, prewarm), every dial
// going to dial, and waits for the prewarm to be ready.
func startPipeUpstream(t *testing.T, cfg config.Config, dial DialFunc) (*Upstream, *testnet.Buffer) {
	t.Helper()
	p := NewTracker()
	p.honorKeepAlive = cfg.HonorKeepAliveTimeout
	tr := &http.Transport{DialContext: dial}
	p.instrument(tr, newTLSStep(nil, tr))
	w, err := newPrewarm(config.MustParse(cfg), p, tr, nil)
	if err != nil || w == nil {
		t.Fatalf("newPrewarm(%q) = %v, %v", cfg.Prewarm, w, err)
	}
	logs := &testnet.Buffer{}
	w.Start(slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(func() {
		w.Stop()
		tr.CloseIdleConnections()
	})
	<-w.Ready()
	return &Upstream{transport: tr, tracker: p, prewarm: w}, logs
}

// Issue 12: with -prewarm *8 and an origin announcing timeout=1, the
// keeper re-opened each slot every 0.5 s forever with no traffic (16 per
// second). Re-dials are paced, at most once per slot per max(timeout,
// 1 s), backing off while nothing uses them, and counted as retired.
func TestPrewarmPacesRedials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, p, po := startPipePrewarm(t, 8, time.Second)
		<-w.Ready()
		time.Sleep(time.Second - time.Millisecond)
		synctest.Wait()
		if got := po.dials.Load(); got != 8 {
			t.Errorf("%d dials in the first second, want 8: no slot re-dials sooner than 1 s", got)
		}
		time.Sleep(60 * time.Second)
		synctest.Wait()
		dials := po.dials.Load()
		st := p.Totals(SchemeHTTP)
		t.Logf("60 s with no traffic: %d dials (%.2f/s), %d retired, %d open", dials, float64(dials)/61, st.Retired, st.Open)
		// Backoff 1, 2, 4, 8, 16, 30 s: some seven rounds of 8 in 61 s,
		// where an unpaced keeper makes 8 every 0.5 s (976).
		if dials > 8*8 {
			t.Errorf("%d dials in 61 s with no traffic, want at most 64 (paced, backing off)", dials)
		}
		if want := uint64(dials) - uint64(st.Open); st.Retired != want {
			t.Errorf("retired %d, want %d: every re-dial's predecessor counted", st.Retired, want)
		}
	})
}

// Issue 12: a request that uses a warm connection ends the backoff: the
// slots re-dial at the floor pace again.
func TestPrewarmPaceResetByUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, po := startPipePrewarm(t, 8, time.Second)
		<-w.Ready()
		// Dials at 0, 1, 3, 7, 15 and 31 s; the next would be at 61 s.
		time.Sleep(31*time.Second + 200*time.Millisecond)
		synctest.Wait()
		if got := po.dials.Load(); got != 48 {
			t.Fatalf("%d dials by 31.2 s, want 48", got)
		}
		c := w.list[0].take()
		if c == nil {
			t.Fatal("no warm connection to take at 31.2 s")
		}
		defer c.Close()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		// Reset: the 7 left re-dial at 32, 34 and 38 s.
		if got := po.dials.Load() - 48; got < 14 {
			t.Errorf("%d dials in the 10 s after a warm connection was used, want 14 or more (pace back at 1 s)", got)
		}
	})
}

// Issue 12: the same through the transport: -prewarm *8 to an origin
// that announces timeout=1 in a response (the timeout is learned, not
// set), no traffic after that first request. Unpaced, the origin saw 8
// connections every 0.5 s (some 56 in 3.5 s). Issue 16: in virtual time
// over pipes, where it ran 3.5 s of real time over loopback sockets.
func TestPrewarmPacesRedialsLearned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := pipeKAOrigin(time.Second, 0, true)
		cfg := config.Default()
		cfg.Prewarm = "http://" + o.addr + "*8"
		up, _ := startPipeUpstream(t, cfg, o.dial)
		getCounting(t, up.Tracker().Wrap(up.Transport()), "http://"+o.addr+"/") // learn the timeout
		before := o.accepts.Load()
		time.Sleep(3500 * time.Millisecond)
		got := o.accepts.Load() - before
		st := up.Tracker().Hosts()[0]
		t.Logf("%d connections opened in 3.5 s (%.1f/s), %d retired", got, float64(got)/3.5, st.Retired)
		// Paced: each slot re-dials after 1 s, then 2 s: two rounds of 8
		// (three on a slow start), far below 56.
		if got > 3*8 {
			t.Errorf("%d connections opened in 3.5 s with no traffic, want at most 24 (paced re-dials)", got)
		}
		if st.Retired == 0 {
			t.Errorf("retired 0, want the stash's retirements counted")
		}
	})
}
