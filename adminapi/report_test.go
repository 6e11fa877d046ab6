package adminapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/report/reporttest"
	"github.com/pulsegate/pulsegate/store"
)

// TestReportEndpoint: GET /admin/api/report/responsiveness over a
// simulated fortnight (real history archive and bbolt store) answers the
// report in each format, refuses bad parameters naming them, needs the
// token like every admin route, and is never forwarded to the app.
func TestReportEndpoint(t *testing.T) {
	sim := reporttest.Simulate(t, t.TempDir(), reporttest.Plant{FillingDisk: true})
	cfg := config.Defaults()
	cfg.Admin.Token = config.Secret(testToken)
	cfg.Backpressure.MaxConcurrency = 8
	api := New(Deps{Config: config.NewHolder(cfg), History: sim.Reader, HistoryEvents: sim.Store,
		Backpressure: func() backpressure.State {
			return backpressure.State{Limit: 8, Rejections: map[string]uint64{"queue_full": 3}}
		},
		Now: func() time.Time { return reporttest.Now }})
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Errorf("forwarded to the app: %s", r.URL) })
	srv := httptest.NewServer(api.ProxyHandler(app))
	defer srv.Close()
	get := func(query string, auth bool) (int, string, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/admin/api/report/responsiveness"+query, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+testToken)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}

	code, ct, body := get("?since=7d", true)
	if code != 200 || ct != "application/json" {
		t.Fatalf("since=7d: %d %s %s", code, ct, body)
	}
	var r struct {
		Since    string `json:"since"`
		Findings []struct{ Kind, Subject string }
		Capacity struct {
			ConcurrencyLimit     *int              `json:"concurrency_limit"`
			RejectionsSinceStart map[string]uint64 `json:"rejections_since_start"`
		} `json:"capacity"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if r.Since != "7d" || len(r.Findings) != 1 || r.Findings[0].Kind != "resource_filling" || r.Findings[0].Subject != "disk_usage" {
		t.Errorf("report: since %q, findings %+v", r.Since, r.Findings)
	}
	if r.Capacity.ConcurrencyLimit == nil || *r.Capacity.ConcurrencyLimit != 8 || r.Capacity.RejectionsSinceStart["queue_full"] != 3 {
		t.Errorf("capacity: %+v", r.Capacity)
	}
	if code, ct, body := get("?since=30d&format=markdown", true); code != 200 || !strings.HasPrefix(ct, "text/markdown") || !strings.Contains(body, "## pulsegate report: last 30d") {
		t.Errorf("markdown: %d %s\n%s", code, ct, body)
	}
	for q, param := range map[string]string{"?since=2w": "since: ", "?since=7d&format=html": "format: ", "?since=7d&scope=galaxy": "scope: "} {
		if code, _, body := get(q, true); code != 400 || !strings.Contains(body, `"error": "`+param) {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
	if code, _, body := get("?since=7d&scope=fleet", true); code != 400 || !strings.Contains(body, "RESPONSIVENESS_STORE_DSN") {
		t.Errorf("fleet without a shared store: %d %s", code, body)
	}
	if code, _, _ := get("?since=7d", false); code != 401 {
		t.Errorf("without the token: %d", code)
	}
}

// reportFleet is a FleetReportView: seriesFleet's series, one fleet alert
// and an empty audit log.
type reportFleet struct {
	seriesFleet
	auditAsked bool
}

func (f *reportFleet) FleetAlerts(context.Context, time.Time, bool) ([]store.FleetAlert, []store.InstanceStatus, error) {
	at := f.series.Steps[0].Start
	return []store.FleetAlert{{Fleet: "shop", Instances: []store.AlertInstance{{Instance: "web-b"}},
		AlertRecord: store.AlertRecord{ID: "f1", Key: "cpu_usage", Rule: "cpu_usage", Metric: "cpu_usage", State: store.StateFiring, FirstSeen: at, LastSeen: at}}}, nil, nil
}

func (f *reportFleet) CompactionWindow() time.Duration { return 5 * time.Minute }

func (f *reportFleet) FleetAudit(context.Context, int, time.Time) ([]store.AuditEntry, error) {
	f.auditAsked = true
	return nil, nil
}

// TestFleetReportEndpoint: ?scope=fleet with a shared store answers the
// fleet's report (scope, fleet, instances, the fleet's alerts with their
// instances, the shared audit log read, no limiter state of this
// sidecar); a fleet view that cannot serve it is the no-store 400.
func TestFleetReportEndpoint(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cpu := 0.5
	f := &reportFleet{seriesFleet: seriesFleet{series: store.FleetSeries{Step: 5 * time.Minute, Steps: []store.FleetStep{
		{Start: now.Add(-time.Hour), ThroughputRPS: 12, CPU: &cpu, Status: "ok",
			Merged: store.MergedRollup{Answered: 3600, Instances: []string{"web-a", "web-b"}}}}}}}
	e := newEnv(t, "")
	a := New(Deps{Config: e.holder, Fleet: f, Now: func() time.Time { return now },
		Backpressure: func() backpressure.State { return backpressure.State{Limit: 8} }})
	h := a.AdminHandler("127.0.0.1:9901")
	w := e.do(t, h, call{method: "GET", path: "/admin/api/report/responsiveness?since=24h&scope=fleet"})
	if w.Code != 200 {
		t.Fatalf("scope=fleet: %d %s", w.Code, w.Body)
	}
	var r report.Report
	if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Scope != "fleet" || r.Fleet != "shop" || len(r.Instances) != 2 || r.Capacity.ConcurrencyLimit != nil || !f.auditAsked {
		t.Errorf("report: scope %q fleet %q instances %v limit %v audit read %v", r.Scope, r.Fleet, r.Instances, r.Capacity.ConcurrencyLimit, f.auditAsked)
	}
	if len(r.Alerts.Rules) != 1 || r.Alerts.Rules[0].Instances[0] != "web-b" {
		t.Errorf("alerts: %+v", r.Alerts.Rules)
	}
	a = New(Deps{Config: e.holder, Fleet: &f.seriesFleet, Now: func() time.Time { return now }})
	w = e.do(t, a.AdminHandler("127.0.0.1:9901"), call{method: "GET", path: "/admin/api/report/responsiveness?since=24h&scope=fleet"})
	if w.Code != 400 || !strings.Contains(w.Body.String(), "RESPONSIVENESS_STORE_DSN") {
		t.Errorf("a fleet view without the report's reads: %d %s", w.Code, w.Body)
	}
}
