// Package figures is the one home of what pulsegate judges: every figure
// (its name, unit, source, which direction is bad, the configuration keys
// of its warning/critical thresholds, a short label) and the one Judge that
// turns a value into a level. Health, alerts, shedding, actions, the
// probes' reasons and the admin API (the "judgements" object the dashboard
// colours from) all read thresholds and compare through here.
//
// It is a leaf package: it imports config only. Adding a figure means one
// entry in the table below plus its measurement.
package figures

import (
	"math"

	"github.com/pulsegate/pulsegate/config"
)

// Name is a figure's name, as it appears in the JSON, the tick's figures,
// alert metrics and Prometheus labels.
type Name string

// The judged figures.
const (
	MemoryUsage               Name = "memory_usage"
	CPUUsage                  Name = "cpu_usage"
	DiskUsage                 Name = "disk_usage"
	ConnectionPoolUtilization Name = "connection_pool_utilization"
	DBLatency                 Name = "db_latency"
	RedisLatency              Name = "redis_latency"
	RedisMemoryUsage          Name = "redis_memory_usage"
	JobQueueDepth             Name = "job_queue_depth"
	ErrorRate                 Name = "error_rate"
	AppErrorRate              Name = "app_error_rate"
	RejectionRate             Name = "rejection_rate"
	AvgResponseTime           Name = "avg_response_time"
	P95ResponseTime           Name = "p95_response_time"
	Apdex                     Name = "apdex"
	QueueDepth                Name = "queue_depth"
	ThroughputRPS             Name = "throughput_rps"
)

// Unit is how a figure's value reads.
type Unit string

// Units.
const (
	Ratio     Unit = "ratio"      // 0..1
	Seconds   Unit = "seconds"    // seconds
	Count     Unit = "count"      // a whole number
	PerSecond Unit = "per_second" // a rate
	Score     Unit = "score"      // Apdex, 0..1, higher is better
)

// Direction says which way a figure goes bad.
type Direction string

// Directions.
const (
	Above Direction = "above" // bad when the value reaches the threshold or more
	Below Direction = "below" // bad when the value falls to the threshold or less
)

// Source is the part of pulsegate that measures a figure.
type Source string

// Sources.
const (
	System       Source = "system"
	Database     Source = "database"
	Redis        Source = "redis"
	Proxy        Source = "proxy"
	Backpressure Source = "backpressure"
)

// Level is a judgement's outcome.
type Level string

// Levels.
const (
	OK          Level = "ok"
	Warning     Level = "warning"
	Critical    Level = "critical"
	NotMeasured Level = "not_measured"
	Disabled    Level = "disabled"
)

// Rank orders levels by badness: ok (and unknown) 0, warning 1, critical 2.
func (l Level) Rank() int {
	switch l {
	case Warning:
		return 1
	case Critical:
		return 2
	}
	return 0
}

// Window names of the figures' measurement windows.
const (
	WindowRequests    = "1m"
	WindowLatestProbe = "latest probe"
	WindowNow         = "now"
)

// Thresholds are a figure's warning and critical levels; a level that is
// off is not set (nil in the JSON).
type Thresholds struct {
	Warning, Critical       float64
	WarningOn, CriticalOn   bool
	WarningKey, CriticalKey string // the configuration keys they come from
}

// Figure describes one judged figure.
type Figure struct {
	Name    Name
	Unit    Unit
	Source  Source
	BadWhen Direction
	Window  string
	// Label is a short human label ("Memory").
	Label string
	// NotMeasured says why the figure may be missing while its source runs.
	NotMeasured string
	// thresholds reads the figure's levels from a configuration; nil: the
	// figure is shown but never judged.
	thresholds func(c *config.Config) Thresholds
}

// Thresholds returns f's levels in cfg (both off when f is not judged).
func (f Figure) Thresholds(cfg *config.Config) Thresholds {
	if f.thresholds == nil || cfg == nil {
		return Thresholds{}
	}
	return f.thresholds(cfg)
}

// pair is a warning/critical pair where a non-positive value (for bad
// above) is off, as the configuration documents.
func pair(warnKey, critKey string, warn, crit float64) Thresholds {
	return Thresholds{Warning: warn, Critical: crit, WarningOn: warn > 0, CriticalOn: crit > 0, WarningKey: warnKey, CriticalKey: critKey}
}

const (
	probeNotMeasured   = "waiting for the probe's first reading"
	requestNotMeasured = "fewer than 10 requests in the last minute"
)

var table = []Figure{
	{Name: MemoryUsage, Unit: Ratio, Source: System, BadWhen: Above, Window: WindowLatestProbe, Label: "Memory", NotMeasured: probeNotMeasured,
		thresholds: func(c *config.Config) Thresholds {
			r := c.Responsiveness
			return pair("responsiveness.memory_warning_threshold", "responsiveness.memory_critical_threshold", r.MemoryWarningThreshold, r.MemoryCriticalThreshold)
		}},
	{Name: CPUUsage, Unit: Ratio, Source: System, BadWhen: Above, Window: WindowLatestProbe, Label: "CPU", NotMeasured: "CPU usage appears from the second system probe on",
		thresholds: func(c *config.Config) Thresholds {
			r := c.Responsiveness
			return pair("responsiveness.cpu_warning_threshold", "responsiveness.cpu_critical_threshold", r.CPUWarningThreshold, r.CPUCriticalThreshold)
		}},
	{Name: DiskUsage, Unit: Ratio, Source: System, BadWhen: Above, Window: WindowLatestProbe, Label: "Disk", NotMeasured: probeNotMeasured,
		thresholds: func(c *config.Config) Thresholds {
			t := c.Thresholds
			return pair("thresholds.disk_warning", "thresholds.disk_critical", t.DiskWarning, t.DiskCritical)
		}},
	{Name: ConnectionPoolUtilization, Unit: Ratio, Source: Database, BadWhen: Above, Window: WindowLatestProbe, Label: "DB connections", NotMeasured: probeNotMeasured,
		thresholds: func(c *config.Config) Thresholds {
			r := c.Responsiveness
			return pair("responsiveness.db_connection_warning_threshold", "responsiveness.db_connection_critical_threshold", r.DBConnectionWarningThreshold, r.DBConnectionCriticalThreshold)
		}},
	{Name: DBLatency, Unit: Seconds, Source: Database, BadWhen: Above, Window: WindowLatestProbe, Label: "DB latency", NotMeasured: probeNotMeasured,
		thresholds: func(c *config.Config) Thresholds {
			t := c.Thresholds
			return pair("thresholds.db_query_warning", "thresholds.db_query_critical", float64(t.DBQueryWarning), float64(t.DBQueryCritical))
		}},
	{Name: RedisLatency, Unit: Seconds, Source: Redis, BadWhen: Above, Window: WindowLatestProbe, Label: "Redis latency", NotMeasured: probeNotMeasured,
		thresholds: func(c *config.Config) Thresholds {
			t := c.Thresholds
			return pair("thresholds.redis_latency_warning", "thresholds.redis_latency_critical", float64(t.RedisLatencyWarning), float64(t.RedisLatencyCritical))
		}},
	{Name: RedisMemoryUsage, Unit: Ratio, Source: Redis, BadWhen: Above, Window: WindowLatestProbe, Label: "Redis memory", NotMeasured: "Redis has no maxmemory and no container limit was read",
		thresholds: func(c *config.Config) Thresholds {
			r := c.Responsiveness
			return pair("responsiveness.memory_warning_threshold", "responsiveness.memory_critical_threshold", r.MemoryWarningThreshold, r.MemoryCriticalThreshold)
		}},
	{Name: JobQueueDepth, Unit: Count, Source: Redis, BadWhen: Above, Window: WindowLatestProbe, Label: "Job queue", NotMeasured: "no redis.queue_keys configured (RESPONSIVENESS_REDIS_QUEUE_KEYS)",
		thresholds: func(c *config.Config) Thresholds {
			t := c.Thresholds
			return pair("thresholds.job_queue_warning", "thresholds.job_queue_critical", float64(t.JobQueueWarning), float64(t.JobQueueCritical))
		}},
	{Name: ErrorRate, Unit: Ratio, Source: Proxy, BadWhen: Above, Window: WindowRequests, Label: "Error rate", NotMeasured: requestNotMeasured,
		thresholds: func(c *config.Config) Thresholds {
			t := c.Thresholds
			return pair("thresholds.error_rate_warning", "thresholds.error_rate_critical", t.ErrorRateWarning, t.ErrorRateCritical)
		}},
	{Name: AppErrorRate, Unit: Ratio, Source: Proxy, BadWhen: Above, Window: WindowRequests, Label: "App error rate", NotMeasured: requestNotMeasured,
		thresholds: func(c *config.Config) Thresholds {
			t := c.Thresholds
			return pair("thresholds.error_rate_warning", "thresholds.error_rate_critical", t.ErrorRateWarning, t.ErrorRateCritical)
		}},
	// Clients refused by pulsegate itself, judged like the error rate
	// (deploy's PulsegateBackpressureRejections mirrors both levels).
	{Name: RejectionRate, Unit: Ratio, Source: Backpressure, BadWhen: Above, Window: WindowRequests, Label: "Rejected", NotMeasured: requestNotMeasured,
		thresholds: func(c *config.Config) Thresholds {
			t := c.Thresholds
			return pair("thresholds.error_rate_warning", "thresholds.error_rate_critical", t.ErrorRateWarning, t.ErrorRateCritical)
		}},
	{Name: AvgResponseTime, Unit: Seconds, Source: Proxy, BadWhen: Above, Window: WindowRequests, Label: "Avg response", NotMeasured: requestNotMeasured,
		thresholds: func(c *config.Config) Thresholds {
			t := c.Thresholds
			return pair("thresholds.response_time_warning", "thresholds.response_time_critical", float64(t.ResponseTimeWarning), float64(t.ResponseTimeCritical))
		}},
	{Name: P95ResponseTime, Unit: Seconds, Source: Proxy, BadWhen: Above, Window: WindowRequests, Label: "p95 response", NotMeasured: requestNotMeasured},
	{Name: Apdex, Unit: Score, Source: Proxy, BadWhen: Below, Window: WindowRequests, Label: "Apdex", NotMeasured: requestNotMeasured,
		thresholds: func(c *config.Config) Thresholds {
			t := c.Thresholds
			// Bad below: 0 turns a level off (no score is ≤ 0 but a total failure).
			return Thresholds{Warning: t.ApdexWarning, Critical: t.ApdexCritical, WarningOn: t.ApdexWarning > 0, CriticalOn: t.ApdexCritical > 0,
				WarningKey: "thresholds.apdex_warning", CriticalKey: "thresholds.apdex_critical"}
		}},
	{Name: QueueDepth, Unit: Count, Source: Backpressure, BadWhen: Above, Window: WindowNow, Label: "Queued requests",
		thresholds: func(c *config.Config) Thresholds {
			t := c.Thresholds
			return pair("thresholds.queue_warning", "thresholds.queue_critical", float64(t.QueueWarning), float64(t.QueueCritical))
		}},
	{Name: ThroughputRPS, Unit: PerSecond, Source: Proxy, Window: WindowRequests, Label: "Throughput", BadWhen: Above},
}

// All returns every figure, in display order.
func All() []Figure { return append([]Figure(nil), table...) }

// Lookup returns the figure called name.
func Lookup(name Name) (Figure, bool) {
	for _, f := range table {
		if f.Name == name {
			return f, true
		}
	}
	return Figure{}, false
}

// Compare is the one comparison: the level of v against t for a figure
// bad in direction dir. NaN is ok (nothing is judged on a guess).
func Compare(v float64, dir Direction, t Thresholds) Level {
	if math.IsNaN(v) {
		return OK
	}
	reached := func(thr float64) bool {
		if dir == Below {
			return v <= thr
		}
		return v >= thr
	}
	switch {
	case t.CriticalOn && reached(t.Critical):
		return Critical
	case t.WarningOn && reached(t.Warning):
		return Warning
	}
	return OK
}

// Level judges v for the figure called name with cfg's thresholds. An
// unknown figure is ok.
func LevelOf(cfg *config.Config, name Name, v float64) Level {
	f, ok := Lookup(name)
	if !ok {
		return OK
	}
	return Compare(v, f.BadWhen, f.Thresholds(cfg))
}

// Judgement is one figure judged: the "judgements" entries of the admin
// API and the monitor tick.
type Judgement struct {
	Value          *float64  `json:"value"`
	Unit           Unit      `json:"unit"`
	Level          Level     `json:"level"`
	Warning        *float64  `json:"warning"`
	Critical       *float64  `json:"critical"`
	BadWhen        Direction `json:"bad_when"`
	Window         string    `json:"window"`
	Label          string    `json:"label"`
	Of             string    `json:"of,omitempty"`
	Source         Source    `json:"source"`
	WhyNotMeasured string    `json:"why_not_measured,omitempty"`
}

// Judge judges f's value (measured: ok) with cfg's thresholds.
func (f Figure) Judge(cfg *config.Config, v float64, measured bool) Judgement {
	t := f.Thresholds(cfg)
	j := Judgement{Unit: f.Unit, BadWhen: f.BadWhen, Window: f.Window, Label: f.Label, Source: f.Source, Level: NotMeasured}
	if t.WarningOn {
		w := t.Warning
		j.Warning = &w
	}
	if t.CriticalOn {
		c := t.Critical
		j.Critical = &c
	}
	if !measured || math.IsNaN(v) || math.IsInf(v, 0) {
		j.WhyNotMeasured = f.NotMeasured
		return j
	}
	j.Value = &v
	j.Level = Compare(v, f.BadWhen, t)
	return j
}

// Inputs are what JudgeAll looks at.
type Inputs struct {
	// Values are the measured figures by name (the tick's figures).
	Values map[string]float64
	// Off gives, for a source that is not configured, why (e.g. "set
	// RESPONSIVENESS_DB_DSN to measure the database"): its figures are
	// disabled.
	Off map[Source]string
	// Of qualifies a figure (memory: "of the container limit").
	Of map[Name]string
}

// JudgeAll judges every figure.
func JudgeAll(cfg *config.Config, in Inputs) map[Name]Judgement {
	out := make(map[Name]Judgement, len(table))
	for _, f := range table {
		v, ok := in.Values[string(f.Name)]
		j := f.Judge(cfg, v, ok)
		if why, off := in.Off[f.Source]; off && !ok {
			j.Level, j.WhyNotMeasured = Disabled, why
		}
		j.Of = in.Of[f.Name]
		out[f.Name] = j
	}
	return out
}
