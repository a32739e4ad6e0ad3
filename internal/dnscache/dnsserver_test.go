package dnscache_test

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// testDNS is a DNS server on loopback, UDP and TCP on one port, whose
// answers a test controls: the records, their TTL, a delay, SERVFAIL, or
// truncated UDP answers that send the client to TCP. It counts the
// queries per name and type.
type testDNS struct {
	addr string
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	hosts    map[string][]netip.Addr // by name, without the final dot
	ttl      uint32
	delay    time.Duration
	gate     chan struct{} // when set, answers wait until it is closed
	servfail bool
	truncate bool
	// silent drops every query unanswered, with no goroutine kept for
	// it: a resolver that never answers.
	silent  bool
	silentN int                      // queries dropped so
	queries map[string]int           // "name type", e.g. "a.test A"
	asked   map[string]chan struct{} // closed once name is asked for
	tcp     int                      // queries over TCP
}

func startDNS(t testing.TB, hosts map[string][]string) *testDNS {
	t.Helper()
	d := &testDNS{stop: make(chan struct{}), hosts: map[string][]netip.Addr{}, ttl: 60, queries: map[string]int{}}
	for name, ips := range hosts {
		d.set(name, ips...)
	}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 10 { // TCP on the UDP port: retry if another socket has it
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("dns server: no port free for both UDP and TCP: %v", err)
	}
	d.addr = pc.LocalAddr().String()
	d.wg.Add(2)
	go d.serveUDP(pc)
	go d.serveTCP(ln)
	t.Cleanup(func() {
		close(d.stop)
		pc.Close()
		ln.Close()
		d.wg.Wait()
	})
	return d
}

// set makes name resolve to ips; none makes it NXDOMAIN.
func (d *testDNS) set(name string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(ips) == 0 {
		delete(d.hosts, name)
		return
	}
	var addrs []netip.Addr
	for _, ip := range ips {
		addrs = append(addrs, netip.MustParseAddr(ip))
	}
	d.hosts[name] = addrs
}

func (d *testDNS) configure(f func(d *testDNS)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

// hold makes answers wait from now on until release, as a slow
// resolver's do, without a fixed delay.
func (d *testDNS) hold() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gate == nil {
		d.gate = make(chan struct{})
	}
}

// release sends the answers hold kept back, and those of later queries at
// once; it may be called more than once.
func (d *testDNS) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gate != nil {
		close(d.gate)
		d.gate = nil
	}
}

// askedFor returns a channel closed once the server has a query for
// name, of any type, answered or not.
func (d *testDNS) askedFor(name string) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.askedLocked(name)
}

// askedLocked returns name's channel for askedFor, made on first use.
func (d *testDNS) askedLocked(name string) chan struct{} {
	if d.asked == nil {
		d.asked = map[string]chan struct{}{}
	}
	ch := d.asked[name]
	if ch == nil {
		ch = make(chan struct{})
		d.asked[name] = ch
	}
	return ch
}

// count returns how many A queries for name the server got.
func (d *testDNS) count(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[name+" A"]
}

func (d *testDNS) serveUDP(pc net.PacketConn) {
	defer d.wg.Done()
	for {
		buf := make([]byte, 1500)
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if resp := d.answer(buf[:n], true); resp != nil {
				pc.WriteTo(resp, addr)
			}
		}()
	}
}

func (d *testDNS) serveTCP(ln net.Listener) {
	defer d.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			for {
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				resp := d.answer(q, false)
				if resp == nil {
					return
				}
				c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(resp))))
				c.Write(resp)
			}
		}()
	}
}

// answer builds the response to query q, after the configured delay.
func (d *testDNS) answer(q []byte, udp bool) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	question, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.TrimSuffix(question.Name.String(), ".")
	d.mu.Lock()
	if ch := d.askedLocked(name); !isClosed(ch) {
		close(ch)
	}
	if d.silent {
		d.silentN++
		d.mu.Unlock()
		return nil
	}
	d.queries[name+" "+strings.TrimPrefix(question.Type.String(), "Type")]++
	if !udp {
		d.tcp++
	}
	ips, known := d.hosts[name]
	ttl, delay, gate, servfail, truncate := d.ttl, d.delay, d.gate, d.servfail, d.truncate && udp
	d.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-d.stop:
			return nil
		}
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-d.stop:
			return nil
		}
	}

	hdr := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	switch {
	case servfail:
		hdr.RCode = dnsmessage.RCodeServerFailure
	case !known:
		hdr.RCode = dnsmessage.RCodeNameError
	case truncate:
		hdr.Truncated = true
	}
	b := dnsmessage.NewBuilder(nil, hdr)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(question)
	b.StartAnswers()
	answered := false
	if known && !servfail && !truncate {
		rh := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: ttl}
		for _, ip := range ips {
			switch {
			case question.Type == dnsmessage.TypeA && ip.Is4():
				b.AResource(rh, dnsmessage.AResource{A: ip.As4()})
				answered = true
			case question.Type == dnsmessage.TypeAAAA && ip.Is6():
				b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: ip.As16()})
				answered = true
			}
		}
	}
	b.StartAuthorities()
	if !answered && !servfail && !truncate {
		// A negative answer carries the zone's SOA (RFC 2308); its
		// negative TTL is long, so it never decides a positive answer's.
		zone := dnsmessage.MustNewName("test.")
		b.SOAResource(dnsmessage.ResourceHeader{Name: zone, Class: dnsmessage.ClassINET, TTL: 3600},
			dnsmessage.SOAResource{NS: dnsmessage.MustNewName("ns.test."), MBox: dnsmessage.MustNewName("root.test."),
				Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, MinTTL: 3600})
	}
	resp, err := b.Finish()
	if err != nil {
		return nil
	}
	return resp
}

// isClosed says whether ch is closed, without waiting.
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
