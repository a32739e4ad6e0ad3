// Command origin is the bench upstream: plain HTTP and HTTPS (TLS 1.3, a
// throwaway CA written to -ca-out) serving /bytes/N, /stream/N, /delay/MS
// and /stats (see package origin). The HTTPS listener speaks HTTP/1.1
// only; -https-h2 adds one that offers HTTP/2 (ALPN h2), counted as kind
// "h2". With -many N it also listens on N more
// plain-HTTP loopback host:port pairs (127.0.2.x, -many-per-ip ports each).
//
// When ready it prints one JSON line on stdout:
//
//	{"admin":"127.0.0.1:A","http":"127.0.0.1:P","https":"127.0.0.1:Q","https_h2":"127.0.0.1:H","many":["127.0.2.1:R",...],"ca_file":"..."}
//
// The admin address serves only /stats and is not counted, so polling it
// does not disturb the counters. It serves until SIGTERM/SIGINT or -max-time.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/warmproxy/warmproxy/bench/internal/origin"
)

type ready struct {
	Admin  string   `json:"admin"`
	HTTP   string   `json:"http"`
	HTTPS  string   `json:"https"`
	H2     string   `json:"https_h2,omitempty"`
	Many   []string `json:"many,omitempty"`
	CAFile string   `json:"ca_file"`
}

func main() {
	adminAddr := flag.String("admin", "127.0.0.1:0", "listen address for /stats only (not counted)")
	httpAddr := flag.String("http", "127.0.0.1:0", "plain HTTP listen address")
	httpsAddr := flag.String("https", "127.0.0.1:0", "HTTPS listen address")
	h2Addr := flag.String("https-h2", "127.0.0.1:0", "HTTPS listen address offering HTTP/2 (ALPN h2); empty: none")
	many := flag.Int("many", 0, "extra plain-HTTP listeners on distinct loopback host:port pairs")
	perIP := flag.Int("many-per-ip", 10, "ports per loopback IP for -many")
	caOut := flag.String("ca-out", "origin-ca.pem", "where to write the CA certificate (PEM)")
	maxTime := flag.Duration("max-time", 2*time.Hour, "exit after this long no matter what")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxTime)
	defer cancel()
	if err := run(ctx, *adminAddr, *httpAddr, *httpsAddr, *h2Addr, *many, *perIP, *caOut); err != nil {
		fmt.Fprintln(os.Stderr, "origin:", err)
		os.Exit(1)
	}
}

func manyIP(k int) net.IP { return net.IPv4(127, 0, byte(2+k/250), byte(1+k%250)) }

func run(ctx context.Context, adminAddr, httpAddr, httpsAddr, h2Addr string, many, perIP int, caOut string) error {
	if perIP < 1 {
		return errors.New("-many-per-ip must be at least 1")
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	for k := 0; k*perIP < many; k++ {
		ips = append(ips, manyIP(k))
	}
	cert, caPEM, err := origin.NewCert(ips)
	if err != nil {
		return err
	}
	if err := os.WriteFile(caOut, caPEM, 0o644); err != nil {
		return fmt.Errorf("write ca: %v", err)
	}

	o := origin.New()
	var servers []*http.Server
	var wg sync.WaitGroup
	defer wg.Wait()
	serve := func(kind, addr string, tlsOn bool) (string, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", err
		}
		srv := &http.Server{
			Handler:           o.Handler(kind),
			ConnState:         o.ConnState(kind),
			ReadHeaderTimeout: 10 * time.Second,
			// Long enough that proxies' pooled conns stay up for a run.
			IdleTimeout: 15 * time.Minute,
			// HTTP/1.1 only: the bench measures HTTP/1.1 pooling.
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		}
		if kind == "admin" {
			srv.Handler = o.StatsHandler()
			srv.ConnState = nil
		}
		if tlsOn {
			srv.TLSConfig = origin.TLSConfig(cert)
		}
		if kind == "h2" {
			// HTTP/2 first, HTTP/1.1 for clients that do not offer it.
			srv.TLSNextProto = nil
			srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
		}
		servers = append(servers, srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tlsOn {
				srv.ServeTLS(ln, "", "")
			} else {
				srv.Serve(ln)
			}
		}()
		return ln.Addr().String(), nil
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()

	r := ready{CAFile: caOut}
	if r.Admin, err = serve("admin", adminAddr, false); err != nil {
		return fmt.Errorf("listen admin: %v", err)
	}
	if r.HTTP, err = serve("http", httpAddr, false); err != nil {
		return fmt.Errorf("listen http: %v", err)
	}
	if r.HTTPS, err = serve("https", httpsAddr, true); err != nil {
		return fmt.Errorf("listen https: %v", err)
	}
	if h2Addr != "" {
		if r.H2, err = serve("h2", h2Addr, true); err != nil {
			return fmt.Errorf("listen https-h2: %v", err)
		}
	}
	for i := range many {
		a, err := serve("many", net.JoinHostPort(manyIP(i/perIP).String(), "0"), false)
		if err != nil {
			return fmt.Errorf("listen many %d: %v", i, err)
		}
		r.Many = append(r.Many, a)
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
