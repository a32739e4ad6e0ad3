package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// File is the YAML configuration file (-config warmproxy.yaml). It holds
// every Config setting; each key is the flag's name and each field is a
// pointer, so a key left out (nil) keeps the value of the layer below while
// a key given is applied even when it is zero.
//
// Each field has the name and, behind the pointer, the type of the Config
// field it sets; Apply and FileFrom rely on that, and a test checks it.
type File struct {
	Listen         *string `yaml:"listen"`
	ProtocolHeader *string `yaml:"protocol-header"`
	ViaName        *string `yaml:"via-name"`

	ListenMode          *string `yaml:"listen-mode"`
	ClientH2C           *bool   `yaml:"client-h2c"`
	ClientH2CMaxStreams *int    `yaml:"client-h2c-max-streams"`
	Routes              *string `yaml:"route"`

	MaxIdlePerHost        *int           `yaml:"max-idle-per-host"`
	MaxIdle               *int           `yaml:"max-idle"`
	MaxConnsPerHost       *int           `yaml:"max-conns-per-host"`
	DialTimeout           *time.Duration `yaml:"dial-timeout"`
	TLSHandshakeTimeout   *time.Duration `yaml:"tls-handshake-timeout"`
	ResponseHeaderTimeout *time.Duration `yaml:"response-header-timeout"`
	IdleTimeout           *time.Duration `yaml:"idle-timeout"`
	CAFile                *string        `yaml:"ca-file"`
	RetryBodyBytes        *int64         `yaml:"retry-body-bytes"`

	UpstreamHTTP2          *bool          `yaml:"upstream-http2"`
	UpstreamH2PingInterval *time.Duration `yaml:"upstream-h2-ping-interval"`

	ClientIdleTimeout   *time.Duration `yaml:"client-idle-timeout"`
	ClientHeaderTimeout *time.Duration `yaml:"client-header-timeout"`
	ClientBodyTimeout   *time.Duration `yaml:"client-body-timeout"`
	MaxHeaderBytes      *int           `yaml:"max-header-bytes"`

	TunnelIdleTimeout *time.Duration `yaml:"tunnel-idle-timeout"`
	ConnectPorts      *string        `yaml:"connect-ports"`

	LogFormat     *string        `yaml:"log-format"`
	ShutdownGrace *time.Duration `yaml:"shutdown-grace"`

	AdminListen *string `yaml:"admin-listen"`
	PProf       *bool   `yaml:"pprof"`

	AllowClients         *string `yaml:"allow-clients"`
	ProxyAuthFile        *string `yaml:"proxy-auth-file"`
	OpenProxyIKnow       *bool   `yaml:"open-proxy-i-know"`
	Allow                *string `yaml:"allow"`
	Deny                 *string `yaml:"deny"`
	DenyPrivate          *bool   `yaml:"deny-private"`
	MaxClientConns       *int    `yaml:"max-client-conns"`
	MaxRequestsInFlight  *int    `yaml:"max-requests-in-flight"`
	MaxConnsPerHostQueue *int    `yaml:"max-conns-per-host-queue"`
	DNSServer            *string `yaml:"dns-server"`

	DNSCacheSize *int           `yaml:"dns-cache-size"`
	DNSMinTTL    *time.Duration `yaml:"dns-min-ttl"`
	DNSMaxTTL    *time.Duration `yaml:"dns-max-ttl"`
	DNSStale     *time.Duration `yaml:"dns-stale"`

	UpstreamTLS         *TLSRules `yaml:"upstream-tls"`
	ParentProxy         *string   `yaml:"parent-proxy"`
	ParentProxyAuthFile *string   `yaml:"parent-proxy-auth-file"`
	NoParentFor         *string   `yaml:"no-parent-for"`

	Prewarm               *string `yaml:"prewarm"`
	HonorKeepAliveTimeout *bool   `yaml:"honor-keepalive-timeout"`

	Intercept             *string `yaml:"intercept"`
	InterceptCA           *string `yaml:"intercept-ca"`
	InterceptAnyHostIKnow *bool   `yaml:"intercept-any-host-i-know"`
}

// LoadFile reads and parses the YAML file at path. An unknown or repeated
// key, a value of the wrong type or a second document is an error; every
// such problem is reported, each with its line. The File returned holds
// the keys that parsed even when others did not.
func LoadFile(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("config file: %v", err)
	}
	return ParseFile(path, data)
}

// ParseFile parses data, read from name, as LoadFile does. Each key is
// decoded on its own, so a bad value leaves its field unset (nil) and every
// bad key and value gets its own error.
func ParseFile(name string, data []byte) (File, error) {
	var f File
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return f, nil // an empty file sets nothing
	case err != nil:
		return f, fmt.Errorf("config file %s: %v", name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return f, fmt.Errorf("config file %s: more than one YAML document: want one mapping of settings", name)
	}
	m := doc.Content[0]
	if m.Kind == yaml.ScalarNode && m.Tag == "!!null" {
		return f, nil // comments only
	}
	if m.Kind != yaml.MappingNode {
		return f, fmt.Errorf("config file %s: line %d: want a mapping of settings, e.g. listen: 127.0.0.1:9999", name, m.Line)
	}

	fv := reflect.ValueOf(&f).Elem()
	fields := make(map[string]int, fv.NumField())
	for i := range fv.NumField() {
		fields[yamlKey(fv.Type().Field(i))] = i
	}
	seen := make(map[string]int, len(m.Content)/2)
	var errs []error
	bad := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config file %s: line %d: %s", name, line, fmt.Sprintf(format, args...)))
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		idx, ok := fields[k.Value]
		switch {
		case !ok:
			bad(k.Line, "unknown key %q: keys are the flag names, e.g. max-idle-per-host (see warmproxy -h)", k.Value)
			continue
		case seen[k.Value] != 0:
			bad(k.Line, "key %q repeats line %d", k.Value, seen[k.Value])
			continue
		}
		seen[k.Value] = k.Line
		p := reflect.New(fv.Field(idx).Type().Elem())
		if err := v.Decode(p.Interface()); err != nil {
			bad(v.Line, "%s: %s", k.Value, explainYAML(err.Error()))
			continue
		}
		fv.Field(idx).Set(p)
	}
	return f, errors.Join(errs...)
}

var badValueRE = regexp.MustCompile("cannot unmarshal !!(\\w+) `(.*)` into (.*)$")

// explainYAML rewrites a yaml.v3 decoding message in warmproxy's terms.
func explainYAML(msg string) string {
	if m := badValueRE.FindStringSubmatch(msg); m != nil {
		want := m[3]
		switch want {
		case "time.Duration":
			want = "a duration such as 30s or 1m30s"
		case "int", "int64":
			want = "a whole number"
		case "string":
			want = "a string"
		}
		return fmt.Sprintf("value %q (%s): want %s", m[2], m[1], want)
	}
	return msg
}

// Apply sets in c every setting f holds.
func (f *File) Apply(c *Config) {
	fv := reflect.ValueOf(f).Elem()
	cv := reflect.ValueOf(c).Elem()
	for i := range fv.NumField() {
		if p := fv.Field(i); !p.IsNil() {
			cv.FieldByName(fv.Type().Field(i).Name).Set(p.Elem())
		}
	}
}

// FileFrom returns a File that sets every setting to its value in c, for
// printing the effective configuration.
func FileFrom(c Config) File {
	var f File
	fv := reflect.ValueOf(&f).Elem()
	cv := reflect.ValueOf(c)
	for i := range fv.NumField() {
		v := cv.FieldByName(fv.Type().Field(i).Name)
		p := reflect.New(v.Type())
		p.Elem().Set(v)
		fv.Field(i).Set(p)
	}
	return f
}

// Marshal renders f as YAML, keys in File's order.
func (f File) Marshal() ([]byte, error) {
	return yaml.Marshal(f)
}

// Keys returns the configuration file's keys in File's order. They are
// also the flag names.
func Keys() []string {
	t := reflect.TypeFor[File]()
	keys := make([]string, t.NumField())
	for i := range keys {
		keys[i] = yamlKey(t.Field(i))
	}
	return keys
}

// Diff returns the keys of the settings that differ between a and b.
func Diff(a, b Config) []string {
	var keys []string
	av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
	t := reflect.TypeFor[File]()
	for i := range t.NumField() {
		name := t.Field(i).Name
		if !reflect.DeepEqual(av.FieldByName(name).Interface(), bv.FieldByName(name).Interface()) {
			keys = append(keys, yamlKey(t.Field(i)))
		}
	}
	return keys
}

func yamlKey(f reflect.StructField) string {
	key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return key
}
