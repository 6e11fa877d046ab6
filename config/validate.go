package config

import (
	"fmt"
	"math"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FieldError is one problem with one setting.
type FieldError struct {
	// Key is the YAML/JSON key, e.g. responsiveness.memory_warning_threshold.
	// Empty for an unknown environment variable.
	Key string
	// Env is the setting's environment variable (empty for unknown keys).
	Env string
	// Problem says what is wrong, e.g. "must be in (0,1], got 1.5". It never
	// repeats a secret.
	Problem string
}

// String renders "key (ENV): problem".
func (e FieldError) String() string {
	switch {
	case e.Key != "" && e.Env != "":
		return e.Key + " (" + e.Env + "): " + e.Problem
	case e.Key != "":
		return e.Key + ": " + e.Problem
	default:
		return e.Env + ": " + e.Problem
	}
}

// ValidationError holds every problem found in one pass.
type ValidationError struct {
	// Errors lists the problems in the order of the Config struct
	// (decoding problems first when returned by Load).
	Errors []FieldError
}

// Error prints one line per problem.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.String()
	}
	return strings.Join(lines, "\n")
}

// Limits that keep values usable by the rest of pulsegate: sizes that are
// preallocated stay bounded, and every duration fits a time.Duration.
const (
	// MinDuration is the smallest positive duration accepted, seconds (1 ms):
	// a tinier interval would truncate to a zero time.Duration.
	MinDuration = 0.001
	// MaxDuration is the largest duration accepted, seconds (about 31 years).
	MaxDuration = 1e9
	// MaxRate is the largest rate limit accepted, requests per second.
	MaxRate = 1e9
	// maxSize bounds counts that size in-memory structures.
	maxSize = 1_000_000
)

// Validate checks every rule in one pass and returns a *ValidationError
// listing every problem, or nil. Rules (see README.md, Configuration):
// fractions in (0,1]; warning < critical for every pair; durations finite
// and, where a zero makes no sense, at least 1 ms; NaN and ±Inf rejected
// everywhere; URLs absolute http/https; the DSN mysql/postgres/postgresql
// with a host; the Redis URL redis/rediss with a host or unix with a path;
// listen addresses host:port; rate limits ≥ 0 with a burst only when the
// rate is on; enumerations in their sets; sizes within bounds.
func (c *Config) Validate() error {
	if errs := c.validate(); len(errs) > 0 {
		return &ValidationError{Errors: errs}
	}
	return nil
}

// validator collects problems.
type validator struct {
	env  map[string]string
	errs []FieldError
}

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Key: key, Env: v.env[key], Problem: fmt.Sprintf(format, args...)})
}

// finite reports (and records) a NaN or infinite value.
func (v *validator) finite(key string, x float64) bool {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		v.add(key, "must be a finite number, got %s", formatFloat(x))
		return false
	}
	return true
}

// fraction: (0,1].
func (v *validator) fraction(key string, x float64) bool {
	if !v.finite(key, x) {
		return false
	}
	if x <= 0 || x > 1 {
		v.add(key, "must be in (0,1], got %s", formatFloat(x))
		return false
	}
	return true
}

// positive: a duration > 0 (at least MinDuration) and at most MaxDuration.
func (v *validator) positive(key string, s Seconds) bool {
	x := float64(s)
	if !v.finite(key, x) {
		return false
	}
	if x < MinDuration || x > MaxDuration {
		v.add(key, "must be between %s and %s seconds, got %s", formatFloat(MinDuration), formatFloat(MaxDuration), formatFloat(x))
		return false
	}
	return true
}

// nonNegative: a duration ≥ 0 (0 = off/none) and at most MaxDuration;
// positive values below MinDuration are rejected too.
func (v *validator) nonNegative(key string, s Seconds) bool {
	x := float64(s)
	if !v.finite(key, x) {
		return false
	}
	if x == 0 {
		return true
	}
	if x < MinDuration || x > MaxDuration {
		v.add(key, "must be 0 or between %s and %s seconds, got %s", formatFloat(MinDuration), formatFloat(MaxDuration), formatFloat(x))
		return false
	}
	return true
}

// intRange: lo ≤ n ≤ hi.
func (v *validator) intRange(key string, n, lo, hi int) bool {
	if n < lo || n > hi {
		v.add(key, "must be between %d and %d, got %d", lo, hi, n)
		return false
	}
	return true
}

// less: warning < critical, reported on the warning key.
func (v *validator) less(wKey, cKey string, w, c float64) {
	if w >= c {
		v.add(wKey, "must be below %s (%s), got %s ≥ %s", cKey, v.env[cKey], formatFloat(w), formatFloat(c))
	}
}

// fractionPair validates a warning/critical pair of fractions.
func (v *validator) fractionPair(wKey, cKey string, w, c float64) {
	okW, okC := v.fraction(wKey, w), v.fraction(cKey, c)
	if okW && okC {
		v.less(wKey, cKey, w, c)
	}
}

// secondsPair validates a warning/critical pair of durations.
func (v *validator) secondsPair(wKey, cKey string, w, c Seconds) {
	okW, okC := v.positive(wKey, w), v.positive(cKey, c)
	if okW && okC {
		v.less(wKey, cKey, float64(w), float64(c))
	}
}

// httpURL checks an absolute http/https URL with a host. Empty is allowed
// when optional. Messages never quote the value (URLs may carry tokens).
func (v *validator) httpURL(key, raw string, optional bool) {
	if raw == "" {
		if !optional {
			v.add(key, "must be set to an http or https URL")
		}
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		v.add(key, "must be an absolute http or https URL (it does not parse; percent-encode special characters)")
	case u.Scheme != "http" && u.Scheme != "https":
		v.add(key, "must be an absolute http or https URL, got scheme %s", schemeOf(u))
	case u.Host == "" || u.Hostname() == "":
		v.add(key, "must be an absolute http or https URL with a host")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		v.add(key, "must not contain a '#' fragment (percent-encode # as %%23)")
	case !validPort(u.Port()):
		v.add(key, "has an invalid port")
	}
}

// schemeOf names a parsed URL's scheme for messages, or "(none)".
func schemeOf(u *url.URL) string {
	if u.Scheme == "" {
		return "(none)"
	}
	return strconv.Quote(u.Scheme)
}

// validPort accepts "" or 0..65535.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

// dsn checks the database DSN; messages never quote it.
func (v *validator) dsn(key string, s Secret) {
	raw := s.Reveal()
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		v.add(key, "is not a valid URL like mysql://user:pass@host:3306/db (percent-encode @ # %% : / in the password as %%40 %%23 %%25 %%3A %%2F)")
	case u.Scheme != "mysql" && u.Scheme != "postgres" && u.Scheme != "postgresql":
		v.add(key, "scheme must be mysql, postgres or postgresql, got %s", safeScheme(u, raw))
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		v.add(key, "must name a host, like %s://user:pass@host/db", u.Scheme)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		v.add(key, "contains '#': percent-encode # in the password as %%23")
	case !validPort(u.Port()):
		v.add(key, "has an invalid port")
	}
}

// name checks an instance or fleet name (NameProblem); empty only when
// allowed (the instance then defaults to the host name).
func (v *validator) name(key, s string, emptyOK bool) {
	if s == "" {
		if !emptyOK {
			v.add(key, "must be set")
		}
		return
	}
	if p := NameProblem(s); p != "" {
		v.add(key, "%s", p)
	}
}

// NameProblem says what is wrong with a non-empty instance or fleet name
// ("" when nothing): at most MaxNameLen bytes of letters, digits and
// . _ - : (host names and pod names fit). The admin API checks names in
// queries with it too.
func NameProblem(s string) string {
	switch {
	case len(s) > MaxNameLen:
		return fmt.Sprintf("must be at most %d bytes, got %d", MaxNameLen, len(s))
	case strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == ':')
	}):
		return "may hold only letters, digits and . _ - :"
	}
	return ""
}

// MaxNameLen bounds instance and fleet names (they are keys in the shared store).
const MaxNameLen = 128

// redisURL checks the Redis URL; messages never quote it.
func (v *validator) redisURL(key string, s Secret) {
	raw := s.Reveal()
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		v.add(key, "is not a valid URL like redis://:pass@host:6379/0 (percent-encode @ # %% : / in the password)")
	case u.Scheme == "unix":
		if u.Path == "" || u.Opaque != "" {
			v.add(key, "must name a socket path, like unix:///run/redis.sock")
		}
	case u.Scheme != "redis" && u.Scheme != "rediss":
		v.add(key, "scheme must be redis, rediss or unix, got %s", safeScheme(u, raw))
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		v.add(key, "must name a host, like %s://host:6379/0", u.Scheme)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		v.add(key, "contains '#': percent-encode # in the password as %%23")
	case !validPort(u.Port()):
		v.add(key, "has an invalid port")
	}
}

// safeScheme names a secret URL's scheme only when it is written as one
// ("scheme://", short, letters first); anything else, such as the user of
// "user:pass@tcp(host)/db", could be part of the credentials.
func safeScheme(u *url.URL, raw string) string {
	s := u.Scheme
	if s == "" {
		return "(none)"
	}
	if len(s) > 16 || !strings.HasPrefix(raw, s+"://") {
		return "(not a URL scheme)"
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return "(not a scheme)"
		}
	}
	return strconv.Quote(s)
}

// hostPort checks a listen or dial address host:port. Empty is allowed
// when optional.
func (v *validator) hostPort(key, addr string, optional bool) {
	if addr == "" {
		if !optional {
			v.add(key, "must be set to host:port")
		}
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(key, "must be host:port (e.g. 127.0.0.1:9901 or :8080), got %s", quote(addr))
		return
	}
	if strings.ContainsAny(host, " /\t") {
		v.add(key, "has an invalid host in %s", quote(addr))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(key, "port must be a number 0-65535, got %s", quote(port))
	}
}

// routes checks path patterns or prefixes: each starts with "/" and has no
// whitespace; none repeats.
func (v *validator) routes(key string, list []string) {
	seen := map[string]bool{}
	for i, r := range list {
		switch {
		case !strings.HasPrefix(r, "/"):
			v.add(key, "item %d must start with \"/\", got %s", i+1, quote(r))
		case strings.ContainsFunc(r, isSpaceOrControl):
			v.add(key, "item %d must not contain whitespace, got %s", i+1, quote(r))
		case seen[r]:
			v.add(key, "item %d repeats %s", i+1, quote(r))
		}
		seen[r] = true
	}
}

// nonEmptyItems checks that no list item is empty or padded.
func (v *validator) nonEmptyItems(key string, list []string) {
	for i, s := range list {
		if strings.TrimSpace(s) == "" {
			v.add(key, "item %d is empty", i+1)
		} else if strings.ContainsFunc(s, isControl) {
			v.add(key, "item %d contains control characters", i+1)
		}
	}
}

// absPath checks an absolute filesystem path. Empty is allowed when optional.
func (v *validator) absPath(key, p string, optional bool) {
	if p == "" {
		if !optional {
			v.add(key, "must be set to an absolute path")
		}
		return
	}
	if !strings.HasPrefix(p, "/") {
		v.add(key, "must be an absolute path, got %s", quote(p))
	} else if strings.ContainsFunc(p, isControl) {
		v.add(key, "must not contain control characters")
	}
}

// oneOf checks an enumeration.
func (v *validator) oneOf(key, s string, set ...string) {
	for _, x := range set {
		if s == x {
			return
		}
	}
	v.add(key, "must be one of %s, got %s", strings.Join(set, ", "), quote(s))
}

// rate checks a rate limit and its burst: rps ≥ 0 finite (0 = off),
// burst ≥ 0 (0 = max(1, ceil(rps))), and a burst only while the rate is on.
func (v *validator) rate(rpsKey, burstKey string, rps float64, burst int) {
	okRate := v.finite(rpsKey, rps)
	if okRate && (rps < 0 || rps > MaxRate) {
		v.add(rpsKey, "must be between 0 (off) and %s requests per second, got %s", formatFloat(MaxRate), formatFloat(rps))
		okRate = false
	}
	if !v.intRange(burstKey, burst, 0, maxSize) {
		return
	}
	if okRate && rps == 0 && burst > 0 {
		v.add(burstKey, "must be 0 while %s (%s) is 0 (off), got %d: set a rate or drop the burst", rpsKey, v.env[rpsKey], burst)
	}
}

// utf8 rejects text that is not valid UTF-8 in any string, list item or
// secret: it could not be rendered as YAML or JSON faithfully.
func (v *validator) utf8(c *Config) {
	for _, f := range configFields() {
		val := f.value(c)
		switch f.kind {
		case kindString, kindSecret:
			if !utf8.ValidString(val.String()) {
				v.add(f.key, "must be valid UTF-8 text")
			}
		case kindList:
			for i, item := range val.Interface().([]string) {
				if !utf8.ValidString(item) {
					v.add(f.key, "item %d must be valid UTF-8 text", i+1)
				}
			}
		}
	}
}

func isControl(r rune) bool        { return r < 0x20 || r == 0x7f }
func isSpaceOrControl(r rune) bool { return r == ' ' || isControl(r) }

// validate is Validate's one pass.
func (c *Config) validate() []FieldError {
	v := &validator{env: envByKey()}

	r := c.Responsiveness
	v.positive("responsiveness.monitoring_interval", r.MonitoringInterval)
	v.fractionPair("responsiveness.memory_warning_threshold", "responsiveness.memory_critical_threshold", r.MemoryWarningThreshold, r.MemoryCriticalThreshold)
	v.fractionPair("responsiveness.cpu_warning_threshold", "responsiveness.cpu_critical_threshold", r.CPUWarningThreshold, r.CPUCriticalThreshold)
	v.fractionPair("responsiveness.db_connection_warning_threshold", "responsiveness.db_connection_critical_threshold", r.DBConnectionWarningThreshold, r.DBConnectionCriticalThreshold)
	v.positive("responsiveness.cleanup_interval", r.CleanupInterval)
	v.positive("responsiveness.slow_request_threshold", r.SlowRequestThreshold)
	v.positive("responsiveness.request_timeout_threshold", r.RequestTimeoutThreshold)
	v.positive("responsiveness.task_health_check_interval", r.TaskHealthCheckInterval)

	p := c.Proxy
	v.httpURL("proxy.upstream_url", p.UpstreamURL, false)
	v.hostPort("proxy.listen_addr", p.ListenAddr, false)
	v.nonNegative("proxy.drain_delay", p.DrainDelay)
	v.positive("proxy.shutdown_timeout", p.ShutdownTimeout)
	v.positive("proxy.upstream_idle_timeout", p.UpstreamIdleTimeout)
	v.intRange("proxy.max_idle_conns_per_host", p.MaxIdleConnsPerHost, 1, maxSize)
	v.intRange("proxy.max_conns_per_host", p.MaxConnsPerHost, 0, maxSize)
	v.positive("proxy.read_header_timeout", p.ReadHeaderTimeout)
	v.positive("proxy.client_idle_timeout", p.ClientIdleTimeout)
	v.positive("proxy.client_body_timeout", p.ClientBodyTimeout)
	v.intRange("proxy.max_header_bytes", p.MaxHeaderBytes, 1024, 64<<20)
	v.routes("proxy.route_patterns", p.RoutePatterns)
	for _, tp := range p.TrustedProxies {
		if _, err := ParsePrefix(tp); err != nil {
			v.add("proxy.trusted_proxies", "%s is not an IP address or CIDR", quote(tp))
		}
	}
	v.intRange("proxy.max_routes", p.MaxRoutes, 1, 100_000)
	v.positive("proxy.apdex_threshold", p.ApdexThreshold)
	v.intRange("proxy.slow_request_ring", p.SlowRequestRing, 1, 100_000)

	a := c.Admin
	v.hostPort("admin.addr", a.Addr, false)
	if _, port, err := net.SplitHostPort(a.Addr); err == nil && port != "0" && a.Addr == p.ListenAddr {
		v.add("admin.addr", "must differ from proxy.listen_addr (%s)", v.env["proxy.listen_addr"])
	}
	if t := a.Token.Reveal(); t != "" && (strings.ContainsFunc(t, isSpaceOrControl) || strings.TrimSpace(t) != t) {
		v.add("admin.token", "must not contain spaces or control characters")
	}
	for i, h := range a.AllowedHosts {
		if h == "" || strings.ContainsFunc(h, isSpaceOrControl) || strings.ContainsAny(h, "/@") {
			v.add("admin.allowed_hosts", "item %d must be a host name or host:port, got %s", i+1, quote(h))
		}
	}
	v.httpURL("admin.auth_url", a.AuthURL, true)
	v.positive("admin.auth_timeout", a.AuthTimeout)
	v.nonNegative("admin.auth_cache_ttl", a.AuthCacheTTL)

	t := c.Thresholds
	v.fractionPair("thresholds.disk_warning", "thresholds.disk_critical", t.DiskWarning, t.DiskCritical)
	okQW := v.intRange("thresholds.queue_warning", t.QueueWarning, 1, maxSize)
	okQC := v.intRange("thresholds.queue_critical", t.QueueCritical, 1, maxSize)
	if okQW && okQC {
		v.less("thresholds.queue_warning", "thresholds.queue_critical", float64(t.QueueWarning), float64(t.QueueCritical))
	}
	v.fractionPair("thresholds.error_rate_warning", "thresholds.error_rate_critical", t.ErrorRateWarning, t.ErrorRateCritical)
	v.secondsPair("thresholds.response_time_warning", "thresholds.response_time_critical", t.ResponseTimeWarning, t.ResponseTimeCritical)
	v.secondsPair("thresholds.db_query_warning", "thresholds.db_query_critical", t.DBQueryWarning, t.DBQueryCritical)
	v.secondsPair("thresholds.redis_latency_warning", "thresholds.redis_latency_critical", t.RedisLatencyWarning, t.RedisLatencyCritical)
	okJW := v.intRange("thresholds.job_queue_warning", t.JobQueueWarning, 1, maxSize)
	okJC := v.intRange("thresholds.job_queue_critical", t.JobQueueCritical, 1, maxSize)
	if okJW && okJC {
		v.less("thresholds.job_queue_warning", "thresholds.job_queue_critical", float64(t.JobQueueWarning), float64(t.JobQueueCritical))
	}
	// Apdex is bad below: critical < warning.
	okAW, okAC := v.fraction("thresholds.apdex_warning", t.ApdexWarning), v.fraction("thresholds.apdex_critical", t.ApdexCritical)
	if okAW && okAC {
		v.less("thresholds.apdex_critical", "thresholds.apdex_warning", t.ApdexCritical, t.ApdexWarning)
	}

	d := c.Database
	v.dsn("database.dsn", d.DSN)
	v.positive("database.probe_timeout", d.ProbeTimeout)
	v.positive("database.leak_age", d.LeakAge)
	v.positive("database.idle_in_transaction_warning", d.IdleInTransactionWarning)
	v.positive("database.long_query_threshold", d.LongQueryThreshold)
	v.intRange("database.app_pool_size", d.AppPoolSize, 0, maxSize)
	if strings.ContainsFunc(d.AppUser, isControl) {
		v.add("database.app_user", "must not contain control characters")
	}

	rd := c.Redis
	v.redisURL("redis.url", rd.URL)
	if strings.ContainsFunc(rd.SessionPrefix, isControl) {
		v.add("redis.session_prefix", "must not contain control characters")
	}
	v.nonEmptyItems("redis.queue_keys", rd.QueueKeys)
	v.intRange("redis.scan_budget", rd.ScanBudget, 1, 1_000_000_000)
	v.positive("redis.probe_timeout", rd.ProbeTimeout)

	s := c.System
	for i, dp := range s.DiskPaths {
		if !strings.HasPrefix(dp, "/") || strings.ContainsFunc(dp, isControl) {
			v.add("system.disk_paths", "item %d must be an absolute path, got %s", i+1, quote(dp))
		}
	}
	v.absPath("system.cgroup_root", s.CgroupRoot, false)
	v.absPath("system.proc_root", s.ProcRoot, false)
	v.nonEmptyItems("system.app_process_names", s.AppProcessNames)
	if strings.ContainsFunc(s.AppPIDFile, isControl) {
		v.add("system.app_pid_file", "must not contain control characters")
	}

	b := c.Backpressure
	v.intRange("backpressure.max_concurrency", b.MaxConcurrency, 0, maxSize)
	v.intRange("backpressure.queue_size", b.QueueSize, 0, maxSize)
	v.positive("backpressure.queue_timeout", b.QueueTimeout)
	v.rate("backpressure.rate_limit_rps", "backpressure.rate_limit_burst", b.RateLimitRPS, b.RateLimitBurst)
	v.rate("backpressure.per_client_rps", "backpressure.per_client_burst", b.PerClientRPS, b.PerClientBurst)
	v.intRange("backpressure.per_client_max_clients", b.PerClientMaxClients, 1, 10*maxSize)
	okMin := v.intRange("backpressure.adaptive.min_limit", b.Adaptive.MinLimit, 1, maxSize)
	okMax := v.intRange("backpressure.adaptive.max_limit", b.Adaptive.MaxLimit, 1, maxSize)
	if okMin && okMax && b.Adaptive.MinLimit > b.Adaptive.MaxLimit {
		v.add("backpressure.adaptive.min_limit", "must not exceed backpressure.adaptive.max_limit (%s), got %d > %d",
			v.env["backpressure.adaptive.max_limit"], b.Adaptive.MinLimit, b.Adaptive.MaxLimit)
	}
	v.positive("backpressure.adaptive.min_rtt_interval", b.Adaptive.MinRTTInterval)
	if v.finite("backpressure.adaptive.headroom", b.Adaptive.Headroom) && (b.Adaptive.Headroom <= 0 || b.Adaptive.Headroom > 10) {
		v.add("backpressure.adaptive.headroom", "must be in (0,10], got %s", formatFloat(b.Adaptive.Headroom))
	}
	v.fraction("backpressure.shed_fraction", b.ShedFraction)
	v.nonNegative("backpressure.shed_hold", b.ShedHold)
	for _, s := range b.ShedSignals {
		signals := ShedSignals()
		v.oneOf("backpressure.shed_signals", s, signals[:]...)
	}
	v.routes("backpressure.critical_routes", b.CriticalRoutes)
	v.routes("backpressure.low_priority_routes", b.LowPriorityRoutes)
	for _, cr := range b.CriticalRoutes {
		for _, lr := range b.LowPriorityRoutes {
			if cr == lr {
				v.add("backpressure.low_priority_routes", "%s is also in backpressure.critical_routes", quote(lr))
			}
		}
	}

	al := c.Alerts
	v.nonNegative("alerts.min_duration", al.MinDuration)
	if v.finite("alerts.resolve_margin", al.ResolveMargin) && (al.ResolveMargin < 0 || al.ResolveMargin >= 1) {
		v.add("alerts.resolve_margin", "must be in [0,1), got %s", formatFloat(al.ResolveMargin))
	}
	v.intRange("alerts.history_size", al.HistorySize, 1, maxSize)
	e := al.Email
	v.hostPort("alerts.email.smtp_addr", e.SMTPAddr, true)
	if e.SMTPAddr != "" {
		if e.From == "" {
			v.add("alerts.email.from", "must be set when alerts.email.smtp_addr is set")
		}
		if len(e.To) == 0 {
			v.add("alerts.email.to", "must list at least one address when alerts.email.smtp_addr is set")
		}
	}
	if e.From != "" {
		if _, err := mail.ParseAddress(e.From); err != nil {
			v.add("alerts.email.from", "must be an email address, got %s", quote(e.From))
		}
	}
	for i, to := range e.To {
		if _, err := mail.ParseAddress(to); err != nil {
			v.add("alerts.email.to", "item %d must be an email address, got %s", i+1, quote(to))
		}
	}
	if e.Password.IsSet() && e.Username == "" {
		v.add("alerts.email.username", "must be set when alerts.email.password is set")
	}
	if strings.ContainsFunc(e.Username, isControl) {
		v.add("alerts.email.username", "must not contain control characters")
	}
	v.oneOf("alerts.email.min_severity", e.MinSeverity, "warning", "critical")
	v.httpURL("alerts.webhook_url", al.WebhookURL.Reveal(), true)
	v.httpURL("alerts.alertmanager_url", al.AlertmanagerURL.Reveal(), true)
	v.positive("alerts.timeout", al.Timeout)
	v.intRange("alerts.retries", al.Retries, 0, 100)
	v.httpURL("alerts.runbook_base_url", al.RunbookBaseURL, true)

	ac := c.Actions
	v.httpURL("actions.cleanup_url", ac.CleanupURL, true)
	v.positive("actions.cleanup_timeout", ac.CleanupTimeout)
	v.nonNegative("actions.cooldown", ac.Cooldown)
	if v.positive("actions.session_ttl", ac.SessionTTL) && (ac.SessionTTL < 1 || ac.SessionTTL != Seconds(math.Trunc(float64(ac.SessionTTL)))) {
		v.add("actions.session_ttl", "must be a whole number of seconds ≥ 1, got %s", formatFloat(float64(ac.SessionTTL)))
	}
	v.intRange("actions.session_repair_max", ac.SessionRepairMax, 1, maxSize)

	v.fraction("runtime.memory_limit_share", c.Runtime.MemoryLimitShare)
	v.intRange("runtime.memory_limit_default_mib", c.Runtime.MemoryLimitDefaultMiB, 0, 1<<20)
	v.intRange("runtime.max_procs", c.Runtime.MaxProcs, 0, 1024)
	v.intRange("runtime.max_client_connections", c.Runtime.MaxClientConnections, -1, maxSize)
	v.intRange("runtime.gc_headroom_mib", c.Runtime.GCHeadroomMiB, 0, 1<<20)

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "console")

	v.utf8(c)

	if strings.TrimSpace(c.DataDir) == "" {
		v.add("data_dir", "must be set to a directory")
	} else if strings.ContainsFunc(c.DataDir, isControl) {
		v.add("data_dir", "must not contain control characters")
	}
	v.dsn("store.dsn", c.Store.DSN)
	v.name("instance", c.Instance, true)
	v.name("fleet", c.Fleet, false)
	v.history(c.History)
	v.app(c.App)
	return v.errs
}

// app: the version is short printable text; the header is an HTTP field
// name (RFC 9110 token), and not one the proxy itself manages.
func (v *validator) app(a App) {
	switch {
	case len(a.Version) > MaxAppVersionLen:
		v.add("app.version", "must be at most %d bytes, got %d", MaxAppVersionLen, len(a.Version))
	case strings.ContainsFunc(a.Version, func(r rune) bool { return r < 0x20 || r == 0x7f || r == utf8.RuneError }):
		v.add("app.version", "must be printable text (no control characters)")
	}
	h := a.VersionHeader
	switch {
	case h == "":
	case len(h) > 128:
		v.add("app.version_header", "must be at most 128 bytes, got %d", len(h))
	case strings.ContainsFunc(h, func(r rune) bool { return !isTokenChar(r) }):
		v.add("app.version_header", "must be an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~), e.g. X-App-Version, got %q", h)
	default:
		switch strings.ToLower(h) {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "content-length", "content-type", "set-cookie":
			v.add("app.version_header", "must be a header of the app's own, not %s", h)
		}
	}
}

// isTokenChar reports whether r may appear in an HTTP token (RFC 9110 5.6.2).
func isTokenChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}

// history: each tier's retention covers at least one step of the next
// tier (a rollup is computed from the tier below), whole seconds, and the
// tiers grow from fine to coarse.
func (v *validator) history(h History) {
	const tenYears = 10 * 366 * 86400
	ok := func(key string, s Seconds, lo float64) bool {
		x := float64(s)
		if !v.finite(key, x) {
			return false
		}
		if x < lo || x > tenYears || x != math.Trunc(x) {
			v.add(key, "must be a whole number of seconds between %s and %s, got %s", formatFloat(lo), formatFloat(tenYears), formatFloat(x))
			return false
		}
		return true
	}
	v.intRange("history.max_routes", h.MaxRoutes, 1, 10000)
	ok10 := ok("history.retention_10s", h.Retention10s, 60)
	ok1m := ok("history.retention_1m", h.Retention1m, 3600)
	ok1h := ok("history.retention_1h", h.Retention1h, 3600)
	if ok10 && ok1m && h.Retention10s > h.Retention1m {
		v.add("history.retention_10s", "must not exceed history.retention_1m (%s), got %s", formatFloat(float64(h.Retention1m)), formatFloat(float64(h.Retention10s)))
	}
	if ok1m && ok1h && h.Retention1m > h.Retention1h {
		v.add("history.retention_1m", "must not exceed history.retention_1h (%s), got %s", formatFloat(float64(h.Retention1h)), formatFloat(float64(h.Retention1m)))
	}
}
