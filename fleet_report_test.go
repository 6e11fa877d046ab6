package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/internal/fleettest"
	"github.com/pulsegate/pulsegate/latency"
	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/report/reporttest"
	"github.com/pulsegate/pulsegate/store"
)

// TestFleetReport: two days of a two-instance fleet written to a real
// shared store (MariaDB, PostgreSQL) and pruned as a sidecar prunes them
// (minute and hour rows), with a slow period and a flapping rule planted on
// every instance; a third sidecar of the fleet, running serve, answers
// the fleet report (API and `pulsegate report --fleet`): it names the
// instances, the route from both instances' merged rollups, the slow period (the mean response time's warning trips for
// the whole fleet), the flapping rule with the instances it fired on, the
// acknowledged alert's time to acknowledge, the configuration change, and
// the planted rejection burst (its count by cause, day and hour, and the
// fleet's peak in flight against the fleet's concurrency limit).
func TestFleetReport(t *testing.T) {
	if testing.Short() {
		t.Skip("real databases")
	}
	eachFleetDB(t, testFleetReport)
}

func testFleetReport(t *testing.T, d fleettest.DB) {
	leaks := goleak.IgnoreCurrent()
	dbName := d.Private(t, "pulsegate_frep")
	fleet := "frep-" + d.Name
	instances := []string{"frep-a", "frep-b"}
	now := time.Now().UTC()

	cfg := config.Defaults()
	sim, err := store.OpenSQL(context.Background(), d.DSN(d.Addr, dbName), nil, store.WithInstance(fleet, instances[0]))
	if err != nil {
		t.Fatal(err)
	}
	reporttest.SimulateFleet(t, sim, fleet, instances, now, reporttest.FleetPlant{SlowPeriod: true, FlappingRule: true, RejectionBurst: true})
	// Each instance's hour rows of one route, as its archive copies them
	// to the shared store: 600 requests an hour, the second instance's
	// slower (the fleet's p95 is the merged buckets').
	routeRequests := uint64(0)
	for i, in := range instances {
		var rows []store.RouteRow
		for h := now.Truncate(time.Hour).Add(-26 * time.Hour); h.Before(now); h = h.Add(time.Hour) {
			b := make([]uint64, latency.Buckets)
			b[latency.Index(time.Duration(20*(i+1))*time.Millisecond)] = 570
			b[latency.Index(time.Duration(200*(i+1))*time.Millisecond)] = 30
			for _, route := range []string{"/reports/<id>", "*"} {
				rows = append(rows, store.RouteRow{Route: route, Version: "1.0.0", Step: store.StepHour, Start: h,
					Requests: 600, Errors: 6, SumUS: 600 * 30000, Buckets: b})
			}
			if !h.Before(now.Add(-24 * time.Hour)) {
				routeRequests += 600
			}
		}
		if err := sim.WriteRouteBatch(context.Background(), store.RouteBatch{Fleet: fleet, Instance: in, Routes: rows}); err != nil {
			t.Fatal(err)
		}
	}
	// As the sidecars prune: heartbeat rows older than an hour merged per
	// 5 minutes, older than a day deleted, the minute and hour rows written.
	for range 5 {
		if _, err := sim.PruneFleet(context.Background(), fleet, now, fleetRetention(cfg.History)); err != nil {
			t.Fatal(err)
		}
	}
	sim.Close()

	cfg.Proxy.UpstreamURL = "http://127.0.0.1:1"
	cfg.Proxy.ListenAddr, cfg.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Proxy.DrainDelay = 0
	cfg.Admin.Token = config.Secret(fleetToken)
	cfg.DataDir = t.TempDir()
	cfg.Store.DSN = config.Secret(d.DSN(d.Addr, dbName))
	cfg.Instance, cfg.Fleet = "frep-live", fleet
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := build(cfg, zap.NewNop(), zap.NewAtomicLevel(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &fleetMember{a: a, name: "frep-live", proxy: a.proxyLn.Addr().String(), admin: a.adminLn.Addr().String(), cancel: cancel, done: make(chan int, 1)}
	go func() { m.done <- a.serve(ctx, nil) }()
	defer func() {
		m.stop(t)
		goleak.VerifyNone(t, leaks, goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
	}()

	var r report.Report
	began := time.Now()
	if code := m.get(t, "/admin/api/report/responsiveness?since=24h&scope=fleet", &r); code != 200 {
		t.Fatalf("fleet report: %d", code)
	}
	took := time.Since(began)
	// Its cost against the fleet history's 24 h answer on the same rows
	// (logged, not asserted: the machine is shared).
	began = time.Now()
	if code := m.get(t, "/admin/responsiveness/api/history?range=24h&scope=fleet", nil); code != 200 {
		t.Errorf("fleet history: %d", code)
	}
	t.Logf("24h fleet report %s, fleet history range=24h %s (%.1fx)", took, time.Since(began), took.Seconds()/time.Since(began).Seconds())
	if r.Scope != "fleet" || r.Fleet != fleet || r.Instance != "" || r.Tier != "1m" || r.StepSeconds != 300 {
		t.Errorf("scope %q fleet %q instance %q tier %q step %ds", r.Scope, r.Fleet, r.Instance, r.Tier, r.StepSeconds)
	}
	for _, in := range instances {
		if !slices.Contains(r.Instances, in) {
			t.Errorf("instances %v: %s missing", r.Instances, in)
		}
	}
	// No problem: the per-route rollups come from the shared store,
	// every instance's merged.
	if len(r.Problems) != 0 {
		t.Errorf("problems: %q", r.Problems)
	}
	if len(r.Routes.Slowest) != 1 || r.Routes.Slowest[0].Route != "/reports/<id>" || r.Routes.Slowest[0].Requests != routeRequests {
		t.Errorf("slowest routes %+v; want /reports/<id> with both instances' %d requests", r.Routes.Slowest, routeRequests)
	}
	if c := r.Trends.Period.Coverage; c < 0.9 {
		t.Errorf("the fleet's rows cover %.2f of the day", c)
	}
	// Both instances' throughput summed: about 2 × 10 req/s.
	if tp := r.Trends.Period.ThroughputRPS; tp == nil || *tp < 17 || *tp > 23 {
		t.Errorf("fleet throughput %v, want about 20 req/s", tp)
	}

	// The slow period: one trip of the mean response time's warning level,
	// two hours long, for the whole fleet.
	var avg *report.Threshold
	for i := range r.Thresholds {
		if r.Thresholds[i].Figure == "avg_response_time" {
			avg = &r.Thresholds[i]
		}
	}
	if avg == nil || !avg.InHistory || !avg.Measured || avg.Levels[0].Trips != 1 || avg.Levels[0].Seconds < 7000 || avg.Levels[0].Seconds > 7300 {
		t.Fatalf("avg_response_time threshold: %+v", avg)
	}
	if avg.Alerts != reporttest.FlapCycles || avg.Ignored != reporttest.FlapCycles || !avg.Flapping {
		t.Errorf("avg_response_time alerts: %d (%d ignored), flapping %v", avg.Alerts, avg.Ignored, avg.Flapping)
	}

	// The flapping rule, fleet-wide: a finding, one occurrence per fleet
	// alert, the instances it fired on.
	var flap *report.Finding
	for i, f := range r.Findings {
		if f.Kind == report.FindingFlappingRule && f.Subject == "avg_response_time" {
			flap = &r.Findings[i]
		}
	}
	if flap == nil || !slices.Contains(flap.ConfigKeys, "thresholds.response_time_warning") {
		t.Errorf("the flapping rule is not a finding: %+v", r.Findings)
	}
	rules := map[string]report.RuleStats{}
	for _, rs := range r.Alerts.Rules {
		rules[rs.Rule] = rs
	}
	if rs := rules["avg_response_time"]; rs.Count != reporttest.FlapCycles || rs.Cycles != reporttest.FlapCycles || !slices.Equal(rs.Instances, instances) {
		t.Errorf("avg_response_time rule: %+v", rs)
	}
	if rs := rules["memory_usage"]; rs.Count != 1 || rs.Acknowledged != 1 || rs.MedianTimeToAcknowledgeSeconds == nil ||
		*rs.MedianTimeToAcknowledgeSeconds != reporttest.FleetAckAfter.Seconds() {
		t.Errorf("memory_usage rule (acknowledged by the fleet after %s): %+v", reporttest.FleetAckAfter, rs)
	}
	if len(r.Alerts.ConfigChanges) != 1 || r.Alerts.ConfigChanges[0].Changes[0].Key != "thresholds.response_time_warning" {
		t.Errorf("config changes: %+v", r.Alerts.ConfigChanges)
	}
	// Capacity: the fleet's peak throughput, the burst's rejections (both
	// instances'), its peak in flight (the instances' peaks summed)
	// against the fleet's limit (theirs summed).
	n := int64(len(instances) * reporttest.FleetBurstMinutes)
	c := r.Capacity
	if c.PeakThroughputRPS == nil || *c.PeakThroughputRPS < 20 || c.CapacityWhy != report.FleetCapacityWhy {
		t.Errorf("capacity: %+v", c)
	}
	if p := c.Rejections.Period; p.Total == nil || *p.Total != n*(reporttest.FleetBurstRatePerMin+reporttest.FleetBurstQueuePerMin) ||
		*p.RateLimit != n*reporttest.FleetBurstRatePerMin || *p.Queue != n*reporttest.FleetBurstQueuePerMin || *p.Shed != 0 {
		t.Errorf("the fleet's rejections in the period: %+v", p)
	}
	burst := reporttest.FleetBurstFrom(now.Truncate(time.Minute))
	if h := c.Rejections.PeakHour; h == nil || !h.Equal(burst.Truncate(time.Hour)) {
		t.Errorf("the rejections' peak hour %v; the burst began %s", h, burst)
	}
	found := false
	for _, f := range r.Findings {
		found = found || f.Kind == report.FindingRejections
	}
	if !found {
		t.Errorf("the rejection burst is not a finding: %+v", r.Findings)
	}
	if want := int64(len(instances) * reporttest.FleetBurstInFlight); c.PeakInFlight == nil || int64(*c.PeakInFlight) != want {
		t.Errorf("peak in flight %v, want %d", c.PeakInFlight, want)
	}
	if want := len(instances) * reporttest.FleetLimitPerInstance; c.ConcurrencyLimit == nil || *c.ConcurrencyLimit != want {
		t.Errorf("the fleet's concurrency limit %v, want %d", c.ConcurrencyLimit, want)
	}

	// A 30 d report reads the hour rows.
	var month report.Report
	if code := m.get(t, "/admin/api/report/responsiveness?since=30d&scope=fleet", &month); code != 200 || month.Tier != "1h" || len(month.Instances) < 2 {
		t.Errorf("30d: %d, tier %q, instances %v, problems %q", code, month.Tier, month.Instances, month.Problems)
	}

	// The command prints it.
	code, out, stderr := runCmd(t, nil, "report", "--fleet", "--since", "24h", "--admin", "http://"+m.admin, "--token", fleetToken, "--format", "text")
	if code != 0 || !strings.Contains(out, "(fleet "+fleet+", ") || !strings.Contains(out, "frep-a, frep-b") || !strings.Contains(out, "FLAPPING") {
		t.Errorf("pulsegate report --fleet: exit %d (%s):\n%s", code, stderr, out)
	}
}
