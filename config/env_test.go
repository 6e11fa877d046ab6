package config

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// productNames are the variable names promised by the product and issue 2;
// every other variable must follow the regular rule.
var productNames = map[string]string{
	"RESPONSIVENESS_MONITORING_ENABLED":               "responsiveness.monitoring_enabled",
	"RESPONSIVENESS_MONITORING_INTERVAL":              "responsiveness.monitoring_interval",
	"RESPONSIVENESS_MEMORY_WARNING_THRESHOLD":         "responsiveness.memory_warning_threshold",
	"RESPONSIVENESS_MEMORY_CRITICAL_THRESHOLD":        "responsiveness.memory_critical_threshold",
	"RESPONSIVENESS_CPU_WARNING_THRESHOLD":            "responsiveness.cpu_warning_threshold",
	"RESPONSIVENESS_CPU_CRITICAL_THRESHOLD":           "responsiveness.cpu_critical_threshold",
	"RESPONSIVENESS_DB_CONNECTION_WARNING_THRESHOLD":  "responsiveness.db_connection_warning_threshold",
	"RESPONSIVENESS_DB_CONNECTION_CRITICAL_THRESHOLD": "responsiveness.db_connection_critical_threshold",
	"RESPONSIVENESS_CLEANUP_ENABLED":                  "responsiveness.cleanup_enabled",
	"RESPONSIVENESS_CLEANUP_INTERVAL":                 "responsiveness.cleanup_interval",
	"RESPONSIVENESS_SLOW_REQUEST_THRESHOLD":           "responsiveness.slow_request_threshold",
	"RESPONSIVENESS_REQUEST_TIMEOUT_THRESHOLD":        "responsiveness.request_timeout_threshold",
	"RESPONSIVENESS_TASK_MONITORING_ENABLED":          "responsiveness.task_monitoring_enabled",
	"RESPONSIVENESS_TASK_HEALTH_CHECK_INTERVAL":       "responsiveness.task_health_check_interval",
	"RESPONSIVENESS_UPSTREAM_URL":                     "proxy.upstream_url",
	"RESPONSIVENESS_ALERT_RUNBOOK_BASE_URL":           "alerts.runbook_base_url", // contract C3 (issue 12)
	"RESPONSIVENESS_LISTEN_ADDR":                      "proxy.listen_addr",
	"RESPONSIVENESS_ADMIN_ADDR":                       "admin.addr",
	"RESPONSIVENESS_ADMIN_TOKEN":                      "admin.token",
	"RESPONSIVENESS_DB_DSN":                           "database.dsn",
	"RESPONSIVENESS_REDIS_URL":                        "redis.url",
	"RESPONSIVENESS_REDIS_SESSION_PREFIX":             "redis.session_prefix",
	"RESPONSIVENESS_DISK_WARNING_THRESHOLD":           "thresholds.disk_warning",
	"RESPONSIVENESS_DISK_CRITICAL_THRESHOLD":          "thresholds.disk_critical",
	"RESPONSIVENESS_QUEUE_WARNING_THRESHOLD":          "thresholds.queue_warning",
	"RESPONSIVENESS_QUEUE_CRITICAL_THRESHOLD":         "thresholds.queue_critical",
	"RESPONSIVENESS_ERROR_RATE_WARNING_THRESHOLD":     "thresholds.error_rate_warning",
	"RESPONSIVENESS_ERROR_RATE_CRITICAL_THRESHOLD":    "thresholds.error_rate_critical",
	"RESPONSIVENESS_RESPONSE_TIME_WARNING_THRESHOLD":  "thresholds.response_time_warning",
	"RESPONSIVENESS_RESPONSE_TIME_CRITICAL_THRESHOLD": "thresholds.response_time_critical",
	"RESPONSIVENESS_DB_QUERY_WARNING_THRESHOLD":       "thresholds.db_query_warning",
	"RESPONSIVENESS_DB_QUERY_CRITICAL_THRESHOLD":      "thresholds.db_query_critical",
	"RESPONSIVENESS_MAX_CONCURRENCY":                  "backpressure.max_concurrency",
	"RESPONSIVENESS_RATE_LIMIT_RPS":                   "backpressure.rate_limit_rps",
	"RESPONSIVENESS_RATE_LIMIT_BURST":                 "backpressure.rate_limit_burst",
}

// leafKeys walks Config by reflection (independently of configFields) and
// returns every leaf key.
func leafKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		sf := t.Field(i)
		key := prefix + sf.Tag.Get("koanf")
		if sf.Type.Kind() == reflect.Struct {
			out = append(out, leafKeys(sf.Type, key+".")...)
			continue
		}
		out = append(out, key)
	}
	return out
}

func TestEnvTableCoversEveryFieldExactlyOnce(t *testing.T) {
	leaves := leafKeys(reflect.TypeFor[Config](), "")
	isLeaf := map[string]bool{}
	for _, k := range leaves {
		isLeaf[k] = true
	}
	perKey := map[string]int{}
	names := map[string]bool{}
	for _, e := range EnvVars() {
		if !isLeaf[e.Key] {
			t.Errorf("%s maps to %q, which is not a field of Config", e.Name, e.Key)
		}
		perKey[e.Key]++
		if names[e.Name] {
			t.Errorf("%s appears twice", e.Name)
		}
		names[e.Name] = true
		if e.Doc == "" {
			t.Errorf("%s has no doc", e.Name)
		}
		if e.Name == EnvConfigFile {
			t.Errorf("%s must not be a key's variable", EnvConfigFile)
		}
	}
	for _, k := range leaves {
		if perKey[k] != 1 {
			t.Errorf("field %s has %d environment variables, want exactly 1", k, perKey[k])
		}
	}
	if len(EnvVars()) != len(leaves) {
		t.Errorf("%d variables for %d fields", len(EnvVars()), len(leaves))
	}
	for i, e := range EnvVars() {
		if i < len(leaves) && e.Key != leaves[i] {
			t.Errorf("EnvVars()[%d] is %s, want %s: the table must follow the struct order", i, e.Key, leaves[i])
			break
		}
	}
}

func TestEnvNamesFollowTheProductOrTheRule(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range EnvVars() {
		if want, ok := productNames[e.Name]; ok {
			seen[e.Name] = true
			if e.Key != want {
				t.Errorf("%s maps to %s, the issue promises %s", e.Name, e.Key, want)
			}
			continue
		}
		if rule := ruleEnvName(e.Key); e.Name != rule {
			t.Errorf("%s for %s: not a product name, so it must follow the rule: %s", e.Name, e.Key, rule)
		}
	}
	for n := range productNames {
		if !seen[n] {
			t.Errorf("product variable %s is missing from the table", n)
		}
	}
}

func TestEnvDefaultsMatchTheIssue(t *testing.T) {
	want := map[string]string{
		"RESPONSIVENESS_MONITORING_ENABLED":               "true",
		"RESPONSIVENESS_MONITORING_INTERVAL":              "30",
		"RESPONSIVENESS_MEMORY_WARNING_THRESHOLD":         "0.8",
		"RESPONSIVENESS_MEMORY_CRITICAL_THRESHOLD":        "0.9",
		"RESPONSIVENESS_CPU_WARNING_THRESHOLD":            "0.8",
		"RESPONSIVENESS_CPU_CRITICAL_THRESHOLD":           "0.9",
		"RESPONSIVENESS_DB_CONNECTION_WARNING_THRESHOLD":  "0.8",
		"RESPONSIVENESS_DB_CONNECTION_CRITICAL_THRESHOLD": "0.9",
		"RESPONSIVENESS_CLEANUP_ENABLED":                  "true",
		"RESPONSIVENESS_CLEANUP_INTERVAL":                 "300",
		"RESPONSIVENESS_SLOW_REQUEST_THRESHOLD":           "5",
		"RESPONSIVENESS_REQUEST_TIMEOUT_THRESHOLD":        "30",
		"RESPONSIVENESS_TASK_MONITORING_ENABLED":          "true",
		"RESPONSIVENESS_TASK_HEALTH_CHECK_INTERVAL":       "60",
		"RESPONSIVENESS_UPSTREAM_URL":                     "http://127.0.0.1:5000",
		"RESPONSIVENESS_LISTEN_ADDR":                      ":8080",
		"RESPONSIVENESS_ADMIN_ADDR":                       "127.0.0.1:9901",
		"RESPONSIVENESS_ADMIN_TOKEN":                      "",
		"RESPONSIVENESS_DB_DSN":                           "",
		"RESPONSIVENESS_REDIS_URL":                        "",
		"RESPONSIVENESS_REDIS_SESSION_PREFIX":             "session:",
		"RESPONSIVENESS_DISK_WARNING_THRESHOLD":           "0.85",
		"RESPONSIVENESS_DISK_CRITICAL_THRESHOLD":          "0.95",
		"RESPONSIVENESS_QUEUE_WARNING_THRESHOLD":          "50",
		"RESPONSIVENESS_QUEUE_CRITICAL_THRESHOLD":         "100",
		"RESPONSIVENESS_ERROR_RATE_WARNING_THRESHOLD":     "0.05",
		"RESPONSIVENESS_ERROR_RATE_CRITICAL_THRESHOLD":    "0.1",
		"RESPONSIVENESS_RESPONSE_TIME_WARNING_THRESHOLD":  "5",
		"RESPONSIVENESS_RESPONSE_TIME_CRITICAL_THRESHOLD": "10",
		"RESPONSIVENESS_DB_QUERY_WARNING_THRESHOLD":       "2",
		"RESPONSIVENESS_DB_QUERY_CRITICAL_THRESHOLD":      "5",
		"RESPONSIVENESS_MAX_CONCURRENCY":                  "0",
		"RESPONSIVENESS_RATE_LIMIT_RPS":                   "0",
		"RESPONSIVENESS_RATE_LIMIT_BURST":                 "0",
		"RESPONSIVENESS_LOG_LEVEL":                        "info",
		"RESPONSIVENESS_DATA_DIR":                         "./pulsegate-data",
		"RESPONSIVENESS_SYSTEM_DISK_PATHS":                "/",
		"RESPONSIVENESS_STORE_DSN":                        "",
		"RESPONSIVENESS_INSTANCE":                         "",
		"RESPONSIVENESS_FLEET":                            "default",
	}
	got := map[string]EnvVar{}
	for _, e := range EnvVars() {
		got[e.Name] = e
	}
	for name, def := range want {
		e, ok := got[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if e.Default != def {
			t.Errorf("%s default = %q, want %q", name, e.Default, def)
		}
	}
	for _, name := range []string{"RESPONSIVENESS_ADMIN_TOKEN", "RESPONSIVENESS_DB_DSN", "RESPONSIVENESS_REDIS_URL", "RESPONSIVENESS_ALERTS_EMAIL_PASSWORD", "RESPONSIVENESS_STORE_DSN"} {
		if !got[name].Secret {
			t.Errorf("%s must be marked secret", name)
		}
	}
	if got["RESPONSIVENESS_UPSTREAM_URL"].Secret {
		t.Error("RESPONSIVENESS_UPSTREAM_URL is not a secret")
	}
}

// TestEnvEveryVariableSetsItsKey sets each variable to a distinct valid value
// and checks that exactly its field changed.
func TestEnvEveryVariableSetsItsKey(t *testing.T) {
	byKey := map[string]field{}
	for _, f := range configFields() {
		byKey[f.key] = f
	}
	for _, e := range EnvVars() {
		f := byKey[e.Key]
		def := Defaults()
		val := changedValue(t, f, def)
		if val == "" {
			continue // needs another setting to change validly; covered by the validation tests
		}
		cfg, deps, err := LoadWithDeprecations(LoadOptions{Environ: []string{e.Name + "=" + val}})
		if err != nil {
			t.Errorf("%s=%s: %v", e.Name, val, err)
			continue
		}
		// A setting that used to carry several meanings also sets, this
		// once, the settings that took them over (a deprecation).
		want := []string{e.Key}
		for _, d := range deps {
			want = append(want, d.Carried...)
		}
		var got []string
		for _, c := range Diff(Defaults(), cfg) {
			got = append(got, c.Key)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s=%s changed %v, want %v", e.Name, val, got, want)
		}
	}
}

// changedValue returns an environment value, valid on its own over the
// defaults, that differs from the default of f ("" when none exists).
func changedValue(t *testing.T, f field, def *Config) string {
	special := map[string]string{
		"proxy.upstream_url":                              "http://127.0.0.1:5001",
		"proxy.listen_addr":                               ":8081",
		"proxy.route_patterns":                            "/users/<id>, /posts/:id",
		"admin.addr":                                      "127.0.0.1:9902",
		"admin.token":                                     "tok-123",
		"admin.allowed_hosts":                             "pulsegate.internal",
		"admin.auth_url":                                  "http://127.0.0.1:5000/auth",
		"database.dsn":                                    "postgres://probe:pw@127.0.0.1:5432/test",
		"redis.url":                                       "redis://127.0.0.1:6379/0",
		"redis.queue_keys":                                "rq:queue:default,celery",
		"system.disk_paths":                               "/,/var",
		"system.cgroup_root":                              "/cgroup",
		"system.proc_root":                                "/host/proc",
		"system.app_process_names":                        "gunicorn",
		"backpressure.rate_limit_burst":                   "",
		"backpressure.per_client_burst":                   "",
		"backpressure.critical_routes":                    "/checkout",
		"backpressure.low_priority_routes":                "/reports",
		"alerts.email.smtp_addr":                          "",
		"alerts.email.from":                               "pulsegate@example.com",
		"alerts.email.to":                                 "ops@example.com",
		"alerts.email.password":                           "",
		"alerts.email.min_severity":                       "warning",
		"alerts.webhook_url":                              "https://hooks.example.com/x",
		"alerts.alertmanager_url":                         "http://127.0.0.1:9093",
		"actions.cleanup_url":                             "http://127.0.0.1:5000/cleanup",
		"thresholds.apdex_warning":                        "0.9",
		"thresholds.apdex_critical":                       "0.5",
		"runtime.memory_limit_share":                      "0.5",
		"log.level":                                       "debug",
		"log.format":                                      "console",
		"data_dir":                                        "/var/lib/pulsegate",
		"store.dsn":                                       "mysql://pulsegate:pw@127.0.0.1:3306/app",
		"responsiveness.memory_warning_threshold":         "0.7",
		"responsiveness.cpu_warning_threshold":            "0.7",
		"responsiveness.db_connection_warning_threshold":  "0.7",
		"responsiveness.memory_critical_threshold":        "0.95",
		"responsiveness.cpu_critical_threshold":           "0.95",
		"responsiveness.db_connection_critical_threshold": "0.95",
		"thresholds.disk_critical":                        "0.99",
		"thresholds.error_rate_critical":                  "0.2",
		"thresholds.disk_warning":                         "0.8",
		"thresholds.error_rate_warning":                   "0.04",
		"thresholds.response_time_warning":                "4",
		"thresholds.db_query_warning":                     "1",
		"thresholds.queue_warning":                        "40",
		"backpressure.adaptive.min_limit":                 "5",
		"backpressure.shed_fraction":                      "0.25",
		"backpressure.shed_signals":                       "cpu,memory",
		"proxy.trusted_proxies":                           "10.0.0.0/8",
		"alerts.resolve_margin":                           "0.1",
		"backpressure.adaptive.headroom":                  "0.2",
	}
	if v, ok := special[f.key]; ok {
		return v
	}
	switch f.kind {
	case kindBool:
		if f.value(def).Bool() {
			return "false"
		}
		return "true"
	case kindInt, kindFloat, kindSeconds:
		return formatFloat(f.value(def).Convert(reflect.TypeFor[float64]()).Float() + 1)
	case kindString:
		return f.value(def).String() + "x"
	}
	t.Fatalf("no changed value for %s", f.key)
	return ""
}

func TestEnvParsing(t *testing.T) {
	tests := []struct {
		desc    string
		environ []string
		check   func(*Config) bool
		wantErr []string // substrings of the error
	}{
		{desc: "float threshold", environ: []string{"RESPONSIVENESS_MEMORY_WARNING_THRESHOLD=0.7"},
			check: func(c *Config) bool { return c.Responsiveness.MemoryWarningThreshold == 0.7 }},
		{desc: "seconds as fraction", environ: []string{"RESPONSIVENESS_SLOW_REQUEST_THRESHOLD=0.5"},
			check: func(c *Config) bool { return c.Responsiveness.SlowRequestThreshold == 0.5 }},
		{desc: "seconds as duration", environ: []string{"RESPONSIVENESS_SLOW_REQUEST_THRESHOLD=250ms"},
			check: func(c *Config) bool { return c.Responsiveness.SlowRequestThreshold == 0.25 }},
		{desc: "seconds with spaces", environ: []string{"RESPONSIVENESS_MONITORING_INTERVAL= 15 "},
			check: func(c *Config) bool { return c.Responsiveness.MonitoringInterval == 15 }},
		{desc: "bool 0", environ: []string{"RESPONSIVENESS_MONITORING_ENABLED=0"},
			check: func(c *Config) bool { return !c.Responsiveness.MonitoringEnabled }},
		{desc: "bool False", environ: []string{"RESPONSIVENESS_CLEANUP_ENABLED=False"},
			check: func(c *Config) bool { return !c.Responsiveness.CleanupEnabled }},
		{desc: "bool 1", environ: []string{"RESPONSIVENESS_BACKPRESSURE_DRY_RUN=1"},
			check: func(c *Config) bool { return c.Backpressure.DryRun }},
		{desc: "int", environ: []string{"RESPONSIVENESS_MAX_CONCURRENCY=8"},
			check: func(c *Config) bool { return c.Backpressure.MaxConcurrency == 8 }},
		{desc: "rate and burst", environ: []string{"RESPONSIVENESS_RATE_LIMIT_RPS=2.5", "RESPONSIVENESS_RATE_LIMIT_BURST=5"},
			check: func(c *Config) bool { return c.Backpressure.RateLimitRPS == 2.5 && c.Backpressure.RateLimitBurst == 5 }},
		{desc: "list comma-separated, trimmed, empties dropped", environ: []string{"RESPONSIVENESS_SYSTEM_DISK_PATHS= /, /var ,,/data"},
			check: func(c *Config) bool { return reflect.DeepEqual(c.System.DiskPaths, []string{"/", "/var", "/data"}) }},
		{desc: "list of only commas is empty", environ: []string{"RESPONSIVENESS_SYSTEM_DISK_PATHS=,"},
			check: func(c *Config) bool { return len(c.System.DiskPaths) == 0 }},
		{desc: "empty value means unset", environ: []string{"RESPONSIVENESS_MONITORING_INTERVAL="},
			check: func(c *Config) bool { return c.Responsiveness.MonitoringInterval == 30 }},
		{desc: "later entry wins", environ: []string{"RESPONSIVENESS_MAX_CONCURRENCY=3", "RESPONSIVENESS_MAX_CONCURRENCY=4"},
			check: func(c *Config) bool { return c.Backpressure.MaxConcurrency == 4 }},
		{desc: "secret", environ: []string{"RESPONSIVENESS_ADMIN_TOKEN=s3cret"},
			check: func(c *Config) bool { return c.Admin.Token.Reveal() == "s3cret" }},
		{desc: "value containing =", environ: []string{"RESPONSIVENESS_ADMIN_TOKEN=a=b"},
			check: func(c *Config) bool { return c.Admin.Token.Reveal() == "a=b" }},
		{desc: "other variables ignored", environ: []string{"PATH=/bin", "responsiveness_x=1", "NOEQUALS", "RESPONSIVENESS_CONFIG_FILE="},
			check: func(c *Config) bool { return reflect.DeepEqual(c, Defaults()) }},
		{desc: "number abc", environ: []string{"RESPONSIVENESS_MONITORING_INTERVAL=abc"},
			wantErr: []string{`responsiveness.monitoring_interval (RESPONSIVENESS_MONITORING_INTERVAL): must be a number of seconds`, `got "abc"`, "from the environment"}},
		{desc: "bool maybe", environ: []string{"RESPONSIVENESS_MONITORING_ENABLED=maybe"},
			wantErr: []string{`responsiveness.monitoring_enabled (RESPONSIVENESS_MONITORING_ENABLED): must be a boolean`, `got "maybe"`}},
		{desc: "int 1.5", environ: []string{"RESPONSIVENESS_MAX_CONCURRENCY=1.5"},
			wantErr: []string{`backpressure.max_concurrency (RESPONSIVENESS_MAX_CONCURRENCY): must be an integer, got "1.5"`}},
		{desc: "NaN", environ: []string{"RESPONSIVENESS_RATE_LIMIT_RPS=NaN"},
			wantErr: []string{`backpressure.rate_limit_rps (RESPONSIVENESS_RATE_LIMIT_RPS): must be a finite number, got NaN`}},
		{desc: "Inf interval", environ: []string{"RESPONSIVENESS_MONITORING_INTERVAL=+Inf"},
			wantErr: []string{`responsiveness.monitoring_interval (RESPONSIVENESS_MONITORING_INTERVAL): must be a finite number`}},
		{desc: "unknown variable with suggestion", environ: []string{"RESPONSIVENESS_MEMORY_WARNING_THRESHOL=0.5"},
			wantErr: []string{"RESPONSIVENESS_MEMORY_WARNING_THRESHOL: unknown variable (did you mean RESPONSIVENESS_MEMORY_WARNING_THRESHOLD?)"}},
		{desc: "rule-shaped name of a product variable", environ: []string{"RESPONSIVENESS_DATABASE_DSN=x"},
			wantErr: []string{"RESPONSIVENESS_DATABASE_DSN: unknown variable (did you mean RESPONSIVENESS_DB_DSN?)"}},
		{desc: "all problems at once", environ: []string{"RESPONSIVENESS_FOO=1", "RESPONSIVENESS_MONITORING_INTERVAL=x", "RESPONSIVENESS_CPU_WARNING_THRESHOLD=0.95"},
			wantErr: []string{"RESPONSIVENESS_FOO: unknown variable", "RESPONSIVENESS_MONITORING_INTERVAL): must be", "responsiveness.cpu_warning_threshold (RESPONSIVENESS_CPU_WARNING_THRESHOLD): must be below responsiveness.cpu_critical_threshold"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cfg, err := Load(LoadOptions{Environ: tc.environ})
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want %q", tc.wantErr)
				}
				var ve *ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("error %T is not a *ValidationError: %v", err, err)
				}
				if cfg != nil {
					t.Error("a config came back with the error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error\n%s\ndoes not contain %q", err, w)
					}
				}
				if n := len(ve.Errors); n != len(strings.Split(err.Error(), "\n")) {
					t.Errorf("%d problems but %d lines", n, len(strings.Split(err.Error(), "\n")))
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !tc.check(cfg) {
				t.Errorf("unexpected config for %v", tc.environ)
			}
		})
	}
}
