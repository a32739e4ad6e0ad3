package upstream

import (
	"io"
	"net/http"
	"sync/atomic"
)

// Wrap returns next counting, per origin, the requests it carries and
// those in flight: from RoundTrip until the response body is read to its
// end or closed (for a 101 upgrade: until the upgraded stream closes).
func (p *Tracker) Wrap(next http.RoundTripper) http.RoundTripper {
	return &trackingTransport{next: next, p: p}
}

type trackingTransport struct {
	next http.RoundTripper
	p    *Tracker
}

func (t *trackingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s := SchemeHTTP
	if req.URL.Scheme == "https" {
		s = SchemeHTTPS
	}
	hs := t.p.host(s, req.URL.Host)
	total := &t.p.totals[s]
	hs.requests.Add(1)
	hs.inflight.Add(1)
	total.requests.Add(1)
	total.inflight.Add(1)
	if t.p.honorKeepAlive && hs.keepAlive.Load() > 0 {
		req = withConnTrace(req)
	}
	req, dialsDone := bindDials(req)
	resp, err := t.next.RoundTrip(req)
	dialsDone(err == nil)
	if err == nil && t.p.honorKeepAlive {
		if v, ok := resp.Header["Keep-Alive"]; ok {
			hs.learnKeepAlive(v)
		}
	}
	if err != nil {
		hs.inflight.Add(-1)
		total.inflight.Add(-1)
		hs.failed.Add(1)
		total.failed.Add(1)
		if req.Context().Err() == nil {
			hs.setErr(err.Error())
		}
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusSwitchingProtocols:
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			resp.Body = &trackedStream{trackedBody: trackedBody{rc: rwc, hs: hs, total: total}, w: rwc}
			break
		}
		fallthrough
	case resp.Body == nil || resp.Body == http.NoBody:
		hs.inflight.Add(-1)
		total.inflight.Add(-1)
	default:
		resp.Body = &trackedBody{rc: resp.Body, hs: hs, total: total}
	}
	return resp, nil
}

// trackedBody ends its request's time in flight at EOF or Close.
type trackedBody struct {
	rc    io.ReadCloser
	hs    *hostStats
	total *counters
	done  atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.end()
	}
	return n, err
}

func (b *trackedBody) Close() error {
	b.end()
	return b.rc.Close()
}

func (b *trackedBody) end() {
	if b.done.CompareAndSwap(false, true) {
		b.hs.inflight.Add(-1)
		b.total.inflight.Add(-1)
	}
}

// trackedStream is a trackedBody over an upgraded (101) stream, still
// writable.
type trackedStream struct {
	trackedBody
	w io.Writer
}

func (s *trackedStream) Write(p []byte) (int, error) { return s.w.Write(p) }
