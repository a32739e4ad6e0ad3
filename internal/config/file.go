package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"

	"go.yaml.in/yaml/v3"
)

// File is the YAML configuration file (-config warmproxy.yaml): the
// settings it sets, each under its key (Setting.Key). A key left out keeps
// the value of the layer below; a key given is applied even when it is
// zero.
type File struct {
	// set maps a setting's key to its value, of its Config field's type.
	set map[string]any
}

// Has reports whether f sets the setting key.
func (f File) Has(key string) bool {
	_, ok := f.set[key]
	return ok
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

	settings := map[string]Setting{}
	for _, s := range Settings() {
		settings[s.Key] = s
	}
	f.set = map[string]any{}
	seen := make(map[string]int, len(m.Content)/2)
	var errs []error
	bad := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config file %s: line %d: %s", name, line, fmt.Sprintf(format, args...)))
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		st, ok := settings[k.Value]
		switch {
		case !ok:
			bad(k.Line, "unknown key %q: keys are the flag names, e.g. max-idle-per-host (see warmproxy -h)", k.Value)
			continue
		case seen[k.Value] != 0:
			bad(k.Line, "key %q repeats line %d", k.Value, seen[k.Value])
			continue
		}
		seen[k.Value] = k.Line
		p := reflect.New(reflect.TypeOf(st.Ptr(&Config{})).Elem())
		if err := v.Decode(p.Interface()); err != nil {
			bad(v.Line, "%s: %s", k.Value, explainYAML(err.Error()))
			continue
		}
		f.set[k.Value] = p.Elem().Interface()
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
	for _, s := range Settings() {
		if v, ok := f.set[s.Key]; ok {
			reflect.ValueOf(s.Ptr(c)).Elem().Set(reflect.ValueOf(v))
		}
	}
}

// FileFrom returns a File that sets every setting to its value in c, for
// printing the effective configuration.
func FileFrom(c Config) File {
	f := File{set: map[string]any{}}
	for _, s := range Settings() {
		f.set[s.Key] = s.Value(&c)
	}
	return f
}

// Marshal renders f as YAML, keys in Config's order.
func (f File) Marshal() ([]byte, error) {
	doc := &yaml.Node{Kind: yaml.MappingNode}
	for _, s := range Settings() {
		v, ok := f.set[s.Key]
		if !ok {
			continue
		}
		var n yaml.Node
		if err := n.Encode(v); err != nil {
			return nil, fmt.Errorf("config: %s: %v", s.Key, err)
		}
		doc.Content = append(doc.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: s.Key}, &n)
	}
	return yaml.Marshal(doc)
}
