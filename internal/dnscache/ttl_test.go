package dnscache

import (
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// The TTL of an answer is its records' smallest (a CNAME's included); a
// "no such record" answer's is the SOA's negative TTL; a message that
// does not answer the query sent is ignored.
func TestTTLRecorder(t *testing.T) {
	name := dnsmessage.MustNewName("a.test.")
	rh := func(ttl uint32) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET, TTL: ttl}
	}
	build := func(id uint16, rcode dnsmessage.RCode, answers func(b *dnsmessage.Builder), soa uint32) []byte {
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, RCode: rcode})
		b.StartQuestions()
		b.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		b.StartAnswers()
		if answers != nil {
			answers(&b)
		}
		b.StartAuthorities()
		if soa > 0 {
			b.SOAResource(rh(soa), dnsmessage.SOAResource{NS: name, MBox: name, MinTTL: soa / 2})
		}
		msg, err := b.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	tests := []struct {
		name string
		msg  []byte
		want time.Duration // -1: nothing learned
	}{
		{"a records", build(7, dnsmessage.RCodeSuccess, func(b *dnsmessage.Builder) {
			b.AResource(rh(300), dnsmessage.AResource{})
			b.AResource(rh(60), dnsmessage.AResource{})
		}, 0), 60 * time.Second},
		{"cname chain", build(7, dnsmessage.RCodeSuccess, func(b *dnsmessage.Builder) {
			b.CNAMEResource(rh(30), dnsmessage.CNAMEResource{CNAME: name})
			b.AResource(rh(300), dnsmessage.AResource{})
		}, 0), 30 * time.Second},
		{"nxdomain", build(7, dnsmessage.RCodeNameError, nil, 900), 450 * time.Second},
		{"nodata", build(7, dnsmessage.RCodeSuccess, nil, 900), 450 * time.Second},
		{"servfail", build(7, dnsmessage.RCodeServerFailure, nil, 900), -1},
		{"other id", build(8, dnsmessage.RCodeSuccess, func(b *dnsmessage.Builder) { b.AResource(rh(1), dnsmessage.AResource{}) }, 0), -1},
		{"garbage", []byte("not dns"), -1},
	}
	for _, tt := range tests {
		for _, stream := range []bool{false, true} {
			var rec ttlRecorder
			c := &ttlConn{rec: &rec, stream: stream, id: 7}
			if stream {
				framed := binary.BigEndian.AppendUint16(nil, uint16(len(tt.msg)))
				framed = append(framed, tt.msg...)
				c.received(framed[:3]) // a stream may split a message anywhere
				c.received(framed[3:])
			} else {
				c.received(tt.msg)
			}
			got, ok := rec.get()
			if !ok {
				got = -1
			}
			if got != tt.want {
				t.Errorf("%s (stream %v): ttl %v, want %v", tt.name, stream, got, tt.want)
			}
		}
	}
}
