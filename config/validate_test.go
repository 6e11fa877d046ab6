package config

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValidateRules(t *testing.T) {
	tests := []struct {
		desc    string
		mutate  func(c *Config)
		wantKey string // "" = valid
		want    string // substring of the problem
	}{
		// fractions and pairs
		{"fraction above 1", func(c *Config) { c.Responsiveness.MemoryWarningThreshold = 1.5 }, "responsiveness.memory_warning_threshold", "must be in (0,1], got 1.5"},
		{"fraction 0", func(c *Config) { c.Responsiveness.CPUWarningThreshold = 0 }, "responsiveness.cpu_warning_threshold", "must be in (0,1], got 0"},
		{"fraction negative", func(c *Config) { c.Thresholds.ErrorRateWarning = -0.1 }, "thresholds.error_rate_warning", "must be in (0,1]"},
		{"fraction 1 is fine", func(c *Config) { c.Thresholds.DiskCritical = 1 }, "", ""},
		{"fraction NaN", func(c *Config) { c.Responsiveness.DBConnectionCriticalThreshold = math.NaN() }, "responsiveness.db_connection_critical_threshold", "must be a finite number, got NaN"},
		{"memory warning = critical", func(c *Config) { c.Responsiveness.MemoryWarningThreshold = 0.9 }, "responsiveness.memory_warning_threshold", "must be below responsiveness.memory_critical_threshold (RESPONSIVENESS_MEMORY_CRITICAL_THRESHOLD), got 0.9 ≥ 0.9"},
		{"cpu warning > critical", func(c *Config) { c.Responsiveness.CPUCriticalThreshold = 0.5 }, "responsiveness.cpu_warning_threshold", "must be below"},
		{"db connection warning > critical", func(c *Config) { c.Responsiveness.DBConnectionWarningThreshold = 0.95 }, "responsiveness.db_connection_warning_threshold", "must be below"},
		{"disk warning > critical", func(c *Config) { c.Thresholds.DiskWarning = 0.99 }, "thresholds.disk_warning", "must be below"},
		{"error rate warning > critical", func(c *Config) { c.Thresholds.ErrorRateWarning = 0.2 }, "thresholds.error_rate_warning", "must be below"},
		{"response time warning > critical", func(c *Config) { c.Thresholds.ResponseTimeWarning = 11 }, "thresholds.response_time_warning", "must be below"},
		{"db query warning = critical", func(c *Config) { c.Thresholds.DBQueryWarning = 5 }, "thresholds.db_query_warning", "must be below"},
		{"queue warning = critical", func(c *Config) { c.Thresholds.QueueWarning = 100 }, "thresholds.queue_warning", "must be below"},
		{"queue warning 0", func(c *Config) { c.Thresholds.QueueWarning = 0 }, "thresholds.queue_warning", "must be between 1 and"},
		{"queue critical huge", func(c *Config) { c.Thresholds.QueueCritical = 1 << 40 }, "thresholds.queue_critical", "must be between 1 and 1000000"},

		// durations
		{"interval 0", func(c *Config) { c.Responsiveness.MonitoringInterval = 0 }, "responsiveness.monitoring_interval", "must be between 0.001 and 1000000000 seconds, got 0"},
		{"interval negative", func(c *Config) { c.Responsiveness.CleanupInterval = -1 }, "responsiveness.cleanup_interval", "got -1"},
		{"interval below 1 ms", func(c *Config) { c.Responsiveness.TaskHealthCheckInterval = 1e-12 }, "responsiveness.task_health_check_interval", "got 1e-12"},
		{"interval +Inf", func(c *Config) { c.Responsiveness.SlowRequestThreshold = Seconds(math.Inf(1)) }, "responsiveness.slow_request_threshold", "must be a finite number, got +Inf"},
		{"timeout NaN", func(c *Config) { c.Responsiveness.RequestTimeoutThreshold = Seconds(math.NaN()) }, "responsiveness.request_timeout_threshold", "finite"},
		{"duration too long", func(c *Config) { c.Proxy.ShutdownTimeout = 1e12 }, "proxy.shutdown_timeout", "must be between"},
		{"drain delay 0 is fine", func(c *Config) { c.Proxy.DrainDelay = 0 }, "", ""},
		{"drain delay negative", func(c *Config) { c.Proxy.DrainDelay = -1 }, "proxy.drain_delay", "must be 0 or between"},
		{"sub-millisecond timeout is fine at 1 ms", func(c *Config) { c.Proxy.ApdexThreshold = 0.001 }, "", ""},
		{"session ttl fractional", func(c *Config) { c.Actions.SessionTTL = 1.5 }, "actions.session_ttl", "whole number of seconds"},

		// URLs
		{"upstream without scheme", func(c *Config) { c.Proxy.UpstreamURL = "127.0.0.1:5000" }, "proxy.upstream_url", "must be an absolute http or https URL"},
		{"upstream ftp", func(c *Config) { c.Proxy.UpstreamURL = "ftp://x" }, "proxy.upstream_url", `got scheme "ftp"`},
		{"upstream empty", func(c *Config) { c.Proxy.UpstreamURL = "" }, "proxy.upstream_url", "must be set"},
		{"upstream no host", func(c *Config) { c.Proxy.UpstreamURL = "http:///x" }, "proxy.upstream_url", "with a host"},
		{"upstream bad port", func(c *Config) { c.Proxy.UpstreamURL = "http://h:99999" }, "proxy.upstream_url", ""},
		{"upstream https with path is fine", func(c *Config) { c.Proxy.UpstreamURL = "https://app.internal:8443/base" }, "", ""},
		{"webhook not http", func(c *Config) { c.Alerts.WebhookURL = "hooks.example.com" }, "alerts.webhook_url", "http or https"},
		{"alertmanager fine", func(c *Config) { c.Alerts.AlertmanagerURL = "http://127.0.0.1:9093" }, "", ""},
		{"cleanup url relative", func(c *Config) { c.Actions.CleanupURL = "/cleanup" }, "actions.cleanup_url", "http or https"},
		{"auth url with fragment", func(c *Config) { c.Admin.AuthURL = "http://x/auth#a" }, "admin.auth_url", "fragment"},

		// DSN and Redis
		{"dsn mysql fine", func(c *Config) { c.Database.DSN = "mysql://root@127.0.0.1:3306/test" }, "", ""},
		{"dsn postgresql fine", func(c *Config) { c.Database.DSN = "postgresql://u:p%40ss@db:5432/app?sslmode=disable" }, "", ""},
		{"dsn wrong scheme", func(c *Config) { c.Database.DSN = "redis://h:6379" }, "database.dsn", `scheme must be mysql, postgres or postgresql, got "redis"`},
		{"dsn key=value form", func(c *Config) { c.Database.DSN = "host=db user=u password=p" }, "database.dsn", "scheme must be"},
		{"dsn without host", func(c *Config) { c.Database.DSN = "mysql:///db" }, "database.dsn", "must name a host"},
		{"store dsn wrong scheme", func(c *Config) { c.Store.DSN = "sqlite:///tmp/x.db" }, "store.dsn", `scheme must be mysql, postgres or postgresql, got "sqlite"`},
		{"store dsn without host", func(c *Config) { c.Store.DSN = "postgres:///db" }, "store.dsn", "must name a host"},
		{"fleet empty", func(c *Config) { c.Fleet = "" }, "fleet", "must be set"},
		{"instance with a space", func(c *Config) { c.Instance = "web 1" }, "instance", "may hold only"},
		{"instance too long", func(c *Config) { c.Instance = strings.Repeat("a", 129) }, "instance", "at most 128 bytes"},
		{"history max routes 0", func(c *Config) { c.History.MaxRoutes = 0 }, "history.max_routes", "must be between 1"},
		{"app version too long", func(c *Config) { c.App.Version = strings.Repeat("a", 65) }, "app.version", "at most 64 bytes"},
		{"app version with a newline", func(c *Config) { c.App.Version = "v1\nX-Evil: 1" }, "app.version", "printable"},
		{"version header with a space", func(c *Config) { c.App.VersionHeader = "X App Version" }, "app.version_header", "HTTP header name"},
		{"version header with a colon", func(c *Config) { c.App.VersionHeader = "X-App-Version:" }, "app.version_header", "HTTP header name"},
		{"version header hop-by-hop", func(c *Config) { c.App.VersionHeader = "Connection" }, "app.version_header", "app's own"},
		{"dsn go-sql-driver form", func(c *Config) { c.Database.DSN = "u:p@tcp(127.0.0.1:3306)/db" }, "database.dsn", ""},
		{"redis fine", func(c *Config) { c.Redis.URL = "rediss://:pw@cache:6380/1" }, "", ""},
		{"redis unix fine", func(c *Config) { c.Redis.URL = "unix:///run/redis.sock" }, "", ""},
		{"redis unix without path", func(c *Config) { c.Redis.URL = "unix://" }, "redis.url", "socket path"},
		{"redis wrong scheme", func(c *Config) { c.Redis.URL = "http://cache:6379" }, "redis.url", `scheme must be redis, rediss or unix, got "http"`},
		{"redis no host", func(c *Config) { c.Redis.URL = "redis://" }, "redis.url", "must name a host"},

		// addresses
		{"listen addr without port", func(c *Config) { c.Proxy.ListenAddr = "8080" }, "proxy.listen_addr", "must be host:port"},
		{"listen addr bad port", func(c *Config) { c.Proxy.ListenAddr = ":http-alt" }, "proxy.listen_addr", "port must be a number"},
		{"listen addr port too big", func(c *Config) { c.Proxy.ListenAddr = ":70000" }, "proxy.listen_addr", "port must be a number 0-65535"},
		{"ipv6 admin addr fine", func(c *Config) { c.Admin.Addr = "[::1]:9901" }, "", ""},
		{"admin addr = listen addr", func(c *Config) { c.Admin.Addr = ":8080" }, "admin.addr", "must differ from proxy.listen_addr"},
		{"both on port 0 is fine", func(c *Config) { c.Admin.Addr = "127.0.0.1:0"; c.Proxy.ListenAddr = "127.0.0.1:0" }, "", ""},
		{"smtp addr without port", func(c *Config) {
			c.Alerts.Email = Email{SMTPAddr: "mail", From: "a@x.io", To: []string{"b@x.io"}, MinSeverity: "critical"}
		}, "alerts.email.smtp_addr", "must be host:port"},

		// rate limits
		{"rate 0 burst 0 is off", func(c *Config) {}, "", ""},
		{"rate 10 burst 0 is fine", func(c *Config) { c.Backpressure.RateLimitRPS = 10 }, "", ""},
		{"rate 0 burst 5", func(c *Config) { c.Backpressure.RateLimitBurst = 5 }, "backpressure.rate_limit_burst", "must be 0 while backpressure.rate_limit_rps (RESPONSIVENESS_RATE_LIMIT_RPS) is 0 (off), got 5"},
		{"rate negative", func(c *Config) { c.Backpressure.RateLimitRPS = -1 }, "backpressure.rate_limit_rps", "must be between 0 (off)"},
		{"rate NaN", func(c *Config) { c.Backpressure.RateLimitRPS = math.NaN() }, "backpressure.rate_limit_rps", "finite"},
		{"rate huge", func(c *Config) { c.Backpressure.RateLimitRPS = 1e300 }, "backpressure.rate_limit_rps", "got 1e+300"},
		{"burst negative", func(c *Config) { c.Backpressure.RateLimitRPS = 1; c.Backpressure.RateLimitBurst = -1 }, "backpressure.rate_limit_burst", "must be between 0 and"},
		{"per-client burst without rate", func(c *Config) { c.Backpressure.PerClientBurst = 2 }, "backpressure.per_client_burst", "must be 0 while backpressure.per_client_rps"},
		{"per-client max clients 0", func(c *Config) { c.Backpressure.PerClientMaxClients = 0 }, "backpressure.per_client_max_clients", "must be between 1"},

		// backpressure
		{"max concurrency negative", func(c *Config) { c.Backpressure.MaxConcurrency = -1 }, "backpressure.max_concurrency", "must be between 0 and"},
		{"adaptive min > max", func(c *Config) { c.Backpressure.Adaptive.MinLimit = 600 }, "backpressure.adaptive.min_limit", "must not exceed backpressure.adaptive.max_limit"},
		{"adaptive min = max fine", func(c *Config) { c.Backpressure.Adaptive.MinLimit = 512 }, "", ""},
		{"adaptive min 0", func(c *Config) { c.Backpressure.Adaptive.MinLimit = 0 }, "backpressure.adaptive.min_limit", "must be between 1"},
		{"headroom 0", func(c *Config) { c.Backpressure.Adaptive.Headroom = 0 }, "backpressure.adaptive.headroom", "must be in (0,10]"},
		{"shed fraction 0", func(c *Config) { c.Backpressure.ShedFraction = 0 }, "backpressure.shed_fraction", "must be in (0,1]"},
		{"shed signal unknown", func(c *Config) { c.Backpressure.ShedSignals = []string{"memory", "disk"} }, "backpressure.shed_signals", `must be one of memory, cpu, db_connections, redis_evicting, error_rate, response_time, got "disk"`},
		{"shed signals empty fine", func(c *Config) { c.Backpressure.ShedSignals = nil }, "", ""},
		{"shed fraction 1 fine", func(c *Config) { c.Backpressure.ShedFraction = 1 }, "", ""},
		{"critical route without slash", func(c *Config) { c.Backpressure.CriticalRoutes = []string{"checkout"} }, "backpressure.critical_routes", `item 1 must start with "/", got "checkout"`},
		{"route in both lists", func(c *Config) {
			c.Backpressure.CriticalRoutes = []string{"/a"}
			c.Backpressure.LowPriorityRoutes = []string{"/a"}
		}, "backpressure.low_priority_routes", "also in backpressure.critical_routes"},
		{"route pattern without slash", func(c *Config) { c.Proxy.RoutePatterns = []string{"/ok", "users/<id>"} }, "proxy.route_patterns", "item 2 must start with"},
		{"route pattern repeated", func(c *Config) { c.Proxy.RoutePatterns = []string{"/a", "/a"} }, "proxy.route_patterns", "item 2 repeats"},
		{"max routes 0", func(c *Config) { c.Proxy.MaxRoutes = 0 }, "proxy.max_routes", "must be between 1 and 100000"},
		{"slow request ring huge", func(c *Config) { c.Proxy.SlowRequestRing = 1 << 50 }, "proxy.slow_request_ring", "must be between 1 and 100000"},
		{"max idle conns 0", func(c *Config) { c.Proxy.MaxIdleConnsPerHost = 0 }, "proxy.max_idle_conns_per_host", "must be between 1"},
		{"max header bytes tiny", func(c *Config) { c.Proxy.MaxHeaderBytes = 10 }, "proxy.max_header_bytes", "must be between 1024"},

		// enumerations and email
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level", `must be one of debug, info, warn, error, got "verbose"`},
		{"log format", func(c *Config) { c.Log.Format = "text" }, "log.format", "must be one of json, console"},
		{"min severity", func(c *Config) { c.Alerts.Email.MinSeverity = "info" }, "alerts.email.min_severity", "must be one of warning, critical"},
		{"email without from and to", func(c *Config) { c.Alerts.Email.SMTPAddr = "127.0.0.1:25" }, "alerts.email.from", "must be set when alerts.email.smtp_addr is set"},
		{"email bad recipient", func(c *Config) {
			c.Alerts.Email = Email{SMTPAddr: "127.0.0.1:25", From: "a@x.io", To: []string{"not an address"}, MinSeverity: "critical"}
		}, "alerts.email.to", "item 1 must be an email address"},
		{"email fine", func(c *Config) {
			c.Alerts.Email = Email{SMTPAddr: "127.0.0.1:25", From: "Pulsegate <a@x.io>", To: []string{"b@x.io"}, Username: "u", Password: "p", MinSeverity: "warning"}
		}, "", ""},
		{"email password without username", func(c *Config) { c.Alerts.Email.Password = "p" }, "alerts.email.username", "must be set when alerts.email.password is set"},
		{"resolve margin 1", func(c *Config) { c.Alerts.ResolveMargin = 1 }, "alerts.resolve_margin", "must be in [0,1)"},
		{"history size 0", func(c *Config) { c.Alerts.HistorySize = 0 }, "alerts.history_size", "must be between 1"},
		{"retries too many", func(c *Config) { c.Alerts.Retries = 1000 }, "alerts.retries", "must be between 0 and 100"},

		// admin, system, misc
		{"token with newline", func(c *Config) { c.Admin.Token = "abc\ndef" }, "admin.token", "must not contain spaces or control characters"},
		{"allowed host with slash", func(c *Config) { c.Admin.AllowedHosts = []string{"http://x"} }, "admin.allowed_hosts", "item 1 must be a host name"},
		{"disk path relative", func(c *Config) { c.System.DiskPaths = []string{"data"} }, "system.disk_paths", "item 1 must be an absolute path"},
		{"cgroup root empty", func(c *Config) { c.System.CgroupRoot = "" }, "system.cgroup_root", "must be set"},
		{"proc root relative", func(c *Config) { c.System.ProcRoot = "proc" }, "system.proc_root", "must be an absolute path"},
		{"queue key empty", func(c *Config) { c.Redis.QueueKeys = []string{"rq:queue:default", " "} }, "redis.queue_keys", "item 2 is empty"},
		{"scan budget 0", func(c *Config) { c.Redis.ScanBudget = 0 }, "redis.scan_budget", "must be between 1"},
		{"app pool size negative", func(c *Config) { c.Database.AppPoolSize = -1 }, "database.app_pool_size", "must be between 0"},
		{"data dir empty", func(c *Config) { c.DataDir = "" }, "data_dir", "must be set"},
		{"session repair max 0", func(c *Config) { c.Actions.SessionRepairMax = 0 }, "actions.session_repair_max", "must be between 1"},
	}
	env := envByKey()
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c := Defaults()
			tc.mutate(c)
			err := c.Validate()
			if tc.wantKey == "" {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a *ValidationError for %s, got %v", tc.wantKey, err)
			}
			found := false
			for _, fe := range ve.Errors {
				if fe.Env != env[fe.Key] || fe.Key == "" {
					t.Errorf("problem %q names key %q with variable %q, want %q", fe.Problem, fe.Key, fe.Env, env[fe.Key])
				}
				if fe.Key == tc.wantKey && strings.Contains(fe.Problem, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("want a problem on %s containing %q, got:\n%v", tc.wantKey, tc.want, err)
			}
			line := tc.wantKey + " (" + env[tc.wantKey] + "): "
			if !strings.Contains(err.Error(), line) {
				t.Errorf("error lines do not start with %q:\n%v", line, err)
			}
		})
	}
}

// TestValidateReportsEveryProblemAtOnce: one pass, one line per problem.
func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	c := Defaults()
	c.Responsiveness.MemoryWarningThreshold = 1.5
	c.Responsiveness.MonitoringInterval = 0
	c.Proxy.UpstreamURL = "ftp://x"
	c.Backpressure.RateLimitBurst = 3
	c.Log.Level = "loud"
	err := c.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v", err)
	}
	if len(ve.Errors) != 5 {
		t.Errorf("%d problems, want 5:\n%v", len(ve.Errors), err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 5 {
		t.Errorf("%d lines, want 5", len(lines))
	}
	want := "responsiveness.memory_warning_threshold (RESPONSIVENESS_MEMORY_WARNING_THRESHOLD): must be in (0,1], got 1.5"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("missing %q in\n%v", want, err)
	}
}

// BenchmarkValidate measures one validation pass of the defaults (Patch runs
// one per config POST).
func BenchmarkValidate(b *testing.B) {
	c := Defaults()
	for b.Loop() {
		if err := c.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEffectiveBurst(t *testing.T) {
	tests := []struct {
		desc  string
		rps   float64
		burst int
		want  int
	}{
		{"off", 0, 0, 0},
		{"set burst wins", 10, 3, 3},
		{"default is ceil(rps)", 2.5, 0, 3},
		{"at least 1", 0.1, 0, 1},
		{"NaN is off", math.NaN(), 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := EffectiveBurst(tc.rps, tc.burst); got != tc.want {
				t.Errorf("EffectiveBurst(%v, %d) = %d, want %d", tc.rps, tc.burst, got, tc.want)
			}
		})
	}
	b := Backpressure{RateLimitRPS: 4.2, PerClientRPS: 1, PerClientBurst: 7}
	if b.GlobalBurst() != 5 || b.ClientBurst() != 7 {
		t.Errorf("GlobalBurst %d ClientBurst %d, want 5 and 7", b.GlobalBurst(), b.ClientBurst())
	}
}

func TestValidateRejectsInvalidUTF8(t *testing.T) {
	c := Defaults()
	c.Redis.SessionPrefix = "s\x80"
	c.Admin.Token = "t\xff"
	c.Backpressure.CriticalRoutes = []string{"/ok", "/\xc3"}
	err := c.Validate()
	for _, want := range []string{
		"redis.session_prefix (RESPONSIVENESS_REDIS_SESSION_PREFIX): must be valid UTF-8 text",
		"admin.token (RESPONSIVENESS_ADMIN_TOKEN): must be valid UTF-8 text",
		"backpressure.critical_routes (RESPONSIVENESS_BACKPRESSURE_CRITICAL_ROUTES): item 2 must be valid UTF-8 text",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}
