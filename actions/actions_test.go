package actions

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTasks records Begin/end calls like probes.Tasks would.
type fakeTasks struct {
	mu    sync.Mutex
	begun []string
	ended []error
}

func (f *fakeTasks) Begin(name string, deadline time.Duration) func(error) {
	f.mu.Lock()
	f.begun = append(f.begun, name)
	f.mu.Unlock()
	return func(err error) {
		f.mu.Lock()
		f.ended = append(f.ended, err)
		f.mu.Unlock()
	}
}

func (f *fakeTasks) last() (string, error, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ended) == 0 {
		return "", nil, 0
	}
	return f.begun[len(f.begun)-1], f.ended[len(f.ended)-1], len(f.ended)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type harness struct {
	a     *Actions
	tasks *fakeTasks
	logs  *observer.ObservedLogs
	reg   *prometheus.Registry
	clk   *fakeClock
	stop  func()
}

// start builds Actions and runs it until the test ends.
func start(t *testing.T, cfg *config.Config, deps Deps, run bool) *harness {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	tasks := &fakeTasks{}
	a, err := New(cfg, zap.New(core), reg, tasks, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	clk := &fakeClock{t: time.Date(2025, 1, 6, 10, 30, 0, 0, time.UTC)}
	a.now = clk.now
	h := &harness{a: a, tasks: tasks, logs: logs, reg: reg, clk: clk, stop: func() {}}
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		h.stop = func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run returned %v", err)
			}
		}
		t.Cleanup(h.stop)
	}
	return h
}

func baseConfig() *config.Config {
	cfg := config.Defaults()
	cfg.Responsiveness.CleanupEnabled = false
	cfg.Actions.RecycleConnections = false
	return cfg
}

// cleanupServer records POSTs to the cleanup hook.
type cleanupServer struct {
	*httptest.Server
	posts  atomic.Int64
	mu     sync.Mutex
	bodies []map[string]any
	status atomic.Int64
	hang   chan struct{}
}

func newCleanupServer(t *testing.T) *cleanupServer {
	cs := &cleanupServer{hang: make(chan struct{})}
	cs.status.Store(200)
	cs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		cs.mu.Lock()
		cs.bodies = append(cs.bodies, m)
		cs.mu.Unlock()
		if cs.status.Load() == 0 {
			select {
			case <-cs.hang:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(int(cs.status.Load()))
		cs.posts.Add(1)
	}))
	t.Cleanup(func() {
		close(cs.hang)
		cs.Close()
	})
	return cs
}

func (h *harness) status(name string) ActionStatus {
	for _, s := range h.a.Snapshot() {
		if s.Name == name {
			return s
		}
	}
	return ActionStatus{}
}

// Memory at 85 % (warning at 0.8) POSTs the cleanup hook and logs the
// product's lines; the next memory reading logs "Cleanup completed".
func TestCleanupOnMemoryWarning(t *testing.T) {
	cs := newCleanupServer(t)
	cfg := baseConfig()
	cfg.Actions.CleanupURL = cs.URL + "/internal/cleanup"
	h := start(t, cfg, Deps{}, true)

	h.a.Observe(map[string]float64{"memory_usage": 0.85}, nil)
	waitFor(t, "cleanup recorded", func() bool { return h.status(ActionCleanup).Count == 1 })
	if cs.posts.Load() != 1 {
		t.Fatalf("hook got %d POSTs, want 1", cs.posts.Load())
	}
	cs.mu.Lock()
	body := cs.bodies[0]
	cs.mu.Unlock()
	if body["trigger"] != "memory_warning" || body["memory_usage"] != 0.85 {
		t.Errorf("hook body = %v", body)
	}
	trig := h.logs.FilterMessage("Memory usage at 85% - triggering cleanup")
	if trig.Len() != 1 || trig.All()[0].Level != zapcore.WarnLevel || trig.All()[0].ContextMap()["event"] != "cleanup_triggered" {
		t.Fatalf("trigger line: %v", h.logs.All())
	}
	audit := h.logs.FilterMessage("action").All()
	if len(audit) != 1 {
		t.Fatalf("audit lines = %d", len(audit))
	}
	m := audit[0].ContextMap()
	if m["action"] != "cleanup" || m["trigger"] != "memory_warning" || m["outcome"] != "ok" || m["dry_run"] != false {
		t.Errorf("audit line = %v", m)
	}
	st := h.status(ActionCleanup)
	if st.LastOutcome != OutcomeOK || st.LastRun == nil || st.NextAllowed == nil || !st.NextAllowed.Equal(st.LastRun.Add(60*time.Second)) {
		t.Errorf("status = %+v", st)
	}
	if name, err, n := h.tasks.last(); name != ActionCleanup || err != nil || n != 1 {
		t.Errorf("task report = %s %v %d", name, err, n)
	}

	// Still high during the cooldown: no second POST is even queued.
	h.clk.advance(30 * time.Second)
	h.a.Observe(map[string]float64{"memory_usage": 0.72}, map[string]string{"memory": "critical"})
	if len(h.a.trigger) != 0 {
		t.Error("a cleanup was queued during the cooldown")
	}
	done := h.logs.FilterMessage("Cleanup completed - memory reduced to 72%")
	if done.Len() != 1 || done.All()[0].ContextMap()["event"] != "cleanup_completed" {
		t.Errorf("completion line missing: %v", h.logs.All())
	}
	if got := testutil.ToFloat64(h.a.runs.WithLabelValues(ActionCleanup, OutcomeOK)); got != 1 {
		t.Errorf("runs_total{cleanup,ok} = %v", got)
	}
	// After the cooldown it runs again.
	h.clk.advance(31 * time.Second)
	h.a.Observe(map[string]float64{"memory_usage": 0.95}, nil)
	waitFor(t, "second cleanup", func() bool { return h.status(ActionCleanup).Count == 2 })
	if h.status(ActionCleanup).LastTrigger != "memory_critical" {
		t.Errorf("trigger = %s", h.status(ActionCleanup).LastTrigger)
	}
}

func TestCleanupFailureAndTimeout(t *testing.T) {
	cs := newCleanupServer(t)
	cfg := baseConfig()
	cfg.Actions.CleanupURL = cs.URL
	cfg.Actions.Cooldown = 0
	cfg.Actions.CleanupTimeout = 0.2
	h := start(t, cfg, Deps{}, true)

	cs.status.Store(500)
	h.a.Observe(map[string]float64{"memory_usage": 0.95}, nil)
	waitFor(t, "failed cleanup", func() bool { return h.status(ActionCleanup).Failures == 1 })
	st := h.status(ActionCleanup)
	if st.LastOutcome != OutcomeError || !strings.Contains(st.LastError, "500") {
		t.Errorf("status = %+v", st)
	}
	if _, err, _ := h.tasks.last(); err == nil {
		t.Error("task not reported as failed")
	}
	h.a.Observe(map[string]float64{"memory_usage": 0.5}, nil)
	if h.logs.FilterMessageSnippet("Cleanup completed").Len() != 0 {
		t.Error("completion logged after a failed cleanup")
	}

	cs.status.Store(0) // hang
	h.clk.advance(time.Second)
	h.a.Observe(map[string]float64{"memory_usage": 0.95}, nil)
	waitFor(t, "timed-out cleanup", func() bool { return h.status(ActionCleanup).Failures == 2 })
	if e := h.status(ActionCleanup).LastError; !strings.Contains(e, "no answer within 200ms") {
		t.Errorf("timeout error = %q", e)
	}
}

func TestCleanupDryRun(t *testing.T) {
	cs := newCleanupServer(t)
	cfg := baseConfig()
	cfg.Actions.CleanupURL = cs.URL
	cfg.Actions.DryRun = true
	h := start(t, cfg, Deps{}, true)
	h.a.Observe(map[string]float64{"memory_usage": 0.95}, nil)
	// The status counts the action before its audit line is logged: wait
	// for both.
	waitFor(t, "dry-run cleanup and its audit line", func() bool {
		return h.status(ActionCleanup).Count == 1 && h.logs.FilterMessage("action").Len() == 1
	})
	if cs.posts.Load() != 0 {
		t.Error("dry-run POSTed the hook")
	}
	if st := h.status(ActionCleanup); st.LastOutcome != OutcomeDryRun || !st.DryRun {
		t.Errorf("status = %+v", st)
	}
	if m := h.logs.FilterMessage("action").All()[0].ContextMap(); m["outcome"] != "dry_run" || m["dry_run"] != true {
		t.Errorf("audit = %v", m)
	}
}

// Every cleanup_interval when cleanup_enabled.
func TestCleanupInterval(t *testing.T) {
	cs := newCleanupServer(t)
	cfg := baseConfig()
	cfg.Actions.CleanupURL = cs.URL
	cfg.Actions.Cooldown = 0
	cfg.Responsiveness.CleanupEnabled = true
	cfg.Responsiveness.CleanupInterval = 0.05
	h := start(t, cfg, Deps{}, true)
	waitFor(t, "two periodic cleanups", func() bool { return cs.posts.Load() >= 2 })
	if st := h.status(ActionCleanup); st.LastTrigger != "interval" {
		t.Errorf("trigger = %q", st.LastTrigger)
	}
	if h.logs.FilterMessage("Periodic cleanup - triggering cleanup").Len() < 2 {
		t.Error("periodic trigger lines missing")
	}
	// Turning the interval off live stops the POSTs.
	off := *cfg
	off.Responsiveness.CleanupEnabled = false
	h.a.Apply(&off)
	time.Sleep(100 * time.Millisecond) // let an in-progress tick finish
	n := cs.posts.Load()
	time.Sleep(200 * time.Millisecond)
	if cs.posts.Load() != n {
		t.Error("periodic cleanups continued after cleanup_enabled was turned off")
	}
}

func TestRecycleOnErrorRate(t *testing.T) {
	var closed atomic.Int64
	cfg := baseConfig()
	cfg.Actions.RecycleConnections = true
	h := start(t, cfg, Deps{CloseIdleUpstream: func() { closed.Add(1) }}, false)

	h.a.Observe(map[string]float64{"app_error_rate": 0.07}, nil) // warning only
	if closed.Load() != 0 {
		t.Fatal("recycled at warning")
	}
	h.a.Observe(map[string]float64{"app_error_rate": 0.2}, nil)
	if closed.Load() != 1 {
		t.Fatalf("CloseIdleUpstream called %d times, want 1", closed.Load())
	}
	h.clk.advance(10 * time.Second)
	h.a.Observe(nil, map[string]string{"error_rate": "critical"})
	if closed.Load() != 1 {
		t.Error("recycled again within the cooldown")
	}
	h.clk.advance(60 * time.Second)
	h.a.Observe(nil, map[string]string{"error_rate": "critical"})
	if closed.Load() != 2 {
		t.Error("not recycled after the cooldown")
	}
	st := h.status(ActionRecycle)
	if st.Count != 2 || st.LastTrigger != "error_rate_critical" || st.LastOutcome != OutcomeOK {
		t.Errorf("status = %+v", st)
	}
}

func TestRecycleOnChurnSpikeAndDryRun(t *testing.T) {
	var closed atomic.Int64
	cfg := baseConfig()
	cfg.Actions.RecycleConnections = true
	cfg.Actions.Cooldown = 0
	h := start(t, cfg, Deps{CloseIdleUpstream: func() { closed.Add(1) }}, false)
	for _, v := range []float64{5, 6, 5, 7, 6} {
		h.a.Observe(map[string]float64{ChurnFigure: v}, nil)
	}
	if closed.Load() != 0 {
		t.Fatal("recycled on a steady dial rate")
	}
	h.a.Observe(map[string]float64{ChurnFigure: 80}, nil)
	if closed.Load() != 1 || h.status(ActionRecycle).LastTrigger != "connection_churn" {
		t.Fatalf("spike: closed %d, status %+v", closed.Load(), h.status(ActionRecycle))
	}
	dry := *cfg
	dry.Actions.DryRun = true
	h.a.Apply(&dry)
	h.a.Observe(map[string]float64{"app_error_rate": 0.5}, nil)
	if closed.Load() != 1 || h.status(ActionRecycle).LastOutcome != OutcomeDryRun {
		t.Errorf("dry-run: closed %d, status %+v", closed.Load(), h.status(ActionRecycle))
	}
}

func TestRecycleDisabledWithoutDeps(t *testing.T) {
	cfg := baseConfig()
	cfg.Actions.RecycleConnections = true
	h := start(t, cfg, Deps{}, false)
	h.a.Observe(map[string]float64{"app_error_rate": 0.5}, nil)
	st := h.status(ActionRecycle)
	if st.Enabled || st.Count != 0 || !strings.Contains(st.Why, "proxy") {
		t.Errorf("status = %+v", st)
	}
}

// Readiness follows sustained overload with hysteresis (hold = shed_hold).
func TestReadinessOnOverload(t *testing.T) {
	cfg := baseConfig()
	cfg.Actions.ReadinessOnOverload = true
	cfg.Backpressure.ShedHold = 30
	h := start(t, cfg, Deps{}, false)
	shedding := map[string]string{"backpressure": "shedding"}
	h.a.Observe(nil, shedding)
	if h.a.Overloaded() {
		t.Fatal("overloaded at the first reading")
	}
	h.clk.advance(29 * time.Second)
	h.a.Observe(nil, shedding)
	if h.a.Overloaded() {
		t.Fatal("overloaded before the condition held 30 s")
	}
	h.clk.advance(time.Second)
	h.a.Observe(nil, shedding)
	if !h.a.Overloaded() {
		t.Fatal("not overloaded after 30 s of shedding")
	}
	// Flapping clear/overloaded faster than the hold keeps it not-ready.
	for i := range 6 {
		h.clk.advance(10 * time.Second)
		if i%2 == 0 {
			h.a.Observe(map[string]float64{"queue_depth": 3}, nil)
		} else {
			h.a.Observe(map[string]float64{"queue_depth": 100}, nil) // at queue_critical
		}
		if !h.a.Overloaded() {
			t.Fatalf("readiness flapped back at step %d", i)
		}
	}
	h.clk.advance(10 * time.Second)
	h.a.Observe(nil, map[string]string{"response_time": "ok"})
	h.clk.advance(29 * time.Second)
	h.a.Observe(nil, nil)
	if !h.a.Overloaded() {
		t.Fatal("ready again before the condition was clear for 30 s")
	}
	h.clk.advance(time.Second)
	h.a.Observe(nil, nil)
	if h.a.Overloaded() {
		t.Fatal("still overloaded 30 s after clearing")
	}
	st := h.status(ActionReadiness)
	if st.Count != 1 || st.LastOutcome != "ready" {
		t.Errorf("status = %+v", st)
	}
	if n := h.logs.FilterMessage("overload_readiness").Len(); n != 2 {
		t.Errorf("%d overload_readiness lines, want 2 (enter, leave)", n)
	}
}

func TestReadinessOptIn(t *testing.T) {
	h := start(t, baseConfig(), Deps{}, false)
	for range 5 {
		h.clk.advance(time.Minute)
		h.a.Observe(nil, map[string]string{"backpressure": "shedding", "response_time": "critical"})
	}
	if h.a.Overloaded() {
		t.Error("Overloaded without readiness_on_overload")
	}
}

func TestRunStopsPromptly(t *testing.T) {
	cfg := baseConfig()
	cfg.Responsiveness.CleanupEnabled = true
	cfg.Actions.SessionTTLRepair = true
	cfg.Redis.URL = "redis://127.0.0.1:6379/14"
	a, err := New(cfg, nil, prometheus.NewRegistry(), nil, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
