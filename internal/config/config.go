// Package config owns warmproxy's settings: the Config struct, whose
// field tags declare each setting once (name, default, help; see
// Settings), the YAML file's form of it (LoadFile, File.Apply), and Parse,
// which checks a Config (Validate) and returns its settings typed (Parsed)
// for server, proxy and upstream. It opens no sockets, logs nothing and
// keeps no state (its package variables are constant tables); it reads the
// files that settings name only to check them, so a CA or key pair that
// does not load is a Validate error. cmd/warmproxy stacks the defaults,
// the file, the environment and the command line into a Config.
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

// Log formats for the access log.
const (
	LogTSV  = "tsv"
	LogJSON = "json"
	LogOff  = "off"
)

// Config is every setting of one warmproxy process. Each exported field
// is declared once, here: its tags give the flag name, which is also the
// YAML key and, as WARMPROXY_NAME, the environment variable (key), the
// default in the flag's syntax (default; none: the zero value), the line
// -h shows (help, with the word arg names set off as the value's name),
// whether SIGHUP applies it (reload), whether the flag may repeat,
// adding to a comma-separated list (repeat), and whether Validate wants
// it above 0 (positive). Flags, -h, the file, the
// environment and -check-config are derived from these tags (Settings),
// and tests check README.md's flag table and deploy/warmproxy.yaml
// against them. Defaults are safe: a loopback listener, every timeout
// on, every limit on.
type Config struct {
	// Listen is the proxy's listen address, host:port, or unix:/path for
	// a Unix socket. Default 127.0.0.1:9999.
	Listen string `key:"listen" default:"127.0.0.1:9999" arg:"address" help:"address to listen on, host:port, or unix:/path for a Unix socket"`
	// ProtocolHeader names the request header whose value "https" makes
	// warmproxy speak TLS to the origin. Default X-Real-Protocol.
	ProtocolHeader string `key:"protocol-header" default:"X-Real-Protocol" arg:"header" help:"request header whose value https makes the proxy speak TLS to the origin"`
	// ViaName is the pseudonym written into Via headers. Default warmproxy.
	ViaName string `key:"via-name" default:"warmproxy" help:"pseudonym written into Via headers"`

	// ListenMode is the octal file mode of a unix: listener's socket, which
	// decides who may connect. Default 0660.
	ListenMode string `key:"listen-mode" default:"0660" arg:"mode" help:"octal file mode of a unix: listener's socket; it decides who may connect"`
	// ClientH2C accepts HTTP/2 with prior knowledge (h2c) from clients
	// next to HTTP/1.1. Default on.
	ClientH2C bool `key:"client-h2c" default:"true" help:"accept HTTP/2 with prior knowledge (h2c) from clients, next to HTTP/1.1"`
	// ClientH2CMaxStreams is the most concurrent streams one h2c client
	// connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS); the
	// connection's requests count in MaxRequestsInFlight too. Default 100.
	ClientH2CMaxStreams int `key:"client-h2c-max-streams" default:"100" help:"concurrent streams one h2c client connection may open (they count in -max-requests-in-flight too)"`
	// Routes map path prefixes on the proxy's own address to base URLs:
	// a comma-separated list of "/prefix/=https://host[:port][/basepath/]"
	// (see ParseRoute and SplitRoutes). Default none.
	Routes string `key:"route" repeat:"true" arg:"route" help:"base-URL route /prefix/=https://host[:port][/basepath/]: GET /prefix/x on the proxy's address goes to https://host/basepath/x; repeat or separate with commas"`

	// MaxIdlePerHost caps idle pooled connections per origin. Default 64.
	MaxIdlePerHost int `key:"max-idle-per-host" positive:"true" default:"64" help:"idle pooled connections kept per origin"`
	// MaxIdle caps idle pooled connections over all origins. Default 2048.
	MaxIdle int `key:"max-idle" positive:"true" default:"2048" help:"idle pooled connections kept over all origins"`
	// MaxConnsPerHost caps all connections per origin; requests over it wait
	// for a free one. 0, the default, means unlimited.
	MaxConnsPerHost int `key:"max-conns-per-host" help:"connections per origin; more requests wait for a free one (0: unlimited)"`
	// DialTimeout bounds a TCP connect to an origin. Default 10s.
	DialTimeout time.Duration `key:"dial-timeout" positive:"true" default:"10s" help:"TCP connect timeout to origins"`
	// TLSHandshakeTimeout bounds a TLS handshake with an origin. Default 10s.
	TLSHandshakeTimeout time.Duration `key:"tls-handshake-timeout" positive:"true" default:"10s" help:"TLS handshake timeout to origins"`
	// ResponseHeaderTimeout bounds the wait for an origin's response head
	// once the request is sent. Default 60s.
	ResponseHeaderTimeout time.Duration `key:"response-header-timeout" positive:"true" default:"60s" help:"wait for an origin's response head"`
	// IdleTimeout closes pooled origin connections idle this long; it sits
	// below common server keep-alive timeouts. Default 50s.
	IdleTimeout time.Duration `key:"idle-timeout" positive:"true" default:"50s" help:"close pooled origin connections idle this long"`
	// CAFile names a PEM file of extra roots for origin TLS, added to the
	// system roots. Default none.
	CAFile string `key:"ca-file" arg:"file" help:"PEM file of extra roots for origin TLS, added to the system roots"`
	// RetryBodyBytes is the largest request body held so a request that never
	// reached the origin can be replayed on a fresh connection. Default 64 KiB.
	RetryBodyBytes int64 `key:"retry-body-bytes" default:"65536" help:"largest request body held for a replay on a fresh connection"`

	// UpstreamHTTP2 offers HTTP/2 to https origins through ALPN; an origin
	// that accepts carries many concurrent requests on one connection.
	// HTTP/1.1 origins are pooled as before. Default true.
	UpstreamHTTP2 bool `key:"upstream-http2" default:"true" help:"offer HTTP/2 to https origins (ALPN); -upstream-http2=false keeps every origin on HTTP/1.1"`
	// UpstreamH2PingInterval pings an HTTP/2 origin connection that has
	// received nothing for this long, and closes it when the ping gets no
	// answer within the same time (at least 2s), so a dead connection is
	// found before a request uses it. 0 turns pings off. Default 15s.
	UpstreamH2PingInterval time.Duration `key:"upstream-h2-ping-interval" default:"15s" help:"ping an HTTP/2 origin connection silent this long, close it if unanswered; 0 = no pings"`
	// UpstreamQueueTimeout is the longest a request waits for a free
	// connection to an origin at MaxConnsPerHost; past it the request gets
	// 503 with Retry-After. 0, the default, waits as long as DialTimeout
	// (which bounded this wait before the setting existed).
	UpstreamQueueTimeout time.Duration `key:"upstream-queue-timeout" help:"longest wait for a free connection at -max-conns-per-host; past it 503 (0: -dial-timeout)"`
	// UpstreamParentTimeout bounds reaching ParentProxy and its CONNECT or
	// SOCKS5 handshake. 0, the default, is DialTimeout.
	UpstreamParentTimeout time.Duration `key:"upstream-parent-timeout" help:"bound on reaching -parent-proxy and its CONNECT or SOCKS5 handshake (0: -dial-timeout)"`
	// UpstreamPrewarmTimeout bounds opening one Prewarm connection, TCP
	// connect and TLS handshake together; /readyz waits for the first
	// round of them. 0, the default, is DialTimeout plus
	// TLSHandshakeTimeout.
	UpstreamPrewarmTimeout time.Duration `key:"upstream-prewarm-timeout" help:"bound on opening one -prewarm connection, TCP and TLS together (0: -dial-timeout plus -tls-handshake-timeout)"`

	// ClientIdleTimeout closes idle client keep-alive connections. Default 120s.
	ClientIdleTimeout time.Duration `key:"client-idle-timeout" positive:"true" default:"120s" help:"close idle client keep-alive connections after this long"`
	// ClientHeaderTimeout bounds reading a request head. Default 10s.
	ClientHeaderTimeout time.Duration `key:"client-header-timeout" positive:"true" default:"10s" help:"time a client has to send a request head"`
	// ClientBodyTimeout is the longest a read of a request body may wait
	// for the client to send more: an idle timeout on the body, not a
	// bound on its whole transfer. A body that stalls longer ends the
	// request: 408 if no response has started, an aborted connection
	// otherwise. Default 30s.
	ClientBodyTimeout time.Duration `key:"client-body-timeout" positive:"true" default:"30s" help:"longest wait for the next bytes of a request body; a body that stalls longer gets 408 (or, once the response started, an aborted connection)"`
	// MaxHeaderBytes caps a request head. Default 64 KiB.
	MaxHeaderBytes int `key:"max-header-bytes" positive:"true" default:"65536" help:"largest request head accepted"`

	// TunnelIdleTimeout closes CONNECT and upgrade tunnels idle this long in
	// both directions. Default 5m.
	TunnelIdleTimeout time.Duration `key:"tunnel-idle-timeout" positive:"true" default:"5m" help:"close CONNECT and upgrade tunnels idle this long"`
	// ConnectPorts lists the ports CONNECT may reach; "*" allows any.
	// Default 443.
	ConnectPorts string `key:"connect-ports" default:"443" arg:"ports" help:"ports CONNECT may reach, comma-separated, or *"`

	// LogFormat is the access log format: tsv, json or off. Default tsv.
	LogFormat string `key:"log-format" default:"tsv" reload:"true" arg:"format" help:"access log format on stdout: tsv, json or off"`
	// ShutdownGrace is how long in-flight requests and tunnels get after
	// SIGINT or SIGTERM. Default 10s.
	ShutdownGrace time.Duration `key:"shutdown-grace" positive:"true" default:"10s" help:"time in-flight requests get on SIGINT or SIGTERM"`

	// AdminListen, if set, is a separate host:port serving /metrics,
	// /healthz, /readyz and /debug/pool (and /debug/pprof with PProf)
	// instead of the proxy's address. It stays up while the proxy drains,
	// so /readyz answers 503 there. Default none: the proxy's address
	// serves them to origin-form requests.
	AdminListen string `key:"admin-listen" arg:"address" help:"separate address for /metrics, /healthz, /readyz, /debug/pool, /stats (default: the proxy's address)"`
	// PProf serves net/http/pprof under /debug/pprof/ on AdminListen,
	// which it requires: pprof is never served on the proxy's address
	// (/debug/pprof/cmdline shows the command line). Default off.
	PProf bool `key:"pprof" help:"serve /debug/pprof/ on -admin-listen (required; never on the proxy's address)"`

	// AllowClients lists the client IPs and CIDR prefixes, comma-separated,
	// that may use the proxy; others are disconnected at accept. Default
	// none: every client that reaches the listener.
	AllowClients string `key:"allow-clients" reload:"true" arg:"IPs/CIDRs" help:"client IPs/CIDRs, comma-separated, that may use the proxy; others are disconnected"`
	// ProxyAuthFile names an htpasswd file of bcrypt hashes (htpasswd -B);
	// when set, proxy requests need "Proxy-Authorization: Basic". Default
	// none.
	ProxyAuthFile string `key:"proxy-auth-file" reload:"true" arg:"file" help:"htpasswd file of bcrypt hashes (htpasswd -B); requires Proxy-Authorization: Basic"`
	// OpenProxyIKnow lets a non-loopback listener run with neither
	// AllowClients nor ProxyAuthFile. Default false.
	OpenProxyIKnow bool `key:"open-proxy-i-know" help:"allow a non-loopback listener with neither -allow-clients nor -proxy-auth-file (an open proxy)"`
	// Allow is a comma-separated list of destination rules (host
	// patterns, IPs, CIDR prefixes, ports; see package acl); when set,
	// every other destination is denied. Cloud metadata addresses are
	// always denied unless an IP rule in Allow names them. Default none.
	Allow string `key:"allow" reload:"true" arg:"rules" help:"destination rules allowed, comma-separated: host, *.domain, IP, CIDR, [v6]:port, :port, host:lo-hi; when set, all else is denied"`
	// Deny is a comma-separated list of destination rules denied, in
	// Allow's forms. Default none.
	Deny string `key:"deny" reload:"true" arg:"rules" help:"destination rules denied, comma-separated, same forms as -allow; checked on resolved IPs at dial time"`
	// DenyPrivate denies loopback, RFC 1918, CGNAT, link-local, ULA and
	// unspecified destinations, checked on the resolved IP. Default false.
	DenyPrivate bool `key:"deny-private" reload:"true" help:"deny loopback, RFC 1918, CGNAT, link-local and ULA destinations (cloud metadata is always denied)"`
	// MaxClientConns caps concurrent client connections, tunnels included;
	// a client over it gets a 503 and is disconnected. Default 4096.
	MaxClientConns int `key:"max-client-conns" positive:"true" default:"4096" help:"concurrent client connections, tunnels included; more get 503"`
	// MaxRequestsInFlight caps the requests being served at once, over
	// every client connection: HTTP/1.1 requests and HTTP/2 streams
	// together, a CONNECT tunnel or an upgrade for as long as it is open.
	// A request over it gets 503 with Retry-After. Default 4096.
	MaxRequestsInFlight int `key:"max-requests-in-flight" positive:"true" default:"4096" help:"requests served at once, HTTP/1.1 and h2c streams together, open tunnels included; more get 503 with Retry-After"`
	// MaxConnsPerHostQueue bounds the requests waiting for a free
	// connection when an origin has MaxConnsPerHost; over it, or after
	// UpstreamQueueTimeout waiting, a request gets 503 with Retry-After.
	// Default 256.
	MaxConnsPerHostQueue int `key:"max-conns-per-host-queue" default:"256" help:"requests that may wait for a connection at -max-conns-per-host; more get 503"`
	// DNSServer is a DNS server address, host:port, asked instead of the
	// system's resolver. Default none.
	DNSServer string `key:"dns-server" arg:"host:port" help:"DNS server host:port to ask instead of the system resolver"`

	// The DNS cache defaults: the size is Squid's ipcache_size and Envoy's
	// DNS cache max_hosts. The 5s floor is Envoy's dns_min_refresh_rate:
	// it caps the queries for a busy name with a TTL of 0 or 1 at one per
	// 5s (Squid's 1m floor would hide a DNS failover for a minute). The 5m
	// ceiling makes a name with a day-long TTL re-checked every 5m, a
	// cheap query, so a moved origin is found soon. An hour of stale
	// answers rides out a resolver outage (RFC 8767 suggests 1 to 3 days
	// for a recursive resolver; a forward proxy should not send traffic to
	// an address much longer than that on an answer it cannot check).

	// DNSCacheSize is how many names the DNS cache holds, least recently
	// used first out; 0 turns the cache off. Default 1024.
	DNSCacheSize int `key:"dns-cache-size" default:"1024" help:"names the DNS cache holds, least recently used out first (0: no cache)"`
	// DNSMinTTL bounds from below how long a DNS answer is kept, whatever
	// its records' TTL; a "no such host" answer is kept this long. Default
	// 5s.
	DNSMinTTL time.Duration `key:"dns-min-ttl" default:"5s" help:"shortest time a DNS answer is cached, whatever its TTL; also how long \"no such host\" is cached"`
	// DNSMaxTTL bounds from above how long a DNS answer is kept, whatever
	// its records' TTL. Default 5m.
	DNSMaxTTL time.Duration `key:"dns-max-ttl" default:"5m" help:"longest time a DNS answer is cached, whatever its TTL"`
	// DNSStale is how long past its TTL a cached answer is still used
	// when the resolver fails or is slow; 0 never uses one. Default 1h.
	DNSStale time.Duration `key:"dns-stale" default:"1h" help:"how long past its TTL a cached DNS answer is used while the resolver fails or is slow (0: never)"`

	// UpstreamTLS are per-host TLS rules for origins (extra CA, client
	// certificate, server name, insecure); see TLSRules. Default none.
	UpstreamTLS TLSRules `key:"upstream-tls" arg:"rules" help:"per-host origin TLS rules, separated by ;, first match wins: PATTERN[,PATTERN...][,ca=FILE][,cert=FILE,key=FILE][,sni=NAME][,insecure], e.g. '*.partner.example,cert=c.pem,key=k.pem; dev.test,insecure' (insecure: self-signed development origins only)"`
	// ParentProxy is a proxy that origins are reached through:
	// http://[user:pass@]host:port, socks5:// or socks5h://. Default none.
	ParentProxy string `key:"parent-proxy" arg:"URL" help:"reach origins through this proxy URL: http://[user:pass@]host:port, socks5://... or socks5h://... (names resolved by the parent)"`
	// ParentProxyAuthFile names a file holding the parent proxy's
	// credentials, one line user:password, so they need not be in argv
	// (ps, /proc/PID/cmdline). ParentProxy then has no user:pass. Default
	// none.
	ParentProxyAuthFile string `key:"parent-proxy-auth-file" arg:"file" help:"file holding the parent proxy's user:password on one line (mode 0600), instead of user:pass in -parent-proxy, which ps and /proc show"`
	// NoParentFor lists host patterns, comma-separated (as -allow), that
	// are reached directly, not through ParentProxy. Default none.
	NoParentFor string `key:"no-parent-for" arg:"patterns" help:"host patterns, comma-separated (as -allow), reached directly instead of through -parent-proxy"`

	// Prewarm lists origins to hold connections open to from the start,
	// comma-separated, each "scheme://host[:port][*N]" (N connections,
	// default 1; one for an origin that speaks HTTP/2). They are re-opened
	// when the origin closes them. See ParsePrewarm. Default none.
	Prewarm string `key:"prewarm" repeat:"true" arg:"origin" help:"open and hold connections to an origin from the start, scheme://host[:port][*N] (N connections, default 1); repeatable or comma-separated"`
	// HonorKeepAliveTimeout retires a pooled connection shortly before the
	// idle limit its origin announces with "Keep-Alive: timeout=N", so no
	// request is sent on a connection the origin is closing. Default true.
	HonorKeepAliveTimeout bool `key:"honor-keepalive-timeout" default:"true" help:"retire pooled connections shortly before the idle limit an origin announces in Keep-Alive: timeout=N"`

	// Intercept lists host patterns, comma-separated (as -allow), whose
	// CONNECT tunnels are intercepted: the client's TLS ends at warmproxy
	// with a certificate minted by the CA in InterceptCA, and the requests
	// inside go through the pool like absolute-form https:// requests.
	// Default none: every tunnel is end to end.
	Intercept string `key:"intercept" arg:"patterns" help:"host patterns, comma-separated (as -allow), whose CONNECT tunnels are intercepted: TLS ends here with a certificate from -intercept-ca, requests inside use the pool"`
	// InterceptCA is the directory of the interception CA (ca.pem and
	// ca-key.pem, made by warmproxy ca init). Default none.
	InterceptCA string `key:"intercept-ca" arg:"directory" help:"directory of the interception CA, ca.pem and ca-key.pem (make one with: warmproxy ca init)"`
	// InterceptAnyHostIKnow allows a catch-all Intercept pattern. Default
	// false.
	InterceptAnyHostIKnow bool `key:"intercept-any-host-i-know" help:"allow an -intercept pattern that matches every host (needs a CA without name constraints)"`
}

// Default returns a Config holding every default (the default tags).
func Default() Config {
	var c Config
	for _, s := range Settings() {
		if s.Default == "" {
			continue
		}
		if err := s.Set(&c, s.Default); err != nil {
			panic(fmt.Sprintf("config: setting %s: default %q: %v", s.Key, s.Default, err))
		}
	}
	return c
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
	errs = append(errs, checkPositive(c)...)
	if c.MaxConnsPerHost < 0 {
		bad("max-conns-per-host %d: want 0 (unlimited) or more", c.MaxConnsPerHost)
	}
	if c.RetryBodyBytes < 0 {
		bad("retry-body-bytes %d: want 0 (never buffer) or more", c.RetryBodyBytes)
	}
	if c.UpstreamH2PingInterval < 0 {
		bad("upstream-h2-ping-interval %v: want 0 (no pings) or a duration, e.g. 15s", c.UpstreamH2PingInterval)
	}
	p.parseTimeouts(bad)
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
	errs = append(errs, p.parseIntercept()...)
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
