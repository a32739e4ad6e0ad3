package dnscache

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// ttlKey is the context key of the *ttlRecorder a lookup fills.
type ttlKey struct{}

// ttlRecorder learns the smallest TTL of the answers of one lookup: the
// address and CNAME records, and for a "no such record" answer the SOA's
// negative TTL (RFC 2308 section 5). A lookup of "ip" sends two queries,
// A and AAAA, maybe at once.
type ttlRecorder struct {
	mu   sync.Mutex
	ttl  uint32
	seen bool
}

func (r *ttlRecorder) observe(ttl uint32) {
	r.mu.Lock()
	if !r.seen || ttl < r.ttl {
		r.ttl, r.seen = ttl, true
	}
	r.mu.Unlock()
}

func (r *ttlRecorder) get() (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Duration(r.ttl) * time.Second, r.seen
}

// message reads the TTLs of msg if it answers the query with ID id.
func (r *ttlRecorder) message(msg []byte, id uint16) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || !h.Response || h.ID != id || p.SkipAllQuestions() != nil {
		return
	}
	if h.RCode != dnsmessage.RCodeSuccess && h.RCode != dnsmessage.RCodeNameError {
		return
	}
	answered := false
	for {
		rh, err := p.AnswerHeader()
		if err != nil {
			if !errors.Is(err, dnsmessage.ErrSectionDone) {
				return
			}
			break
		}
		switch rh.Type {
		case dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeCNAME:
			r.observe(rh.TTL)
			answered = true
		}
		if p.SkipAnswer() != nil {
			return
		}
	}
	if answered {
		return
	}
	for {
		rh, err := p.AuthorityHeader()
		if err != nil {
			return
		}
		if rh.Type != dnsmessage.TypeSOA {
			if p.SkipAuthority() != nil {
				return
			}
			continue
		}
		soa, err := p.SOAResource()
		if err != nil {
			return
		}
		r.observe(min(rh.TTL, soa.MinTTL))
		return
	}
}

// Resolver returns a resolver that asks as base does (its Dial, or
// DialLookup to the servers of /etc/resolv.conf) with Go's own resolver,
// whose connections show every DNS message to the *ttlRecorder in the
// lookup's context. Go's resolver keeps the lookup's context values for
// its dials.
//
// Why wrap the connection rather than send the queries ourselves: the
// name list (search domains, ndots), /etc/hosts, the server rotation, the
// timeouts and attempts of resolv.conf, the TCP fallback on truncation
// and the address sorting of RFC 6724 all stay Go's; only the TTLs, which
// net.Resolver does not return, are read on the side.
func Resolver(base *net.Resolver) *net.Resolver {
	dial := base.Dial
	if dial == nil {
		dial = DialLookup
	}
	return &net.Resolver{
		PreferGo:     true,
		StrictErrors: base.StrictErrors,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			c, err := dial(ctx, network, address)
			if err != nil {
				return nil, err
			}
			rec, _ := ctx.Value(ttlKey{}).(*ttlRecorder)
			if rec == nil {
				return c, nil
			}
			// Go's resolver frames messages by whether the conn is a
			// PacketConn; keep that.
			if pc, ok := c.(net.PacketConn); ok {
				return &ttlPacketConn{ttlConn: ttlConn{Conn: c, rec: rec}, pc: pc}, nil
			}
			return &ttlConn{Conn: c, rec: rec, stream: true}, nil
		},
	}
}

// DialLookup dials a DNS server for a lookup, as a net.Resolver's Dial,
// and makes the connection end with the lookup's context: Go's resolver
// bounds its read by the context's deadline only, so a lookup cancelled
// because every waiter left would otherwise keep its socket and
// goroutines until the resolver's timeout (resolv.conf's, 5 s by
// default).
func DialLookup(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err == nil {
		context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	}
	return c, err
}

// ttlConn passes DNS messages through and shows the answers to rec. On a
// stream (TCP) each message has a two-byte length in front (RFC 1035
// section 4.2.2).
type ttlConn struct {
	net.Conn
	rec    *ttlRecorder
	stream bool
	id     uint16 // of the last query written
	buf    []byte // a stream's bytes not yet parsed
}

// Write notes the ID of the query b holds (Go's resolver writes a query
// in one Write, its length first on a stream).
func (c *ttlConn) Write(b []byte) (int, error) {
	q := b
	if c.stream && len(q) >= 2 {
		q = q[2:]
	}
	if len(q) >= 2 {
		c.id = binary.BigEndian.Uint16(q)
	}
	return c.Conn.Write(b)
}

func (c *ttlConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.received(b[:n])
	}
	return n, err
}

func (c *ttlConn) received(b []byte) {
	if !c.stream {
		c.rec.message(b, c.id)
		return
	}
	if len(c.buf)+len(b) > 2+65535 {
		c.buf = c.buf[:0] // not DNS framing: stop trying
		return
	}
	c.buf = append(c.buf, b...)
	for len(c.buf) >= 2 {
		n := 2 + int(binary.BigEndian.Uint16(c.buf))
		if len(c.buf) < n {
			return
		}
		c.rec.message(c.buf[2:n], c.id)
		c.buf = append(c.buf[:0], c.buf[n:]...)
	}
}

// ttlPacketConn is a ttlConn over a datagram conn, still a PacketConn.
type ttlPacketConn struct {
	ttlConn
	pc net.PacketConn
}

func (c *ttlPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.pc.ReadFrom(b)
	if n > 0 {
		c.received(b[:n])
	}
	return n, addr, err
}

func (c *ttlPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	return c.pc.WriteTo(b, addr)
}
