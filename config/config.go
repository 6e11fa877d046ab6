// Package config holds pulsegate's configuration: one typed tree, its
// defaults, the layered loader (defaults < YAML file < RESPONSIVENESS_*
// environment), one-pass validation and redaction of secrets.
//
// It is a leaf package: it imports no other pulsegate package. Every other
// package reads a *Config; nothing mutates one after Load or Patch returned it.
//
// Durations are numbers of seconds (fractions allowed), as the product's
// config.py has them, and are typed Seconds.
package config

import (
	"time"
)

// Seconds is a duration written as a number of seconds (0.5 = 500 ms).
type Seconds float64

// Duration converts s to a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(float64(s) * float64(time.Second)) }

// Config is the whole effective configuration.
type Config struct {
	// Responsiveness holds the 14 fields of the product's ResponsivenessConfig.
	Responsiveness Responsiveness `koanf:"responsiveness" json:"responsiveness"`
	// Proxy configures the in-path reverse proxy (the app's traffic).
	Proxy Proxy `koanf:"proxy" json:"proxy"`
	// Admin configures the admin listener, the admin API and its auth.
	Admin Admin `koanf:"admin" json:"admin"`
	// Thresholds holds the warning/critical pairs that are not part of the
	// product's ResponsivenessConfig.
	Thresholds Thresholds `koanf:"thresholds" json:"thresholds"`
	// Database configures the database probe (database_manager).
	Database Database `koanf:"database" json:"database"`
	// Redis configures the Redis probe (session_monitoring, job queues).
	Redis Redis `koanf:"redis" json:"redis"`
	// System configures the host/container probe (system_optimizer).
	System System `koanf:"system" json:"system"`
	// Backpressure configures the limiters in front of the app.
	Backpressure Backpressure `koanf:"backpressure" json:"backpressure"`
	// Alerts configures alert rules' timing and the notification channels.
	Alerts Alerts `koanf:"alerts" json:"alerts"`
	// Actions configures the automated responses.
	Actions Actions `koanf:"actions" json:"actions"`
	// Log configures logging.
	Log Log `koanf:"log" json:"log"`
	// Runtime sizes the Go runtime at start (memory budget, GOMAXPROCS).
	Runtime Runtime `koanf:"runtime" json:"runtime"`
	// DataDir is where the embedded store (alert history, acknowledgements,
	// audit log) lives. Default "./pulsegate-data".
	DataDir string `koanf:"data_dir" json:"data_dir"`
	// Store selects a shared SQL store for several replicas; unset keeps
	// the embedded store in DataDir.
	Store Store `koanf:"store" json:"store"`
	// Instance names this sidecar in a fleet, in logs and fleet answers.
	// Empty means the host name (the pod name under Kubernetes).
	Instance string `koanf:"instance" json:"instance"`
	// Fleet names the group of sidecars sharing one store (sidecars of
	// different apps may share one database). Default "default".
	Fleet string `koanf:"fleet" json:"fleet"`
	// History sets how long each tier of the persisted trend history
	// (<data_dir>/history.db) is kept.
	History History `koanf:"history" json:"history"`
	// App describes the proxied app: its version, for the release comparison.
	App App `koanf:"app" json:"app"`
}

// App names the release of the app behind the proxy. The version is
// recorded with every request (per-route history, release comparison).
type App struct {
	// Version is the app's version when the app does not send one in
	// VersionHeader (e.g. the image tag). Empty = unknown.
	Version string `koanf:"version" json:"version"`
	// VersionHeader names a response header the app sets to its version
	// (e.g. X-App-Version). The proxy reads it and forwards the response
	// unchanged; without it, or before the first response carrying it,
	// Version applies.
	VersionHeader string `koanf:"version_header" json:"version_header"`
}

// MaxAppVersionLen bounds app.version (and a version read from the header).
const MaxAppVersionLen = 64

// History is the retention of each tier of the persisted trend history.
type History struct {
	// Retention10s keeps the 10-second points. Default 24 h.
	Retention10s Seconds `koanf:"retention_10s" json:"retention_10s"`
	// Retention1m keeps the 1-minute rollups. Default 14 days.
	Retention1m Seconds `koanf:"retention_1m" json:"retention_1m"`
	// Retention1h keeps the 1-hour rollups. Default 400 days.
	Retention1h Seconds `koanf:"retention_1h" json:"retention_1h"`
	// MaxRoutes is how many routes get per-route rollups each minute (the
	// busiest); the rest are added to "other". Default 50.
	MaxRoutes int `koanf:"max_routes" json:"max_routes"`
}

// Store configures the shared store.
type Store struct {
	// DSN is mysql://user:pass@host:3306/db or postgres://user:pass@host:5432/db.
	// Unset = the embedded bbolt store in data_dir (one instance).
	DSN Secret `koanf:"dsn" json:"dsn"`
}

// Responsiveness mirrors the product's ResponsivenessConfig dataclass,
// field for field and with the same defaults.
type Responsiveness struct {
	// MonitoringEnabled turns the background probes on. Default true.
	MonitoringEnabled bool `koanf:"monitoring_enabled" json:"monitoring_enabled"`
	// MonitoringInterval is the probe interval. Default 30 s.
	MonitoringInterval Seconds `koanf:"monitoring_interval" json:"monitoring_interval"`
	// MemoryWarningThreshold is a fraction of the container (or host) memory limit. Default 0.8.
	MemoryWarningThreshold float64 `koanf:"memory_warning_threshold" json:"memory_warning_threshold"`
	// MemoryCriticalThreshold: default 0.9.
	MemoryCriticalThreshold float64 `koanf:"memory_critical_threshold" json:"memory_critical_threshold"`
	// CPUWarningThreshold is a fraction of the CPU quota (or host CPUs). Default 0.8.
	CPUWarningThreshold float64 `koanf:"cpu_warning_threshold" json:"cpu_warning_threshold"`
	// CPUCriticalThreshold: default 0.9.
	CPUCriticalThreshold float64 `koanf:"cpu_critical_threshold" json:"cpu_critical_threshold"`
	// DBConnectionWarningThreshold is connections in use ÷ max_connections. Default 0.8.
	DBConnectionWarningThreshold float64 `koanf:"db_connection_warning_threshold" json:"db_connection_warning_threshold"`
	// DBConnectionCriticalThreshold: default 0.9.
	DBConnectionCriticalThreshold float64 `koanf:"db_connection_critical_threshold" json:"db_connection_critical_threshold"`
	// CleanupEnabled turns the periodic cleanup hook on. Default true.
	CleanupEnabled bool `koanf:"cleanup_enabled" json:"cleanup_enabled"`
	// CleanupInterval is the period of the cleanup hook. Default 300 s.
	CleanupInterval Seconds `koanf:"cleanup_interval" json:"cleanup_interval"`
	// SlowRequestThreshold marks a request as slow (logged as slow_request). Default 5 s.
	SlowRequestThreshold Seconds `koanf:"slow_request_threshold" json:"slow_request_threshold"`
	// RequestTimeoutThreshold is the upstream response-header timeout (504 past it). Default 30 s.
	RequestTimeoutThreshold Seconds `koanf:"request_timeout_threshold" json:"request_timeout_threshold"`
	// TaskMonitoringEnabled turns background-task health tracking on. Default true.
	TaskMonitoringEnabled bool `koanf:"task_monitoring_enabled" json:"task_monitoring_enabled"`
	// TaskHealthCheckInterval is how often task health is evaluated. Default 60 s.
	TaskHealthCheckInterval Seconds `koanf:"task_health_check_interval" json:"task_health_check_interval"`
}

// Proxy configures the data path.
type Proxy struct {
	// UpstreamURL is the Flask app. Default http://127.0.0.1:5000.
	UpstreamURL string `koanf:"upstream_url" json:"upstream_url"`
	// ListenAddr takes the app's traffic. Default ":8080".
	ListenAddr string `koanf:"listen_addr" json:"listen_addr"`
	// DrainDelay: after SIGTERM, /readyz is 503 and the proxy keeps serving
	// this long before Shutdown starts (endpoint removal lags). Default 5 s.
	DrainDelay Seconds `koanf:"drain_delay" json:"drain_delay"`
	// ShutdownTimeout bounds Shutdown after the drain delay. Default 20 s.
	ShutdownTimeout Seconds `koanf:"shutdown_timeout" json:"shutdown_timeout"`
	// UpstreamIdleTimeout closes idle upstream connections; it must stay below
	// the app server's keep-alive (gunicorn: 2 s). Default 1.5 s.
	UpstreamIdleTimeout Seconds `koanf:"upstream_idle_timeout" json:"upstream_idle_timeout"`
	// MaxIdleConnsPerHost sizes the upstream keep-alive pool. Default 256.
	MaxIdleConnsPerHost int `koanf:"max_idle_conns_per_host" json:"max_idle_conns_per_host"`
	// MaxConnsPerHost caps connections to the app; requests beyond it wait
	// inside the proxy for a free connection (the wait shows as upstream
	// time). 0 (default) = unlimited. Set it to the app's real concurrency
	// (gunicorn workers × threads) to bound the sidecar's memory: with 512
	// client connections, 64 cut peak RSS from ~62 to ~46 MiB in our runs.
	// Do not set it below the app's capacity (gevent apps can take thousands).
	MaxConnsPerHost int `koanf:"max_conns_per_host" json:"max_conns_per_host"`
	// ReadHeaderTimeout bounds reading a client's request headers (Slowloris). Default 10 s.
	ReadHeaderTimeout Seconds `koanf:"read_header_timeout" json:"read_header_timeout"`
	// ClientBodyTimeout is the longest a client may pause while sending a
	// request body (between two reads, like nginx's client_body_timeout);
	// past it the request gets 408. It bounds slow-body clients holding
	// app workers, and handlers stuck on an uploader that stalled after the
	// app died (go#78973). Default 30 s.
	ClientBodyTimeout Seconds `koanf:"client_body_timeout" json:"client_body_timeout"`
	// ClientIdleTimeout closes idle client keep-alive connections. Default 120 s.
	ClientIdleTimeout Seconds `koanf:"client_idle_timeout" json:"client_idle_timeout"`
	// MaxHeaderBytes caps request headers (431 past it). Default 65536.
	MaxHeaderBytes int `koanf:"max_header_bytes" json:"max_header_bytes"`
	// RoutePatterns are the app's own URL rules, e.g. "/users/<id>/posts",
	// matched before automatic templating. Segments in <> or starting with
	// ':' match any one segment.
	RoutePatterns []string `koanf:"route_patterns" json:"route_patterns"`
	// TrustedProxies are the peers (IPs or CIDRs, e.g. an ingress
	// controller's pod range) whose X-Forwarded-For/-Proto/-Host pulsegate
	// keeps and extends instead of replacing. Empty (default): trust no
	// one; the app sees the socket peer only.
	TrustedProxies []string `koanf:"trusted_proxies" json:"trusted_proxies"`
	// MaxRoutes caps distinct route labels; the rest go to "other". Default 200.
	MaxRoutes int `koanf:"max_routes" json:"max_routes"`
	// ApdexThreshold is Apdex T. Default 0.5 s.
	ApdexThreshold Seconds `koanf:"apdex_threshold" json:"apdex_threshold"`
	// SlowRequestRing is how many recent slow requests are kept. Default 100.
	SlowRequestRing int `koanf:"slow_request_ring" json:"slow_request_ring"`
}

// Admin configures the admin surface.
type Admin struct {
	// Addr is the admin listener (health, readiness, metrics, admin API). Default 127.0.0.1:9901.
	Addr string `koanf:"addr" json:"addr"`
	// Token, when set, is required as "Authorization: Bearer <token>" on admin routes.
	Token Secret `koanf:"token" json:"token"`
	// AllowedHosts are extra Host header values accepted on the admin
	// listener besides localhost, 127.0.0.1, [::1] and the listener's own address.
	AllowedHosts []string `koanf:"allowed_hosts" json:"allowed_hosts"`
	// AuthURL, when set, delegates admin auth to the app (like nginx
	// auth_request): Cookie and Authorization are forwarded; 2xx allows.
	AuthURL string `koanf:"auth_url" json:"auth_url"`
	// AuthTimeout bounds the delegated auth call. Default 1 s.
	AuthTimeout Seconds `koanf:"auth_timeout" json:"auth_timeout"`
	// AuthCacheTTL caches delegated auth answers per credential. Default 5 s.
	AuthCacheTTL Seconds `koanf:"auth_cache_ttl" json:"auth_cache_ttl"`
}

// Thresholds are the warning/critical pairs beyond the product's 14 fields.
type Thresholds struct {
	// DiskWarning is the used fraction of the fullest watched path that is a warning. Default 0.85.
	DiskWarning float64 `koanf:"disk_warning" json:"disk_warning"`
	// DiskCritical is the used fraction that is critical. Default 0.95.
	DiskCritical float64 `koanf:"disk_critical" json:"disk_critical"`
	// QueueWarning is the number of queued requests that is a warning. Default 50.
	QueueWarning int `koanf:"queue_warning" json:"queue_warning"`
	// QueueCritical is the number of queued requests that is critical. Default 100.
	// (It used to be the queue's bound too: that is backpressure.queue_size.)
	QueueCritical int `koanf:"queue_critical" json:"queue_critical"`
	// ErrorRateWarning is the 1-minute error-rate fraction that is a warning. Default 0.05.
	ErrorRateWarning float64 `koanf:"error_rate_warning" json:"error_rate_warning"`
	// ErrorRateCritical is the 1-minute error-rate fraction that is critical. Default 0.10.
	ErrorRateCritical float64 `koanf:"error_rate_critical" json:"error_rate_critical"`
	// ResponseTimeWarning is the 1-minute average response time that is a warning. Default 5 s.
	ResponseTimeWarning Seconds `koanf:"response_time_warning" json:"response_time_warning"`
	// ResponseTimeCritical is the 1-minute average response time that is critical. Default 10 s.
	ResponseTimeCritical Seconds `koanf:"response_time_critical" json:"response_time_critical"`
	// DBQueryWarning is the database's query time (the probe's SELECT 1
	// round trip) that is a warning. Default 2 s.
	DBQueryWarning Seconds `koanf:"db_query_warning" json:"db_query_warning"`
	// DBQueryCritical is the database query time that is critical. Default 5 s.
	DBQueryCritical Seconds `koanf:"db_query_critical" json:"db_query_critical"`
	// RedisLatencyWarning is the Redis PING round trip that is a warning. Default 2 s.
	RedisLatencyWarning Seconds `koanf:"redis_latency_warning" json:"redis_latency_warning"`
	// RedisLatencyCritical is the Redis PING round trip that is critical. Default 5 s.
	RedisLatencyCritical Seconds `koanf:"redis_latency_critical" json:"redis_latency_critical"`
	// JobQueueWarning is the depth of the deepest watched job queue
	// (redis.queue_keys) that is a warning. Default 50.
	JobQueueWarning int `koanf:"job_queue_warning" json:"job_queue_warning"`
	// JobQueueCritical is the job-queue depth that is critical. Default 100.
	JobQueueCritical int `koanf:"job_queue_critical" json:"job_queue_critical"`
	// ApdexWarning is the 1-minute Apdex score at or below which it is a
	// warning (Apdex is bad below). Default 0.85.
	ApdexWarning float64 `koanf:"apdex_warning" json:"apdex_warning"`
	// ApdexCritical is the 1-minute Apdex score at or below which it is
	// critical; below ApdexWarning. Default 0.7.
	ApdexCritical float64 `koanf:"apdex_critical" json:"apdex_critical"`
}

// Database configures the database probe.
type Database struct {
	// DSN is mysql://user:pass@host:3306/db or postgres://user:pass@host:5432/db. Unset disables the probe.
	DSN Secret `koanf:"dsn" json:"dsn"`
	// ProbeTimeout bounds one probe tick (connect, queries). Default 2 s.
	ProbeTimeout Seconds `koanf:"probe_timeout" json:"probe_timeout"`
	// LeakAge: connections idle longer than this are leak suspects. Default 300 s.
	LeakAge Seconds `koanf:"leak_age" json:"leak_age"`
	// IdleInTransactionWarning: a transaction idle this long is a warning. Default 30 s.
	IdleInTransactionWarning Seconds `koanf:"idle_in_transaction_warning" json:"idle_in_transaction_warning"`
	// AppPoolSize is the app's own pool size (SQLAlchemy pool_size +
	// max_overflow); 0 = unknown. Used to warn before the app's pool is exhausted.
	AppPoolSize int `koanf:"app_pool_size" json:"app_pool_size"`
	// LongQueryThreshold: a query running longer than this counts as a long
	// query (db_long_queries). Default 5 s.
	LongQueryThreshold Seconds `koanf:"long_query_threshold" json:"long_query_threshold"`
	// AppUser restricts the app's pool count to this DB user; empty = all users except the probe's.
	AppUser string `koanf:"app_user" json:"app_user"`
}

// Redis configures the Redis probe.
type Redis struct {
	// URL is redis://[user:pass@]host:6379/0. Unset disables the probe.
	URL Secret `koanf:"url" json:"url"`
	// SessionPrefix selects session keys. Default "session:".
	SessionPrefix string `koanf:"session_prefix" json:"session_prefix"`
	// QueueKeys are job-queue list keys whose depth is watched (e.g. "rq:queue:default", "celery").
	QueueKeys []string `koanf:"queue_keys" json:"queue_keys"`
	// ScanBudget is the most keys SCAN visits per probe tick. Default 10000.
	ScanBudget int `koanf:"scan_budget" json:"scan_budget"`
	// ProbeTimeout bounds one probe tick. Default 2 s.
	ProbeTimeout Seconds `koanf:"probe_timeout" json:"probe_timeout"`
}

// System configures the host/container probe.
type System struct {
	// DiskPaths are the mount points watched. Default ["/"].
	DiskPaths []string `koanf:"disk_paths" json:"disk_paths"`
	// CgroupRoot is where cgroupfs is mounted. Default /sys/fs/cgroup.
	CgroupRoot string `koanf:"cgroup_root" json:"cgroup_root"`
	// ProcRoot is where procfs is mounted. Default /proc.
	ProcRoot string `koanf:"proc_root" json:"proc_root"`
	// AppProcessNames are process names of the app (e.g. "gunicorn") whose RSS is reported
	// when the pod shares its process namespace. Empty = off.
	AppProcessNames []string `koanf:"app_process_names" json:"app_process_names"`
	// AppPIDFile names a PID file of the app's master process. Empty = off.
	AppPIDFile string `koanf:"app_pid_file" json:"app_pid_file"`
}

// Backpressure configures the limiters, in the order they run:
// shed → rate limit → concurrency/queue → proxy.
type Backpressure struct {
	// MaxConcurrency caps requests in flight to the app; 0 = no fixed limit.
	MaxConcurrency int `koanf:"max_concurrency" json:"max_concurrency"`
	// QueueSize is the most requests waiting for a concurrency slot; one
	// more gets 503 at once (0: none wait). Default 100.
	QueueSize int `koanf:"queue_size" json:"queue_size"`
	// QueueTimeout is the longest a request waits for a slot before 503. Default 10 s.
	QueueTimeout Seconds `koanf:"queue_timeout" json:"queue_timeout"`
	// RateLimitRPS is the global rate limit in requests per second; 0 = off.
	RateLimitRPS float64 `koanf:"rate_limit_rps" json:"rate_limit_rps"`
	// RateLimitBurst is the global bucket size; 0 = max(1, ceil(rps)).
	// Validate rejects a burst > 0 while RateLimitRPS is 0 (off).
	RateLimitBurst int `koanf:"rate_limit_burst" json:"rate_limit_burst"`
	// PerClientRPS limits each client (socket peer address); 0 = off.
	PerClientRPS float64 `koanf:"per_client_rps" json:"per_client_rps"`
	// PerClientBurst: 0 = max(1, ceil(per_client_rps)); must be 0 while PerClientRPS is 0.
	PerClientBurst int `koanf:"per_client_burst" json:"per_client_burst"`
	// PerClientMaxClients caps the per-client limiter map. Default 10000.
	PerClientMaxClients int `koanf:"per_client_max_clients" json:"per_client_max_clients"`
	// Adaptive turns on the gradient concurrency limiter (opt-in).
	Adaptive Adaptive `koanf:"adaptive" json:"adaptive"`
	// SheddingEnabled turns pressure-driven shedding on. Default true.
	SheddingEnabled bool `koanf:"shedding_enabled" json:"shedding_enabled"`
	// ShedFraction is the fraction of new requests shed at saturation (critical). Default 0.5.
	ShedFraction float64 `koanf:"shed_fraction" json:"shed_fraction"`
	// ShedSignals are the pressure signals that shed load when critical:
	// any of memory, cpu, db_connections, redis_evicting, error_rate,
	// response_time. Default memory, db_connections, response_time: the
	// product's actions table throttles on the connection pool, and memory
	// and latency are what overload looks like. CPU is left out by default
	// because without a container quota it measures the whole host, and
	// error_rate because shedding makes a buggy app fail more, not less.
	ShedSignals []string `koanf:"shed_signals" json:"shed_signals"`
	// ShedHold is how long pressure must stay below critical before shedding stops. Default 30 s.
	ShedHold Seconds `koanf:"shed_hold" json:"shed_hold"`
	// DryRun: limiters count would-have-rejected requests and log samples, but reject nothing.
	DryRun bool `koanf:"dry_run" json:"dry_run"`
	// CriticalRoutes are path prefixes never shed or rate limited.
	CriticalRoutes []string `koanf:"critical_routes" json:"critical_routes"`
	// LowPriorityRoutes are path prefixes shed first (at warning already).
	LowPriorityRoutes []string `koanf:"low_priority_routes" json:"low_priority_routes"`
}

// Adaptive configures the gradient concurrency limiter.
type Adaptive struct {
	// Enabled turns the adaptive limiter on (opt-in). Default false.
	Enabled bool `koanf:"enabled" json:"enabled"`
	// MinLimit and MaxLimit bound the computed limit. Defaults 4 and 512.
	MinLimit int `koanf:"min_limit" json:"min_limit"`
	MaxLimit int `koanf:"max_limit" json:"max_limit"`
	// MinRTTInterval is how often the min-RTT is re-sampled (jittered). Default 60 s.
	MinRTTInterval Seconds `koanf:"min_rtt_interval" json:"min_rtt_interval"`
	// Headroom is the latency tolerated above the minimum RTT before the
	// limit shrinks, as a fraction of min RTT. Default 0.1.
	Headroom float64 `koanf:"headroom" json:"headroom"`
}

// Alerts configures alert evaluation and channels.
type Alerts struct {
	// MinDuration: a condition must hold this long before an alert fires. Default 0 (next evaluation).
	MinDuration Seconds `koanf:"min_duration" json:"min_duration"`
	// ResolveMargin: a firing alert resolves only below threshold*(1-margin). Default 0.05.
	ResolveMargin float64 `koanf:"resolve_margin" json:"resolve_margin"`
	// HistorySize bounds the persisted alert history. Default 1000.
	HistorySize int `koanf:"history_size" json:"history_size"`
	// Email sends alerts over SMTP when SMTPAddr is set.
	Email Email `koanf:"email" json:"email"`
	// WebhookURL receives alerts as JSON POSTs when set.
	// It is a Secret: chat webhooks (Slack, Teams) carry their token in the path.
	WebhookURL Secret `koanf:"webhook_url" json:"webhook_url"`
	// AlertmanagerURL is an Alertmanager base URL (POST /api/v2/alerts) when set.
	// It is a Secret: it may carry basic-auth credentials.
	AlertmanagerURL Secret `koanf:"alertmanager_url" json:"alertmanager_url"`
	// Timeout bounds one delivery attempt. Default 5 s.
	Timeout Seconds `koanf:"timeout" json:"timeout"`
	// Retries is how many times a failed delivery is retried with backoff. Default 3.
	Retries int `koanf:"retries" json:"retries"`
	// RunbookBaseURL is where the runbooks (docs/runbooks/<rule>.md) are
	// served: every alert carries runbook_url = base + "/" + rule + ".md".
	// Default DefaultRunbookBaseURL; empty leaves runbook_url out.
	RunbookBaseURL string `koanf:"runbook_base_url" json:"runbook_base_url"`
}

// DefaultRunbookBaseURL is the default of alerts.runbook_base_url: the
// runbooks in the pulsegate repository.
const DefaultRunbookBaseURL = "https://github.com/pulsegate/pulsegate/blob/main/docs/runbooks"

// Email configures the SMTP channel.
type Email struct {
	// SMTPAddr is the SMTP server, host:port; empty turns email off.
	SMTPAddr string `koanf:"smtp_addr" json:"smtp_addr"`
	// From is the sender address; required when SMTPAddr is set.
	From string `koanf:"from" json:"from"`
	// To lists the recipients; at least one is required when SMTPAddr is set.
	To []string `koanf:"to" json:"to"`
	// Username enables SMTP PLAIN auth when set.
	Username string `koanf:"username" json:"username"`
	// Password is the SMTP password (redacted on output).
	Password Secret `koanf:"password" json:"password"`
	// MinSeverity is the lowest severity mailed: "warning" or "critical" (default).
	MinSeverity string `koanf:"min_severity" json:"min_severity"`
}

// Actions configures automated responses. Each has a cooldown and honours DryRun.
type Actions struct {
	// DryRun logs what each action would do and does nothing.
	DryRun bool `koanf:"dry_run" json:"dry_run"`
	// CleanupURL is POSTed on memory warning/critical and every cleanup
	// interval (when cleanup is enabled). Empty = off.
	CleanupURL string `koanf:"cleanup_url" json:"cleanup_url"`
	// CleanupTimeout bounds the cleanup POST. Default 10 s.
	CleanupTimeout Seconds `koanf:"cleanup_timeout" json:"cleanup_timeout"`
	// Cooldown is the least time between two runs of one action. Default 60 s.
	Cooldown Seconds `koanf:"cooldown" json:"cooldown"`
	// RecycleConnections closes idle upstream connections when errors spike. Default true.
	RecycleConnections bool `koanf:"recycle_connections" json:"recycle_connections"`
	// SessionTTLRepair gives TTL-less session keys SessionTTL (opt-in).
	SessionTTLRepair bool `koanf:"session_ttl_repair" json:"session_ttl_repair"`
	// SessionTTL is the TTL given to TTL-less session keys, whole seconds. Default 86400.
	SessionTTL Seconds `koanf:"session_ttl" json:"session_ttl"`
	// SessionRepairMax is the most keys repaired per probe tick. Default 1000.
	SessionRepairMax int `koanf:"session_repair_max" json:"session_repair_max"`
	// ReadinessOnOverload makes /readyz fail during sustained overload (opt-in).
	ReadinessOnOverload bool `koanf:"readiness_on_overload" json:"readiness_on_overload"`
}

// Log configures logging.
// Runtime sizes the Go runtime at start; GOMEMLIMIT, GOGC and GOMAXPROCS
// in the environment win over these. Read once at start.
type Runtime struct {
	// MemoryLimitShare is the share of the container memory limit that
	// becomes Go's soft memory limit (the rest is headroom for stacks and
	// buffers the limit does not count). Default 0.8.
	MemoryLimitShare float64 `koanf:"memory_limit_share" json:"memory_limit_share"`
	// MemoryLimitDefaultMiB is the soft memory limit outside a
	// memory-limited container, in MiB; 0 = none. Default 256: above what
	// 4,096 busy connections need (~120 MiB of Go memory), because a soft
	// limit below the live memory makes the collector run back to back
	// (64 MiB cost ~3 × the CPU per request at 4,096 connections,
	// docs/performance.md); outside a container nothing is killed there.
	MemoryLimitDefaultMiB int `koanf:"memory_limit_default_mib" json:"memory_limit_default_mib"`
	// MaxProcs is GOMAXPROCS when no CPU limit is set (with one, Go follows
	// it); capped at the CPUs available; 0 = every CPU. Default 1.
	MaxProcs int `koanf:"max_procs" json:"max_procs"`
	// MaxClientConnections caps the client connections open at once; at
	// the cap the longest-idle keep-alive connection is closed to make
	// room, and new ones wait in the accept queue. 0 (default) = derived
	// from the container memory limit (what fits in the memory budget; no
	// cap outside containers); -1 = no cap.
	MaxClientConnections int `koanf:"max_client_connections" json:"max_client_connections"`
	// GCHeadroomMiB bounds how far the heap grows between collections, in
	// MiB: GOGC is lowered (to 50 at most) while the live heap plus the
	// goroutine stacks exceed it, i.e. with many busy connections, and
	// stays at 100 below it (an everyday rate pays no GC CPU for it).
	// 0 = GOGC fixed. Default 8. A GOGC in the environment wins.
	GCHeadroomMiB int `koanf:"gc_headroom_mib" json:"gc_headroom_mib"`
}

type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `koanf:"level" json:"level"`
	// Format is json (default) or console.
	Format string `koanf:"format" json:"format"`
}
