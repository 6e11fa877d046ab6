package monitor

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pulsegate/pulsegate/alerts"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/events"
	"github.com/pulsegate/pulsegate/health"
	"github.com/pulsegate/pulsegate/probes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakePressure struct {
	mu  sync.Mutex
	got map[string]string
}

func (f *fakePressure) SetPressure(s, l string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got[s] = l
}
func (f *fakePressure) QueueDepth() int { return 7 }

type fakeAlerts struct{ in alerts.Input }

func (f *fakeAlerts) Evaluate(now time.Time, in alerts.Input) { f.in = in }
func (f *fakeAlerts) Active() []alerts.Alert                  { return nil }

func TestPokeTicksAtOnce(t *testing.T) {
	cfg := config.Defaults()
	cfg.Responsiveness.MonitoringInterval = 3600
	st := probes.NewStore()
	m := New(Deps{Config: config.NewHolder(cfg), Probes: st, Health: health.New(cfg, nil)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for m.Last() == nil { // the first tick runs at start
		if time.Now().After(deadline) {
			t.Fatal("no first tick")
		}
		time.Sleep(5 * time.Millisecond)
	}
	first := m.Last()
	st.Set(probes.Result{Probe: "system_optimizer", Status: probes.StatusCritical, Started: time.Now()})
	m.Poke()
	for m.Last() == first {
		if time.Now().After(deadline) {
			t.Fatal("Poke did not tick before the (one hour) interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := m.Last().Verdict.Underlying[health.SystemOptimizer]; got != health.Critical {
		t.Fatalf("after Poke: system_optimizer %s; want critical", got)
	}
}

func TestLevels(t *testing.T) {
	cfg := config.Defaults()
	tests := []struct {
		desc    string
		figures map[string]float64
		signal  string
		want    string
	}{
		{"unknown figure is ok, never a guess", map[string]float64{}, "memory", "ok"},
		{"below warning", map[string]float64{"memory_usage": 0.5}, "memory", "ok"},
		{"at warning", map[string]float64{"memory_usage": 0.8}, "memory", "warning"},
		{"at critical", map[string]float64{"memory_usage": 0.9}, "memory", "critical"},
		{"pool critical", map[string]float64{"connection_pool_utilization": 0.95}, "db_connections", "critical"},
		{"response time in seconds", map[string]float64{"avg_response_time": 6}, "response_time", "warning"},
		{"queue depth", map[string]float64{"queue_depth": 100}, "queue", "critical"},
		{"evicting is a warning", map[string]float64{"redis_evicted_per_sec": 3}, "redis_evicting", "warning"},
		{"evicting at the memory limit is critical", map[string]float64{"redis_evicted_per_sec": 3, "redis_memory_usage": 0.95}, "redis_evicting", "critical"},
	}
	for _, tc := range tests {
		if got := Levels(cfg, tc.figures)[tc.signal]; got != tc.want {
			t.Errorf("%s: %s = %q; want %q", tc.desc, tc.signal, got, tc.want)
		}
	}
}

func TestTickDrivesPressureAlertsAndEvents(t *testing.T) {
	cfg := config.Defaults()
	h := config.NewHolder(cfg)
	st := probes.NewStore()
	st.Set(probes.Result{Probe: "system_optimizer", Status: probes.StatusCritical,
		Figures: map[string]float64{"memory_usage": 0.95, "cpu_usage": 0.99}})
	fp := &fakePressure{got: map[string]string{}}
	fa := &fakeAlerts{}
	hub := events.New()
	defer hub.Close()
	ch, cancel := hub.Subscribe(4)
	defer cancel()
	m := New(Deps{Config: h, Probes: st, Pressure: fp, Alerts: fa, Hub: hub, Health: health.New(cfg, nil)})
	tick := m.Tick()

	if fp.got["memory"] != "critical" {
		t.Errorf("memory pressure = %q; want critical", fp.got["memory"])
	}
	if fp.got["cpu"] != "ok" {
		t.Errorf("cpu pressure = %q; want ok: cpu is not a default shed signal", fp.got["cpu"])
	}
	if tick.Levels["cpu"] != "critical" {
		t.Errorf("cpu level = %q; the level itself is still reported", tick.Levels["cpu"])
	}
	if fa.in.Figures["queue_depth"] != 7 || fa.in.ProbeStatus["system_optimizer"] != "critical" {
		t.Errorf("alerts input %+v", fa.in)
	}
	if tick.Verdict.Components[health.SystemOptimizer] != health.Critical {
		t.Errorf("verdict %+v", tick.Verdict.Components)
	}
	if ev := <-ch; ev.Type != "snapshot" || ev.Data.(*Tick) != tick {
		t.Errorf("event %q", ev.Type)
	}
	if m.Last() != tick {
		t.Error("Last() is not the latest tick")
	}
}

// fakeUpstream counts readiness checks; the check blocks until released.
type fakeUpstream struct {
	checks  chan struct{}
	release chan struct{}
}

func (f *fakeUpstream) NeedsUpstreamCheck() bool { return true }
func (f *fakeUpstream) CheckUpstream(ctx context.Context) error {
	f.checks <- struct{}{}
	select {
	case <-f.release:
	case <-ctx.Done():
	}
	return ctx.Err()
}

// TestUpstreamCheckHasItsOwnLoop: the readiness check of the app runs on
// RunUpstreamCheck, never inside a tick (a tick while a check hangs
// returns at once), and its loop stops with its context (goleak).
func TestUpstreamCheckHasItsOwnLoop(t *testing.T) {
	cfg := config.Defaults()
	up := &fakeUpstream{checks: make(chan struct{}, 1), release: make(chan struct{})}
	m := New(Deps{Config: config.NewHolder(cfg), Health: health.New(cfg, nil), Upstream: up})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.RunUpstreamCheck(ctx) }()
	<-up.checks // a check is in flight and hangs
	if tk := m.Tick(); tk == nil {
		t.Fatal("no tick")
	}
	select {
	case <-up.checks:
		t.Fatal("Tick checked the upstream")
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunUpstreamCheck = %v", err)
	}
}

// TestVerdictBeforeTheFirstTickHasNoSideEffects: asking for the verdict
// before any tick evaluates nothing else (no alerts, no pressure).
func TestVerdictBeforeTheFirstTickHasNoSideEffects(t *testing.T) {
	cfg := config.Defaults()
	al := &fakeAlerts{}
	pr := &fakePressure{got: map[string]string{}}
	m := New(Deps{Config: config.NewHolder(cfg), Health: health.New(cfg, nil), Alerts: al, Pressure: pr})
	v := m.Verdict()
	if v.Status == "" {
		t.Errorf("verdict before the first tick has no status: %+v", v)
	}
	if al.in.Figures != nil || len(pr.got) != 0 || m.Last() != nil {
		t.Errorf("Verdict ran a tick: alerts %+v, pressure %v", al.in, pr.got)
	}
}
