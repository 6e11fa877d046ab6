package health

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/probes"
)

// TestMain checks that evaluation leaves no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct{ t time.Time }

func (c *clock) Now() time.Time                       { return c.t }
func (c *clock) Add(d time.Duration)                  { c.t = c.t.Add(d) }
func newClock() *clock                                { return &clock{t: time.Date(2025, 1, 6, 10, 30, 0, 0, time.UTC)} }
func (c *clock) result(s probes.Status) probes.Result { return probes.Result{Status: s, Started: c.t} }

// configured returns defaults with the database and Redis probes configured.
func configured() *config.Config {
	cfg := config.Defaults()
	cfg.Database.DSN = "mysql://probe:s3cret@127.0.0.1:3306/test"
	cfg.Redis.URL = "redis://127.0.0.1:6379/0"
	return cfg
}

func healthyInputs(c *clock) Inputs {
	sys := c.result(probes.StatusOK)
	sys.Figures = map[string]float64{"memory_usage": 0.65, "cpu_usage": 0.45}
	sys.Details = map[string]any{"cgroup_version": 1}
	db := c.result(probes.StatusOK)
	db.Figures = map[string]float64{"connection_pool_utilization": 0.30}
	return Inputs{
		Probes: map[string]probes.Result{
			SystemOptimizer:   sys,
			DatabaseManager:   db,
			SessionMonitoring: c.result(probes.StatusOK),
		},
		Tasks:   TaskSignals{Status: probes.StatusOK, Tasks: []probes.TaskStatus{}},
		Request: RequestSignals{AvgResponseTime: 1.2, Requests: 500, ThroughputRPS: 8.3, Valid: true},
	}
}

// TestVerdictProductShape: the JSON has the product's fields, names and
// value kinds, plus reasons and details.
func TestVerdictProductShape(t *testing.T) {
	c := newClock()
	v := New(configured(), c.Now).Evaluate(healthyInputs(c))
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatal(err)
	}
	if got["status"] != "healthy" || got["last_check"] != "2025-01-06T10:30:00Z" {
		t.Errorf("status/last_check = %v %v", got["status"], got["last_check"])
	}
	comps := got["components"].(map[string]any)
	for _, name := range []string{"system_optimizer", "database_manager", "background_cleanup", "session_monitoring", "request_performance"} {
		if comps[name] != "healthy" {
			t.Errorf("components[%s] = %v; want healthy", name, comps[name])
		}
	}
	m := got["metrics"].(map[string]any)
	for k, want := range map[string]float64{"memory_usage": 0.65, "cpu_usage": 0.45, "connection_pool_utilization": 0.30, "avg_response_time": 1.2} {
		if m[k] != want {
			t.Errorf("metrics[%s] = %v; want %v", k, m[k], want)
		}
	}
	if m["disk_usage"] != nil || !strings.Contains(string(js), `"disk_usage":null`) {
		t.Errorf("unmeasured disk_usage = %v; want JSON null: %s", m["disk_usage"], js)
	}
	if !strings.Contains(string(js), `"alerts":[]`) || !strings.Contains(string(js), `"reasons":[]`) {
		t.Errorf("alerts and reasons must be empty arrays, not null: %s", js)
	}
	if d := got["details"].(map[string]any); d["system_optimizer"] == nil || d["request_performance"] == nil {
		t.Errorf("details = %v", d)
	}
}

// TestVerdictDisabledComponents: unconfigured probes are disabled, never
// healthy, and do not make the verdict unhealthy; their figures are null.
func TestVerdictDisabledComponents(t *testing.T) {
	c := newClock()
	in := healthyInputs(c)
	delete(in.Probes, DatabaseManager)
	delete(in.Probes, SessionMonitoring)
	in.Request = RequestSignals{}
	in.Tasks = TaskSignals{Status: probes.StatusDisabled, Reasons: []string{"task monitoring disabled"}}
	v := New(config.Defaults(), c.Now).Evaluate(in)
	for _, name := range []string{DatabaseManager, SessionMonitoring, RequestPerformance, BackgroundCleanup} {
		if v.Components[name] != Disabled {
			t.Errorf("%s = %s; want disabled", name, v.Components[name])
		}
	}
	if v.Status != Healthy || len(v.Reasons) != 4 {
		t.Errorf("status %s reasons %v; want healthy, 4 reasons", v.Status, v.Reasons)
	}
	for _, r := range v.Reasons {
		if !strings.Contains(r, " disabled: ") {
			t.Errorf("reason %q does not explain a disabled component", r)
		}
	}
	if !strings.Contains(strings.Join(v.Reasons, ";"), "database_manager disabled: not configured (set RESPONSIVENESS_DB_DSN)") {
		t.Errorf("reasons %v do not say how to enable the database probe", v.Reasons)
	}
	if v.Metrics.ConnectionPoolUtilization != nil || v.Metrics.AvgResponseTime != nil {
		t.Errorf("metrics of disabled components = %+v; want null", v.Metrics)
	}
}

// TestVerdictDownProbe: a probe that cannot reach its target makes its
// component critical with a redacted "unreachable" reason, and its stale
// figures are not served.
func TestVerdictDownProbe(t *testing.T) {
	c := newClock()
	in := healthyInputs(c)
	db := c.result(probes.StatusDown)
	db.Error = "dial mysql://probe:s3cret@127.0.0.1:3306/test: connection refused"
	db.Figures = map[string]float64{"connection_pool_utilization": 0.99}
	in.Probes[DatabaseManager] = db
	v := New(configured(), c.Now).Evaluate(in)
	if v.Status != Critical || v.Components[DatabaseManager] != Critical {
		t.Fatalf("status %s components %v", v.Status, v.Components)
	}
	want := "database_manager critical: unreachable: dial mysql://probe:xxxxx@127.0.0.1:3306/test: connection refused"
	if len(v.Reasons) != 1 || v.Reasons[0] != want {
		t.Errorf("reasons = %q; want [%q]", v.Reasons, want)
	}
	js, _ := json.Marshal(v)
	if strings.Contains(string(js), "s3cret") {
		t.Errorf("verdict leaks the password: %s", js)
	}
	if v.Metrics.ConnectionPoolUtilization != nil {
		t.Errorf("connection_pool_utilization = %v; want null while down", *v.Metrics.ConnectionPoolUtilization)
	}
}

func TestVerdictReasonsOrderAndWords(t *testing.T) {
	c := newClock()
	in := healthyInputs(c)
	db := c.result(probes.StatusCritical)
	db.Reasons = []string{"92 of 100 connections in use", "14 idle > 300 s from app@10.0.0.5"}
	in.Probes[DatabaseManager] = db
	sys := c.result(probes.StatusWarning)
	sys.Reasons = []string{"memory at 85% of the 512.0 MiB cgroup limit ≥ warning 80%"}
	in.Probes[SystemOptimizer] = sys
	in.Tasks = TaskSignals{Status: probes.StatusWarning, Reasons: []string{"task cleanup failed its last run (1 in a row): 500"}}
	v := New(configured(), c.Now).Evaluate(in)
	want := []string{
		"database_manager critical: 92 of 100 connections in use; 14 idle > 300 s from app@10.0.0.5",
		"background_cleanup warning: task cleanup failed its last run (1 in a row): 500",
		"system_optimizer warning: memory at 85% of the 512.0 MiB cgroup limit ≥ warning 80%",
	}
	if strings.Join(v.Reasons, "\n") != strings.Join(want, "\n") {
		t.Errorf("reasons =\n%s\nwant\n%s", strings.Join(v.Reasons, "\n"), strings.Join(want, "\n"))
	}
	if v.Status != Critical {
		t.Errorf("status = %s", v.Status)
	}
}

func TestRequestPerformance(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		in     RequestSignals
		want   Level
		reason string
	}{
		{"quiet", RequestSignals{AppErrorRate: 1, AvgResponseTime: 30, Requests: 3, Valid: true}, Healthy,
			"not enough traffic to judge (3 requests in the window, need 10)"},
		{"errors critical", RequestSignals{AppErrorRate: 0.12, AvgResponseTime: 0.2, Requests: 200, Valid: true}, Critical,
			"error rate over 200 requests 12% ≥ critical 10%"},
		{"errors warning", RequestSignals{AppErrorRate: 0.05, Requests: 200, Valid: true}, Warning, "≥ warning 5%"},
		{"slow", RequestSignals{AvgResponseTime: 6.25, Requests: 50, Valid: true}, Warning,
			"average response time 6.25 s ≥ warning 5 s"},
		{"queue", RequestSignals{QueueDepth: 120, Requests: 2, Valid: true}, Critical, "queued requests 120 ≥ critical 100"},
		{"no proxy", RequestSignals{}, Disabled, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := newClock()
			in := healthyInputs(c)
			in.Request = tc.in
			v := New(configured(), c.Now).Evaluate(in)
			if v.Components[RequestPerformance] != tc.want {
				t.Errorf("request_performance = %s; want %s (reasons %v)", v.Components[RequestPerformance], tc.want, v.Reasons)
			}
			if tc.reason != "" && !strings.Contains(strings.Join(v.Reasons, "\n"), tc.reason) {
				t.Errorf("reasons %q lack %q", v.Reasons, tc.reason)
			}
		})
	}
}

// TestHysteresis: a component enters a worse level at once and leaves it
// only after the underlying status has been better for the hold time and
// two fresh probe results, so a flapping probe does not flap the verdict.
func TestHysteresis(t *testing.T) {
	c := newClock()
	e := New(configured(), c.Now, WithHold(60*time.Second))
	in := healthyInputs(c)
	set := func(s probes.Status) {
		r := c.result(s)
		if s != probes.StatusOK {
			r.Reasons = []string{"memory at 85%"}
		}
		in.Probes[SystemOptimizer] = r
		for _, other := range []string{DatabaseManager, SessionMonitoring} { // keep the others fresh
			o := in.Probes[other]
			o.Started = c.t
			in.Probes[other] = o
		}
	}
	eval := func() Verdict { return e.Evaluate(in) }

	if v := eval(); v.Components[SystemOptimizer] != Healthy {
		t.Fatalf("start: %s", v.Components[SystemOptimizer])
	}
	set(probes.StatusWarning)
	if v := eval(); v.Components[SystemOptimizer] != Warning || v.Status != Warning {
		t.Fatalf("enter: %s; want warning at once", v.Components[SystemOptimizer])
	}
	// Flapping every 10 s for 3 minutes: the verdict stays warning.
	for i := range 18 {
		c.Add(10 * time.Second)
		if i%2 == 0 {
			set(probes.StatusOK)
		} else {
			set(probes.StatusWarning)
		}
		v := eval()
		if v.Components[SystemOptimizer] != Warning {
			t.Fatalf("flap %d: %s; want warning held", i, v.Components[SystemOptimizer])
		}
		if i%2 == 0 && (v.Underlying[SystemOptimizer] != Healthy || !strings.Contains(strings.Join(v.Reasons, ";"), "recovering: underlying status healthy")) {
			t.Errorf("flap %d: underlying %s reasons %v", i, v.Underlying[SystemOptimizer], v.Reasons)
		}
	}
	// Steady healthy for 60 s…
	c.Add(10 * time.Second)
	set(probes.StatusOK)
	eval()
	c.Add(60 * time.Second)
	// …and evaluating the same result again is not a fresh observation, but
	// the result above already counts once; a second result is needed.
	if v := eval(); v.Components[SystemOptimizer] != Warning {
		t.Errorf("60 s with one result: %s; want warning (needs 2 results)", v.Components[SystemOptimizer])
	}
	set(probes.StatusOK) // a new probe result
	if v := eval(); v.Components[SystemOptimizer] != Healthy || v.Status != Healthy {
		t.Errorf("after hold: %s; want healthy", v.Components[SystemOptimizer])
	}
	// Critical enters at once, then steps down through warning only after the hold.
	set(probes.StatusCritical)
	if v := eval(); v.Components[SystemOptimizer] != Critical {
		t.Errorf("enter critical: %s", v.Components[SystemOptimizer])
	}
	c.Add(30 * time.Second)
	set(probes.StatusWarning)
	if v := eval(); v.Components[SystemOptimizer] != Critical {
		t.Errorf("30 s at warning: %s; want critical held", v.Components[SystemOptimizer])
	}
	c.Add(60 * time.Second)
	set(probes.StatusWarning)
	if v := eval(); v.Components[SystemOptimizer] != Warning {
		t.Errorf("60 s at warning: %s; want warning", v.Components[SystemOptimizer])
	}
}

func TestApplyChangesThresholds(t *testing.T) {
	c := newClock()
	cfg := configured()
	e := New(cfg, c.Now, WithHold(0), WithHoldObservations(1))
	in := healthyInputs(c)
	in.Request = RequestSignals{AppErrorRate: 0.03, Requests: 100, Valid: true}
	if v := e.Evaluate(in); v.Components[RequestPerformance] != Healthy {
		t.Fatalf("3%% errors at a 5%% threshold: %s", v.Components[RequestPerformance])
	}
	cfg2 := *cfg
	cfg2.Thresholds.ErrorRateWarning = 0.02
	e.Apply(&cfg2)
	if v := e.Evaluate(in); v.Components[RequestPerformance] != Warning {
		t.Errorf("after Apply (2%%): %s; want warning", v.Components[RequestPerformance])
	}
	if e.Hold() != 0 {
		t.Errorf("Hold = %v; an explicit hold survives Apply", e.Hold())
	}
	if h := New(cfg, c.Now).Hold(); h != 60*time.Second {
		t.Errorf("default hold = %v; want 2 × 30 s interval", h)
	}
}

func TestStaleAndMissingResults(t *testing.T) {
	c := newClock()
	in := healthyInputs(c)
	delete(in.Probes, SessionMonitoring)
	e := New(configured(), c.Now)
	// Right after start the first result is still on its way: no false warning.
	v := e.Evaluate(in)
	if v.Components[SessionMonitoring] != Healthy || !strings.Contains(strings.Join(v.Reasons, ";"), "waiting for the first probe result") {
		t.Errorf("missing result at start: %s %v", v.Components[SessionMonitoring], v.Reasons)
	}
	// Past one interval (+10 s) its absence counts.
	c.Add(45 * time.Second)
	for k, r := range in.Probes {
		r.Started = c.Now()
		in.Probes[k] = r
	}
	v = e.Evaluate(in)
	v = e.Evaluate(in)
	if v.Components[SessionMonitoring] != Warning || !strings.Contains(strings.Join(v.Reasons, ";"), "session_monitoring warning: no probe result yet") {
		t.Errorf("missing result: %s %v", v.Components[SessionMonitoring], v.Reasons)
	}
	c.Add(10 * time.Minute) // every result is now far older than 6 intervals
	v = e.Evaluate(in)
	if v.Components[SystemOptimizer] != Warning || !strings.Contains(strings.Join(v.Reasons, ";"), "stale: last result 10m0s ago") {
		t.Errorf("stale result: %s %v", v.Components[SystemOptimizer], v.Reasons)
	}
	cfg := configured()
	cfg.Responsiveness.MonitoringEnabled = false
	v = New(cfg, c.Now).Evaluate(in)
	if v.Components[SystemOptimizer] != Disabled || v.Status != Healthy {
		t.Errorf("monitoring disabled: %s %s", v.Components[SystemOptimizer], v.Status)
	}
}

func TestTaskSignalsFrom(t *testing.T) {
	tasks := probes.NewTasks(nil)
	tasks.Begin("cleanup", time.Second)(nil)
	s := TaskSignalsFrom(tasks, time.Now())
	if s.Status != probes.StatusOK || len(s.Tasks) != 1 || s.Tasks[0].Runs != 1 {
		t.Errorf("TaskSignalsFrom = %+v", s)
	}
}

// BenchmarkEvaluate is one health verdict (pure, in memory).
func BenchmarkEvaluate(b *testing.B) {
	c := newClock()
	e := New(configured(), c.Now)
	in := healthyInputs(c)
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(in)
	}
}
