package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Setting is one setting of Config as its field's tags declare it.
type Setting struct {
	// Key is the flag's name and the configuration file's key, e.g.
	// dial-timeout.
	Key string
	// Help is the one line -h shows.
	Help string
	// Arg is the name -h gives the value, e.g. address; "" for its type's
	// (string, int, duration).
	Arg string
	// Default is the default in the flag's syntax; "" for the zero value.
	Default string
	// Reload is set when a SIGHUP applies a change while running.
	Reload bool
	// Repeat is set when the flag may repeat on the command line, each
	// value adding to a comma-separated list.
	Repeat bool
	// Positive is set when Validate wants the value above 0: a number, or
	// a duration (a timeout that is always on).
	Positive bool

	index int
}

// Env is the environment variable that sets s: WARMPROXY_ and the key in
// upper case with _ for -, e.g. WARMPROXY_DIAL_TIMEOUT.
func (s Setting) Env() string {
	return "WARMPROXY_" + strings.ToUpper(strings.ReplaceAll(s.Key, "-", "_"))
}

// Ptr returns a pointer to s's field in c: a *string, *bool, *int,
// *int64, *time.Duration or *TLSRules.
func (s Setting) Ptr(c *Config) any {
	return reflect.ValueOf(c).Elem().Field(s.index).Addr().Interface()
}

// Usage is s's line for the flag package: Help with the first Arg in it
// set off in backquotes, which is how flag.PrintDefaults names a value.
func (s Setting) Usage() string {
	if s.Arg == "" {
		return s.Help
	}
	if i := strings.Index(s.Help, s.Arg); i >= 0 {
		return s.Help[:i] + "`" + s.Arg + "`" + s.Help[i+len(s.Arg):]
	}
	return "`" + s.Arg + "` " + s.Help
}

// Set parses v, in the flag's syntax, into s's field of c.
func (s Setting) Set(c *Config, v string) error {
	switch p := s.Ptr(c).(type) {
	case *string:
		*p = v
	case *TLSRules:
		return p.Set(v)
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return err
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return err
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*p = d
	default:
		return fmt.Errorf("field of type %T: no parser", p)
	}
	return nil
}

// Settings returns every setting, in Config's order. A Config field
// without a key tag is no setting.
func Settings() []Setting {
	t := reflect.TypeFor[Config]()
	out := make([]Setting, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("key")
		if key == "" {
			continue
		}
		out = append(out, Setting{
			Key:      key,
			Help:     f.Tag.Get("help"),
			Arg:      f.Tag.Get("arg"),
			Default:  f.Tag.Get("default"),
			Reload:   f.Tag.Get("reload") == "true",
			Repeat:   f.Tag.Get("repeat") == "true",
			Positive: f.Tag.Get("positive") == "true",
			index:    i,
		})
	}
	return out
}

// Keys returns the settings' keys in Config's order: the configuration
// file's keys, which are also the flag names.
func Keys() []string {
	ss := Settings()
	keys := make([]string, len(ss))
	for i, s := range ss {
		keys[i] = s.Key
	}
	return keys
}

// ReloadKeys returns the keys of the settings a SIGHUP applies while
// running, in Config's order.
func ReloadKeys() []string {
	var keys []string
	for _, s := range Settings() {
		if s.Reload {
			keys = append(keys, s.Key)
		}
	}
	return keys
}

// Diff returns the keys of the settings that differ between a and b.
func Diff(a, b Config) []string {
	var keys []string
	for _, s := range Settings() {
		if s.Value(&a) != s.Value(&b) {
			keys = append(keys, s.Key)
		}
	}
	return keys
}

// Value returns s's field of c.
func (s Setting) Value(c *Config) any { return reflect.ValueOf(c).Elem().Field(s.index).Interface() }

// checkPositive reports each setting declared positive whose value in c
// is not above 0.
func checkPositive(c *Config) []error {
	var errs []error
	for _, s := range Settings() {
		if !s.Positive {
			continue
		}
		switch v := s.Value(c).(type) {
		case time.Duration:
			if v <= 0 {
				errs = append(errs, fmt.Errorf("%s %v: want a duration above 0, e.g. 30s", s.Key, v))
			}
		case int:
			if v <= 0 {
				errs = append(errs, fmt.Errorf("%s %d: want a number above 0", s.Key, v))
			}
		case int64:
			if v <= 0 {
				errs = append(errs, fmt.Errorf("%s %d: want a number above 0", s.Key, v))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: declared positive, but a %T", s.Key, v))
		}
	}
	return errs
}
