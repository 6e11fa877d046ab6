package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite config.example.yaml and the generated settings table in docs/configuration.md")

// writeFile writes content to a temporary file and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaultsWithNothingSet(t *testing.T) {
	cfg, err := Load(LoadOptions{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(cfg, Defaults()) {
		t.Errorf("Load with nothing set differs from Defaults(): %v", Diff(Defaults(), cfg))
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("Defaults() is invalid: %v", err)
	}
}

func TestLoadLayering(t *testing.T) {
	path := writeFile(t, "pulsegate.yaml", `
responsiveness:
  slow_request_threshold: 2
  monitoring_interval: 10
proxy:
  upstream_url: http://127.0.0.1:5001
  route_patterns: ["/users/<id>"]
`)
	environ := []string{"RESPONSIVENESS_SLOW_REQUEST_THRESHOLD=0.3", "RESPONSIVENESS_CONFIG_FILE=" + path}
	cfg, err := Load(LoadOptions{Environ: environ})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := cfg.Responsiveness.SlowRequestThreshold; got != 0.3 {
		t.Errorf("env must win over the file: slow_request_threshold = %v", got)
	}
	if got := cfg.Responsiveness.MonitoringInterval; got != 10 {
		t.Errorf("file must win over defaults: monitoring_interval = %v", got)
	}
	if got := cfg.Proxy.UpstreamURL; got != "http://127.0.0.1:5001" {
		t.Errorf("upstream_url = %q", got)
	}
	if got := cfg.Proxy.ListenAddr; got != ":8080" {
		t.Errorf("untouched key lost its default: listen_addr = %q", got)
	}
	if !reflect.DeepEqual(cfg.Proxy.RoutePatterns, []string{"/users/<id>"}) {
		t.Errorf("route_patterns = %q", cfg.Proxy.RoutePatterns)
	}

	// The File option wins over RESPONSIVENESS_CONFIG_FILE.
	other := writeFile(t, "other.yaml", "responsiveness: {monitoring_interval: 7}\n")
	cfg, err = Load(LoadOptions{File: other, Environ: environ})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Responsiveness.MonitoringInterval != 7 {
		t.Errorf("File option ignored: monitoring_interval = %v", cfg.Responsiveness.MonitoringInterval)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(LoadOptions{File: filepath.Join(t.TempDir(), "nope.yaml")})
	if err == nil || !strings.Contains(err.Error(), "reading config file") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want a wrapped not-exist error", err)
	}
}

func TestLoadYAMLStrictness(t *testing.T) {
	tests := []struct {
		desc    string
		yaml    string
		check   func(*Config) bool
		wantErr []string
	}{
		{desc: "empty file", yaml: "",
			check: func(c *Config) bool { return reflect.DeepEqual(c, Defaults()) }},
		{desc: "only comments", yaml: "# nothing\n",
			check: func(c *Config) bool { return reflect.DeepEqual(c, Defaults()) }},
		{desc: "section with every child commented out", yaml: "proxy:\n  # upstream_url: x\nadmin:\n",
			check: func(c *Config) bool { return reflect.DeepEqual(c, Defaults()) }},
		{desc: "seconds as string", yaml: "responsiveness: {slow_request_threshold: \"0.5\"}",
			check: func(c *Config) bool { return c.Responsiveness.SlowRequestThreshold == 0.5 }},
		{desc: "seconds as duration", yaml: "proxy: {drain_delay: 1m30s}",
			check: func(c *Config) bool { return c.Proxy.DrainDelay == 90 }},
		{desc: "int for a float", yaml: "backpressure: {rate_limit_rps: 10}",
			check: func(c *Config) bool { return c.Backpressure.RateLimitRPS == 10 }},
		{desc: "integral float for an int", yaml: "backpressure: {max_concurrency: 8.0}",
			check: func(c *Config) bool { return c.Backpressure.MaxConcurrency == 8 }},
		{desc: "bool as 0", yaml: "responsiveness: {monitoring_enabled: 0}",
			check: func(c *Config) bool { return !c.Responsiveness.MonitoringEnabled }},
		{desc: "empty list", yaml: "system: {disk_paths: []}",
			check: func(c *Config) bool { return c.System.DiskPaths == nil }},
		{desc: "null list", yaml: "system: {disk_paths: null}",
			check: func(c *Config) bool { return c.System.DiskPaths == nil }},
		{desc: "list replaces the default list", yaml: "system:\n  disk_paths:\n    - /data\n",
			check: func(c *Config) bool { return reflect.DeepEqual(c.System.DiskPaths, []string{"/data"}) }},
		{desc: "anchors and merge keys", yaml: "x-common: &t {probe_timeout: 3}\n",
			wantErr: []string{"x-common.probe_timeout: unknown key"}},
		{desc: "anchor reused", yaml: "database: &d\n  probe_timeout: 3\nredis:\n  <<: *d\n",
			check: func(c *Config) bool { return c.Database.ProbeTimeout == 3 && c.Redis.ProbeTimeout == 3 }},
		{desc: "nested section", yaml: "backpressure:\n  adaptive:\n    enabled: true\n    max_limit: 64\n",
			check: func(c *Config) bool { return c.Backpressure.Adaptive.Enabled && c.Backpressure.Adaptive.MaxLimit == 64 }},
		{desc: "unknown key with suggestion", yaml: "proxy:\n  upstrem_url: http://x\n",
			wantErr: []string{"proxy.upstrem_url: unknown key (did you mean proxy.upstream_url?)"}},
		{desc: "key in the wrong section", yaml: "proxy:\n  slow_request_threshold: 1\n",
			wantErr: []string{"proxy.slow_request_threshold: unknown key (did you mean responsiveness.slow_request_threshold?)"}},
		{desc: "unknown top-level section", yaml: "prxy: {}\n",
			wantErr: []string{"prxy: unknown key (did you mean proxy?)"}},
		{desc: "wrong type number", yaml: "responsiveness:\n  monitoring_interval: abc\n",
			wantErr: []string{`responsiveness.monitoring_interval (RESPONSIVENESS_MONITORING_INTERVAL): must be a number of seconds`, `got "abc"`, "(in "}},
		{desc: "wrong type bool", yaml: "responsiveness:\n  monitoring_enabled: maybe\n",
			wantErr: []string{`responsiveness.monitoring_enabled (RESPONSIVENESS_MONITORING_ENABLED): must be a boolean (true, false, 1 or 0), got "maybe"`}},
		{desc: "yes is not a bool", yaml: "responsiveness:\n  monitoring_enabled: yes\n",
			wantErr: []string{`must be a boolean`}},
		{desc: "number for a string", yaml: "log: {level: 3}\n",
			wantErr: []string{`log.level (RESPONSIVENESS_LOG_LEVEL): must be a string (quote it), got a number`}},
		{desc: "mapping for a leaf", yaml: "proxy:\n  upstream_url:\n    host: x\n",
			wantErr: []string{`proxy.upstream_url (RESPONSIVENESS_UPSTREAM_URL): must be a string, got a mapping`}},
		{desc: "scalar for a section", yaml: "proxy: 5\n",
			wantErr: []string{`proxy: must be a mapping of keys, got a number`}},
		{desc: "list of numbers", yaml: "system: {disk_paths: [1, 2]}\n",
			wantErr: []string{`system.disk_paths (RESPONSIVENESS_SYSTEM_DISK_PATHS): must be a list of strings`}},
		{desc: "string for a list", yaml: "system: {disk_paths: /}\n",
			wantErr: []string{`system.disk_paths (RESPONSIVENESS_SYSTEM_DISK_PATHS): must be a list of strings, got "/"`}},
		{desc: "decode and validation problems together", yaml: "responsiveness:\n  memory_warning_threshold: 1.5\n  cpu_warning_threshold: x\nfoo: 1\n",
			wantErr: []string{"foo: unknown key", "cpu_warning_threshold (RESPONSIVENESS_CPU_WARNING_THRESHOLD): must be a number", "memory_warning_threshold (RESPONSIVENESS_MEMORY_WARNING_THRESHOLD): must be in (0,1], got 1.5"}},
		{desc: "non-string keys", yaml: "1: x\n",
			wantErr: []string{"1: unknown key"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			path := writeFile(t, "c.yaml", tc.yaml)
			cfg, err := Load(LoadOptions{File: path})
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want %q", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error\n%s\ndoes not contain %q", err, w)
					}
				}
				if cfg != nil {
					t.Error("a config came back with the error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !tc.check(cfg) {
				t.Errorf("unexpected config: %v", Diff(Defaults(), cfg))
			}
		})
	}
}

func TestLoadYAMLSyntaxErrorsDoNotCrash(t *testing.T) {
	tests := []struct{ desc, yaml, want string }{
		{"duplicate key", "proxy:\n  max_routes: 1\n  max_routes: 2\n", "already defined"},
		{"document is a list", "- a\n- b\n", "parsing config file"},
		{"document is a scalar", "just text\n", "parsing config file"},
		{"tab indentation", "proxy:\n\tmax_routes: 1\n", "parsing config file"},
		{"unknown alias", "proxy: *nope\n", "parsing config file"},
		{"alias bomb", "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cfg, err := Load(LoadOptions{File: writeFile(t, "c.yaml", tc.yaml)})
			if err == nil || cfg != nil {
				t.Fatalf("Load = %v, %v; want an error", cfg, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestExampleYAML keeps config.example.yaml identical to ExampleYAML(),
// checks that it lists every key, and that loading it gives Defaults().
func TestExampleYAML(t *testing.T) {
	path := filepath.Join("..", "config.example.yaml")
	want := ExampleYAML()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the example (run go test ./config -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("config.example.yaml is out of date with ExampleYAML(): run go test ./config -run TestExampleYAML -update")
	}

	var doc map[string]any
	if err := yaml.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	var walk func(m map[string]any, prefix string)
	walk = func(m map[string]any, prefix string) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(sub, prefix+k+".")
				continue
			}
			listed[prefix+k] = true
		}
	}
	walk(doc, "")
	for _, e := range EnvVars() {
		if !listed[e.Key] {
			t.Errorf("config.example.yaml does not list %s", e.Key)
		}
		if !bytes.Contains(got, []byte("# "+e.Name+" (default: ")) {
			t.Errorf("config.example.yaml does not name %s with its default", e.Name)
		}
	}
	if len(listed) != len(EnvVars()) {
		t.Errorf("config.example.yaml lists %d keys, the config has %d", len(listed), len(EnvVars()))
	}

	cfg, err := Load(LoadOptions{File: path})
	if err != nil {
		t.Fatalf("loading config.example.yaml: %v", err)
	}
	if !reflect.DeepEqual(cfg, Defaults()) {
		t.Errorf("config.example.yaml differs from Defaults(): %v", Diff(Defaults(), cfg))
	}
}

// TestRenderYAMLRoundTrip: check-config's output loads back to the same
// configuration (secrets aside).
func TestRenderYAMLRoundTrip(t *testing.T) {
	c := Defaults()
	c.Proxy.RoutePatterns = []string{"/users/<id>", "/a:b#c"}
	c.Redis.SessionPrefix = "true"
	c.Log.Level = "debug"
	c.Backpressure.RateLimitRPS = 0.25
	c.Backpressure.RateLimitBurst = 3
	c.Alerts.Email = Email{SMTPAddr: "127.0.0.1:25", From: "a@example.com", To: []string{"b@example.com"}, MinSeverity: "warning"}
	out, err := c.RenderYAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Load(LoadOptions{File: writeFile(t, "r.yaml", string(out))})
	if err != nil {
		t.Fatalf("loading rendered YAML: %v\n%s", err, out)
	}
	if d := Diff(c, back); len(d) != 0 {
		t.Errorf("round trip changed %v", d)
	}
	for _, key := range []string{"responsiveness:\n  monitoring_enabled: true", "  memory_warning_threshold: 0.8", "backpressure:\n", "    min_rtt_interval: 60", "data_dir: ./pulsegate-data"} {
		if !bytes.Contains(out, []byte(key)) {
			t.Errorf("rendered YAML lacks %q:\n%s", key, out)
		}
	}
}

// envMarkdown renders the settings table of docs/configuration.md.
func envMarkdown() string {
	var b strings.Builder
	b.WriteString("| Variable | YAML key | Default | Meaning |\n|---|---|---|---|\n")
	for _, e := range EnvVars() {
		def := "`" + e.Default + "`"
		switch {
		case e.Secret:
			def = "(unset; secret)"
		case e.Default == "":
			def = "(empty)"
		}
		doc := strings.ReplaceAll(e.Doc, "|", "\\|")
		b.WriteString("| `" + e.Name + "` | `" + e.Key + "` | " + def + " | " + doc + " |\n")
	}
	return b.String()
}

// TestDocsTable keeps the settings table in docs/configuration.md generated
// from EnvVars().
func TestDocsTable(t *testing.T) {
	const begin, end = "<!-- BEGIN GENERATED: config.EnvVars() -->\n", "<!-- END GENERATED -->"
	path := filepath.Join("..", "docs", "configuration.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the generated-table markers", path)
	}
	want := s[:i+len(begin)] + envMarkdown() + s[j:]
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if s != want {
		t.Errorf("%s's settings table is out of date: run go test ./config -run TestDocsTable -update", path)
	}
}
