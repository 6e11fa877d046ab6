package report_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/report/reporttest"
)

// build runs the report over a simulation and returns it as the JSON a
// user reads back (so the test sees what `--format json` prints).
func build(t *testing.T, sim *reporttest.Sim, since string) *report.Report {
	t.Helper()
	in := report.Inputs{Since: since, Now: reporttest.Now, Config: config.Defaults(), Series: sim.Archive, Alerts: sim.Store}
	addRoutes(&in, sim)
	r, err := report.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := report.Render(&buf, r, "json"); err != nil {
		t.Fatal(err)
	}
	var back report.Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("the JSON does not read back: %v", err)
	}
	return &back
}

func findingsOf(r *report.Report) map[string]report.Finding {
	m := map[string]report.Finding{}
	for _, f := range r.Findings {
		m[f.Kind+" "+f.Subject] = f
	}
	return m
}

// TestReportNamesPlantedProblems: a week with a flapping CPU threshold and
// a filling disk (and, with per-route history, a slow release): the
// weekly report names each, with the threshold's config key and the
// projection, and its sections agree with what was planted.
func TestReportNamesPlantedProblems(t *testing.T) {
	sim := reporttest.Simulate(t, t.TempDir(), reporttest.Plant{FillingDisk: true, FlappingCPU: true, SlowRelease: true})
	r := build(t, sim, "7d")
	if len(r.Problems) != 0 {
		t.Errorf("problems: %v", r.Problems)
	}
	f := findingsOf(r)
	flap, ok := f["flapping_rule cpu_usage"]
	if !ok {
		t.Fatalf("the flapping cpu_usage rule is not named: %+v", r.Findings)
	}
	if !strings.Contains(strings.Join(flap.ConfigKeys, ","), "responsiveness.cpu_warning_threshold") {
		t.Errorf("the flapping finding does not name the threshold key: %+v", flap)
	}
	disk, ok := f["resource_filling disk_usage"]
	if !ok {
		t.Fatalf("the filling disk is not named: %+v", r.Findings)
	}
	checkSlowRelease(t, r, f)
	t.Logf("findings: %+v", r.Findings)

	// The sections behind the findings.
	var cpu *report.RuleStats
	for i := range r.Alerts.Rules {
		if r.Alerts.Rules[i].Rule == "cpu_usage" {
			cpu = &r.Alerts.Rules[i]
		}
	}
	if cpu == nil || cpu.Count != 12 || cpu.Cycles != 12 || cpu.Ignored != 12 || !cpu.Flapping || cpu.MaxOccurrencesPerHour != 6 {
		t.Errorf("cpu_usage rule stats: %+v", cpu)
	}
	for _, th := range r.Thresholds {
		if th.Figure != "cpu_usage" {
			continue
		}
		if th.Levels[0].Trips != 12 || th.Levels[0].Seconds != 12*5*60 || th.Alerts != 12 || !th.Flapping {
			t.Errorf("cpu_usage threshold: %+v", th)
		}
		if th.Suggestion.Warning == nil {
			t.Errorf("no suggestion for cpu_usage: %+v", th.Suggestion)
		}
	}
	var res report.Resource
	for _, x := range r.Capacity.Resources {
		if x.Figure == "disk_usage" {
			res = x
		}
	}
	if res.Projection == nil || res.Fit.R2 < 0.8 || res.Projection.FullInDays < 8 || res.Projection.FullInDays > 12 {
		t.Errorf("disk projection: %+v fit %+v", res.Projection, res.Fit)
	}
	if !strings.Contains(disk.Message, "disk_usage full in ~") {
		t.Errorf("disk finding message: %q", disk.Message)
	}
	if len(r.Trends.Days) != 7 || r.Trends.Days[0].Coverage < 0.99 || r.Trends.Period.ThroughputRPS == nil {
		t.Errorf("trends: %d days, first %+v", len(r.Trends.Days), r.Trends.Days[0])
	}
	if c := r.Trends.Change.P95Seconds; c == nil || *c < 0.1 {
		t.Errorf("the slow release does not show in the p95 trend: change %v", c)
	}

	// Both readable renderings carry the findings and every section.
	for _, format := range []string{"text", "markdown"} {
		var buf bytes.Buffer
		if err := report.Render(&buf, r, format); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, want := range []string{"Findings", "Trends", "Routes", "Alerts", "Threshold effectiveness", "Capacity",
			"flapping_rule", "disk_usage full in ~", "release_regression", reporttest.SlowRoute} {
			if !strings.Contains(strings.ToLower(out), strings.ToLower(want)) {
				t.Errorf("%s output lacks %q:\n%s", format, want, out)
			}
		}
		if format == "markdown" && !strings.Contains(out, "| rule | count |") {
			t.Errorf("markdown has no alerts table:\n%s", out)
		}
	}
}

// TestReportSteadyWeekNamesNothing: two weeks of steady traffic with one
// ordinary acknowledged alert: no finding, no projection, no threshold
// to raise.
func TestReportSteadyWeekNamesNothing(t *testing.T) {
	sim := reporttest.Simulate(t, t.TempDir(), reporttest.Plant{})
	for _, since := range []string{"24h", "7d"} {
		r := build(t, sim, since)
		if len(r.Findings) != 0 {
			t.Errorf("since %s: findings on a steady week: %+v", since, r.Findings)
		}
		for _, x := range r.Capacity.Resources {
			if x.Projection != nil {
				t.Errorf("since %s: projection for %s: %+v (fit %+v)", since, x.Figure, x.Projection, x.Fit)
			}
		}
		for _, th := range r.Thresholds {
			if th.Suggestion.Advice != "keep" {
				t.Errorf("since %s: %s advice %q: %+v", since, th.Figure, th.Suggestion.Advice, th.Suggestion)
			}
		}
		if since == "7d" {
			if len(r.Alerts.Rules) != 1 || r.Alerts.Rules[0].Acknowledged != 1 || *r.Alerts.Rules[0].MedianTimeToAcknowledgeSeconds != 240 {
				t.Errorf("alerts: %+v", r.Alerts.Rules)
			}
			if c := r.Trends.Change.ThroughputRPS; c == nil || *c > 0.05 || *c < -0.05 {
				t.Errorf("throughput change between two steady weeks: %v", c)
			}
		}
		// Measured, and none: 0 (not null) in each period and day.
		rj := r.Capacity.Rejections
		if p := rj.Period.Total; p == nil || *p != 0 || rj.Previous.Total == nil || *rj.Previous.Total != 0 || rj.PeakHour != nil || rj.Change != nil {
			t.Errorf("since %s: rejections on a steady week: %s", since, asJSON(rj))
		}
		for _, d := range rj.Days {
			if d.Total == nil || *d.Total != 0 {
				t.Errorf("since %s: day %s: %s", since, d.From, asJSON(d))
			}
		}
	}
}

// TestReportParams: bad since and format name the parameter.
func TestReportParams(t *testing.T) {
	if _, err := report.Build(report.Inputs{Since: "2w"}); err == nil || !strings.HasPrefix(err.Error(), "since: ") {
		t.Errorf("since=2w: %v", err)
	}
	if _, err := report.ParseFormat("html"); err == nil || !strings.HasPrefix(err.Error(), "format: ") {
		t.Errorf("format=html: %v", err)
	}
}

// TestReportWithoutSources: no archive, no route rollups, no store (a
// sidecar without data_dir): the report is built, every section empty,
// and problems say what is missing; nothing is made up.
func TestReportWithoutSources(t *testing.T) {
	r, err := report.Build(report.Inputs{Since: "24h", Now: reporttest.Now})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 2 || !strings.Contains(r.Problems[0], "data_dir") || len(r.Findings) != 0 {
		t.Errorf("problems %v findings %v", r.Problems, r.Findings)
	}
	if d := r.Trends.Days[0]; d.ThroughputRPS != nil || d.Requests != nil || d.P95Seconds != nil || d.Coverage != 0 {
		t.Errorf("a day without history: %+v", d)
	}
	if r.Routes.Why == "" || r.Capacity.PeakThroughputRPS != nil || r.Capacity.ConcurrencyLimit != nil {
		t.Errorf("routes %+v capacity %+v", r.Routes, r.Capacity)
	}
	for _, f := range report.Formats() {
		if err := report.Render(&bytes.Buffer{}, r, f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestReportTierFollowsRetention: with history.retention_1m at 3 days,
// the weekly report reads the 1 h tier (a sidecar so configured has no
// 1-minute points of the previous week) and still finds the planted disk.
func TestReportTierFollowsRetention(t *testing.T) {
	sim := reporttest.Simulate(t, t.TempDir(), reporttest.Plant{FillingDisk: true})
	cfg := config.Defaults()
	cfg.History.Retention1m = 3 * 86400
	r, err := report.Build(report.Inputs{Since: "7d", Now: reporttest.Now, Config: cfg, Series: sim.Archive, Alerts: sim.Store})
	if err != nil {
		t.Fatal(err)
	}
	if r.Tier != "1h" || r.Trends.Previous.Coverage < 0.99 {
		t.Errorf("tier %s, previous coverage %v", r.Tier, r.Trends.Previous.Coverage)
	}
	if f := findingsOf(r); len(f) != 1 || f["resource_filling disk_usage"].Kind == "" {
		t.Errorf("findings: %+v", r.Findings)
	}
}

// TestReportNamesRejectionBurst: a week with a planted 45-minute burst of
// rejections: the capacity section counts every one of them on its day,
// by cause, against a previous week without any, names the hour most fell
// in, and a rejections finding names the burst with the limits behind
// its causes. The steady weeks (TestReportSteadyWeekNamesNothing) count
// zero and name nothing.
func TestReportNamesRejectionBurst(t *testing.T) {
	sim := reporttest.Simulate(t, t.TempDir(), reporttest.Plant{RejectionBurst: true})
	r := build(t, sim, "7d")
	rj := r.Capacity.Rejections
	is := func(p *int64, want int64) bool { return p != nil && *p == want }
	if p := rj.Period; !is(p.Total, 17100) || !is(p.RateLimit, 13500) || !is(p.Queue, 2700) || !is(p.Shed, 900) || p.Coverage < 0.99 {
		t.Errorf("period: %s", asJSON(p))
	}
	if !is(rj.Previous.Total, 0) || rj.Change != nil {
		t.Errorf("previous %s, change %v", asJSON(rj.Previous), rj.Change)
	}
	for _, d := range rj.Days {
		want := int64(0)
		if at := reporttest.RejectionBurstAt; !at.Before(d.From) && at.Before(d.To) {
			want = 17100 // the whole burst lies in one of the report's days
		}
		if !is(d.Total, want) {
			t.Errorf("day from %s: %s, want %d", d.From, asJSON(d), want)
		}
	}
	if h := reporttest.RejectionBurstAt.Truncate(time.Hour); rj.PeakHour == nil || !rj.PeakHour.Equal(h) || !is(rj.PeakHourRejections, 15200) {
		t.Errorf("peak hour %v (%v), want %s (15200)", rj.PeakHour, rj.PeakHourRejections, h)
	}
	f, ok := findingsOf(r)["rejections rejections_rps"]
	if !ok {
		t.Fatalf("the burst is not named: %+v", r.Findings)
	}
	keys := strings.Join(f.ConfigKeys, ",")
	for _, want := range []string{"17100", "rate_limit 13500", "queue 2700", "shed 900", "15200", "0 in the previous period"} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("finding message lacks %q: %s", want, f.Message)
		}
	}
	for _, k := range []string{"backpressure.rate_limit_rps", "backpressure.max_concurrency", "backpressure.shed_signals"} {
		if !strings.Contains(keys, k) {
			t.Errorf("finding keys lack %s: %v", k, f.ConfigKeys)
		}
	}
	if len(r.Findings) != 1 {
		t.Errorf("findings besides the rejections: %+v", r.Findings)
	}
	// The day before: nothing rejected, nothing named.
	r24 := build(t, sim, "24h")
	if !is(r24.Capacity.Rejections.Period.Total, 0) || r24.Capacity.Rejections.PeakHour != nil || len(r24.Findings) != 0 {
		t.Errorf("24h after the burst day: %s, findings %+v", asJSON(r24.Capacity.Rejections.Period), r24.Findings)
	}
	var buf bytes.Buffer
	if err := report.Render(&buf, r, "text"); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "rejected in the period: 17100") || !strings.Contains(out, "most in the hour from 2026-11-28 14:00Z (15200)") {
		t.Errorf("text report lacks the rejections:\n%s", out)
	}
	t.Logf("finding: %s", f.Message)
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
