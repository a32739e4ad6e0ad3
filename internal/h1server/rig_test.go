package h1server

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/warmproxy/warmproxy/internal/accesslog"
	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/limit"
	"github.com/warmproxy/warmproxy/internal/netx"
	"github.com/warmproxy/warmproxy/internal/proxy"
	"github.com/warmproxy/warmproxy/internal/testnet"
	"github.com/warmproxy/warmproxy/internal/upstream"
)

// rig is a connection server on a loopback listener, wired as
// server.Run wires it: the Handler behind net/http's server takes what it
// hands over.
type rig struct {
	addr     string
	cs       *ConnServer
	handed   atomic.Int32
	mu       sync.Mutex
	entries  []accesslog.Entry
	noRecord bool
}

// newRig starts a rig with cfg (its Listen is ignored).
func newRig(t testing.TB, cfg config.Config) *rig {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p := config.MustParse(cfg)
	up, err := upstream.New(p)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{}
	h := proxy.New(proxy.Options{Transport: up.Transport(), Dial: proxy.DialFunc(up.Dial), Config: p, Record: r.record})
	fallback := netx.NewListener(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	srv := &http.Server{Handler: h}
	go srv.Serve(fallback)
	pool := up.NewH1Pool(p)
	r.cs = New(h, ConnOptions{
		Pool: pool, Key: up.H1Key, GiveH2: up.GiveH2,
		Gate: limit.NewGate(p.MaxRequestsInFlight, limit.WhatRequests),
		Busy: func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusServiceUnavailable) },
		Fallback: func(c net.Conn) {
			r.handed.Add(1)
			fallback.Push(c)
		},
		Closed:        func() {},
		Running:       new(atomic.Int64),
		HeaderTimeout: p.ClientHeaderTimeout, IdleTimeout: p.ClientIdleTimeout, BodyTimeout: p.ClientBodyTimeout,
		ResponseHeaderTimeout: p.ResponseHeaderTimeout, MaxHeaderBytes: p.MaxHeaderBytes,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.cs.Serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		r.cs.Close()
		srv.Close()
		pool.Close()
		up.Transport().CloseIdleConnections()
	})
	return r
}

func (r *rig) record(e *accesslog.Entry) {
	if r.noRecord {
		return
	}
	r.mu.Lock()
	r.entries = append(r.entries, *e)
	r.mu.Unlock()
}

// log returns the entries recorded so far.
func (r *rig) log() []accesslog.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]accesslog.Entry(nil), r.entries...)
}

// rawOrigin serves each connection with fn on a loopback listener.
func rawOrigin(t testing.TB, fn func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	return testnet.Serve(t, func(c net.Conn) { fn(c, bufio.NewReader(c)) })
}
