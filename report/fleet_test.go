package report_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/latency"
	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/store"
)

// fakeFleetRows is a fleet's shared store as FleetSeries answers it: two
// instances, 10 req/s each, a 0.1 s mean response time but 6 s during
// [slowFrom, slowFrom+2h), instance b silent before silentUntil. Steps are
// the asked step, or raise when longer (a long heartbeat interval).
type fakeFleetRows struct {
	slowFrom, silentUntil time.Time
	raise                 time.Duration
	asked                 []time.Duration
	// burstFrom, when set, plants a rejection burst: for 30 minutes from
	// it the fleet rejects 120 requests a minute (100 rate, 20
	// queue_full) with 64 in flight against its limit of 80 (two
	// instances of 40); otherwise 6 in flight, nothing rejected.
	burstFrom time.Time
}

// The planted burst's figures.
const (
	burstRatePerMin, burstQueuePerMin = 100, 20
	burstInFlight, fleetLimit         = 64, 80
)

func (f *fakeFleetRows) read(_ context.Context, from, to time.Time, step time.Duration) (store.FleetSeries, error) {
	f.asked = append(f.asked, step)
	step = max(step, f.raise)
	fs := store.FleetSeries{From: from, To: to, Step: step, Instances: []string{}}
	for t := from.Truncate(step); t.Before(to); t = t.Add(step) {
		if t.Before(from) {
			continue
		}
		insts := []string{"web-a", "web-b"}
		if t.Before(f.silentUntil) {
			insts = insts[:1]
		}
		avg := 0.1
		if !t.Before(f.slowFrom) && t.Before(f.slowFrom.Add(2*time.Hour)) {
			avg = 6
		}
		n := uint64(10 * step.Seconds() * float64(len(insts)))
		cpu := 0.4
		st := store.FleetStep{Start: t, ThroughputRPS: 10 * float64(len(insts)), CPU: &cpu, Status: "ok",
			Merged: store.MergedRollup{Answered: n, Instances: insts, Latency: store.Hist{latency.Index(time.Duration(avg * float64(time.Second))): n},
				P50: avg, P95: avg, P99: avg, Timing: map[string]float64{"count": float64(n), "total": avg * float64(n)}}}
		if !f.burstFrom.IsZero() {
			st.Capacity = &store.CapacityFigures{PeakInFlight: 6, ConcurrencyLimit: fleetLimit}
			if !t.Before(f.burstFrom) && t.Before(f.burstFrom.Add(30*time.Minute)) {
				mins := uint64(step / time.Minute)
				st.Capacity = &store.CapacityFigures{Rejections: (burstRatePerMin + burstQueuePerMin) * mins,
					RejectedRateLimit: burstRatePerMin * mins, RejectedQueue: burstQueuePerMin * mins,
					PeakInFlight: burstInFlight, PeakQueued: 12, ConcurrencyLimit: fleetLimit}
			}
		}
		fs.Steps = append(fs.Steps, st)
	}
	return fs, nil
}

// TestFleetSeriesAdapter: the adapter asks the store for the tier's step
// or the compaction window when longer, lays the steps out as history
// columns, and lists the instances of the steps in a window.
func TestFleetSeriesAdapter(t *testing.T) {
	end := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f := &fakeFleetRows{silentUntil: end.Add(-time.Hour)}
	fs := report.NewFleetSeries(context.Background(), f.read, 5*time.Minute)
	v, err := fs.Query("", history.Tier1m, end.Add(-2*time.Hour), end)
	if err != nil {
		t.Fatal(err)
	}
	if f.asked[0] != 5*time.Minute || v.StepSeconds != 300 || len(v.Time) != 24 || v.Tier != "fleet" {
		t.Fatalf("asked %v; answered %d points of %ds (tier %q)", f.asked, len(v.Time), v.StepSeconds, v.Tier)
	}
	if tp := v.Series["throughput_rps"]; *tp[0] != 10 || *tp[23] != 20 {
		t.Errorf("throughput %v..%v, want 10 (one instance) then 20 (two)", *tp[0], *tp[23])
	}
	if avg := v.Series["avg_response_time"][0]; avg == nil || *avg != 0.1 {
		t.Errorf("avg_response_time %v", avg)
	}
	if _, err := fs.Query("", history.Tier1h, end.Add(-48*time.Hour), end); err != nil || f.asked[1] != time.Hour {
		t.Errorf("1h tier: asked %v, %v", f.asked, err)
	}
	if got := fs.Instances(end.Add(-2*time.Hour), end.Add(-time.Hour)); !slices.Equal(got, []string{"web-a"}) {
		t.Errorf("instances before b reported: %v", got)
	}
	if got := fs.Instances(end.Add(-2*time.Hour), end); !slices.Equal(got, []string{"web-a", "web-b"}) {
		t.Errorf("instances: %v", got)
	}
}

// fleetAlerts is a fleet's alerts: the avg_response_time rule firing on
// both instances and resolving six times within an hour (never
// acknowledged), and one memory_usage alert on web-a acknowledged after
// 3 minutes.
func fleetAlerts(at time.Time) report.FleetAlerts {
	var fas []store.FleetAlert
	both := []store.AlertInstance{{Instance: "web-a"}, {Instance: "web-b"}}
	for i := range 6 {
		fired := at.Add(time.Duration(i) * 10 * time.Minute)
		res := fired.Add(5 * time.Minute)
		fas = append(fas, store.FleetAlert{Fleet: "shop", Instances: both, AlertRecord: store.AlertRecord{ID: "rt-" + string(rune('a'+i)),
			Key: "avg_response_time", Rule: "avg_response_time", Metric: "avg_response_time", State: store.StateResolved,
			FirstSeen: fired, LastSeen: fired, ResolvedAt: &res}})
	}
	ack, res := at.Add(3*time.Minute), at.Add(30*time.Minute)
	fas = append(fas, store.FleetAlert{Fleet: "shop", Instances: both[:1], AlertRecord: store.AlertRecord{ID: "mem", Key: "memory_usage",
		Rule: "memory_usage", Metric: "memory_usage", State: store.StateResolved, FirstSeen: at, LastSeen: at, ResolvedAt: &res, AcknowledgedAt: &ack}})
	return report.FleetAlerts{
		Load: func() ([]store.FleetAlert, error) { return fas, nil },
		AuditLog: func(int, time.Time) ([]store.AuditEntry, error) {
			return []store.AuditEntry{{Time: at, Instance: "web-b", Actor: "token:1", Action: store.ActionConfigUpdate, Outcome: store.OutcomeOK,
				Changes: []store.Change{{Key: "thresholds.response_time_warning", Old: "5", New: "6"}}}}, nil
		},
	}
}

// TestFleetReportFromFleetRows: the report over a fleet's rows names the
// planted slow period (one two-hour trip of the mean response time's
// warning level) and the flapping rule with the instances it fired on;
// says scope fleet with the instances; keeps the capacity the fleet rows
// measure; and, without the fleet's per-route rollups, says so in
// Problems. A long heartbeat interval gives longer points, not an error.
func TestFleetReportFromFleetRows(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 30, 0, 0, time.UTC)
	slow := now.Add(-10 * time.Hour).Truncate(time.Hour)
	for _, raise := range []time.Duration{0, 10 * time.Minute} {
		f := &fakeFleetRows{slowFrom: slow, raise: raise}
		r, err := report.Build(report.Inputs{Since: "24h", Now: now, Config: config.Defaults(), Fleet: "shop",
			Series: report.NewFleetSeries(context.Background(), f.read, 5*time.Minute), Alerts: fleetAlerts(slow)})
		if err != nil {
			t.Fatal(err)
		}
		want := int64(max(5*time.Minute, raise) / time.Second)
		if r.Scope != "fleet" || r.Fleet != "shop" || r.StepSeconds != want || !slices.Equal(r.Instances, []string{"web-a", "web-b"}) {
			t.Errorf("raise %s: scope %q fleet %q step %d (want %d) instances %v", raise, r.Scope, r.Fleet, r.StepSeconds, want, r.Instances)
		}
		if len(r.Problems) != 1 || !strings.HasPrefix(r.Problems[0], "routes: the shared store keeps no per-route rollups") || r.Routes.Why == "" {
			t.Errorf("problems %q, routes.why %q", r.Problems, r.Routes.Why)
		}
		var avg report.Threshold
		for _, th := range r.Thresholds {
			if th.Figure == "avg_response_time" {
				avg = th
			}
		}
		if l := avg.Levels[0]; l.Trips != 1 || l.Seconds != 7200 || avg.Alerts != 6 || avg.Ignored != 6 || !avg.Flapping {
			t.Errorf("raise %s: avg_response_time %+v", raise, avg)
		}
		// Figures the fleet rows do not keep are not in its history.
		for _, th := range r.Thresholds {
			if th.Figure == "disk_usage" && (th.InHistory || th.Suggestion.Why == "") {
				t.Errorf("disk_usage: %+v", th)
			}
		}
		var flap *report.Finding
		for i := range r.Findings {
			if r.Findings[i].Kind == report.FindingFlappingRule && r.Findings[i].Subject == "avg_response_time" {
				flap = &r.Findings[i]
			}
		}
		if flap == nil || !slices.Contains(flap.ConfigKeys, "thresholds.response_time_warning") {
			t.Errorf("findings %+v", r.Findings)
		}
		for _, rs := range r.Alerts.Rules {
			switch rs.Rule {
			case "avg_response_time":
				if rs.Count != 6 || !slices.Equal(rs.Instances, []string{"web-a", "web-b"}) {
					t.Errorf("%+v", rs)
				}
			case "memory_usage":
				if rs.Acknowledged != 1 || *rs.MedianTimeToAcknowledgeSeconds != 180 || !slices.Equal(rs.Instances, []string{"web-a"}) {
					t.Errorf("%+v", rs)
				}
			}
		}
		if len(r.Alerts.ConfigChanges) != 1 || r.Alerts.ConfigChanges[0].Instance != "web-b" {
			t.Errorf("config changes %+v", r.Alerts.ConfigChanges)
		}
		c := r.Capacity
		if c.PeakThroughputRPS == nil || *c.PeakThroughputRPS != 20 || c.ConcurrencyLimit != nil || c.PeakInFlight != nil ||
			c.MeasuredCapacityRPS != nil || c.SaturatedSeconds != nil || c.CapacityWhy != report.FleetCapacityWhy {
			t.Errorf("capacity %+v", c)
		}
	}
}

// TestFleetReportRejectionBurst: a fleet whose rows carry backpressure's
// figures gets its capacity from them: the planted 30-minute burst's
// 3,600 rejections (3,000 rate limit, 600 queue) on its day and in its
// hour, the rejections finding, and the peak in flight (64) against the
// fleet's concurrency limit (80).
func TestFleetReportRejectionBurst(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 30, 0, 0, time.UTC)
	burst := now.Add(-30 * time.Hour).Truncate(time.Hour).Add(10 * time.Minute)
	f := &fakeFleetRows{burstFrom: burst}
	r, err := report.Build(report.Inputs{Since: "7d", Now: now, Config: config.Defaults(), Fleet: "shop",
		Series: report.NewFleetSeries(context.Background(), f.read, 5*time.Minute), Alerts: fleetAlerts(burst)})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Capacity
	rj := c.Rejections
	if p := rj.Period; p.Total == nil || *p.Total != 3600 || *p.RateLimit != 3000 || *p.Queue != 600 || *p.Shed != 0 {
		t.Fatalf("period rejections %+v", p)
	}
	var perDay []int64
	for _, d := range rj.Days {
		if d.Total != nil && *d.Total > 0 {
			perDay = append(perDay, *d.Total)
			if !(d.From.Compare(burst) <= 0 && burst.Before(d.To)) {
				t.Errorf("rejections on %s, the burst was at %s", d.From, burst)
			}
		}
	}
	if !slices.Equal(perDay, []int64{3600}) {
		t.Errorf("days with rejections: %v", perDay)
	}
	if rj.PeakHour == nil || !rj.PeakHour.Equal(burst.Truncate(time.Hour)) || *rj.PeakHourRejections != 3600 {
		t.Errorf("peak hour %v %v", rj.PeakHour, rj.PeakHourRejections)
	}
	var found bool
	for _, fd := range r.Findings {
		found = found || fd.Kind == report.FindingRejections
	}
	if !found {
		t.Errorf("no rejections finding in %+v", r.Findings)
	}
	if c.PeakInFlight == nil || *c.PeakInFlight != burstInFlight || c.ConcurrencyLimit == nil || *c.ConcurrencyLimit != fleetLimit ||
		c.PeakInFlightShareOfLimit == nil || *c.PeakInFlightShareOfLimit != 0.8 || c.SaturatedSeconds == nil || *c.SaturatedSeconds != 1800 {
		t.Errorf("capacity %+v", c)
	}
	if c.RejectionsSinceStart != nil || c.MeasuredCapacityRPS != nil || c.CapacityWhy != report.FleetCapacityWhy {
		t.Errorf("capacity %+v", c)
	}
	// The queue's thresholds are per instance: not judged on the fleet's
	// sum of the instances' peaks.
	for _, th := range r.Thresholds {
		if th.Figure == "queue_depth" && (th.InHistory || th.Measured || th.Levels[0].Trips != 0) {
			t.Errorf("queue_depth threshold judged on the fleet's summed peaks: %+v", th)
		}
	}
}
