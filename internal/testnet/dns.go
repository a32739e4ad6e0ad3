package testnet

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// ServFail, as the only address of a name given to DNS, makes the stub
// answer SERVFAIL for that name.
const ServFail = "SERVFAIL"

// DNS starts a DNS stub on 127.0.0.1 (UDP) and returns its address; it
// stops when the test ends. An A query for a name in names (lower case)
// gets one record per IPv4 address, in order, with TTL 0; a name whose
// only address is ServFail gets SERVFAIL; names not listed get NXDOMAIN.
// Other query types get no answer records. A nil names answers every
// query NXDOMAIN, so a test's made-up names never reach a real resolver.
func DNS(t testing.TB, names map[string][]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go serveDNS(pc, names, done)
	return pc.LocalAddr().String()
}

// Resolver returns a pure-Go resolver that asks only the DNS server at
// addr (a DNS stub's address).
func Resolver(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

// serveDNS answers the queries that arrive on pc until it is closed, then
// closes done.
func serveDNS(pc net.PacketConn, names map[string][]string, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := dnsAnswer(buf[:n], names); resp != nil {
			pc.WriteTo(resp, from)
		}
	}
}

// dnsQuestion parses the one question of query q: the name in lower case,
// the type, and where the question ends. ok is false for a query DNS does
// not answer (not exactly one question, a compressed or cut name).
func dnsQuestion(q []byte) (name string, qtype uint16, end int, ok bool) {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return "", 0, 0, false
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if l&0xc0 != 0 || i+1+l > len(q) {
			return "", 0, 0, false
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	if i+5 > len(q) {
		return "", 0, 0, false
	}
	return strings.ToLower(strings.Join(labels, ".")), binary.BigEndian.Uint16(q[i+1:]), i + 5, true
}

// dnsAnswer builds the response to query q: the question echoed, then one
// A record per address (a pointer to the question's name, class IN, TTL
// 0). It returns nil for a query it does not answer.
func dnsAnswer(q []byte, names map[string][]string) []byte {
	name, qtype, end, ok := dnsQuestion(q)
	if !ok {
		return nil
	}
	ips, known := names[name]
	flags := uint16(0x8180) // response, recursion desired and available
	switch {
	case !known:
		flags |= 3 // NXDOMAIN
	case len(ips) == 1 && ips[0] == ServFail:
		flags |= 2
	}
	var answers [][4]byte
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() && qtype == 1 {
			answers = append(answers, a.As4())
		}
	}
	resp := append(make([]byte, 0, 512), q[:2]...)
	resp = binary.BigEndian.AppendUint16(resp, flags)
	resp = binary.BigEndian.AppendUint16(resp, 1)
	resp = binary.BigEndian.AppendUint16(resp, uint16(len(answers)))
	resp = append(resp, 0, 0, 0, 0)
	resp = append(resp, q[12:end]...)
	for _, a := range answers {
		resp = append(resp, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4)
		resp = append(resp, a[:]...)
	}
	return resp
}
