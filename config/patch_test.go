package config

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// withSecrets is a valid configuration with every secret set.
func withSecrets() *Config {
	c := Defaults()
	c.Database.DSN = "mysql://probe:s3cr3t%40x@127.0.0.1:3306/test"
	c.Redis.URL = "redis://:r3dis@127.0.0.1:6379/0"
	c.Admin.Token = "admin-token-123"
	c.Alerts.Email = Email{SMTPAddr: "127.0.0.1:25", From: "a@x.io", To: []string{"b@x.io"}, Username: "u", Password: "smtp-pw", MinSeverity: "critical"}
	c.Proxy.RoutePatterns = []string{"/users/<id>"}
	return c
}

func TestPatchMatrix(t *testing.T) {
	tests := []struct {
		desc    string
		body    string
		check   func(c *Config) bool
		wantErr []string
		plain   bool // a body-level error rather than a *ValidationError
	}{
		{desc: "one field", body: `{"responsiveness": {"slow_request_threshold": 0.3}}`,
			check: func(c *Config) bool { return c.Responsiveness.SlowRequestThreshold == 0.3 }},
		{desc: "several sections", body: `{"backpressure": {"max_concurrency": 8, "adaptive": {"enabled": true}}, "log": {"level": "debug"}}`,
			check: func(c *Config) bool {
				return c.Backpressure.MaxConcurrency == 8 && c.Backpressure.Adaptive.Enabled && c.Log.Level == "debug"
			}},
		{desc: "numeric string seconds", body: `{"proxy": {"drain_delay": "0.5"}}`,
			check: func(c *Config) bool { return c.Proxy.DrainDelay == 0.5 }},
		{desc: "list replaced", body: `{"proxy": {"route_patterns": ["/a/<id>", "/b"]}}`,
			check: func(c *Config) bool { return reflect.DeepEqual(c.Proxy.RoutePatterns, []string{"/a/<id>", "/b"}) }},
		{desc: "list null clears", body: `{"proxy": {"route_patterns": null}}`,
			check: func(c *Config) bool { return c.Proxy.RoutePatterns == nil }},
		{desc: "empty object changes nothing", body: `{}`,
			check: func(c *Config) bool { return reflect.DeepEqual(c, withSecrets()) }},
		{desc: "null section changes nothing", body: `{"proxy": null, "admin": {}}`,
			check: func(c *Config) bool { return reflect.DeepEqual(c, withSecrets()) }},
		{desc: "version ignored by Patch", body: `{"version": 7, "log": {"format": "console"}}`,
			check: func(c *Config) bool { return c.Log.Format == "console" }},
		{desc: "secret posted as redacted is unchanged", body: `{"admin": {"token": "<redacted>"}, "alerts": {"email": {"password": "<redacted>"}}}`,
			check: func(c *Config) bool {
				return c.Admin.Token == "admin-token-123" && c.Alerts.Email.Password == "smtp-pw"
			}},
		{desc: "secret posted as its redacted URL is unchanged", body: `{"database": {"dsn": "mysql://probe:xxxxx@127.0.0.1:3306/test"}, "redis": {"url": "redis://:xxxxx@127.0.0.1:6379/0"}}`,
			check: func(c *Config) bool {
				return c.Database.DSN == "mysql://probe:s3cr3t%40x@127.0.0.1:3306/test" && c.Redis.URL == "redis://:r3dis@127.0.0.1:6379/0"
			}},
		{desc: "secret replaced", body: `{"admin": {"token": "new-token"}}`,
			check: func(c *Config) bool { return c.Admin.Token == "new-token" }},
		{desc: "secret cleared", body: `{"redis": {"url": ""}}`,
			check: func(c *Config) bool { return c.Redis.URL == "" }},

		{desc: "unknown key", body: `{"responsiveness": {"slow_request_treshold": 1}}`,
			wantErr: []string{"responsiveness.slow_request_treshold: unknown key (did you mean responsiveness.slow_request_threshold?)"}},
		{desc: "dotted key", body: `{"proxy.max_routes": 5}`,
			wantErr: []string{"proxy.max_routes: unknown key (nest sections as objects)"}},
		{desc: "wrong type", body: `{"responsiveness": {"monitoring_interval": "abc", "monitoring_enabled": "maybe"}}`,
			wantErr: []string{
				`responsiveness.monitoring_interval (RESPONSIVENESS_MONITORING_INTERVAL): must be a number of seconds (e.g. 0.5) or a duration (e.g. 500ms), got "abc"`,
				`responsiveness.monitoring_enabled (RESPONSIVENESS_MONITORING_ENABLED): must be a boolean (true, false, 1 or 0), got "maybe"`}},
		{desc: "string for a list", body: `{"proxy": {"route_patterns": "/a"}}`,
			wantErr: []string{`proxy.route_patterns (RESPONSIVENESS_PROXY_ROUTE_PATTERNS): must be a list of strings, got "/a"`}},
		{desc: "null for a number", body: `{"proxy": {"max_routes": null}}`,
			wantErr: []string{`proxy.max_routes (RESPONSIVENESS_PROXY_MAX_ROUTES): must be an integer, got null`}},
		{desc: "object for a section leaf", body: `{"log": {"level": {"x": 1}}}`,
			wantErr: []string{`log.level (RESPONSIVENESS_LOG_LEVEL): must be a string, got a mapping`}},
		{desc: "number for a section", body: `{"log": 3}`,
			wantErr: []string{`log: must be a mapping of keys, got a number`}},
		{desc: "warning ≥ critical", body: `{"responsiveness": {"memory_warning_threshold": 0.95}}`,
			wantErr: []string{"responsiveness.memory_warning_threshold (RESPONSIVENESS_MEMORY_WARNING_THRESHOLD): must be below responsiveness.memory_critical_threshold"}},
		{desc: "out of range", body: `{"responsiveness": {"cpu_critical_threshold": 1.5}}`,
			wantErr: []string{"responsiveness.cpu_critical_threshold (RESPONSIVENESS_CPU_CRITICAL_THRESHOLD): must be in (0,1], got 1.5"}},
		{desc: "rate 0 with burst", body: `{"backpressure": {"rate_limit_rps": 0, "rate_limit_burst": 5}}`,
			wantErr: []string{"backpressure.rate_limit_burst (RESPONSIVENESS_RATE_LIMIT_BURST): must be 0 while"}},
		{desc: "duplicate key", body: `{"log": {"level": "debug", "level": "error"}}`,
			wantErr: []string{"log.level (RESPONSIVENESS_LOG_LEVEL): duplicate key"}},
		{desc: "duplicate section", body: `{"log": {}, "log": {}}`,
			wantErr: []string{"log: duplicate key"}},
		{desc: "every problem at once", body: `{"foo": 1, "log": {"level": "x"}, "proxy": {"max_routes": "many"}}`,
			wantErr: []string{"foo: unknown key", "log.level (RESPONSIVENESS_LOG_LEVEL): must be one of", "proxy.max_routes (RESPONSIVENESS_PROXY_MAX_ROUTES): must be an integer"}},
		{desc: "bad version", body: `{"version": "x"}`,
			wantErr: []string{"version: must be a non-negative integer, got a string"}},
		{desc: "negative version", body: `{"version": -1}`,
			wantErr: []string{"version: must be a non-negative integer"}},

		{desc: "trailing garbage", body: `{"log": {}} x`, plain: true, wantErr: []string{"parsing configuration patch"}},
		{desc: "two objects", body: `{}{}`, plain: true, wantErr: []string{"trailing data"}},
		{desc: "not an object", body: `[1]`, plain: true, wantErr: []string{"must be a JSON object"}},
		{desc: "empty body", body: ``, plain: true, wantErr: []string{"empty body"}},
		{desc: "truncated", body: `{"log": {"level": "debug"`, plain: true, wantErr: []string{"parsing configuration patch"}},
		{desc: "too deep", body: strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40), plain: true, wantErr: []string{"nesting deeper than 32 levels"}},
		{desc: "deep array", body: `{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "}", plain: true, wantErr: []string{"nesting deeper than 32 levels"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cur := withSecrets()
			before := cur.Clone()
			next, err := Patch(cur, []byte(tc.body))
			if !reflect.DeepEqual(cur, before) {
				t.Fatalf("Patch modified its input: %v", Diff(before, cur))
			}
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want %q", tc.wantErr)
				}
				if next != nil {
					t.Error("a config came back with the error")
				}
				var ve *ValidationError
				if isVE := errors.As(err, &ve); isVE == tc.plain {
					t.Errorf("error %T: want *ValidationError = %v", err, !tc.plain)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error\n%s\ndoes not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Patch: %v", err)
			}
			if !tc.check(next) {
				t.Errorf("unexpected result: %v", Diff(cur, next))
			}
			if err := next.Validate(); err != nil {
				t.Errorf("Patch returned an invalid config: %v", err)
			}
		})
	}
}

// TestPatchPostBackWhatGETShows: the redacted JSON rendering, posted back,
// changes nothing (secrets included).
func TestPatchPostBackWhatGETShows(t *testing.T) {
	cur := withSecrets()
	body, err := json.Marshal(cur)
	if err != nil {
		t.Fatal(err)
	}
	next, err := Patch(cur, body)
	if err != nil {
		t.Fatalf("posting back GET's JSON: %v", err)
	}
	if d := Diff(cur, next); len(d) != 0 {
		t.Errorf("posting back changed %v", d)
	}
}

func TestPatchVersioned(t *testing.T) {
	h := NewHolder(withSecrets())
	cur, v := h.Get()
	next, got, err := PatchVersioned(cur, []byte(`{"version": 1, "proxy": {"max_routes": 50}}`))
	if err != nil || got != v {
		t.Fatalf("PatchVersioned = %v, %v; want version %d", got, err, v)
	}
	if _, err := h.Update(got, next); err != nil {
		t.Fatalf("Update: %v", err)
	}
	// A second client still holding version 1 is refused and nothing changes.
	stale, sv, err := PatchVersioned(cur, []byte(`{"version": 1, "proxy": {"max_routes": 60}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Update(sv, stale); !errors.Is(err, ErrStaleVersion) {
		t.Fatalf("stale Update = %v, want ErrStaleVersion", err)
	}
	if c, v := h.Get(); c.Proxy.MaxRoutes != 50 || v != 2 {
		t.Errorf("after the stale update: max_routes %d version %d, want 50 and 2", c.Proxy.MaxRoutes, v)
	}
	// No version: last writer wins.
	nv, _, err := PatchVersioned(cur, []byte(`{"proxy": {"max_routes": 70}}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := h.Update(0, nv); err != nil || v != 3 {
		t.Errorf("unversioned Update = %d, %v", v, err)
	}
}

func TestDiff(t *testing.T) {
	old := withSecrets()
	next := old.Clone()
	next.Responsiveness.SlowRequestThreshold = 0.3
	next.Admin.Token = "rotated"
	next.Database.DSN = "mysql://probe:other@127.0.0.1:3306/test"
	next.Proxy.RoutePatterns = append(next.Proxy.RoutePatterns, "/b")
	got := Diff(old, next)
	want := []Change{
		{Key: "responsiveness.slow_request_threshold", Old: "5", New: "0.3"},
		{Key: "proxy.route_patterns", Old: `["/users/<id>"]`, New: `["/users/<id>","/b"]`},
		{Key: "admin.token", Old: Redacted, New: Redacted + " (changed)"},
		{Key: "database.dsn", Old: "mysql://probe:xxxxx@127.0.0.1:3306/test", New: "mysql://probe:xxxxx@127.0.0.1:3306/test (changed)"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff =\n%v\nwant\n%v", got, want)
	}
	if d := Diff(old, old.Clone()); d != nil {
		t.Errorf("Diff of equal configs = %v", d)
	}
}

func TestCloneIsDeep(t *testing.T) {
	c := withSecrets()
	n := c.Clone()
	n.Proxy.RoutePatterns[0] = "/changed"
	n.System.DiskPaths[0] = "/changed"
	if c.Proxy.RoutePatterns[0] != "/users/<id>" || c.System.DiskPaths[0] != "/" {
		t.Error("Clone shares list storage with the original")
	}
}

// BenchmarkPatch measures one config POST's parse, apply and validate.
func BenchmarkPatch(b *testing.B) {
	cur := withSecrets()
	body := []byte(`{"responsiveness": {"slow_request_threshold": 0.3}, "backpressure": {"max_concurrency": 8}}`)
	for b.Loop() {
		if _, err := Patch(cur, body); err != nil {
			b.Fatal(err)
		}
	}
}
