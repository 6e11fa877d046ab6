package alerts

import (
	"math"
	"strconv"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/figures"
	"github.com/pulsegate/pulsegate/store"
)

// Rule names. Figure rules read the figure of the same name (see
// docs/ARCHITECTURE.md), except where noted in the rule table.
const (
	RuleMemoryUsage       = string(figures.MemoryUsage)
	RuleCPUUsage          = string(figures.CPUUsage)
	RuleDiskUsage         = string(figures.DiskUsage)
	RuleConnectionPool    = string(figures.ConnectionPoolUtilization)
	RuleDBLatency         = string(figures.DBLatency)
	RuleDBLongQueries     = "db_long_queries"
	RuleDBConnectionLeak  = "db_connection_leak"
	RuleDBIdleInTx        = "db_idle_in_transaction_oldest"
	RuleJobQueueDepth     = string(figures.JobQueueDepth)
	RuleQueueDepth        = string(figures.QueueDepth)
	RuleErrorRate         = string(figures.ErrorRate) // reads app_error_rate: what the app caused
	RuleRejections        = "backpressure_rejections"
	RuleAvgResponseTime   = string(figures.AvgResponseTime)
	RuleRedisMemoryUsage  = string(figures.RedisMemoryUsage)
	RuleRedisEvictions    = "redis_evicted_per_sec"
	RuleSessionWithoutTTL = "session_without_ttl"
	RuleProbeDown         = "probe_down"
	RuleTaskFailing       = "task_failing"
)

// Recommendations, from the product's troubleshooting guide.
const (
	recHighMemory = "Check session cleanup configuration; review background task memory usage; increase cleanup frequency; monitor for memory leak patterns"
	recDBConn     = "Verify connection pool configuration; check for connection leaks in code; optimize slow queries; increase pool size if needed"
	recSlowDB     = "Identify slow database queries; optimize queries and check indexes; verify connection pool configuration"
	recSlowReq    = "Identify slow database queries; check for blocking background tasks; review request processing logic; optimize resource-intensive operations"
	recTasks      = "Check task coordination settings; review error handling in background tasks; monitor resource usage during task execution; verify graceful shutdown procedures"
	recSessions   = "Configure appropriate session timeouts; implement efficient session cleanup; monitor for session-related memory leaks"
)

// levels are one rule's thresholds in effect. A level that is off never
// fires. strict rules fire above the threshold (used for "any > 0" rules);
// the others fire at or above it.
type levels struct {
	warn, crit     float64
	warnOn, critOn bool
	strict         bool
}

// rule is one figure rule of the table.
type rule struct {
	name   string
	figure string
	// warnKey/critKey are the configuration keys of the thresholds, for
	// validation errors and docs ("" when the level is fixed).
	warnKey, critKey string
	levels           func(c *config.Config) levels
	// message renders the human line; first is the value when the alert
	// fired (NaN when none is active).
	message        func(v, first float64) string
	recommendation string
}

// figureLevels reads a figure's thresholds from the configuration
// (figures is their one home).
func figureLevels(n figures.Name) func(c *config.Config) levels {
	f, _ := figures.Lookup(n)
	return func(c *config.Config) levels {
		t := f.Thresholds(c)
		return levels{warn: t.Warning, crit: t.Critical, warnOn: t.WarningOn, critOn: t.CriticalOn}
	}
}

// pair is the common "warning and critical from two config fields" case.
func pair(w, c float64) levels {
	return levels{warn: w, crit: c, warnOn: w > 0 && !math.IsNaN(w), critOn: c > 0 && !math.IsNaN(c)}
}

// anyAboveZero is a warning-only rule that fires on any value above 0.
func anyAboveZero(*config.Config) levels { return levels{warnOn: true, strict: true} }

// Values in titles are cut, never rounded up: a memory usage of 0.899
// (warning; critical is 0.9) reads "89%", not "90%", so a title never shows
// a value at a threshold the alert did not reach. The exact value and the
// threshold are the alert's value and threshold fields.
func pct(v float64) string { return strconv.FormatFloat(cut(v*100, 1), 'f', 0, 64) + "%" }

func pct1(v float64) string { return strconv.FormatFloat(cut(v*100, 10), 'f', 1, 64) + "%" }

func secs(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(cut(v, 1), 'f', 0, 64) + "s"
	}
	return strconv.FormatFloat(cut(v, 10), 'f', 1, 64) + "s"
}

// cut truncates v to 1/per steps, toward zero, ignoring float noise below
// 1e-9 of a step (0.29×100 is 28.999999999999996: 29, not 28).
func cut(v, per float64) float64 { return math.Trunc(v*per+1e-9) / per }

func count(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func plural(v float64, one, many string) string {
	if v == 1 {
		return one
	}
	return many
}

// figureRules is the rule table for figures, in evaluation order.
var figureRules = []rule{
	{
		name: RuleMemoryUsage, figure: string(figures.MemoryUsage),
		levels:         figureLevels(figures.MemoryUsage),
		message:        func(v, _ float64) string { return "Memory usage at " + pct(v) },
		recommendation: recHighMemory,
	},
	{
		name: RuleCPUUsage, figure: string(figures.CPUUsage),
		levels:         figureLevels(figures.CPUUsage),
		message:        func(v, _ float64) string { return "CPU usage at " + pct(v) },
		recommendation: "Review request processing logic; optimize resource-intensive operations; check for blocking background tasks; scale resources if the load is legitimate",
	},
	{
		name: RuleDiskUsage, figure: string(figures.DiskUsage),
		levels:         figureLevels(figures.DiskUsage),
		message:        func(v, _ float64) string { return "Disk usage at " + pct(v) },
		recommendation: "Clean up temp files and old logs; alert admins; check which of system.disk_paths is filling up",
	},
	{
		name: RuleConnectionPool, figure: string(figures.ConnectionPoolUtilization),
		levels: figureLevels(figures.ConnectionPoolUtilization),
		message: func(v, _ float64) string {
			return "Database connection pool at " + pct(v) + " utilization"
		},
		recommendation: recDBConn,
	},
	{
		name: RuleDBLatency, figure: string(figures.DBLatency),
		levels: figureLevels(figures.DBLatency),
		message: func(v, _ float64) string {
			return "Database query time at " + secs(v) + " (SELECT 1 round trip)"
		},
		recommendation: recSlowDB,
	},
	{
		name: RuleDBLongQueries, figure: "db_long_queries",
		levels: anyAboveZero,
		message: func(v, _ float64) string {
			return count(v) + " database " + plural(v, "query", "queries") + " running longer than database.long_query_threshold"
		},
		recommendation: recSlowDB,
	},
	{
		name: RuleDBConnectionLeak, figure: "db_leak_suspects",
		levels: anyAboveZero,
		message: func(v, _ float64) string {
			return "Connection leak detected - " + count(v) + " " + plural(v, "connection", "connections") + " not properly closed"
		},
		recommendation: "Check for connection leaks in code (connections checked out and never returned); verify connection pool configuration; increase pool size only after fixing leaks",
	},
	{
		name: RuleDBIdleInTx, figure: "db_idle_in_transaction_oldest",
		warnKey: "database.idle_in_transaction_warning", critKey: "database.idle_in_transaction_warning",
		levels: func(c *config.Config) levels {
			w := float64(c.Database.IdleInTransactionWarning)
			return pair(w, 2*w)
		},
		message: func(v, _ float64) string {
			return "Transaction idle in transaction for " + secs(v) + " (oldest session)"
		},
		recommendation: "Check for connection leaks in code: a transaction was opened and never committed or rolled back; verify connection pool configuration",
	},
	{
		name: RuleJobQueueDepth, figure: string(figures.JobQueueDepth),
		levels: figureLevels(figures.JobQueueDepth),
		message: func(v, _ float64) string {
			return "Job queue depth at " + count(v) + " " + plural(v, "job", "jobs")
		},
		recommendation: recTasks + "; add workers if the queue keeps growing",
	},
	{
		name: RuleQueueDepth, figure: string(figures.QueueDepth),
		levels: figureLevels(figures.QueueDepth),
		message: func(v, _ float64) string {
			return "Request queue at " + count(v) + " pending " + plural(v, "request", "requests")
		},
		recommendation: "pulsegate is already applying backpressure: requests beyond the concurrency limit wait in its queue, and past backpressure.queue_size they get 503 with Retry-After. Add app capacity (workers or replicas) and find the slow endpoints and blocking operations holding the workers",
	},
	{
		// The app's errors (5xx, and 502/504 when it cannot be reached or
		// answers too late): pulsegate's own rejections have their rule.
		name: RuleErrorRate, figure: string(figures.AppErrorRate),
		levels:         figureLevels(figures.AppErrorRate),
		message:        func(v, _ float64) string { return "App error rate at " + pct1(v) },
		recommendation: "Alert admins, investigate errors: check the app's logs for the failing routes; check database and Redis health",
	},
	{
		name: RuleRejections, figure: string(figures.RejectionRate),
		levels: figureLevels(figures.RejectionRate),
		message: func(v, _ float64) string {
			return "Backpressure rejecting " + pct1(v) + " of requests (429/503 from pulsegate)"
		},
		recommendation: "pulsegate is protecting the app: its backpressure answers 429 (rate limits) or 503 (queue full, queue timeout, shedding) itself; the backpressure section of the performance API says which limiter and why. Add app capacity (workers or replicas), or raise backpressure.max_concurrency, backpressure.queue_size or the rate limits if the app has headroom",
	},
	{
		name: RuleAvgResponseTime, figure: string(figures.AvgResponseTime),
		levels:         figureLevels(figures.AvgResponseTime),
		message:        func(v, _ float64) string { return "Average response time at " + secs(v) },
		recommendation: recSlowReq,
	},
	{
		name: RuleRedisMemoryUsage, figure: string(figures.RedisMemoryUsage),
		levels:         figureLevels(figures.RedisMemoryUsage),
		message:        func(v, _ float64) string { return "Redis memory usage at " + pct(v) },
		recommendation: "Check session cleanup configuration; configure appropriate session timeouts; monitor for session-related memory leaks; set or raise Redis maxmemory",
	},
	{
		name: RuleRedisEvictions, figure: "redis_evicted_per_sec",
		levels: anyAboveZero,
		message: func(v, _ float64) string {
			return "Redis evicting keys - " + strconv.FormatFloat(v, 'f', 1, 64) + " keys/s (memory full; sessions may be lost)"
		},
		recommendation: "Check session cleanup configuration; configure appropriate session timeouts; raise Redis maxmemory",
	},
	{
		name: RuleSessionWithoutTTL, figure: "session_without_ttl",
		levels: anyAboveZero,
		message: func(v, first float64) string {
			msg := "Session keys without TTL: " + count(v)
			if v > first {
				// Growing since the alert fired: the product's memory-leak pattern.
				msg += ", up from " + count(first) + " - growing, memory leak pattern"
			}
			return msg
		},
		recommendation: recSessions + "; actions.session_ttl_repair can give such keys a TTL",
	},
}

// probeRecommendations by probe name; others get defaultProbeRecommendation.
var probeRecommendations = map[string]string{
	"database_manager":   "Verify database connectivity and credentials (database.dsn); check the database server is running and accepting connections; " + recDBConn,
	"session_monitoring": "Verify Redis connectivity and credentials (redis.url); check the Redis server is running and not blocked",
	"system_optimizer":   "Check that the cgroup and proc filesystems are readable (system.cgroup_root, system.proc_root)",
}

const defaultProbeRecommendation = "Check that the probe's target is reachable and its configuration is right"

func probeMessage(probe string) string {
	return "Probe " + probe + " is down - target unreachable"
}

func taskMessage(task, status string) string {
	if status == "stuck" {
		return "Background task stuck - task_id: " + task
	}
	return "Background task coordination failure - task_id: " + task
}

// level is the severity a value maps to given the alert's current
// severity (hysteresis: an active level holds until the value falls below
// threshold × (1 − margin)). "" means no alert.
func (l levels) level(v float64, current string, margin float64) string {
	above := func(thr float64) bool {
		if l.strict {
			return v > thr
		}
		return v >= thr
	}
	holds := func(thr float64) bool {
		r := thr * (1 - margin)
		if l.strict {
			return v > r
		}
		return v >= r
	}
	switch {
	case l.critOn && above(l.crit):
		return store.SeverityCritical
	case l.critOn && current == store.SeverityCritical && holds(l.crit):
		return store.SeverityCritical
	case l.warnOn && above(l.warn):
		return store.SeverityWarning
	case l.warnOn && current != "" && holds(l.warn):
		return store.SeverityWarning
	}
	return ""
}

// threshold is the threshold of a severity.
func (l levels) threshold(sev string) float64 {
	if sev == store.SeverityCritical {
		return l.crit
	}
	return l.warn
}
