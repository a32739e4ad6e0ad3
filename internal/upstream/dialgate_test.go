package upstream

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/testnet"
)

// Issue 12: 100 requests at once to an https origin that accepts and then
// never answers the TLS handshake: at most MaxDialsPerHost connections
// are dialing at once (the rest wait in line), and when the requests are
// cancelled every dial ends with them: the origin sees each connection
// closed, instead of the transport's detached dials holding them for the
// whole handshake timeout.
func TestDialsBoundedAndCancelledWithTheirRequests(t *testing.T) {
	var open, accepted, maxOpen atomic.Int64
	addr := testnet.Serve(t, func(c net.Conn) {
		accepted.Add(1)
		n := open.Add(1)
		for m := maxOpen.Load(); n > m && !maxOpen.CompareAndSwap(m, n); m = maxOpen.Load() {
		}
		io.Copy(io.Discard, c) // until the proxy closes it
		open.Add(-1)
	})
	up := newTestUpstream(t, config.Default())
	rt := up.RoundTripper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 100
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/", nil)
			if resp, err := rt.RoundTrip(req); err == nil {
				resp.Body.Close()
				t.Error("a request got a response from an origin that never answers")
			}
		})
	}
	testnet.WaitUntil(t, 5*time.Second, "MaxDialsPerHost connections to reach the origin", func() bool { return accepted.Load() >= MaxDialsPerHost })
	time.Sleep(200 * time.Millisecond) // more would come now if the dials were not bounded
	dialing, atOnce := accepted.Load(), maxOpen.Load()
	cancel()
	wg.Wait()
	testnet.WaitUntil(t, 5*time.Second, "every dial to end with its request", func() bool { return open.Load() == 0 })
	t.Logf("%d requests: %d connections accepted while they waited (most at once %d); %d in all; after the cancel %d still open", n, dialing, atOnce, accepted.Load(), open.Load())
	if dialing > MaxDialsPerHost || atOnce > MaxDialsPerHost {
		t.Errorf("%d connections dialed (%d at once) for %d requests, want at most MaxDialsPerHost (%d)", dialing, atOnce, n, MaxDialsPerHost)
	}
	if st := up.Tracker().Hosts()[0]; st.DialWaits < n-MaxDialsPerHost {
		t.Errorf("dial waits %d, want at least %d", st.DialWaits, n-MaxDialsPerHost)
	}
	if got := accepted.Load(); got > MaxDialsPerHost {
		t.Errorf("%d connections in all, want at most %d: a queued dial of a cancelled request must not start", got, MaxDialsPerHost)
	}
}
