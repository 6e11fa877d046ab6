package adminapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/store"
)

// seriesFleet is a FleetView with a fixed trend series; it records the
// range and step it was asked for.
type seriesFleet struct {
	series   store.FleetSeries
	from, to time.Time
	step     time.Duration
}

func (f *seriesFleet) Name() string { return "shop" }
func (f *seriesFleet) Now(context.Context, time.Time, time.Duration) ([]store.InstanceStatus, store.MergedRollup, error) {
	return nil, store.MergedRollup{}, nil
}
func (f *seriesFleet) Series(_ context.Context, from, to time.Time, step time.Duration) (store.FleetSeries, error) {
	f.from, f.to, f.step = from, to, step
	return f.series, nil
}

// TestFleetHistoryAnswer: ?scope=fleet on the history endpoint answers the
// history shape with scope, fleet, the number of instances and how each
// series merges them; steps without latencies have null percentiles; a
// 24 h range asks for steps that keep it within 720 points. Without a
// shared store it is the contract's 400; a bad scope a 400 naming it; the
// instance answer keeps no scope field.
func TestFleetHistoryAnswer(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	t0 := now.Add(-time.Minute)
	cpu := 0.7
	m1 := store.MergedRollup{Answered: 300, Failed: 3, ErrorRate: 0.01, P50: 0.01, P95: 0.05, P99: 0.2,
		Latency: store.Hist{100: 300}, Timing: map[string]float64{"count": 300, "total": 6}, Instances: []string{"web-a", "web-b"}}
	m2 := store.MergedRollup{Instances: []string{"web-a"}}
	f := &seriesFleet{series: store.FleetSeries{Step: 30 * time.Second, Instances: []string{"web-a", "web-b"}, Steps: []store.FleetStep{
		{Start: t0, Merged: m1, ThroughputRPS: 10, CPU: &cpu, Status: "ok", Capacity: &store.CapacityFigures{Rejections: 60,
			RejectedRateLimit: 45, RejectedQueue: 15, PeakInFlight: 12, PeakQueued: 2, ConcurrencyLimit: 40}},
		{Start: t0.Add(30 * time.Second), Merged: m2, Status: "warning"},
	}}}
	e := newEnv(t, "")
	a := New(Deps{Config: e.holder, Fleet: f, Now: func() time.Time { return now }})
	h := a.AdminHandler("127.0.0.1:9901")
	w := e.do(t, h, call{method: "GET", path: "/admin/responsiveness/api/history?range=24h&scope=fleet"})
	if w.Code != 200 {
		t.Fatalf("scope=fleet: %d %s", w.Code, w.Body)
	}
	var got struct {
		Scope         string                `json:"scope"`
		Fleet         string                `json:"fleet"`
		Instances     int                   `json:"instances"`
		Tier          string                `json:"tier"`
		StepSeconds   int64                 `json:"step_seconds"`
		Time          []int64               `json:"time"`
		Health        []string              `json:"health"`
		Series        map[string][]*float64 `json:"series"`
		Aggregation   map[string]string     `json:"aggregation"`
		Events        []any                 `json:"events"`
		InstanceNames []string              `json:"instance_names"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Scope != "fleet" || got.Fleet != "shop" || got.Instances != 2 || len(got.InstanceNames) != 2 || got.StepSeconds != 30 || got.Events == nil {
		t.Errorf("answer: %+v", got)
	}
	if f.to != now || f.from != now.Add(-24*time.Hour) || f.step != 120*time.Second {
		t.Errorf("asked the store for %s..%s in %s steps; want the last 24h in 120s steps (720 points)", f.from, f.to, f.step)
	}
	if len(got.Time) != 2 || got.Time[0] != t0.Unix() || got.Health[0] != "healthy" || got.Health[1] != "warning" {
		t.Errorf("time %v health %v", got.Time, got.Health)
	}
	val := func(name string, i int) any {
		col := got.Series[name]
		if len(col) != 2 {
			t.Fatalf("series %s has %d points, want 2", name, len(col))
		}
		if col[i] == nil {
			return nil
		}
		return *col[i]
	}
	for _, c := range []struct {
		name string
		i    int
		want any
	}{
		{"p99_response_time", 0, 0.2}, {"p50_response_time", 0, 0.01}, {"throughput_rps", 0, 10.0}, {"error_rate", 0, 0.01},
		{"avg_response_time", 0, 0.02}, {"cpu_usage", 0, 0.7}, {"memory_usage", 0, nil}, {"requests", 0, 300.0}, {"instances", 0, 2.0},
		{"p99_response_time", 1, nil}, {"error_rate", 1, nil}, {"throughput_rps", 1, 0.0}, {"instances", 1, 1.0},
		// Backpressure's figures: 60 rejections in the 30 s step; the
		// second step's rows carry none (before schema version 5).
		{"rejections_rps", 0, 2.0}, {"rejections_rate_limit_rps", 0, 1.5}, {"rejections_queue_rps", 0, 0.5}, {"rejections_shed_rps", 0, 0.0},
		{"in_flight", 0, 12.0}, {"queue_depth", 0, 2.0}, {"concurrency_limit", 0, 40.0}, {"rejections_rps", 1, nil}, {"in_flight", 1, nil},
	} {
		if g := val(c.name, c.i); g != c.want {
			t.Errorf("%s[%d] = %v; want %v", c.name, c.i, g, c.want)
		}
	}
	if got.Aggregation["cpu_usage"] != "highest instance" || !strings.Contains(got.Aggregation["p99_response_time"], "merged") {
		t.Errorf("aggregation %v", got.Aggregation)
	}
	if w := e.do(t, h, call{method: "GET", path: "/admin/responsiveness/api/history?range=2d&scope=fleet"}); w.Code != 400 || !strings.Contains(w.Body.String(), "range") {
		t.Errorf("a bad range in fleet scope: %d %s", w.Code, w.Body)
	}
	if w := e.do(t, h, call{method: "GET", path: "/admin/responsiveness/api/history?scope=pod"}); w.Code != 400 || !strings.Contains(w.Body.String(), "scope") {
		t.Errorf("scope=pod: %d %s", w.Code, w.Body)
	}

	// Without a shared store: the contract's 400.
	none := New(Deps{Config: e.holder, Now: func() time.Time { return now }}).AdminHandler("127.0.0.1:9901")
	w = e.do(t, none, call{method: "GET", path: "/admin/responsiveness/api/history?range=1h&scope=fleet"})
	var body map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != 400 || body["error"] != ErrFleetHistoryNeedsStore {
		t.Errorf("no shared store: %d %s; want 400 %q", w.Code, w.Body, ErrFleetHistoryNeedsStore)
	}
}

// TestWhoamiSaysWhetherTheFleetScopeExists: the dashboard shows its scope
// switch only when whoami says a shared store is set.
func TestWhoamiSaysWhetherTheFleetScopeExists(t *testing.T) {
	e := newEnv(t, "")
	me := whoami(t, e, e.api.AdminHandler("127.0.0.1:9901"), call{})
	if me["shared_store"] != false || me["fleet"] != nil {
		t.Errorf("embedded store: whoami %v; want shared_store false and no fleet", me)
	}
	a := New(Deps{Config: e.holder, Fleet: &seriesFleet{}})
	me = whoami(t, e, a.AdminHandler("127.0.0.1:9901"), call{})
	if me["shared_store"] != true || me["fleet"] != "shop" || me["instance"] == "" {
		t.Errorf("shared store: whoami %v; want shared_store true, fleet shop and the instance name", me)
	}
}

// TestFleetHistoryLongRanges: ?scope=fleet accepts every range the
// instance answer does, up to 365d and from/to; each asks the store for
// the range in at most 720 steps, whole minutes beyond an hour (its
// minute rows) and whole hours beyond 14 days (its hour rows).
func TestFleetHistoryLongRanges(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := &seriesFleet{series: store.FleetSeries{Step: time.Hour, Instances: []string{}, Steps: []store.FleetStep{}}}
	e := newEnv(t, "")
	h := New(Deps{Config: e.holder, Fleet: f, Now: func() time.Time { return now }}).AdminHandler("127.0.0.1:9901")
	for _, c := range []struct {
		q    string
		span time.Duration
		step time.Duration
	}{
		{"range=15m", 15 * time.Minute, 10 * time.Second},
		{"range=1h", time.Hour, 10 * time.Second},
		{"range=24h", 24 * time.Hour, 2 * time.Minute},
		{"range=7d", 7 * 24 * time.Hour, 14 * time.Minute},
		{"range=30d", 30 * 24 * time.Hour, time.Hour},
		{"range=90d", 90 * 24 * time.Hour, 3 * time.Hour},
		{"range=365d", 365 * 24 * time.Hour, 13 * time.Hour},
		{fmt.Sprintf("from=%s&to=%s", now.Add(-60*24*time.Hour).Format(time.RFC3339), now.Format(time.RFC3339)), 60 * 24 * time.Hour, 2 * time.Hour},
	} {
		w := e.do(t, h, call{method: "GET", path: "/admin/responsiveness/api/history?scope=fleet&" + c.q})
		if w.Code != 200 {
			t.Errorf("%s: %d %s", c.q, w.Code, w.Body)
			continue
		}
		if f.to.Sub(f.from) != c.span || f.step != c.step || int(c.span/f.step) > 720 {
			t.Errorf("%s: asked the store for %s in %s steps; want %s in %s steps", c.q, f.to.Sub(f.from), f.step, c.span, c.step)
		}
	}
}
