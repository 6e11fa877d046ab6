package alerts

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/events"
	"github.com/pulsegate/pulsegate/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2025, 1, 6, 10, 30, 0, 0, time.UTC)

// clock is a settable clock for acknowledgements.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type harness struct {
	m    *Manager
	reg  *prometheus.Registry
	logs *observer.ObservedLogs
	clk  *clock
	hub  *events.Hub
}

func newHarness(t *testing.T, cfg *config.Config, st *store.Store) *harness {
	t.Helper()
	if cfg == nil {
		cfg = config.Defaults()
	}
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	clk := &clock{t: t0}
	m, err := New(cfg, zap.New(core), reg, st, clk.now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	m.backoffBase = 10 * time.Millisecond
	hub := events.New()
	m.PublishTo(hub)
	return &harness{m: m, reg: reg, logs: logs, clk: clk, hub: hub}
}

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func figs(kv ...any) Input {
	in := Input{Figures: map[string]float64{}}
	for i := 0; i < len(kv); i += 2 {
		in.Figures[kv[i].(string)] = kv[i+1].(float64)
	}
	return in
}

func byKey(as []Alert, key string) (Alert, bool) {
	for _, a := range as {
		if a.Key == key {
			return a, true
		}
	}
	return Alert{}, false
}

func mustActive(t *testing.T, m *Manager, key string) Alert {
	t.Helper()
	a, ok := byKey(m.Active(), key)
	if !ok {
		t.Fatalf("no active alert %q; active: %+v", key, m.Active())
	}
	return a
}

func TestRuleTable(t *testing.T) {
	for _, tc := range []struct {
		rule, figure        string
		warnV, critV        float64 // critV 0: the rule has no critical level
		warnThr, critThr    float64
		warnMsg, critMsg    string
		recommendationStart string
	}{
		{RuleMemoryUsage, "memory_usage", 0.85, 0.92, 0.8, 0.9, "Memory usage at 85%", "Memory usage at 92%", "Check session cleanup configuration; review background task memory usage; increase cleanup frequency; monitor for memory leak patterns"},
		{RuleCPUUsage, "cpu_usage", 0.81, 0.95, 0.8, 0.9, "CPU usage at 81%", "CPU usage at 95%", "Review request processing logic"},
		{RuleDiskUsage, "disk_usage", 0.9, 0.96, 0.85, 0.95, "Disk usage at 90%", "Disk usage at 96%", "Clean up temp files"},
		{RuleConnectionPool, "connection_pool_utilization", 0.85, 0.92, 0.8, 0.9, "Database connection pool at 85% utilization", "Database connection pool at 92% utilization", "Verify connection pool configuration"},
		{RuleDBLatency, "db_latency", 2.4, 6, 2, 5, "Database query time at 2.4s", "Database query time at 6.0s", "Identify slow database queries"},
		{RuleDBIdleInTx, "db_idle_in_transaction_oldest", 45, 61, 30, 60, "idle in transaction for 45.0s", "idle in transaction for 61.0s", "Check for connection leaks in code"},
		{RuleJobQueueDepth, "job_queue_depth", 60, 120, 50, 100, "Job queue depth at 60 jobs", "Job queue depth at 120 jobs", "Check task coordination settings"},
		{RuleQueueDepth, "queue_depth", 50, 100, 50, 100, "Request queue at 50 pending requests", "Request queue at 100 pending requests", "pulsegate is already applying backpressure"},
		{RuleErrorRate, "app_error_rate", 0.075, 0.12, 0.05, 0.10, "App error rate at 7.5%", "App error rate at 12.0%", "Alert admins, investigate errors"},
		{RuleRejections, "rejection_rate", 0.075, 0.12, 0.05, 0.10, "Backpressure rejecting 7.5% of requests (429/503 from pulsegate)", "Backpressure rejecting 12.0% of requests (429/503 from pulsegate)", "pulsegate is protecting the app"},
		{RuleAvgResponseTime, "avg_response_time", 7.2, 11, 5, 10, "Average response time at 7.2s", "Average response time at 11.0s", "Identify slow database queries; check for blocking background tasks"},
		{RuleRedisMemoryUsage, "redis_memory_usage", 0.85, 0.97, 0.8, 0.9, "Redis memory usage at 85%", "Redis memory usage at 97%", "Check session cleanup configuration"},
		{RuleRedisEvictions, "redis_evicted_per_sec", 3, 0, 0, 0, "Redis evicting keys - 3.0 keys/s", "", "Check session cleanup configuration"},
		{RuleSessionWithoutTTL, "session_without_ttl", 42, 0, 0, 0, "Session keys without TTL: 42", "", "Configure appropriate session timeouts"},
		{RuleDBConnectionLeak, "db_leak_suspects", 5, 0, 0, 0, "Connection leak detected - 5 connections not properly closed", "", "Check for connection leaks in code"},
		{RuleDBLongQueries, "db_long_queries", 2, 0, 0, 0, "2 database queries running longer than", "", "Identify slow database queries"},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			h := newHarness(t, nil, nil)
			h.m.Evaluate(t0, figs(tc.figure, tc.warnV))
			a := mustActive(t, h.m, tc.rule)
			if a.Severity != store.SeverityWarning || a.State != store.StateFiring || a.Rule != tc.rule || a.Metric != tc.figure {
				t.Errorf("fired %+v; want a firing warning of rule %s on %s", a, tc.rule, tc.figure)
			}
			if a.Value != tc.warnV || a.Threshold != tc.warnThr {
				t.Errorf("value/threshold = %v/%v; want %v/%v", a.Value, a.Threshold, tc.warnV, tc.warnThr)
			}
			if !strings.Contains(a.Message, tc.warnMsg) {
				t.Errorf("message = %q; want it to contain %q", a.Message, tc.warnMsg)
			}
			if !strings.HasPrefix(a.Recommendation, tc.recommendationStart) {
				t.Errorf("recommendation = %q; want it to start with %q", a.Recommendation, tc.recommendationStart)
			}
			id := a.ID
			if tc.critV != 0 {
				h.m.Evaluate(t0.Add(time.Second), figs(tc.figure, tc.critV))
				a = mustActive(t, h.m, tc.rule)
				if a.ID != id || a.Severity != store.SeverityCritical || a.Threshold != tc.critThr || !strings.Contains(a.Message, tc.critMsg) {
					t.Errorf("after %v: %+v; want the same alert %s escalated to critical at %v with %q", tc.critV, a, id, tc.critThr, tc.critMsg)
				}
			}
			h.m.Evaluate(t0.Add(2*time.Second), figs(tc.figure, 0.0))
			if len(h.m.Active()) != 0 {
				t.Errorf("still active after the figure fell to 0: %+v", h.m.Active())
			}
			res := h.m.List(Filter{State: store.StateResolved})
			if len(res) != 1 || res[0].ID != id || res[0].ResolvedAt == nil || !res[0].ResolvedAt.Equal(t0.Add(2*time.Second)) {
				t.Errorf("resolved history = %+v; want %s resolved at t0+2s", res, id)
			}
		})
	}
}

func TestBelowThresholdNeverFires(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.m.Evaluate(t0, figs("memory_usage", 0.79, "app_error_rate", 0.049, "queue_depth", 49.0, "redis_evicted_per_sec", 0.0, "session_without_ttl", 0.0))
	if a := h.m.Active(); len(a) != 0 {
		t.Errorf("alerts fired below every threshold: %+v", a)
	}
}

func TestUnknownFiguresNeverFireOrResolve(t *testing.T) {
	cfg := config.Defaults()
	cfg.Alerts.MinDuration = 60
	h := newHarness(t, cfg, nil)
	// Nothing known: nothing fires.
	h.m.Evaluate(t0, Input{})
	if len(h.m.Active()) != 0 {
		t.Fatal("an empty input fired alerts")
	}
	// Fire memory, then lose the figure: the alert stays.
	h.m.Evaluate(t0, figs("memory_usage", 0.95))
	h.m.Evaluate(t0.Add(time.Minute), figs("memory_usage", 0.95))
	a := mustActive(t, h.m, RuleMemoryUsage)
	for i, in := range []Input{{}, figs("cpu_usage", 0.1), figs("memory_usage", math.NaN()), figs("memory_usage", math.Inf(1))} {
		h.m.Evaluate(t0.Add(time.Duration(2+i)*time.Minute), in)
		if b := mustActive(t, h.m, RuleMemoryUsage); b.ID != a.ID || b.Severity != store.SeverityCritical || b.Value != 0.95 {
			t.Errorf("input %d (unknown memory figure) changed the alert: %+v", i, b)
		}
	}
	// A pending condition interrupted by "unknown" starts over.
	h.m.Evaluate(t0, figs("cpu_usage", 0.85))
	h.m.Evaluate(t0.Add(30*time.Second), Input{})
	h.m.Evaluate(t0.Add(70*time.Second), figs("cpu_usage", 0.85))
	if _, ok := byKey(h.m.Active(), RuleCPUUsage); ok {
		t.Error("cpu alert fired although the condition was not seen to hold for min_duration")
	}
	h.m.Evaluate(t0.Add(130*time.Second), figs("cpu_usage", 0.85))
	if a := mustActive(t, h.m, RuleCPUUsage); !a.FirstSeen.Equal(t0.Add(70 * time.Second)) {
		t.Errorf("first_seen = %v; want t0+70s", a.FirstSeen)
	}
}

func TestHysteresis(t *testing.T) {
	// Defaults: memory 0.8 / 0.9, resolve_margin 0.05 → warning holds down
	// to 0.76, critical down to 0.855.
	h := newHarness(t, nil, nil)
	sub, cancel := h.hub.Subscribe(32)
	defer cancel()
	steps := []struct {
		v        float64
		wantSev  string // "" = no active alert
		wantType string // event emitted at this step, "" none
	}{
		{0.85, store.SeverityWarning, EventFiring},
		{0.79, store.SeverityWarning, ""}, // below threshold, above the resolve level
		{0.765, store.SeverityWarning, ""},
		{0.95, store.SeverityCritical, EventEscalated},
		{0.88, store.SeverityCritical, ""}, // below critical, above 0.855
		{0.86, store.SeverityCritical, ""},
		{0.85, store.SeverityWarning, EventDeescalated},
		{0.759, "", EventResolved},
		{0.79, "", ""}, // re-arming needs the threshold again, not the resolve level
		{0.80, store.SeverityWarning, EventFiring},
	}
	var firstID string
	for i, s := range steps {
		h.m.Evaluate(t0.Add(time.Duration(i)*time.Second), figs("memory_usage", s.v))
		a, ok := byKey(h.m.Active(), RuleMemoryUsage)
		switch {
		case s.wantSev == "" && ok:
			t.Errorf("step %d (%v): active %+v; want none", i, s.v, a)
		case s.wantSev != "" && (!ok || a.Severity != s.wantSev):
			t.Errorf("step %d (%v): active=%v severity=%q; want %q", i, s.v, ok, a.Severity, s.wantSev)
		}
		var got string
		select {
		case hev := <-sub:
			ev := hev.Data.(Event)
			got = ev.Type
			if ev.Type == EventEscalated && ev.PreviousSeverity != store.SeverityWarning {
				t.Errorf("escalation previous_severity = %q", ev.PreviousSeverity)
			}
		default:
		}
		if got != s.wantType {
			t.Errorf("step %d (%v): event %q; want %q", i, s.v, got, s.wantType)
		}
		if i == 0 {
			firstID = a.ID
		}
		if i > 0 && i < 7 && a.ID != firstID {
			t.Errorf("step %d: id changed from %s to %s within one occurrence", i, firstID, a.ID)
		}
		if i == 9 && a.ID == firstID {
			t.Error("a new occurrence after resolution reused the old id")
		}
	}
}

func TestMinDuration(t *testing.T) {
	cfg := config.Defaults()
	cfg.Alerts.MinDuration = 60
	h := newHarness(t, cfg, nil)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	h.m.Evaluate(at(0), figs("memory_usage", 0.85))
	h.m.Evaluate(at(30), figs("memory_usage", 0.85))
	if len(h.m.Active()) != 0 {
		t.Fatal("fired before min_duration")
	}
	h.m.Evaluate(at(45), figs("memory_usage", 0.5)) // dip: start over
	h.m.Evaluate(at(60), figs("memory_usage", 0.85))
	h.m.Evaluate(at(100), figs("memory_usage", 0.95)) // critical for 0 s
	if len(h.m.Active()) != 0 {
		t.Fatal("fired although the dip restarted the clock")
	}
	h.m.Evaluate(at(120), figs("memory_usage", 0.95))
	a := mustActive(t, h.m, RuleMemoryUsage)
	if a.Severity != store.SeverityWarning || !a.FirstSeen.Equal(at(60)) {
		t.Errorf("at 120 s: %s first_seen %v; want warning first seen at 60 s (critical held only 20 s)", a.Severity, a.FirstSeen)
	}
	h.m.Evaluate(at(160), figs("memory_usage", 0.95))
	if a := mustActive(t, h.m, RuleMemoryUsage); a.Severity != store.SeverityCritical {
		t.Errorf("at 160 s: %s; want critical after 60 s above critical", a.Severity)
	}
	// Critical-only rules (probe down) also wait.
	h.m.Evaluate(at(200), Input{ProbeStatus: map[string]string{"database_manager": "down"}})
	if _, ok := byKey(h.m.Active(), "probe_down:database_manager"); ok {
		t.Error("probe_down fired before min_duration")
	}
	h.m.Evaluate(at(260), Input{ProbeStatus: map[string]string{"database_manager": "down"}})
	mustActive(t, h.m, "probe_down:database_manager")
}

func TestLifecycleAcknowledgeHoldsUntilClearThenRearms(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.m.Evaluate(t0, figs("connection_pool_utilization", 0.85))
	a := mustActive(t, h.m, RuleConnectionPool)

	h.clk.set(t0.Add(time.Minute))
	got, err := h.m.Acknowledge([]string{a.ID}, "on it", "token:3f2a9c")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].State != store.StateAcknowledged || got[0].AcknowledgedBy != "token:3f2a9c" ||
		got[0].AckNote != "on it" || got[0].AcknowledgedAt == nil || !got[0].AcknowledgedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Acknowledge returned %+v", got)
	}
	// Still above threshold, even escalating: the acknowledgement holds.
	h.m.Evaluate(t0.Add(2*time.Minute), figs("connection_pool_utilization", 0.93))
	b := mustActive(t, h.m, RuleConnectionPool)
	if b.ID != a.ID || b.State != store.StateAcknowledged || b.Severity != store.SeverityCritical || b.Value != 0.93 {
		t.Errorf("after escalation: %+v; want the same alert, still acknowledged, now critical", b)
	}
	if !strings.Contains(b.Message, "93%") {
		t.Errorf("message not updated with the latest value: %q", b.Message)
	}
	// Clears: resolved, acknowledgement kept on the record.
	h.m.Evaluate(t0.Add(3*time.Minute), figs("connection_pool_utilization", 0.5))
	if len(h.m.Active()) != 0 {
		t.Fatal("still active after the condition cleared")
	}
	res := h.m.List(Filter{State: store.StateResolved})
	if len(res) != 1 || res[0].ID != a.ID || res[0].AcknowledgedBy != "token:3f2a9c" || res[0].PeakSeverity != store.SeverityCritical {
		t.Errorf("resolved = %+v", res)
	}
	// Re-armed: a new occurrence is a new, unacknowledged alert.
	h.m.Evaluate(t0.Add(4*time.Minute), figs("connection_pool_utilization", 0.85))
	c := mustActive(t, h.m, RuleConnectionPool)
	if c.ID == a.ID || c.State != store.StateFiring || c.AcknowledgedAt != nil {
		t.Errorf("new occurrence = %+v; want a new firing alert", c)
	}
	all := h.m.List(Filter{})
	if len(all) != 2 || all[0].ID != c.ID || all[1].ID != a.ID {
		t.Errorf("List = %v; want newest first [%s %s]", ids(all), c.ID, a.ID)
	}
	if got := h.m.List(Filter{State: "active", Severity: store.SeverityWarning}); len(got) != 1 || got[0].ID != c.ID {
		t.Errorf("List(active, warning) = %v", ids(got))
	}
	if got := h.m.List(Filter{Limit: 1}); len(got) != 1 || got[0].ID != c.ID {
		t.Errorf("List(limit 1) = %v", ids(got))
	}
	if err := (Filter{State: "open"}).Validate(); err == nil || !strings.Contains(err.Error(), "state") {
		t.Errorf("Filter{State: open}.Validate() = %v; want an error naming state", err)
	}
}

func ids(as []Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func TestAcknowledgeErrorsChangeNothing(t *testing.T) {
	st := openStore(t, t.TempDir())
	h := newHarness(t, nil, st)
	h.m.Evaluate(t0, figs("memory_usage", 0.85, "cpu_usage", 0.85, "disk_usage", 0.9))
	mem := mustActive(t, h.m, RuleMemoryUsage)
	cpu := mustActive(t, h.m, RuleCPUUsage)
	h.m.Evaluate(t0.Add(time.Second), figs("memory_usage", 0.85, "cpu_usage", 0.85, "disk_usage", 0.1))
	disk := h.m.List(Filter{State: store.StateResolved})[0]

	for _, tc := range []struct {
		desc string
		ids  []string
		want error
	}{
		{"unknown id with a good one", []string{mem.ID, "nope"}, ErrUnknownAlert},
		{"resolved with a good one", []string{cpu.ID, disk.ID}, ErrResolved},
		{"no ids", nil, ErrNoAlertIDs},
		{"blank ids", []string{" ", ""}, ErrNoAlertIDs},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := h.m.Acknowledge(tc.ids, "x", "peer:127.0.0.1")
			if !errors.Is(err, tc.want) || got != nil {
				t.Errorf("Acknowledge(%v) = %v, %v; want %v", tc.ids, got, err, tc.want)
			}
			for _, a := range h.m.Active() {
				if a.State != store.StateFiring {
					t.Errorf("alert %s changed to %s by a refused acknowledgement", a.ID, a.State)
				}
			}
		})
	}
	// Idempotent: the first acknowledgement stays.
	if _, err := h.m.Acknowledge([]string{mem.ID, mem.ID}, "first", "token:aaaaaa"); err != nil {
		t.Fatal(err)
	}
	h.clk.set(t0.Add(time.Hour))
	got, err := h.m.Acknowledge([]string{mem.ID}, "second", "token:bbbbbb")
	if err != nil {
		t.Fatal(err)
	}
	if got[0].AcknowledgedBy != "token:aaaaaa" || got[0].AckNote != "first" || !got[0].AcknowledgedAt.Equal(t0) {
		t.Errorf("second acknowledgement changed the first: %+v", got[0])
	}
	// Persisted: a reopened store has the first acknowledgement.
	recs, err := st.LoadAlerts()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.ID == mem.ID && (r.AcknowledgedBy != "token:aaaaaa" || r.AckNote != "first") {
			t.Errorf("stored acknowledgement = %+v", r)
		}
		if r.ID == cpu.ID && r.AcknowledgedAt != nil {
			t.Errorf("a refused acknowledgement reached the store: %+v", r)
		}
	}
}

func TestConcurrentAcknowledgeEvaluateList(t *testing.T) {
	st := openStore(t, t.TempDir())
	h := newHarness(t, nil, st)
	h.m.Evaluate(t0, figs("memory_usage", 0.85))
	a := mustActive(t, h.m, RuleMemoryUsage)
	sub, cancel := h.hub.Subscribe(1024)
	defer cancel()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			h.m.Evaluate(t0.Add(time.Duration(i)*time.Millisecond), figs("memory_usage", 0.85, "cpu_usage", 0.5))
			_ = h.m.List(Filter{})
		}
	})
	results := make([][]Alert, 100)
	errs := make([]error, 100)
	var acks sync.WaitGroup
	for i := range 100 {
		acks.Go(func() {
			results[i], errs[i] = h.m.Acknowledge([]string{a.ID}, fmt.Sprintf("note %d", i), fmt.Sprintf("token:%06d", i))
		})
	}
	acks.Wait()
	close(stop)
	wg.Wait()

	by := ""
	for i := range 100 {
		if errs[i] != nil {
			t.Fatalf("acknowledge %d: %v", i, errs[i])
		}
		r := results[i][0]
		if r.State != store.StateAcknowledged {
			t.Fatalf("acknowledge %d returned state %s", i, r.State)
		}
		if by == "" {
			by = r.AcknowledgedBy
		}
		if r.AcknowledgedBy != by {
			t.Errorf("acknowledge %d saw acknowledged_by %q, another %q: not one outcome", i, r.AcknowledgedBy, by)
		}
	}
	if got := mustActive(t, h.m, RuleMemoryUsage); got.AcknowledgedBy != by {
		t.Errorf("final acknowledged_by = %q; want %q", got.AcknowledgedBy, by)
	}
	n := 0
	for len(sub) > 0 {
		if ev := (<-sub).Data.(Event); ev.Type == EventAcknowledged {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d alert.acknowledged events; want 1", n)
	}
	stored, _ := st.Acknowledgements()
	if len(stored) != 1 || stored[0].By != by {
		t.Errorf("stored acknowledgements = %+v; want exactly the one by %s", stored, by)
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, nil, st)
	h.m.Evaluate(t0, Input{
		Figures:     map[string]float64{"memory_usage": 0.95, "cpu_usage": 0.85},
		ProbeStatus: map[string]string{"session_monitoring": "down"},
	})
	cpu := mustActive(t, h.m, RuleCPUUsage)
	probe := mustActive(t, h.m, "probe_down:session_monitoring")
	h.clk.set(t0.Add(time.Minute))
	if _, err := h.m.Acknowledge([]string{cpu.ID}, "scaling up\nsee ticket 42", "token:3f2a9c"); err != nil {
		t.Fatal(err)
	}
	h.m.Evaluate(t0.Add(2*time.Minute), Input{Figures: map[string]float64{"memory_usage": 0.5, "cpu_usage": 0.85}})
	mem := h.m.List(Filter{State: store.StateResolved})[0]
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st2 := openStore(t, dir)
	h2 := newHarness(t, nil, st2)
	got := h2.m.Active()
	if len(got) != 2 {
		t.Fatalf("after restart %d active; want cpu and probe_down: %+v", len(got), got)
	}
	c := mustActive(t, h2.m, RuleCPUUsage)
	if c.ID != cpu.ID || c.State != store.StateAcknowledged || c.AcknowledgedBy != "token:3f2a9c" ||
		c.AckNote != "scaling up\nsee ticket 42" || !c.AcknowledgedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("acknowledged alert after restart = %+v", c)
	}
	if p := mustActive(t, h2.m, "probe_down:session_monitoring"); p.ID != probe.ID || p.Severity != store.SeverityCritical {
		t.Errorf("probe alert after restart = %+v", p)
	}
	res := h2.m.List(Filter{State: store.StateResolved})
	if len(res) != 1 || res[0].ID != mem.ID || res[0].ResolvedAt == nil {
		t.Errorf("history after restart = %+v", res)
	}
	if v := testutil.ToFloat64(h2.m.met.active.WithLabelValues(store.SeverityCritical)); v != 1 {
		t.Errorf("pulsegate_alerts_active{severity=critical} = %v after restart; want 1", v)
	}
	// Evaluation resumes on the same ids: the condition clears, the same alert resolves.
	h2.m.Evaluate(t0.Add(3*time.Minute), Input{Figures: map[string]float64{"cpu_usage": 0.1}, ProbeStatus: map[string]string{"session_monitoring": "ok"}})
	if len(h2.m.Active()) != 0 {
		t.Errorf("still active: %+v", h2.m.Active())
	}
	if got := ids(h2.m.List(Filter{State: store.StateResolved})); len(got) != 3 {
		t.Errorf("resolved after restart = %v; want 3", got)
	}
}

func TestCorruptStoreIsAStartupError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, store.FileName)
	if err := os.WriteFile(path, []byte(strings.Repeat("garbage", 5000)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := store.Open(dir, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open(corrupt) = %v; want an error naming %s", err, path)
	}
}

func TestHistoryIsBounded(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	cfg := config.Defaults()
	cfg.Alerts.HistorySize = 3
	h := newHarness(t, cfg, st)
	var resolved []string
	for i := range 5 {
		at := t0.Add(time.Duration(i) * time.Minute)
		h.m.Evaluate(at, figs("memory_usage", 0.85))
		resolved = append(resolved, mustActive(t, h.m, RuleMemoryUsage).ID)
		h.m.Evaluate(at.Add(time.Second), figs("memory_usage", 0.1))
	}
	got := ids(h.m.List(Filter{}))
	want := []string{resolved[4], resolved[3], resolved[2]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("history = %v; want the newest 3 %v", got, want)
	}
	recs, _ := st.LoadAlerts()
	if len(recs) != 3 {
		t.Errorf("store holds %d alerts; want 3", len(recs))
	}
	// Shrinking history_size live prunes too.
	cfg2 := config.Defaults()
	cfg2.Alerts.HistorySize = 1
	if err := h.m.Apply(cfg2); err != nil {
		t.Fatal(err)
	}
	if got := ids(h.m.List(Filter{})); len(got) != 1 || got[0] != resolved[4] {
		t.Errorf("after history_size 1: %v", got)
	}
	if recs, _ := st.LoadAlerts(); len(recs) != 1 {
		t.Errorf("store holds %d alerts after shrinking; want 1", len(recs))
	}
	// Acknowledging a pruned alert: unknown.
	if _, err := h.m.Acknowledge([]string{resolved[0]}, "", "x"); !errors.Is(err, ErrUnknownAlert) {
		t.Errorf("acknowledging a pruned alert: %v; want ErrUnknownAlert", err)
	}
}

func TestApplyChangesThresholdsLive(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.m.Evaluate(t0, figs("memory_usage", 0.6))
	if len(h.m.Active()) != 0 {
		t.Fatal("0.6 fired at the default thresholds")
	}
	cfg := config.Defaults()
	cfg.Responsiveness.MemoryWarningThreshold = 0.5
	cfg.Responsiveness.MemoryCriticalThreshold = 0.7
	if err := h.m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	h.m.Evaluate(t0.Add(time.Second), figs("memory_usage", 0.6))
	if a := mustActive(t, h.m, RuleMemoryUsage); a.Threshold != 0.5 {
		t.Errorf("threshold = %v; want 0.5 after Apply", a.Threshold)
	}
}

func TestProbeAndTaskRules(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.m.Evaluate(t0, Input{
		ProbeStatus: map[string]string{"database_manager": "down", "session_monitoring": "critical", "system_optimizer": "disabled"},
		Tasks:       map[string]string{"cleanup_hook": "stuck", "session_ttl_repair": "ok", "recycle": "failing"},
	})
	got := h.m.Active()
	if len(got) != 3 {
		t.Fatalf("active = %+v; want probe_down:database_manager, task_failing:cleanup_hook, task_failing:recycle", got)
	}
	p := mustActive(t, h.m, "probe_down:database_manager")
	if p.Severity != store.SeverityCritical || p.Rule != RuleProbeDown || p.Subject != "database_manager" ||
		!strings.Contains(p.Message, "database_manager is down") || !strings.Contains(p.Recommendation, "database.dsn") {
		t.Errorf("probe alert = %+v", p)
	}
	task := mustActive(t, h.m, "task_failing:cleanup_hook")
	if task.Message != "Background task stuck - task_id: cleanup_hook" || !strings.HasPrefix(task.Recommendation, "Check task coordination settings") {
		t.Errorf("task alert = %+v", task)
	}
	if r := mustActive(t, h.m, "task_failing:recycle"); r.Message != "Background task coordination failure - task_id: recycle" {
		t.Errorf("failing task message = %q", r.Message)
	}
	// Missing or unrecognised statuses are unknown; known non-down statuses resolve.
	h.m.Evaluate(t0.Add(time.Second), Input{
		ProbeStatus: map[string]string{"database_manager": "???"},
		Tasks:       map[string]string{"cleanup_hook": "ok"},
	})
	mustActive(t, h.m, "probe_down:database_manager")
	mustActive(t, h.m, "task_failing:recycle")
	if _, ok := byKey(h.m.Active(), "task_failing:cleanup_hook"); ok {
		t.Error("task alert did not resolve on ok")
	}
	h.m.Evaluate(t0.Add(2*time.Second), Input{ProbeStatus: map[string]string{"database_manager": "warning"}})
	if _, ok := byKey(h.m.Active(), "probe_down:database_manager"); ok {
		t.Error("probe_down did not resolve when the probe answered again")
	}
}

func TestSessionLeakGrowthMessage(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.m.Evaluate(t0, figs("session_without_ttl", 30.0))
	h.m.Evaluate(t0.Add(time.Minute), figs("session_without_ttl", 42.0))
	a := mustActive(t, h.m, RuleSessionWithoutTTL)
	if !strings.Contains(a.Message, "42, up from 30") || !strings.Contains(a.Message, "memory leak pattern") {
		t.Errorf("message = %q; want growth from 30 to 42 called a memory leak pattern", a.Message)
	}
	h.m.Evaluate(t0.Add(2*time.Minute), figs("session_without_ttl", 0.0))
	if len(h.m.Active()) != 0 {
		t.Error("did not resolve at 0 keys without TTL")
	}
}

func TestSlowSubscriberNeverBlocksEvaluate(t *testing.T) {
	h := newHarness(t, nil, nil)
	slow, cancelSlow := h.hub.Subscribe(1)
	fast, cancelFast := h.hub.Subscribe(100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			v := 0.85
			if i%2 == 1 {
				v = 0.1
			}
			h.m.Evaluate(t0.Add(time.Duration(i)*time.Second), figs("memory_usage", v))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Evaluate blocked on a subscriber that does not read")
	}
	if n := len(fast); n != 20 {
		t.Errorf("fast subscriber got %d events; want 20", n)
	}
	if n := len(slow); n != 1 {
		t.Errorf("slow subscriber buffered %d; want 1", n)
	}
	if d := h.hub.Dropped(); d != 19 {
		t.Errorf("stream drops = %v; want 19", d)
	}
	cancelSlow()
	cancelSlow() // idempotent
	<-slow
	if _, open := <-slow; open {
		t.Error("channel still open after cancel")
	}
	cancelFast()
}

func TestActiveGauge(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.m.Evaluate(t0, figs("memory_usage", 0.95, "cpu_usage", 0.85, "disk_usage", 0.86))
	want := `
# HELP pulsegate_alerts_active Active (firing or acknowledged) alerts by severity.
# TYPE pulsegate_alerts_active gauge
pulsegate_alerts_active{severity="critical"} 1
pulsegate_alerts_active{severity="warning"} 2
`
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(want), "pulsegate_alerts_active"); err != nil {
		t.Error(err)
	}
	if a := h.m.Active(); a[0].Severity != store.SeverityCritical {
		t.Errorf("Active() does not list critical first: %v", a)
	}
	if _, err := New(config.Defaults(), nil, h.reg, nil, nil); err == nil {
		t.Error("New registered its metrics twice on one registry without an error")
	}
}

// TestTitleNeverShowsAThresholdNotReached: a value just under the critical
// threshold is a warning, and its title must not round it up to the
// critical threshold.
func TestTitleNeverShowsAThresholdNotReached(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.m.Evaluate(t0, figs("memory_usage", 0.899, "app_error_rate", 0.0999, "avg_response_time", 9.96))
	for rule, want := range map[string]string{
		RuleMemoryUsage:     "Memory usage at 89%",
		RuleErrorRate:       "App error rate at 9.9%",
		RuleAvgResponseTime: "Average response time at 9.9s",
	} {
		a := mustActive(t, h.m, rule)
		if a.Severity != "warning" || a.Message != want {
			t.Errorf("%s: %s %q, want warning %q", rule, a.Severity, a.Message, want)
		}
	}
}
