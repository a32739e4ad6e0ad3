// Package config owns warmproxy's settings: the Config struct, its
// defaults, and Validate. It opens no sockets, logs nothing and keeps no
// globals; cmd/warmproxy fills a Config from defaults, the environment and
// the command line.
package config

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults. Each one is safe: a loopback listener, every timeout on, every
// limit on.
const (
	DefaultListen                = "127.0.0.1:9999"
	DefaultProtocolHeader        = "X-Real-Protocol"
	DefaultMaxIdlePerHost        = 64
	DefaultMaxIdle               = 2048
	DefaultMaxConnsPerHost       = 0
	DefaultDialTimeout           = 10 * time.Second
	DefaultTLSHandshakeTimeout   = 10 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultIdleTimeout           = 50 * time.Second
	DefaultClientIdleTimeout     = 120 * time.Second
	DefaultClientHeaderTimeout   = 10 * time.Second
	DefaultClientBodyTimeout     = 30 * time.Second
	DefaultMaxHeaderBytes        = 64 << 10
	DefaultShutdownGrace         = 10 * time.Second
	DefaultTunnelIdleTimeout     = 5 * time.Minute
	DefaultConnectPorts          = "443"
	DefaultLogFormat             = "tsv"
	DefaultViaName               = "warmproxy"
	// DefaultRetryBodyBytes is the largest request body buffered so that a
	// request which never reached the origin can be sent again on a fresh
	// connection.
	DefaultRetryBodyBytes = 64 << 10
	// DefaultMaxClientConns caps concurrent client connections, tunnels
	// included.
	DefaultMaxClientConns = 4096
	// DefaultMaxRequestsInFlight caps the requests being served at once,
	// HTTP/1.1 requests and HTTP/2 streams together, tunnels included.
	DefaultMaxRequestsInFlight = 4096
	// DefaultClientH2CMaxStreams is the most concurrent streams one h2c
	// client connection may open (SETTINGS_MAX_CONCURRENT_STREAMS).
	DefaultClientH2CMaxStreams = 100
	// DefaultUpstreamH2PingInterval is how long an HTTP/2 origin
	// connection may stay silent before it is pinged.
	DefaultUpstreamH2PingInterval = 15 * time.Second
	// DefaultMaxConnsPerHostQueue bounds the requests waiting for a
	// connection to an origin at MaxConnsPerHost.
	DefaultMaxConnsPerHostQueue = 256
	// DefaultListenMode is the file mode of a Unix socket listener.
	DefaultListenMode = "0660"
)

// Log formats for the access log.
const (
	LogTSV  = "tsv"
	LogJSON = "json"
	LogOff  = "off"
)

// Config is every setting of one warmproxy process.
type Config struct {
	// Listen is the proxy's listen address, host:port, or unix:/path for
	// a Unix socket. Default 127.0.0.1:9999.
	Listen string
	// ListenMode is the octal file mode of a unix: listener's socket, which
	// decides who may connect. Default 0660.
	ListenMode string
	// ClientH2C accepts HTTP/2 with prior knowledge (h2c) from clients
	// next to HTTP/1.1. Default on.
	ClientH2C bool
	// ClientH2CMaxStreams is the most concurrent streams one h2c client
	// connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS); the
	// connection's requests count in MaxRequestsInFlight too. Default 100.
	ClientH2CMaxStreams int
	// Routes map path prefixes on the proxy's own address to base URLs:
	// a comma-separated list of "/prefix/=https://host[:port][/basepath/]"
	// (see ParseRoute and SplitRoutes). Default none.
	Routes string
	// ProtocolHeader names the request header whose value "https" makes
	// warmproxy speak TLS to the origin. Default X-Real-Protocol.
	ProtocolHeader string
	// ViaName is the pseudonym written into Via headers. Default warmproxy.
	ViaName string

	// MaxIdlePerHost caps idle pooled connections per origin. Default 64.
	MaxIdlePerHost int
	// MaxIdle caps idle pooled connections over all origins. Default 2048.
	MaxIdle int
	// MaxConnsPerHost caps all connections per origin; requests over it wait
	// for a free one. 0, the default, means unlimited.
	MaxConnsPerHost int
	// DialTimeout bounds a TCP connect to an origin. Default 10s.
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds a TLS handshake with an origin. Default 10s.
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an origin's response head
	// once the request is sent. Default 60s.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout closes pooled origin connections idle this long; it sits
	// below common server keep-alive timeouts. Default 50s.
	IdleTimeout time.Duration

	// UpstreamHTTP2 offers HTTP/2 to https origins through ALPN; an origin
	// that accepts carries many concurrent requests on one connection.
	// HTTP/1.1 origins are pooled as before. Default true.
	UpstreamHTTP2 bool
	// UpstreamH2PingInterval pings an HTTP/2 origin connection that has
	// received nothing for this long, and closes it when the ping gets no
	// answer within the same time (at least 2s), so a dead connection is
	// found before a request uses it. 0 turns pings off. Default 15s.
	UpstreamH2PingInterval time.Duration

	// CAFile names a PEM file of extra roots for origin TLS, added to the
	// system roots. Default none.
	CAFile string
	// RetryBodyBytes is the largest request body held so a request that never
	// reached the origin can be replayed on a fresh connection. Default 64 KiB.
	RetryBodyBytes int64

	// ClientIdleTimeout closes idle client keep-alive connections. Default 120s.
	ClientIdleTimeout time.Duration
	// ClientHeaderTimeout bounds reading a request head. Default 10s.
	ClientHeaderTimeout time.Duration
	// ClientBodyTimeout is the longest a read of a request body may wait
	// for the client to send more: an idle timeout on the body, not a
	// bound on its whole transfer. A body that stalls longer ends the
	// request: 408 if no response has started, an aborted connection
	// otherwise. Default 30s.
	ClientBodyTimeout time.Duration
	// MaxHeaderBytes caps a request head. Default 64 KiB.
	MaxHeaderBytes int

	// TunnelIdleTimeout closes CONNECT and upgrade tunnels idle this long in
	// both directions. Default 5m.
	TunnelIdleTimeout time.Duration
	// ConnectPorts lists the ports CONNECT may reach; "*" allows any.
	// Default 443.
	ConnectPorts string

	// LogFormat is the access log format: tsv, json or off. Default tsv.
	LogFormat string
	// ShutdownGrace is how long in-flight requests and tunnels get after
	// SIGINT or SIGTERM. Default 10s.
	ShutdownGrace time.Duration

	// AdminListen, if set, is a separate host:port serving /metrics,
	// /healthz, /readyz and /debug/pool (and /debug/pprof with PProf)
	// instead of the proxy's address. It stays up while the proxy drains,
	// so /readyz answers 503 there. Default none: the proxy's address
	// serves them to origin-form requests.
	AdminListen string
	// PProf serves net/http/pprof under /debug/pprof/ on AdminListen,
	// which it requires: pprof is never served on the proxy's address
	// (/debug/pprof/cmdline shows the command line). Default off.
	PProf bool
	// Security settings; see security.go.

	// AllowClients lists the client IPs and CIDR prefixes, comma-separated,
	// that may use the proxy; others are disconnected at accept. Default
	// none: every client that reaches the listener.
	AllowClients string
	// ProxyAuthFile names an htpasswd file of bcrypt hashes (htpasswd -B);
	// when set, proxy requests need "Proxy-Authorization: Basic". Default
	// none.
	ProxyAuthFile string
	// OpenProxyIKnow lets a non-loopback listener run with neither
	// AllowClients nor ProxyAuthFile. Default false.
	OpenProxyIKnow bool
	// Allow and Deny are comma-separated destination rules (host patterns,
	// IPs, CIDR prefixes, ports; see package acl). Cloud metadata addresses
	// are always denied unless an IP rule in Allow names them. Default
	// none.
	Allow, Deny string
	// DenyPrivate denies loopback, RFC 1918, CGNAT, link-local, ULA and
	// unspecified destinations, checked on the resolved IP. Default false.
	DenyPrivate bool
	// MaxClientConns caps concurrent client connections, tunnels included;
	// a client over it gets a 503 and is disconnected. Default 4096.
	MaxClientConns int
	// MaxRequestsInFlight caps the requests being served at once, over
	// every client connection: HTTP/1.1 requests and HTTP/2 streams
	// together, a CONNECT tunnel or an upgrade for as long as it is open.
	// A request over it gets 503 with Retry-After. Default 4096.
	MaxRequestsInFlight int
	// MaxConnsPerHostQueue bounds the requests waiting for a free
	// connection when an origin has MaxConnsPerHost; over it, or after
	// DialTimeout waiting, a request gets 503 with Retry-After. Default 256.
	MaxConnsPerHostQueue int
	// DNSServer is a DNS server address, host:port, asked instead of the
	// system's resolver. Default none.
	DNSServer string
	// DNSCacheSize is how many names the DNS cache holds, least recently
	// used first out; 0 turns the cache off. Default 1024.
	DNSCacheSize int
	// DNSMinTTL and DNSMaxTTL bound how long a DNS answer is kept,
	// whatever its records' TTL; a "no such host" answer is kept for
	// DNSMinTTL. Defaults 5s and 5m.
	DNSMinTTL, DNSMaxTTL time.Duration
	// DNSStale is how long past its TTL a cached answer is still used
	// when the resolver fails or is slow; 0 never uses one. Default 1h.
	DNSStale time.Duration

	// UpstreamTLS are per-host TLS rules for origins (extra CA, client
	// certificate, server name, insecure); see TLSRules. Default none.
	UpstreamTLS TLSRules
	// ParentProxy is a proxy that origins are reached through:
	// http://[user:pass@]host:port, socks5:// or socks5h://. Default none.
	ParentProxy string
	// ParentProxyAuthFile names a file holding the parent proxy's
	// credentials, one line user:password, so they need not be in argv
	// (ps, /proc/PID/cmdline). ParentProxy then has no user:pass. Default
	// none.
	ParentProxyAuthFile string
	// NoParentFor lists host patterns, comma-separated (as -allow), that
	// are reached directly, not through ParentProxy. Default none.
	NoParentFor string

	// Prewarm lists origins to hold connections open to from the start,
	// comma-separated, each "scheme://host[:port][*N]" (N connections,
	// default 1; one for an origin that speaks HTTP/2). They are re-opened
	// when the origin closes them. See ParsePrewarm. Default none.
	Prewarm string
	// HonorKeepAliveTimeout retires a pooled connection shortly before the
	// idle limit its origin announces with "Keep-Alive: timeout=N", so no
	// request is sent on a connection the origin is closing. Default true.
	HonorKeepAliveTimeout bool

	// Intercept lists host patterns, comma-separated (as -allow), whose
	// CONNECT tunnels are intercepted: the client's TLS ends at warmproxy
	// with a certificate minted by the CA in InterceptCA, and the requests
	// inside go through the pool like absolute-form https:// requests.
	// Default none: every tunnel is end to end.
	Intercept string
	// InterceptCA is the directory of the interception CA (ca.pem and
	// ca-key.pem, made by warmproxy ca init). Default none.
	InterceptCA string
	// InterceptAnyHostIKnow allows a catch-all Intercept pattern. Default
	// false.
	InterceptAnyHostIKnow bool
}

// Default returns a Config holding every default.
func Default() Config {
	return Config{
		Listen:                DefaultListen,
		ListenMode:            DefaultListenMode,
		ClientH2C:             true,
		ClientH2CMaxStreams:   DefaultClientH2CMaxStreams,
		ProtocolHeader:        DefaultProtocolHeader,
		ViaName:               DefaultViaName,
		MaxIdlePerHost:        DefaultMaxIdlePerHost,
		MaxIdle:               DefaultMaxIdle,
		MaxConnsPerHost:       DefaultMaxConnsPerHost,
		DialTimeout:           DefaultDialTimeout,
		TLSHandshakeTimeout:   DefaultTLSHandshakeTimeout,
		ResponseHeaderTimeout: DefaultResponseHeaderTimeout,
		IdleTimeout:           DefaultIdleTimeout,
		RetryBodyBytes:        DefaultRetryBodyBytes,
		ClientIdleTimeout:     DefaultClientIdleTimeout,
		ClientHeaderTimeout:   DefaultClientHeaderTimeout,
		ClientBodyTimeout:     DefaultClientBodyTimeout,
		MaxHeaderBytes:        DefaultMaxHeaderBytes,
		TunnelIdleTimeout:     DefaultTunnelIdleTimeout,
		ConnectPorts:          DefaultConnectPorts,
		LogFormat:             DefaultLogFormat,
		ShutdownGrace:         DefaultShutdownGrace,
		MaxClientConns:        DefaultMaxClientConns,
		MaxRequestsInFlight:   DefaultMaxRequestsInFlight,
		MaxConnsPerHostQueue:  DefaultMaxConnsPerHostQueue,
		DNSCacheSize:          DefaultDNSCacheSize,
		DNSMinTTL:             DefaultDNSMinTTL,
		DNSMaxTTL:             DefaultDNSMaxTTL,
		DNSStale:              DefaultDNSStale,

		UpstreamHTTP2:          true,
		UpstreamH2PingInterval: DefaultUpstreamH2PingInterval,
		HonorKeepAliveTimeout:  true,
	}
}

// Validate reports every problem in c at once, each with how to fix it.
// Parse does the same and also returns the parsed settings.
func (c *Config) Validate() error {
	_, err := c.Parse()
	return err
}

// parse checks every setting and fills p's typed fields from those that
// parse; it returns every problem found.
func (p *Parsed) parse() []error {
	c := &p.Config
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	errs = append(errs, p.parseListen()...)
	if c.ProtocolHeader == "" || !validHeaderName(c.ProtocolHeader) {
		bad("protocol-header %q: want a header name such as X-Real-Protocol", c.ProtocolHeader)
	}
	if c.ViaName == "" || strings.ContainsAny(c.ViaName, " \t,\r\n") {
		bad("via-name %q: want one token with no spaces or commas", c.ViaName)
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"max-idle-per-host", int64(c.MaxIdlePerHost)},
		{"max-idle", int64(c.MaxIdle)},
		{"max-header-bytes", int64(c.MaxHeaderBytes)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			bad("%s %d: want a number above 0", p.name, p.v)
		}
	}
	if c.MaxConnsPerHost < 0 {
		bad("max-conns-per-host %d: want 0 (unlimited) or more", c.MaxConnsPerHost)
	}
	if c.RetryBodyBytes < 0 {
		bad("retry-body-bytes %d: want 0 (never buffer) or more", c.RetryBodyBytes)
	}
	durations := []struct {
		name string
		v    time.Duration
	}{
		{"dial-timeout", c.DialTimeout},
		{"tls-handshake-timeout", c.TLSHandshakeTimeout},
		{"response-header-timeout", c.ResponseHeaderTimeout},
		{"idle-timeout", c.IdleTimeout},
		{"client-idle-timeout", c.ClientIdleTimeout},
		{"client-header-timeout", c.ClientHeaderTimeout},
		{"client-body-timeout", c.ClientBodyTimeout},
		{"tunnel-idle-timeout", c.TunnelIdleTimeout},
		{"shutdown-grace", c.ShutdownGrace},
	}
	for _, d := range durations {
		if d.v <= 0 {
			bad("%s %v: want a duration above 0, e.g. 30s", d.name, d.v)
		}
	}
	if c.UpstreamH2PingInterval < 0 {
		bad("upstream-h2-ping-interval %v: want 0 (no pings) or a duration, e.g. 15s", c.UpstreamH2PingInterval)
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			bad("ca-file: %v", err)
		}
	}
	if ports, err := ParsePorts(c.ConnectPorts); err != nil {
		bad("connect-ports %q: %v", c.ConnectPorts, err)
	} else {
		p.ConnectPorts = ports
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			bad("admin-listen %q: want host:port, e.g. 127.0.0.1:9998", c.AdminListen)
		} else if c.AdminListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
			bad("admin-listen %q: same as listen; pick another port or leave it empty to serve admin paths on the proxy's address", c.AdminListen)
		}
	} else if c.PProf {
		bad("pprof needs admin-listen: pprof is never served on the proxy's address; set -admin-listen 127.0.0.1:9998 (a loopback address) or drop -pprof")
	}
	switch c.LogFormat {
	case LogTSV, LogJSON, LogOff:
	default:
		bad("log-format %q: want tsv, json or off", c.LogFormat)
	}
	errs = append(errs, p.parseSecurity()...)
	errs = append(errs, c.validateDNS()...)
	errs = append(errs, p.parseUpstream()...)
	errs = append(errs, p.parsePrewarm()...)
	errs = append(errs, c.validateIntercept()...)
	return errs
}

// Ports is a set of TCP ports; All means any port.
type Ports struct {
	All bool
	Set map[int]bool
}

// Allows reports whether port p is in the set.
func (p Ports) Allows(port int) bool { return p.All || p.Set[port] }

// String renders the set as ParsePorts reads it.
func (p Ports) String() string {
	if p.All {
		return "*"
	}
	ports := make([]int, 0, len(p.Set))
	for n := range p.Set {
		ports = append(ports, n)
	}
	slices.Sort(ports)
	s := make([]string, len(ports))
	for i, n := range ports {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// ParsePorts parses "443,8443" or "*".
func ParsePorts(s string) (Ports, error) {
	s = strings.TrimSpace(s)
	if s == "*" {
		return Ports{All: true}, nil
	}
	p := Ports{Set: map[int]bool{}}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 65535 {
			return Ports{}, fmt.Errorf("want a comma-separated list of ports 1-65535 or *, got %q", f)
		}
		p.Set[n] = true
	}
	return p, nil
}

func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
