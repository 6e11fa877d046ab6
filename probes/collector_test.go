package probes

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStoreSnapshotIsACopy(t *testing.T) {
	s := NewStore()
	start := time.Unix(1736159400, 0)
	s.Set(Result{Probe: "system_optimizer", Status: StatusOK, Started: start, Duration: time.Second,
		Figures: map[string]float64{"memory_usage": 0.5}, Reasons: []string{"a"}})
	s.Set(Result{Probe: "database_manager", Status: StatusDown, Started: start,
		Figures: map[string]float64{"connection_pool_utilization": 0.9}})
	snap := s.Snapshot()
	snap["system_optimizer"].Figures["memory_usage"] = 42
	snap["system_optimizer"].Reasons[0] = "changed"
	got, _ := s.Get("system_optimizer")
	if got.Figures["memory_usage"] != 0.5 || got.Reasons[0] != "a" {
		t.Errorf("changing a snapshot changed the store: %+v", got)
	}
	if f := s.Figures(); len(f) != 1 || f["memory_usage"] != 0.5 {
		t.Errorf("Figures = %v; want only the reachable probe's figures", f)
	}
	if ls, ok := s.LastSuccess("system_optimizer"); !ok || !ls.Equal(start.Add(time.Second)) {
		t.Errorf("LastSuccess = %v %v", ls, ok)
	}
	if _, ok := s.LastSuccess("database_manager"); ok {
		t.Error("a down probe has a last success")
	}
	if n := s.Names(); len(n) != 2 || n[0] != "database_manager" {
		t.Errorf("Names = %v", n)
	}
}

func TestCollectorExportsStoreAndTasks(t *testing.T) {
	s := NewStore()
	start := time.Unix(1736159400, 0)
	s.Set(Result{Probe: "system_optimizer", Status: StatusWarning, Started: start, Duration: 250 * time.Millisecond,
		Figures: map[string]float64{"memory_usage": 0.85, "cpu_usage": 0.25}})
	s.Set(Result{Probe: "session_monitoring", Status: StatusOK, Started: start, Duration: 2 * time.Millisecond,
		Figures: map[string]float64{"redis_latency": 0.002, "custom_oldest": 3}})
	s.Set(Result{Probe: "database_manager", Status: StatusDown, Started: start, Duration: 2 * time.Second,
		Figures: map[string]float64{"connection_pool_utilization": 0.9}})
	clk := newTaskClock()
	tasks := NewTasks(clk.Now)
	tasks.Begin("probe:database_manager", time.Second)(errors.New("x"))
	tasks.Begin("cleanup", time.Second)
	clk.Add(5 * time.Second)

	c := NewCollector(s, tasks)
	want := `
# HELP pulsegate_probe_up 1 when the probe's last run reached its target (ok, warning or critical), 0 when down.
# TYPE pulsegate_probe_up gauge
pulsegate_probe_up{probe="database_manager"} 0
pulsegate_probe_up{probe="session_monitoring"} 1
pulsegate_probe_up{probe="system_optimizer"} 1
# HELP pulsegate_probe_status 1 for the probe's current status, 0 for the others.
# TYPE pulsegate_probe_status gauge
pulsegate_probe_status{probe="system_optimizer",status="critical"} 0
pulsegate_probe_status{probe="system_optimizer",status="disabled"} 0
pulsegate_probe_status{probe="system_optimizer",status="down"} 0
pulsegate_probe_status{probe="system_optimizer",status="ok"} 0
pulsegate_probe_status{probe="system_optimizer",status="warning"} 1
pulsegate_probe_status{probe="database_manager",status="critical"} 0
pulsegate_probe_status{probe="database_manager",status="disabled"} 0
pulsegate_probe_status{probe="database_manager",status="down"} 1
pulsegate_probe_status{probe="database_manager",status="ok"} 0
pulsegate_probe_status{probe="database_manager",status="warning"} 0
pulsegate_probe_status{probe="session_monitoring",status="critical"} 0
pulsegate_probe_status{probe="session_monitoring",status="disabled"} 0
pulsegate_probe_status{probe="session_monitoring",status="down"} 0
pulsegate_probe_status{probe="session_monitoring",status="ok"} 1
pulsegate_probe_status{probe="session_monitoring",status="warning"} 0
# HELP pulsegate_probe_duration_seconds Duration of the probe's last run.
# TYPE pulsegate_probe_duration_seconds gauge
pulsegate_probe_duration_seconds{probe="database_manager"} 2
pulsegate_probe_duration_seconds{probe="session_monitoring"} 0.002
pulsegate_probe_duration_seconds{probe="system_optimizer"} 0.25
# HELP pulsegate_probe_last_success_timestamp_seconds Unix time at which the probe last reached its target.
# TYPE pulsegate_probe_last_success_timestamp_seconds gauge
pulsegate_probe_last_success_timestamp_seconds{probe="session_monitoring"} 1.736159400002e+09
pulsegate_probe_last_success_timestamp_seconds{probe="system_optimizer"} 1.73615940025e+09
# HELP pulsegate_memory_usage_ratio Working set ÷ memory limit (container, or host when unlimited).
# TYPE pulsegate_memory_usage_ratio gauge
pulsegate_memory_usage_ratio 0.85
# HELP pulsegate_cpu_usage_ratio Container CPU ÷ quota (host CPU when unlimited).
# TYPE pulsegate_cpu_usage_ratio gauge
pulsegate_cpu_usage_ratio 0.25
# HELP pulsegate_redis_latency_seconds Redis PING round trip.
# TYPE pulsegate_redis_latency_seconds gauge
pulsegate_redis_latency_seconds 0.002
# HELP pulsegate_custom_oldest_seconds Probe figure custom_oldest.
# TYPE pulsegate_custom_oldest_seconds gauge
pulsegate_custom_oldest_seconds 3
# HELP pulsegate_task_stuck 1 while a run of the task is in flight past its deadline.
# TYPE pulsegate_task_stuck gauge
pulsegate_task_stuck{task="cleanup"} 1
pulsegate_task_stuck{task="probe:database_manager"} 0
# HELP pulsegate_task_running 1 while a run of the background task is in flight.
# TYPE pulsegate_task_running gauge
pulsegate_task_running{task="cleanup"} 1
pulsegate_task_running{task="probe:database_manager"} 0
# HELP pulsegate_task_consecutive_failures Failed runs of the task since its last success.
# TYPE pulsegate_task_consecutive_failures gauge
pulsegate_task_consecutive_failures{task="cleanup"} 0
pulsegate_task_consecutive_failures{task="probe:database_manager"} 1
# HELP pulsegate_task_runs_total Completed runs of the task.
# TYPE pulsegate_task_runs_total counter
pulsegate_task_runs_total{task="cleanup"} 0
pulsegate_task_runs_total{task="probe:database_manager"} 1
# HELP pulsegate_task_failures_total Runs of the task that ended with an error.
# TYPE pulsegate_task_failures_total counter
pulsegate_task_failures_total{task="cleanup"} 0
pulsegate_task_failures_total{task="probe:database_manager"} 1
`
	names := []string{"pulsegate_probe_up", "pulsegate_probe_status", "pulsegate_probe_duration_seconds",
		"pulsegate_probe_last_success_timestamp_seconds", "pulsegate_memory_usage_ratio", "pulsegate_cpu_usage_ratio",
		"pulsegate_redis_latency_seconds", "pulsegate_custom_oldest_seconds", "pulsegate_connection_pool_utilization_ratio",
		"pulsegate_task_stuck", "pulsegate_task_running", "pulsegate_task_consecutive_failures",
		"pulsegate_task_runs_total", "pulsegate_task_failures_total"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// Lint the exposition as Prometheus would.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if probs, err := testutil.GatherAndLint(reg); err != nil || len(probs) > 0 {
		t.Errorf("lint: %v %v", probs, err)
	}
}

func TestFigureMetricFor(t *testing.T) {
	for fig, want := range map[string]string{
		"memory_usage":          "pulsegate_memory_usage_ratio",
		"db_latency":            "pulsegate_db_latency_seconds",
		"redis_evicted_per_sec": "pulsegate_redis_evicted_per_second",
		"session_count":         "pulsegate_session_count",
		"new_pool_utilization":  "pulsegate_new_pool_utilization_ratio",
		"odd-name.x":            "pulsegate_odd_name_x",
	} {
		if got := FigureMetricFor(fig).Name; got != want {
			t.Errorf("FigureMetricFor(%q) = %q; want %q", fig, got, want)
		}
	}
}

// BenchmarkCollectorGather is one /metrics scrape of three probes and ten
// tasks: no I/O, only the in-memory store (RELIABILITY.md case 41).
func BenchmarkCollectorGather(b *testing.B) {
	s := NewStore()
	for _, p := range []string{"system_optimizer", "database_manager", "session_monitoring"} {
		s.Set(Result{Probe: p, Status: StatusOK, Started: time.Now(), Figures: map[string]float64{p + "_a_usage": 0.5, p + "_b_latency": 0.01}})
	}
	tasks := NewTasks(nil)
	for i := range 10 {
		tasks.Begin("task"+string(rune('a'+i)), time.Second)(nil)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(s, tasks))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
