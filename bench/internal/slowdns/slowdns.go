// Package slowdns is a loopback DNS server for the bench: it answers A
// queries for a fixed set of names with 127.0.0.1 after a delay, as a
// distant or overloaded resolver would, and counts the queries it gets.
package slowdns

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Server is a UDP DNS server on 127.0.0.1.
type Server struct {
	conn    net.PacketConn
	delay   time.Duration
	ttl     uint32
	names   map[string]bool
	queries atomic.Int64
	wg      sync.WaitGroup
}

// Start listens on 127.0.0.1:0 and answers A queries for names (FQDNs
// with or without the final dot) with 127.0.0.1 and ttl, each after
// delay; AAAA queries get an empty answer, other names NXDOMAIN.
func Start(delay time.Duration, ttl uint32, names ...string) (*Server, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("slowdns: listen: %v", err)
	}
	s := &Server{conn: pc, delay: delay, ttl: ttl, names: map[string]bool{}}
	for _, n := range names {
		if n[len(n)-1] != '.' {
			n += "."
		}
		s.names[n] = true
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the server's host:port, for warmproxy's -dns-server.
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// Queries counts the queries received so far.
func (s *Server) Queries() int64 { return s.queries.Load() }

// Close stops the server and waits for its answers in flight.
func (s *Server) Close() {
	s.conn.Close()
	s.wg.Wait()
}

func (s *Server) serve() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		s.queries.Add(1)
		s.wg.Add(1)
		go s.answer(h.ID, q, from)
	}
}

func (s *Server) answer(id uint16, q dnsmessage.Question, to net.Addr) {
	defer s.wg.Done()
	time.Sleep(s.delay)
	known := s.names[q.Name.String()]
	rcode := dnsmessage.RCodeSuccess
	if !known {
		rcode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, Authoritative: true, RCode: rcode})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	if known && q.Type == dnsmessage.TypeA {
		b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: s.ttl},
			dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}})
	}
	msg, err := b.Finish()
	if err != nil {
		return
	}
	s.conn.WriteTo(msg, to)
}
