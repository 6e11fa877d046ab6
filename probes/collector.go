package probes

import (
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulsegate/pulsegate/figures"
)

// FigureMetric says how a probe figure is exported to Prometheus.
type FigureMetric struct {
	// Name is the full metric name.
	Name string
	// Help is the metric's help text.
	Help string
}

// figureMetrics is the one table from figure name (docs/ARCHITECTURE.md) to
// Prometheus gauge. Fractions get the suffix _ratio and times _seconds;
// counts keep their name. A figure not in the table is exported by
// FigureMetricFor's rule.
var figureMetrics = map[string]FigureMetric{
	string(figures.MemoryUsage):               {"pulsegate_memory_usage_ratio", "Working set ÷ memory limit (container, or host when unlimited)."},
	string(figures.CPUUsage):                  {"pulsegate_cpu_usage_ratio", "Container CPU ÷ quota (host CPU when unlimited)."},
	string(figures.DiskUsage):                 {"pulsegate_disk_usage_ratio", "Highest used fraction over the configured disk paths."},
	"host_memory_usage":                       {"pulsegate_host_memory_usage_ratio", "Host memory in use ÷ host total."},
	"host_cpu_usage":                          {"pulsegate_host_cpu_usage_ratio", "Host CPU busy fraction over all CPUs."},
	"cpu_throttled":                           {"pulsegate_cpu_throttled_ratio", "Fraction of CFS periods throttled since the previous sample."},
	string(figures.ConnectionPoolUtilization): {"pulsegate_connection_pool_utilization_ratio", "Database connections in use ÷ max_connections."},
	string(figures.DBLatency):                 {"pulsegate_db_latency_seconds", "Database SELECT 1 round trip."},
	"db_idle_in_transaction":                  {"pulsegate_db_idle_in_transaction", "Database sessions idle in transaction."},
	"db_idle_in_transaction_oldest":           {"pulsegate_db_idle_in_transaction_oldest_seconds", "Age of the oldest session idle in transaction."},
	"db_leak_suspects":                        {"pulsegate_db_leak_suspects", "Database connections idle longer than the leak age."},
	"db_long_queries":                         {"pulsegate_db_long_queries", "Queries running longer than database.long_query_threshold."},
	string(figures.RedisLatency):              {"pulsegate_redis_latency_seconds", "Redis PING round trip."},
	string(figures.RedisMemoryUsage):          {"pulsegate_redis_memory_usage_ratio", "Redis used_memory ÷ maxmemory (or ÷ container/host memory when maxmemory is 0)."},
	"redis_evicted_per_sec":                   {"pulsegate_redis_evicted_per_second", "Redis evicted keys per second."},
	"session_count":                           {"pulsegate_session_count", "Keys under the session prefix."},
	"session_without_ttl":                     {"pulsegate_session_without_ttl", "Session keys without a TTL."},
	string(figures.JobQueueDepth):             {"pulsegate_job_queue_depth", "Largest configured job queue length."},
}

// FigureMetricFor returns the metric for a figure: the figureMetrics entry,
// or for an unknown figure pulsegate_<figure> with _ratio appended to names
// ending in _usage, _utilization or _fraction and _seconds to names ending
// in _latency, _age, _oldest or _time (other characters than [a-zA-Z0-9_]
// become _).
func FigureMetricFor(figure string) FigureMetric {
	if m, ok := figureMetrics[figure]; ok {
		return m
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, figure)
	switch {
	case figureHasSuffix(name, "_usage", "_utilization", "_fraction"):
		name += "_ratio"
	case figureHasSuffix(name, "_latency", "_age", "_oldest", "_time"):
		name += "_seconds"
	}
	return FigureMetric{Name: "pulsegate_" + name, Help: "Probe figure " + figure + "."}
}

func figureHasSuffix(s string, suffixes ...string) bool {
	for _, x := range suffixes {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

var collectorStatuses = []Status{StatusOK, StatusWarning, StatusCritical, StatusDown, StatusDisabled}

// Collector exports the Store and Tasks to Prometheus. Collect only reads
// their in-memory state: a scrape never runs a probe. It is an unchecked
// collector (Describe sends nothing) because the figure set is dynamic.
type Collector struct {
	store *Store
	tasks *Tasks

	up, status, duration, lastSuccess                  *prometheus.Desc
	taskRunning, taskConsec, taskStuck, taskRuns       *prometheus.Desc
	taskFailures, taskSkipped, taskErrorRate, taskLast *prometheus.Desc
}

// NewCollector returns a Collector over store and tasks (tasks may be nil).
func NewCollector(store *Store, tasks *Tasks) *Collector {
	p := []string{"probe"}
	t := []string{"task"}
	return &Collector{
		store:         store,
		tasks:         tasks,
		up:            prometheus.NewDesc("pulsegate_probe_up", "1 when the probe's last run reached its target (ok, warning or critical), 0 when down.", p, nil),
		status:        prometheus.NewDesc("pulsegate_probe_status", "1 for the probe's current status, 0 for the others.", []string{"probe", "status"}, nil),
		duration:      prometheus.NewDesc("pulsegate_probe_duration_seconds", "Duration of the probe's last run.", p, nil),
		lastSuccess:   prometheus.NewDesc("pulsegate_probe_last_success_timestamp_seconds", "Unix time at which the probe last reached its target.", p, nil),
		taskRunning:   prometheus.NewDesc("pulsegate_task_running", "1 while a run of the background task is in flight.", t, nil),
		taskConsec:    prometheus.NewDesc("pulsegate_task_consecutive_failures", "Failed runs of the task since its last success.", t, nil),
		taskStuck:     prometheus.NewDesc("pulsegate_task_stuck", "1 while a run of the task is in flight past its deadline.", t, nil),
		taskRuns:      prometheus.NewDesc("pulsegate_task_runs_total", "Completed runs of the task.", t, nil),
		taskFailures:  prometheus.NewDesc("pulsegate_task_failures_total", "Runs of the task that ended with an error.", t, nil),
		taskSkipped:   prometheus.NewDesc("pulsegate_task_skipped_total", "Ticks of the task skipped because its previous run was still in flight.", t, nil),
		taskErrorRate: prometheus.NewDesc("pulsegate_task_error_rate_ratio", "Failed fraction of the task's recent runs.", t, nil),
		taskLast:      prometheus.NewDesc("pulsegate_task_last_duration_seconds", "Duration of the task's last completed run.", t, nil),
	}
}

// Describe sends nothing: the collector is unchecked.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the current probe and task metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.store.Snapshot()
	figures := map[string]float64{}
	for _, name := range slices.Sorted(maps.Keys(snap)) {
		r := snap[name]
		if r.Status != StatusDisabled {
			up := 0.0
			if r.Status.Reached() {
				up = 1
				maps.Copy(figures, r.Figures)
			}
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, name)
			ch <- prometheus.MustNewConstMetric(c.duration, prometheus.GaugeValue, r.Duration.Seconds(), name)
		}
		for _, s := range collectorStatuses {
			v := 0.0
			if r.Status == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.status, prometheus.GaugeValue, v, name, string(s))
		}
		if t, ok := c.store.LastSuccess(name); ok {
			ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, float64(t.Unix())+float64(t.Nanosecond())/1e9, name)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(figures)) {
		m := FigureMetricFor(f)
		desc := prometheus.NewDesc(m.Name, m.Help, nil, nil)
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, figures[f])
	}
	if c.tasks == nil {
		return
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, t := range c.tasks.Snapshot() {
		ch <- prometheus.MustNewConstMetric(c.taskRunning, prometheus.GaugeValue, b(t.Running), t.Name)
		ch <- prometheus.MustNewConstMetric(c.taskConsec, prometheus.GaugeValue, float64(t.ConsecutiveFailures), t.Name)
		ch <- prometheus.MustNewConstMetric(c.taskStuck, prometheus.GaugeValue, b(t.Stuck), t.Name)
		ch <- prometheus.MustNewConstMetric(c.taskRuns, prometheus.CounterValue, float64(t.Runs), t.Name)
		ch <- prometheus.MustNewConstMetric(c.taskFailures, prometheus.CounterValue, float64(t.Failures), t.Name)
		ch <- prometheus.MustNewConstMetric(c.taskSkipped, prometheus.CounterValue, float64(t.Skipped), t.Name)
		ch <- prometheus.MustNewConstMetric(c.taskErrorRate, prometheus.GaugeValue, t.ErrorRate, t.Name)
		ch <- prometheus.MustNewConstMetric(c.taskLast, prometheus.GaugeValue, t.LastDurationSeconds, t.Name)
	}
}
