package config

import (
	"slices"
	"strings"
)

// EnvPrefix starts every environment variable pulsegate reads.
const EnvPrefix = "RESPONSIVENESS_"

// EnvConfigFile names the YAML file to load when LoadOptions.File is empty.
// It is the one RESPONSIVENESS_* variable that is not a configuration key.
const EnvConfigFile = "RESPONSIVENESS_CONFIG_FILE"

// EnvVar describes one environment variable: which configuration key it
// sets, its default (as text: lists comma-separated, secrets empty), whether
// it holds a secret, and a one-line description.
type EnvVar struct {
	// Name is the variable, e.g. RESPONSIVENESS_MEMORY_WARNING_THRESHOLD.
	Name string
	// Key is the koanf/YAML/JSON key, e.g. responsiveness.memory_warning_threshold.
	Key string
	// Default is the default value as it would be written in the environment.
	Default string
	// Secret is true for values that are redacted on output (DSN, tokens, passwords).
	Secret bool
	// Doc says what the setting does, with its unit.
	Doc string
}

// envEntry is one row of the explicit table below.
type envEntry struct{ name, key, doc string }

// envTable maps every configuration key to its environment variable.
//
// The names promised by the product and issue 2 are kept exactly (the 14
// ResponsivenessConfig fields drop their section; thresholds are
// RESPONSIVENESS_<SIGNAL>_<LEVEL>_THRESHOLD; and RESPONSIVENESS_UPSTREAM_URL,
// _LISTEN_ADDR, _DB_DSN, _MAX_CONCURRENCY, _RATE_LIMIT_RPS, _RATE_LIMIT_BURST).
// Every other key follows one rule: RESPONSIVENESS_ + the key upper-cased
// with dots turned into underscores (proxy.drain_delay →
// RESPONSIVENESS_PROXY_DRAIN_DELAY). The tests check both, and that the
// table covers every leaf field of Config exactly once.
var envTable = []envEntry{
	// responsiveness: the product's ResponsivenessConfig.
	{"RESPONSIVENESS_MONITORING_ENABLED", "responsiveness.monitoring_enabled", "Run the background probes (system, database, Redis)."},
	{"RESPONSIVENESS_MONITORING_INTERVAL", "responsiveness.monitoring_interval", "Probe interval, seconds."},
	{"RESPONSIVENESS_MEMORY_WARNING_THRESHOLD", "responsiveness.memory_warning_threshold", "Memory warning level, fraction of the container (or host) memory limit."},
	{"RESPONSIVENESS_MEMORY_CRITICAL_THRESHOLD", "responsiveness.memory_critical_threshold", "Memory critical level, fraction of the memory limit."},
	{"RESPONSIVENESS_CPU_WARNING_THRESHOLD", "responsiveness.cpu_warning_threshold", "CPU warning level, fraction of the CPU quota (or host CPUs)."},
	{"RESPONSIVENESS_CPU_CRITICAL_THRESHOLD", "responsiveness.cpu_critical_threshold", "CPU critical level, fraction of the CPU quota."},
	{"RESPONSIVENESS_DB_CONNECTION_WARNING_THRESHOLD", "responsiveness.db_connection_warning_threshold", "Database connections in use ÷ max_connections: warning level."},
	{"RESPONSIVENESS_DB_CONNECTION_CRITICAL_THRESHOLD", "responsiveness.db_connection_critical_threshold", "Database connections in use ÷ max_connections: critical level."},
	{"RESPONSIVENESS_CLEANUP_ENABLED", "responsiveness.cleanup_enabled", "Run the periodic cleanup hook (actions.cleanup_url)."},
	{"RESPONSIVENESS_CLEANUP_INTERVAL", "responsiveness.cleanup_interval", "Period of the cleanup hook, seconds."},
	{"RESPONSIVENESS_SLOW_REQUEST_THRESHOLD", "responsiveness.slow_request_threshold", "A request taking at least this long is slow (logged as slow_request), seconds."},
	{"RESPONSIVENESS_REQUEST_TIMEOUT_THRESHOLD", "responsiveness.request_timeout_threshold", "Upstream response-header timeout (504 past it), seconds."},
	{"RESPONSIVENESS_TASK_MONITORING_ENABLED", "responsiveness.task_monitoring_enabled", "Track the health of background tasks."},
	{"RESPONSIVENESS_TASK_HEALTH_CHECK_INTERVAL", "responsiveness.task_health_check_interval", "How often background-task health is evaluated, seconds."},

	// proxy
	{"RESPONSIVENESS_UPSTREAM_URL", "proxy.upstream_url", "The app (http or https URL) that receives the proxied traffic."},
	{"RESPONSIVENESS_LISTEN_ADDR", "proxy.listen_addr", "Proxy listener (host:port) that takes the app's traffic."},
	{"RESPONSIVENESS_PROXY_DRAIN_DELAY", "proxy.drain_delay", "After SIGTERM, /readyz is 503 and the proxy keeps serving this long before shutting down, seconds (0 = no delay)."},
	{"RESPONSIVENESS_PROXY_SHUTDOWN_TIMEOUT", "proxy.shutdown_timeout", "Longest graceful shutdown after the drain delay, seconds."},
	{"RESPONSIVENESS_PROXY_UPSTREAM_IDLE_TIMEOUT", "proxy.upstream_idle_timeout", "Idle upstream connections close after this, seconds; keep it below the app server's keep-alive (gunicorn: 2)."},
	{"RESPONSIVENESS_PROXY_MAX_IDLE_CONNS_PER_HOST", "proxy.max_idle_conns_per_host", "Upstream keep-alive pool size."},
	{"RESPONSIVENESS_PROXY_MAX_CONNS_PER_HOST", "proxy.max_conns_per_host", "Cap on connections to the app (0 = unlimited); set to the app's workers × threads to bound memory."},
	{"RESPONSIVENESS_PROXY_READ_HEADER_TIMEOUT", "proxy.read_header_timeout", "Longest time to read a client's request headers, seconds."},
	{"RESPONSIVENESS_PROXY_CLIENT_BODY_TIMEOUT", "proxy.client_body_timeout", "Longest pause while a client sends a request body before 408, seconds."},
	{"RESPONSIVENESS_PROXY_CLIENT_IDLE_TIMEOUT", "proxy.client_idle_timeout", "Idle client keep-alive connections close after this, seconds."},
	{"RESPONSIVENESS_PROXY_MAX_HEADER_BYTES", "proxy.max_header_bytes", "Largest request header block, bytes (431 past it)."},
	{"RESPONSIVENESS_PROXY_ROUTE_PATTERNS", "proxy.route_patterns", "The app's URL rules for route labels, e.g. /users/<id>/posts (comma-separated)."},
	{"RESPONSIVENESS_PROXY_TRUSTED_PROXIES", "proxy.trusted_proxies", "Peers (IPs or CIDRs, comma-separated) whose X-Forwarded-* headers are kept and extended, e.g. the ingress; empty = trust none."},
	{"RESPONSIVENESS_PROXY_MAX_ROUTES", "proxy.max_routes", "Most distinct route labels; further routes are counted as \"other\"."},
	{"RESPONSIVENESS_PROXY_APDEX_THRESHOLD", "proxy.apdex_threshold", "Apdex T, seconds."},
	{"RESPONSIVENESS_PROXY_SLOW_REQUEST_RING", "proxy.slow_request_ring", "How many recent slow requests are kept for the API."},

	// admin
	{"RESPONSIVENESS_ADMIN_ADDR", "admin.addr", "Admin listener (host:port): /healthz, /readyz, /metrics and the admin API."},
	{"RESPONSIVENESS_ADMIN_TOKEN", "admin.token", "Bearer token required on admin routes when set; without it admin reads are loopback-only and writes are refused."},
	{"RESPONSIVENESS_ADMIN_ALLOWED_HOSTS", "admin.allowed_hosts", "Extra Host header values accepted on the admin listener (comma-separated)."},
	{"RESPONSIVENESS_ADMIN_AUTH_URL", "admin.auth_url", "Delegate admin auth to this app URL (Cookie and Authorization forwarded; 2xx allows)."},
	{"RESPONSIVENESS_ADMIN_AUTH_TIMEOUT", "admin.auth_timeout", "Timeout of the delegated auth call, seconds."},
	{"RESPONSIVENESS_ADMIN_AUTH_CACHE_TTL", "admin.auth_cache_ttl", "How long a delegated auth answer is cached per credential, seconds (0 = no cache)."},

	// thresholds
	{"RESPONSIVENESS_DISK_WARNING_THRESHOLD", "thresholds.disk_warning", "Disk warning level, used fraction of the fullest watched path."},
	{"RESPONSIVENESS_DISK_CRITICAL_THRESHOLD", "thresholds.disk_critical", "Disk critical level, used fraction."},
	{"RESPONSIVENESS_QUEUE_WARNING_THRESHOLD", "thresholds.queue_warning", "Request queue warning level, queued requests."},
	{"RESPONSIVENESS_QUEUE_CRITICAL_THRESHOLD", "thresholds.queue_critical", "Request queue critical level, queued requests (the bound is backpressure.queue_size)."},
	{"RESPONSIVENESS_ERROR_RATE_WARNING_THRESHOLD", "thresholds.error_rate_warning", "Error rate warning level, fraction of requests (1-minute window)."},
	{"RESPONSIVENESS_ERROR_RATE_CRITICAL_THRESHOLD", "thresholds.error_rate_critical", "Error rate critical level, fraction of requests."},
	{"RESPONSIVENESS_RESPONSE_TIME_WARNING_THRESHOLD", "thresholds.response_time_warning", "Average response time warning level, seconds (1-minute window)."},
	{"RESPONSIVENESS_RESPONSE_TIME_CRITICAL_THRESHOLD", "thresholds.response_time_critical", "Average response time critical level, seconds."},
	{"RESPONSIVENESS_DB_QUERY_WARNING_THRESHOLD", "thresholds.db_query_warning", "Database query time (the probe's SELECT 1 round trip) warning level, seconds."},
	{"RESPONSIVENESS_DB_QUERY_CRITICAL_THRESHOLD", "thresholds.db_query_critical", "Database query time critical level, seconds."},
	{"RESPONSIVENESS_THRESHOLDS_REDIS_LATENCY_WARNING", "thresholds.redis_latency_warning", "Redis PING round trip warning level, seconds."},
	{"RESPONSIVENESS_THRESHOLDS_REDIS_LATENCY_CRITICAL", "thresholds.redis_latency_critical", "Redis PING round trip critical level, seconds."},
	{"RESPONSIVENESS_THRESHOLDS_JOB_QUEUE_WARNING", "thresholds.job_queue_warning", "Job-queue warning level: jobs in the deepest of redis.queue_keys."},
	{"RESPONSIVENESS_THRESHOLDS_JOB_QUEUE_CRITICAL", "thresholds.job_queue_critical", "Job-queue critical level, jobs."},
	{"RESPONSIVENESS_THRESHOLDS_APDEX_WARNING", "thresholds.apdex_warning", "Apdex warning level: a 1-minute score at or below it is a warning (0..1, bad below)."},
	{"RESPONSIVENESS_THRESHOLDS_APDEX_CRITICAL", "thresholds.apdex_critical", "Apdex critical level: a 1-minute score at or below it is critical; below the warning level."},

	// database
	{"RESPONSIVENESS_DB_DSN", "database.dsn", "Database to probe: mysql://user:pass@host:3306/db or postgres://user:pass@host:5432/db (percent-encode @ # % : in the password). Unset = probe off."},
	{"RESPONSIVENESS_DATABASE_PROBE_TIMEOUT", "database.probe_timeout", "Bound of one database probe (connect and queries), seconds."},
	{"RESPONSIVENESS_DATABASE_LEAK_AGE", "database.leak_age", "Connections idle longer than this are leak suspects, seconds."},
	{"RESPONSIVENESS_DATABASE_IDLE_IN_TRANSACTION_WARNING", "database.idle_in_transaction_warning", "A transaction idle this long is a warning, seconds."},
	{"RESPONSIVENESS_DATABASE_APP_POOL_SIZE", "database.app_pool_size", "The app's own pool size (SQLAlchemy pool_size + max_overflow); 0 = unknown."},
	{"RESPONSIVENESS_DATABASE_LONG_QUERY_THRESHOLD", "database.long_query_threshold", "A query running longer than this is a long query (db_long_queries), seconds."},
	{"RESPONSIVENESS_DATABASE_APP_USER", "database.app_user", "Count only this database user's connections as the app's pool; empty = every user but the probe's."},

	// redis
	{"RESPONSIVENESS_REDIS_URL", "redis.url", "Redis to probe: redis://[user:pass@]host:6379/0, rediss://… or unix:///path.sock. Unset = probe off."},
	{"RESPONSIVENESS_REDIS_SESSION_PREFIX", "redis.session_prefix", "Key prefix of the app's sessions."},
	{"RESPONSIVENESS_REDIS_QUEUE_KEYS", "redis.queue_keys", "Job-queue list keys whose depth is watched, e.g. rq:queue:default (comma-separated)."},
	{"RESPONSIVENESS_REDIS_SCAN_BUDGET", "redis.scan_budget", "Most keys SCAN visits per probe."},
	{"RESPONSIVENESS_REDIS_PROBE_TIMEOUT", "redis.probe_timeout", "Bound of one Redis probe, seconds."},

	// system
	{"RESPONSIVENESS_SYSTEM_DISK_PATHS", "system.disk_paths", "Mount points whose usage is watched (comma-separated absolute paths)."},
	{"RESPONSIVENESS_SYSTEM_CGROUP_ROOT", "system.cgroup_root", "Where cgroupfs is mounted."},
	{"RESPONSIVENESS_SYSTEM_PROC_ROOT", "system.proc_root", "Where procfs is mounted."},
	{"RESPONSIVENESS_SYSTEM_APP_PROCESS_NAMES", "system.app_process_names", "Process names of the app (e.g. gunicorn) whose memory is reported; empty = off (comma-separated)."},
	{"RESPONSIVENESS_SYSTEM_APP_PID_FILE", "system.app_pid_file", "PID file of the app's master process; empty = off."},

	// backpressure
	{"RESPONSIVENESS_MAX_CONCURRENCY", "backpressure.max_concurrency", "Most requests in flight to the app; the rest queue. 0 = no fixed limit."},
	{"RESPONSIVENESS_BACKPRESSURE_QUEUE_SIZE", "backpressure.queue_size", "Most requests waiting for a concurrency slot; one more gets 503 at once (0 = none wait)."},
	{"RESPONSIVENESS_BACKPRESSURE_QUEUE_TIMEOUT", "backpressure.queue_timeout", "Longest wait for a concurrency slot before 503, seconds."},
	{"RESPONSIVENESS_RATE_LIMIT_RPS", "backpressure.rate_limit_rps", "Global rate limit, requests per second; 0 = off."},
	{"RESPONSIVENESS_RATE_LIMIT_BURST", "backpressure.rate_limit_burst", "Global burst; 0 = max(1, ceil(rps)). Must be 0 while the rate limit is off."},
	{"RESPONSIVENESS_BACKPRESSURE_PER_CLIENT_RPS", "backpressure.per_client_rps", "Per-client (socket peer) rate limit, requests per second; 0 = off."},
	{"RESPONSIVENESS_BACKPRESSURE_PER_CLIENT_BURST", "backpressure.per_client_burst", "Per-client burst; 0 = max(1, ceil(per_client_rps)). Must be 0 while per-client limiting is off."},
	{"RESPONSIVENESS_BACKPRESSURE_PER_CLIENT_MAX_CLIENTS", "backpressure.per_client_max_clients", "Most clients tracked by the per-client limiter."},
	{"RESPONSIVENESS_BACKPRESSURE_ADAPTIVE_ENABLED", "backpressure.adaptive.enabled", "Turn on the adaptive (gradient) concurrency limiter."},
	{"RESPONSIVENESS_BACKPRESSURE_ADAPTIVE_MIN_LIMIT", "backpressure.adaptive.min_limit", "Lowest adaptive concurrency limit."},
	{"RESPONSIVENESS_BACKPRESSURE_ADAPTIVE_MAX_LIMIT", "backpressure.adaptive.max_limit", "Highest adaptive concurrency limit."},
	{"RESPONSIVENESS_BACKPRESSURE_ADAPTIVE_MIN_RTT_INTERVAL", "backpressure.adaptive.min_rtt_interval", "How often the minimum RTT is re-sampled (jittered), seconds."},
	{"RESPONSIVENESS_BACKPRESSURE_ADAPTIVE_HEADROOM", "backpressure.adaptive.headroom", "Latency tolerated above the minimum RTT before the limit shrinks, fraction of the minimum RTT."},
	{"RESPONSIVENESS_BACKPRESSURE_SHEDDING_ENABLED", "backpressure.shedding_enabled", "Shed new requests under critical pressure (memory, CPU, DB connections, Redis, error rate, response time)."},
	{"RESPONSIVENESS_BACKPRESSURE_SHED_FRACTION", "backpressure.shed_fraction", "Fraction of new requests shed at critical pressure."},
	{"RESPONSIVENESS_BACKPRESSURE_SHED_SIGNALS", "backpressure.shed_signals", "Pressure signals that shed load when critical (comma-separated): memory, cpu, db_connections, redis_evicting, error_rate, response_time."},
	{"RESPONSIVENESS_BACKPRESSURE_SHED_HOLD", "backpressure.shed_hold", "Pressure must stay below critical this long before shedding stops (below warning for low-priority shedding), seconds."},
	{"RESPONSIVENESS_BACKPRESSURE_DRY_RUN", "backpressure.dry_run", "Limiters count and log would-be rejections but reject nothing."},
	{"RESPONSIVENESS_BACKPRESSURE_CRITICAL_ROUTES", "backpressure.critical_routes", "Path prefixes never shed or rate limited (comma-separated)."},
	{"RESPONSIVENESS_BACKPRESSURE_LOW_PRIORITY_ROUTES", "backpressure.low_priority_routes", "Path prefixes shed first, already at warning (comma-separated)."},

	// alerts
	{"RESPONSIVENESS_ALERTS_MIN_DURATION", "alerts.min_duration", "A condition must hold this long before its alert fires, seconds (0 = next evaluation)."},
	{"RESPONSIVENESS_ALERTS_RESOLVE_MARGIN", "alerts.resolve_margin", "A firing alert resolves only below threshold × (1 − margin)."},
	{"RESPONSIVENESS_ALERTS_HISTORY_SIZE", "alerts.history_size", "Most alerts kept in the persisted history."},
	{"RESPONSIVENESS_ALERTS_EMAIL_SMTP_ADDR", "alerts.email.smtp_addr", "SMTP server (host:port) for alert mail; empty = email off."},
	{"RESPONSIVENESS_ALERTS_EMAIL_FROM", "alerts.email.from", "Sender address of alert mail."},
	{"RESPONSIVENESS_ALERTS_EMAIL_TO", "alerts.email.to", "Recipients of alert mail (comma-separated)."},
	{"RESPONSIVENESS_ALERTS_EMAIL_USERNAME", "alerts.email.username", "SMTP username (PLAIN auth); empty = no auth."},
	{"RESPONSIVENESS_ALERTS_EMAIL_PASSWORD", "alerts.email.password", "SMTP password."},
	{"RESPONSIVENESS_ALERTS_EMAIL_MIN_SEVERITY", "alerts.email.min_severity", "Lowest severity mailed: warning or critical."},
	{"RESPONSIVENESS_ALERTS_WEBHOOK_URL", "alerts.webhook_url", "Alerts are POSTed as JSON to this URL when set."},
	{"RESPONSIVENESS_ALERTS_ALERTMANAGER_URL", "alerts.alertmanager_url", "Alertmanager base URL (alerts go to /api/v2/alerts) when set."},
	{"RESPONSIVENESS_ALERTS_TIMEOUT", "alerts.timeout", "Bound of one alert delivery attempt, seconds."},
	{"RESPONSIVENESS_ALERTS_RETRIES", "alerts.retries", "Retries (with backoff) of a failed alert delivery."},
	{"RESPONSIVENESS_ALERT_RUNBOOK_BASE_URL", "alerts.runbook_base_url", "Base URL of the runbooks: alerts carry runbook_url = base/<rule>.md; empty = none."},

	// actions
	{"RESPONSIVENESS_ACTIONS_DRY_RUN", "actions.dry_run", "Automated actions log what they would do and do nothing."},
	{"RESPONSIVENESS_ACTIONS_CLEANUP_URL", "actions.cleanup_url", "App URL POSTed on memory warning/critical and every cleanup interval; empty = off."},
	{"RESPONSIVENESS_ACTIONS_CLEANUP_TIMEOUT", "actions.cleanup_timeout", "Bound of the cleanup POST, seconds."},
	{"RESPONSIVENESS_ACTIONS_COOLDOWN", "actions.cooldown", "Least time between two runs of one action, seconds."},
	{"RESPONSIVENESS_ACTIONS_RECYCLE_CONNECTIONS", "actions.recycle_connections", "Close idle upstream connections when errors spike."},
	{"RESPONSIVENESS_ACTIONS_SESSION_TTL_REPAIR", "actions.session_ttl_repair", "Give TTL-less session keys actions.session_ttl (never deletes)."},
	{"RESPONSIVENESS_ACTIONS_SESSION_TTL", "actions.session_ttl", "TTL given to TTL-less session keys, whole seconds."},
	{"RESPONSIVENESS_ACTIONS_SESSION_REPAIR_MAX", "actions.session_repair_max", "Most session keys repaired per probe."},
	{"RESPONSIVENESS_ACTIONS_READINESS_ON_OVERLOAD", "actions.readiness_on_overload", "Fail /readyz during sustained overload so traffic goes to other pods."},

	// log
	{"RESPONSIVENESS_LOG_LEVEL", "log.level", "Log level: debug, info, warn or error."},
	{"RESPONSIVENESS_LOG_FORMAT", "log.format", "Log format: json or console."},

	// runtime (read at start)
	{"RESPONSIVENESS_RUNTIME_MEMORY_LIMIT_SHARE", "runtime.memory_limit_share", "Share of the container memory limit used as Go's soft memory limit (GOMEMLIMIT in the environment wins). Read at start."},
	{"RESPONSIVENESS_RUNTIME_MEMORY_LIMIT_DEFAULT_MIB", "runtime.memory_limit_default_mib", "Go's soft memory limit outside a memory-limited container, MiB; 0 = none. Read at start."},
	{"RESPONSIVENESS_RUNTIME_MAX_PROCS", "runtime.max_procs", "GOMAXPROCS when no CPU limit is set (GOMAXPROCS in the environment wins; with a CPU limit Go follows it); 0 = every CPU. Read at start."},
	{"RESPONSIVENESS_RUNTIME_MAX_CLIENT_CONNECTIONS", "runtime.max_client_connections", "Cap on open client connections (the longest-idle keep-alive one is closed to make room); 0 = what fits in the container's memory budget (none outside containers); -1 = none. Read at start."},
	{"RESPONSIVENESS_RUNTIME_GC_HEADROOM_MIB", "runtime.gc_headroom_mib", "MiB the heap may grow between collections before GOGC is lowered (to 50 at most): with many busy connections the live heap plus stacks exceed it; below it GOGC stays 100. 0 = GOGC fixed; a GOGC in the environment wins. Read at start."},

	{"RESPONSIVENESS_DATA_DIR", "data_dir", "Directory of the embedded store (alert history, acknowledgements, audit log)."},
	{"RESPONSIVENESS_STORE_DSN", "store.dsn", "Shared store for several replicas: mysql://user:pass@host:3306/db or postgres://user:pass@host:5432/db (percent-encode @ # % : in the password). Unset = the embedded store in data_dir."},
	{"RESPONSIVENESS_INSTANCE", "instance", "This sidecar's name in the fleet (logs, fleet answers). Empty = the host name (the pod name under Kubernetes)."},
	{"RESPONSIVENESS_FLEET", "fleet", "Name of the group of sidecars sharing one store; sidecars of different apps may share a database under different fleet names."},
	{"RESPONSIVENESS_HISTORY_RETENTION_10S", "history.retention_10s", "How long the 10-second trend points are kept in <data_dir>/history.db, seconds (at least 60, at most retention_1m)."},
	{"RESPONSIVENESS_HISTORY_RETENTION_1M", "history.retention_1m", "How long the 1-minute trend rollups (and, with store.dsn, the fleet's minute rows in the shared store) are kept, seconds (at least 3600, at most retention_1h)."},
	{"RESPONSIVENESS_HISTORY_RETENTION_1H", "history.retention_1h", "How long the 1-hour trend rollups (and, with store.dsn, the fleet's hour rows in the shared store) are kept, seconds (at least 3600, at most 10 years)."},
	{"RESPONSIVENESS_HISTORY_MAX_ROUTES", "history.max_routes", "How many routes (the busiest of each minute) get per-route rollups in history.db; the rest are added to \"other\". Disk use grows with it (docs/history.md)."},
	{"RESPONSIVENESS_APP_VERSION", "app.version", "The app's version (e.g. the image tag), recorded with every request for the per-route history and the release comparison; empty = unknown. A version sent in app.version_header wins."},
	{"RESPONSIVENESS_APP_VERSION_HEADER", "app.version_header", "Response header the app sets to its version, e.g. X-App-Version: read by the proxy, forwarded unchanged; empty = only app.version."},
}

// EnvVars returns the environment table: one entry per configuration key,
// in the order of the Config struct, with defaults taken from Defaults().
// Docs, deploy tests and check-config read it; it is the single source of
// variable names.
func EnvVars() []EnvVar {
	fields := configFields()
	byKey := make(map[string]field, len(fields))
	for _, f := range fields {
		byKey[f.key] = f
	}
	def := Defaults()
	out := make([]EnvVar, 0, len(envTable))
	for _, e := range envTable {
		f, ok := byKey[e.key]
		ev := EnvVar{Name: e.name, Key: e.key, Doc: e.doc}
		if ok {
			ev.Default = f.format(def)
			ev.Secret = f.kind == kindSecret
			if ev.Secret {
				ev.Default = ""
			}
		}
		out = append(out, ev)
	}
	return out
}

// envByKey maps a configuration key to its variable name.
func envByKey() map[string]string {
	out := make(map[string]string, len(envTable))
	for _, e := range envTable {
		out[e.key] = e.name
	}
	return out
}

// ruleEnvName is the regular variable name of a key:
// RESPONSIVENESS_ + the key upper-cased with dots as underscores.
func ruleEnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// parseEnviron picks the RESPONSIVENESS_* entries out of environ (entries
// like os.Environ's "NAME=value"; a later entry for the same name wins).
// It returns a map from configuration key to the raw string and one
// FieldError per unknown RESPONSIVENESS_* variable (RESPONSIVENESS_CONFIG_FILE
// excepted). An empty value counts as unset, so templated env files can
// leave a line blank.
func parseEnviron(environ []string) (values map[string]any, errs []FieldError) {
	keyOf := make(map[string]string, len(envTable))
	for _, e := range envTable {
		keyOf[e.name] = e.key
	}
	values = map[string]any{}
	unknown := map[string]bool{}
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || name == EnvConfigFile {
			continue
		}
		key, known := keyOf[name]
		if !known {
			unknown[name] = true
			continue
		}
		if val == "" {
			delete(values, key)
			continue
		}
		values[key] = val
	}
	names := make([]string, 0, len(unknown))
	for n := range unknown {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		errs = append(errs, FieldError{Env: n, Problem: "unknown variable" + suggestEnv(n)})
	}
	return values, errs
}

// suggestEnv proposes the nearest known variable for a typo, or "".
func suggestEnv(name string) string {
	// A rule-shaped name for a key that has a product name
	// (RESPONSIVENESS_DATABASE_DSN → RESPONSIVENESS_DB_DSN).
	for _, e := range envTable {
		if ruleEnvName(e.key) == name && e.name != name {
			return " (did you mean " + e.name + "?)"
		}
	}
	best, bestD := "", 4
	for _, e := range envTable {
		if d := editDistance(name, e.name, bestD); d < bestD {
			best, bestD = e.name, d
		}
	}
	if best != "" {
		return " (did you mean " + best + "?)"
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b, or limit when it is
// at least limit (so long unrelated strings cost little).
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}
