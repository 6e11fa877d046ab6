package report_test

import (
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/history"

	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/report/reporttest"
)

func addRoutes(in *report.Inputs, sim *reporttest.Sim) { in.Routes = report.HourlyRoutes(*sim.Reader) }

// checkSlowRelease: the planted release is named with its route, and the
// route's line shows both releases and the p95 before and after.
func checkSlowRelease(t *testing.T, r *report.Report, f map[string]report.Finding) {
	t.Helper()
	rel, ok := f["release_regression "+reporttest.SlowRoute]
	if !ok {
		t.Fatalf("the slow release is not named: %+v\nworse: %+v", r.Findings, r.Routes.Worse)
	}
	if rel.Release != reporttest.SlowRelease {
		t.Errorf("release %q, want %q", rel.Release, reporttest.SlowRelease)
	}
	if len(r.Routes.Worse) != 1 {
		t.Errorf("worse routes: %+v", r.Routes.Worse)
	}
	l := r.Routes.Worse[0]
	c := l.Release.Comparison
	if l.Route != reporttest.SlowRoute || len(l.Versions) != 2 || c == nil || !c.P95.Regressed || c.P95.After < 1.4*c.P95.Before {
		t.Errorf("slow route line: %+v comparison %+v", l, c)
	}
}

// TestHourlyRoutesReadTheHourTier: the report's route reader answers
// from the 1 h tier even for the last day (which the 1 min tier covers),
// with the same requests as the 1 min rows.
func TestHourlyRoutesReadTheHourTier(t *testing.T) {
	sim := reporttest.Simulate(t, t.TempDir(), reporttest.Plant{})
	from, to := reporttest.Now.Add(-24*time.Hour), reporttest.Now
	hourly, err := report.HourlyRoutes(*sim.Reader).RouteRollups(history.AllRoutes, from, to)
	if err != nil {
		t.Fatal(err)
	}
	minutely, err := sim.Reader.RouteRollups(history.AllRoutes, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(hourly) == 0 || hourly[0].Step != time.Hour || minutely[0].Step != time.Minute {
		t.Fatalf("steps: hourly %d rows, minutely %d rows", len(hourly), len(minutely))
	}
	if h, m := history.MergeRollups(hourly).Requests, history.MergeRollups(minutely).Requests; h != m || h == 0 {
		t.Errorf("requests: %d from the 1 h tier, %d from the 1 min tier", h, m)
	}
}
