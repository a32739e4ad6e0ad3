// Package deploy_test checks what can be checked here of the deployment
// files (issue 7): the example configuration, the systemd unit (with
// systemd-analyze where it exists), the Kubernetes manifests and the
// Dockerfile. Docker cannot build here (no engine), so the Dockerfile only
// gets static checks.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/warmproxy/warmproxy/internal/config"
)

// missing skips the test, or fails it under CI.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and a test dependency is missing: "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// Issue 7: deploy/warmproxy.yaml holds every key, each at its default.
func TestExampleConfig(t *testing.T) {
	f, err := config.LoadFile("warmproxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range config.Keys() {
		if !f.Has(key) {
			t.Errorf("warmproxy.yaml has no key %s: it lists every setting", key)
		}
	}
	var got config.Config
	f.Apply(&got)
	if want := config.Default(); got != want {
		t.Errorf("warmproxy.yaml sets %+v, want the defaults %+v (Diff: %q)", got, want, config.Diff(got, want))
	}
	if err := got.Validate(); err != nil {
		t.Error(err)
	}
	if host, _, _ := net.SplitHostPort(got.Listen); !net.ParseIP(host).IsLoopback() {
		t.Errorf("warmproxy.yaml listen %s: want a loopback address", got.Listen)
	}
}

// readmeCell is a default as README.md's flag table writes it: `value`
// (the rest of the cell explains it), on or off for a boolean, or words
// (none, system, the proxy's address) for the zero value. It returns the
// value in the flag's syntax, "" for the zero value.
func readmeCell(cell string) string {
	cell = strings.TrimSpace(cell)
	if m := regexp.MustCompile("^`([^`]*)`").FindStringSubmatch(cell); m != nil {
		return m[1]
	}
	switch cell {
	case "on":
		return "true"
	case "off":
		return "false"
	}
	return ""
}

// Issue 16: README.md's flag table lists every setting, each with the
// default its declaration (config.Settings) gives, and no flag that is
// not declared.
func TestReadmeFlagTable(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]config.Setting{}
	for _, s := range config.Settings() {
		settings[s.Key] = s
	}
	notSettings := map[string]bool{"config": true, "check-config": true, "version": true}
	listed := map[string]bool{}
	name := regexp.MustCompile("`-([a-z0-9-]+)`")
	for _, line := range strings.Split(string(data), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`-") {
			continue
		}
		names := name.FindAllStringSubmatch(cells[1], -1)
		defaults := strings.Split(cells[2], " / ")
		for i, m := range names {
			key := m[1]
			listed[key] = true
			if notSettings[key] {
				continue
			}
			s, ok := settings[key]
			if !ok {
				t.Errorf("README.md lists -%s, which is no setting of config.Config", key)
				continue
			}
			cell := defaults[0]
			if len(defaults) == len(names) {
				cell = defaults[i]
			}
			var got config.Config
			if v := readmeCell(cell); v != "" {
				if err := s.Set(&got, v); err != nil {
					t.Errorf("README.md -%s default %q: %v", key, cell, err)
					continue
				}
			}
			want := config.Default()
			if s.Value(&got) != s.Value(&want) {
				t.Errorf("README.md -%s default %q = %v, want %v (the default tag %q)", key, strings.TrimSpace(cell), s.Value(&got), s.Value(&want), s.Default)
			}
		}
	}
	for key := range settings {
		if !listed[key] {
			t.Errorf("README.md's flag table has no row for -%s", key)
		}
	}
}

// unitFile parses a systemd unit into section -> key -> values.
func unitFile(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// Issue 7: the systemd unit is hardened, restarts on failure, reloads with
// SIGHUP, listens on loopback, and systemd-analyze finds nothing wrong.
func TestSystemdUnit(t *testing.T) {
	u := unitFile(t, "warmproxy.service")
	svc := u["Service"]
	want := map[string]string{
		"DynamicUser":             "yes",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6",
		"Restart":                 "on-failure",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
	}
	for k, v := range want {
		if got := svc[k]; len(got) != 1 || got[0] != v {
			t.Errorf("[Service] %s = %q, want %q", k, got, v)
		}
	}
	exec0 := strings.Join(svc["ExecStart"], " ")
	if !strings.Contains(exec0, "-listen 127.0.0.1:") || !strings.Contains(exec0, "-config /etc/warmproxy/warmproxy.yaml") {
		t.Errorf("ExecStart = %q, want -config /etc/warmproxy/warmproxy.yaml and a -listen on 127.0.0.1", exec0)
	}
	if got := u["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("[Install] WantedBy = %q", got)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		missing(t, "systemd-analyze not found (package systemd): %v", err)
	}
	// verify checks that ExecStart's program exists: point it at a built
	// warmproxy, the one make test built (scripts/test.sh) or one built
	// here.
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := os.Getenv("WARMPROXY_TEST_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "warmproxy")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "../cmd/warmproxy")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	data, err := os.ReadFile("warmproxy.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(dir, "warmproxy.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(data, []byte("/usr/local/bin/warmproxy"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, analyze, "verify", unit)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	// verify exits 0 on unknown keys; its warnings name the file.
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "warmproxy.service") {
			problems = append(problems, line)
		}
	}
	if err != nil || len(problems) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(problems, "\n"))
	}

	// The exposure score, for the record (offline: no running systemd
	// needed).
	sec := exec.CommandContext(ctx, analyze, "security", "--offline=true", unit)
	sec.Env = cmd.Env
	if out, err := sec.CombinedOutput(); err == nil {
		if i := bytes.LastIndex(out, []byte("Overall exposure level")); i >= 0 {
			t.Logf("systemd-analyze security: %s", bytes.TrimSpace(out[i:]))
		}
	}
}

// k8sObject is one Kubernetes object, decoded generically.
type k8sObject = map[string]any

// get walks o by keys (strings for maps, ints for lists); it returns nil
// where the path does not exist.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func manifests(t *testing.T, path string) []k8sObject {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var objs []k8sObject
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if o == nil {
			continue
		}
		for _, k := range []string{"apiVersion", "kind"} {
			if s, _ := o[k].(string); s == "" {
				t.Errorf("%s: an object has no %s", path, k)
			}
		}
		if s, _ := get(o, "metadata", "name").(string); s == "" {
			t.Errorf("%s: a %v has no metadata.name", path, o["kind"])
		}
		objs = append(objs, o)
	}
}

// Issue 7: both Kubernetes shapes parse, and their warmproxy containers
// have /readyz and /healthz probes on warmproxy's admin port,
// Prometheus scrape annotations, a locked-down security context and a
// configuration that warmproxy accepts.
func TestKubernetesManifests(t *testing.T) {
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	wantKinds := map[string][]string{
		"k8s/sidecar.yaml":   {"ConfigMap", "Deployment", "NetworkPolicy"},
		"k8s/daemonset.yaml": {"ConfigMap", "DaemonSet", "Namespace", "Service"},
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			objs := manifests(t, file)
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o["kind"].(string))
			}
			slices.Sort(kinds)
			if want, ok := wantKinds[file]; ok && !slices.Equal(kinds, want) {
				t.Errorf("kinds %q, want %q", kinds, want)
			}
			workloads := 0
			for _, o := range objs {
				switch o["kind"] {
				case "Deployment", "DaemonSet":
					workloads++
					checkWorkload(t, o, objs)
				case "Service":
					checkService(t, o, objs)
				}
			}
			if workloads == 0 {
				t.Error("no Deployment or DaemonSet")
			}
		})
	}
}

func findObject(objs []k8sObject, kind, name string) k8sObject {
	for _, o := range objs {
		if o["kind"] == kind && get(o, "metadata", "name") == name {
			return o
		}
	}
	return nil
}

// containerPort resolves a probe or Service port (number or name) against
// a container's ports.
func containerPort(c any, port any) int {
	switch p := port.(type) {
	case int:
		return p
	case string:
		ports, _ := get(c, "ports").([]any)
		for _, cp := range ports {
			if get(cp, "name") == p {
				n, _ := get(cp, "containerPort").(int)
				return n
			}
		}
	}
	return 0
}

func checkWorkload(t *testing.T, o k8sObject, objs []k8sObject) {
	t.Helper()
	name := get(o, "metadata", "name")
	spec := get(o, "spec", "template", "spec")
	labels, _ := get(o, "spec", "template", "metadata", "labels").(map[string]any)
	sel, _ := get(o, "spec", "selector", "matchLabels").(map[string]any)
	if len(sel) == 0 {
		t.Errorf("%s: no selector.matchLabels", name)
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("%s: selector %s=%v does not match the pod labels %v", name, k, v, labels)
		}
	}

	// The warmproxy container: a container, or a native sidecar (an init
	// container that restarts always).
	var wp any
	for _, list := range []string{"containers", "initContainers"} {
		cs, _ := get(spec, list).([]any)
		for _, c := range cs {
			if get(c, "name") == "warmproxy" {
				wp = c
				if list == "initContainers" && get(c, "restartPolicy") != "Always" {
					t.Errorf("%s: warmproxy init container without restartPolicy: Always is not a sidecar", name)
				}
			}
		}
	}
	if wp == nil {
		t.Fatalf("%s: no container named warmproxy", name)
	}

	// Its configuration: -config FILE from a mounted ConfigMap key.
	args, _ := get(wp, "args").([]any)
	i := slices.Index(args, any("-config"))
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("%s: warmproxy args %v: want -config FILE", name, args)
	}
	confPath := args[i+1].(string)
	var cfg *config.Config
	mounts, _ := get(wp, "volumeMounts").([]any)
	for _, m := range mounts {
		dir, _ := get(m, "mountPath").(string)
		if filepath.Dir(confPath) != dir {
			continue
		}
		if get(m, "readOnly") != true {
			t.Errorf("%s: configuration mount %s is not readOnly", name, dir)
		}
		vols, _ := get(spec, "volumes").([]any)
		for _, v := range vols {
			if get(v, "name") != get(m, "name") {
				continue
			}
			cmName, _ := get(v, "configMap", "name").(string)
			cm := findObject(objs, "ConfigMap", cmName)
			if cm == nil {
				t.Fatalf("%s: volume %v names ConfigMap %q, not in this file", name, get(v, "name"), cmName)
			}
			text, _ := get(cm, "data", filepath.Base(confPath)).(string)
			f, err := config.ParseFile(cmName+"/"+filepath.Base(confPath), []byte(text))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			c := config.Default()
			f.Apply(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("%s: ConfigMap %s: %v", name, cmName, err)
			}
			cfg = &c
		}
	}
	if cfg == nil {
		t.Fatalf("%s: -config %s is not in a mounted ConfigMap", name, confPath)
	}
	_, portStr, _ := net.SplitHostPort(cfg.Listen)
	listenPort, _ := strconv.Atoi(portStr)
	// The kubelet probes and Prometheus scrapes come to the pod IP, so the
	// admin endpoints listen on their own all-interfaces port; the proxy
	// port stays loopback or behind allow-clients (Validate above).
	adminHost, adminPortStr, err := net.SplitHostPort(cfg.AdminListen)
	adminPort, _ := strconv.Atoi(adminPortStr)
	if err != nil || (adminHost != "0.0.0.0" && adminHost != "") {
		t.Errorf("%s: admin-listen %q: the kubelet probes the pod IP, want 0.0.0.0:PORT", name, cfg.AdminListen)
	}

	for _, p := range []struct{ probe, path string }{
		{"readinessProbe", "/readyz"},
		{"livenessProbe", "/healthz"},
	} {
		if got := get(wp, p.probe, "httpGet", "path"); got != p.path {
			t.Errorf("%s: %s path %v, want %s", name, p.probe, got, p.path)
		}
		if got := containerPort(wp, get(wp, p.probe, "httpGet", "port")); got != adminPort {
			t.Errorf("%s: %s port %d, want the admin port %d", name, p.probe, got, adminPort)
		}
	}
	if got := containerPort(wp, "proxy"); got != listenPort {
		t.Errorf("%s: containerPort proxy %d, want the listen port %d", name, got, listenPort)
	}
	if got := containerPort(wp, "admin"); got != adminPort {
		t.Errorf("%s: containerPort admin %d, want the admin port %d", name, got, adminPort)
	}

	ann, _ := get(o, "spec", "template", "metadata", "annotations").(map[string]any)
	for k, v := range map[string]string{
		"prometheus.io/scrape": "true",
		"prometheus.io/port":   strconv.Itoa(adminPort),
		"prometheus.io/path":   "/metrics",
	} {
		if ann[k] != v {
			t.Errorf("%s: pod annotation %s = %v, want %q", name, k, ann[k], v)
		}
	}

	sc := get(wp, "securityContext")
	for k, v := range map[string]any{"runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true} {
		if get(sc, k) != v {
			t.Errorf("%s: warmproxy securityContext.%s = %v, want %v", name, k, get(sc, k), v)
		}
	}
	if drop, _ := get(sc, "capabilities", "drop").([]any); !slices.Contains(drop, any("ALL")) {
		t.Errorf("%s: warmproxy capabilities.drop = %v, want ALL", name, drop)
	}
	if g, _ := get(spec, "terminationGracePeriodSeconds").(int); time.Duration(g)*time.Second <= cfg.ShutdownGrace {
		t.Errorf("%s: terminationGracePeriodSeconds %d, want more than shutdown-grace %v", name, g, cfg.ShutdownGrace)
	}
}

func checkService(t *testing.T, svc k8sObject, objs []k8sObject) {
	t.Helper()
	name := get(svc, "metadata", "name")
	if got := get(svc, "spec", "internalTrafficPolicy"); got != "Local" {
		t.Errorf("Service %s: internalTrafficPolicy %v, want Local (node-local)", name, got)
	}
	sel, _ := get(svc, "spec", "selector").(map[string]any)
	var target k8sObject
	for _, o := range objs {
		labels, _ := get(o, "spec", "template", "metadata", "labels").(map[string]any)
		if o["kind"] != "DaemonSet" || len(sel) == 0 {
			continue
		}
		match := true
		for k, v := range sel {
			match = match && labels[k] == v
		}
		if match {
			target = o
		}
	}
	if target == nil {
		t.Fatalf("Service %s: selector %v matches no DaemonSet in the file", name, sel)
	}
	cs, _ := get(target, "spec", "template", "spec", "containers").([]any)
	ports, _ := get(svc, "spec", "ports").([]any)
	if len(ports) == 0 || len(cs) == 0 {
		t.Fatalf("Service %s: no ports, or DaemonSet without containers", name)
	}
	for _, p := range ports {
		if containerPort(cs[0], get(p, "targetPort")) == 0 {
			t.Errorf("Service %s: targetPort %v is no port of the DaemonSet's container", name, get(p, "targetPort"))
		}
	}
}

// Issue 7: the image is a static binary on a minimal base, run as non-root.
// Docker cannot build here (no engine); these are static checks.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from []string
	var user, entry string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			from = append(from, line)
			user = "" // USER is per stage
		case "USER":
			user = f[1]
		case "ENTRYPOINT":
			entry = line
		}
	}
	if len(from) < 2 {
		t.Fatalf("FROM lines %q: want a multi-stage build", from)
	}
	final := from[len(from)-1]
	if !strings.Contains(final, "distroless/static") && !strings.Contains(final, "scratch") {
		t.Errorf("final stage %q: want distroless/static or scratch", final)
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("final stage USER %q: want a non-root user", user)
	}
	if !strings.Contains(string(data), "CGO_ENABLED=0") {
		t.Error("no CGO_ENABLED=0: want a static binary")
	}
	if !strings.Contains(entry, "warmproxy") {
		t.Errorf("ENTRYPOINT %q: want warmproxy", entry)
	}
	if !strings.Contains(string(data), "COPY deploy/warmproxy.yaml") {
		t.Error("the image does not carry deploy/warmproxy.yaml")
	}
}
