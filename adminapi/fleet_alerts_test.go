package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/proxy"
	"github.com/pulsegate/pulsegate/store"
)

// fakeFleetAlerts is a fleet view with fixed alerts and instances.
type fakeFleetAlerts struct {
	alerts     []store.FleetAlert
	insts      []store.InstanceStatus
	err        error
	activeOnly []bool
}

func (f *fakeFleetAlerts) Name() string { return "shop" }
func (f *fakeFleetAlerts) Now(context.Context, time.Time, time.Duration) ([]store.InstanceStatus, store.MergedRollup, error) {
	return f.insts, store.MergedRollup{}, f.err
}
func (f *fakeFleetAlerts) FleetAlerts(_ context.Context, _ time.Time, activeOnly bool) ([]store.FleetAlert, []store.InstanceStatus, error) {
	f.activeOnly = append(f.activeOnly, activeOnly)
	var out []store.FleetAlert
	for _, a := range f.alerts {
		if !activeOnly || a.Active() {
			out = append(out, a)
		}
	}
	return out, f.insts, f.err
}

func fleetAlertsAPI(t *testing.T, f FleetView, now time.Time) http.Handler {
	t.Helper()
	cfg := config.Defaults()
	reg := prometheus.NewRegistry()
	p, err := proxy.New(cfg, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	api := New(Deps{Config: config.NewHolder(cfg), Gatherer: reg, Requests: p.Stats(),
		Resources: func() Resources { return Resources{} }, Alerts: &fakeAlerts{ids: map[string]bool{}},
		Fleet: f, Now: func() time.Time { return now }})
	return api.AdminHandler("127.0.0.1:9901")
}

// The fleet answer lists one alert per fleet occurrence with its
// instances: severity the worst of the instances that see it, last_seen
// their latest heartbeat, since/resolved_at per instance, stale flagged;
// the filters are the instance answer's.
func TestFleetAlertsAnswer(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	ackAt := t0.Add(2 * time.Minute)
	resolvedAt := t0.Add(-time.Hour)
	f := &fakeFleetAlerts{
		alerts: []store.FleetAlert{
			{AlertRecord: store.AlertRecord{ID: "f1", Key: "memory_usage", Rule: "memory_usage", Severity: "warning", PeakSeverity: "warning",
				State: store.StateAcknowledged, FirstSeen: t0, LastSeen: t0, AcknowledgedAt: &ackAt, AcknowledgedBy: "token:abc", AckNote: "on it"},
				Instances: []store.AlertInstance{
					{Instance: "web-1", State: "firing", Severity: "warning", Value: 0.85, LastSeen: t0},
					{Instance: "web-2", State: "firing", Severity: "critical", Value: 0.95, LastSeen: t0.Add(time.Minute)},
					{Instance: "web-3", State: "resolved", Severity: "warning", Value: 0.7, LastSeen: t0.Add(90 * time.Second)},
				}},
			{AlertRecord: store.AlertRecord{ID: "f0", Key: "cpu_usage", Rule: "cpu_usage", Severity: "warning", PeakSeverity: "warning",
				State: store.StateResolved, FirstSeen: t0.Add(-2 * time.Hour), ResolvedAt: &resolvedAt},
				Instances: []store.AlertInstance{{Instance: "web-1", State: "resolved", Severity: "warning", LastSeen: resolvedAt}}},
		},
		insts: []store.InstanceStatus{
			{Instance: "web-1", Status: "warning", LastSeen: t0.Add(5 * time.Minute)},
			{Instance: "web-2", Status: "critical", LastSeen: t0.Add(4 * time.Minute), Stale: true},
			{Instance: "web-3", Status: "healthy", LastSeen: t0.Add(5 * time.Minute)},
		},
	}
	h := fleetAlertsAPI(t, f, t0.Add(5*time.Minute))
	e := &env{}
	w := e.do(t, h, call{method: "GET", path: "/admin/api/alerts/responsiveness?scope=fleet"})
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
	var doc struct {
		Scope  string           `json:"scope"`
		Fleet  string           `json:"fleet"`
		Alerts []FleetAlertJSON `json:"alerts"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Scope != "fleet" || doc.Fleet != "shop" || len(doc.Alerts) != 2 {
		t.Fatalf("answer: %s", w.Body.String())
	}
	a := doc.Alerts[0]
	if a.ID != "f1" || a.State != "acknowledged" || a.AcknowledgedBy != "token:abc" || a.AckNote != "on it" || a.AcknowledgedAt == nil {
		t.Errorf("alert f1: %+v", a.AlertRecord)
	}
	if a.Severity != "critical" || a.PeakSeverity != "critical" || a.Value != 0.95 {
		t.Errorf("alert f1 severity %s peak %s value %v; want critical from web-2", a.Severity, a.PeakSeverity, a.Value)
	}
	if !a.LastSeen.Equal(t0.Add(5 * time.Minute)) {
		t.Errorf("alert f1 last_seen %v; want web-1's latest heartbeat", a.LastSeen)
	}
	if len(a.Instances) != 3 {
		t.Fatalf("instances: %+v", a.Instances)
	}
	i1, i2, i3 := a.Instances[0], a.Instances[1], a.Instances[2]
	if i1.Since == nil || !i1.Since.Equal(t0) || i1.ResolvedAt != nil || !i1.LastSeen.Equal(t0.Add(5*time.Minute)) || i1.Stale {
		t.Errorf("web-1: %+v", i1)
	}
	if !i2.Stale || i2.Since == nil {
		t.Errorf("web-2: %+v; want stale", i2)
	}
	if i3.ResolvedAt == nil || !i3.ResolvedAt.Equal(t0.Add(90*time.Second)) || i3.Since != nil {
		t.Errorf("web-3: %+v; want resolved at its last view", i3)
	}
	if !strings.Contains(w.Body.String(), `"resolved_at": null`) {
		t.Errorf("a firing instance's resolved_at is not null: %s", w.Body.String())
	}

	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"state=resolved", []string{"f0"}},
		{"state=active", []string{"f1"}},
		{"state=acknowledged&severity=critical", []string{"f1"}},
		{"severity=warning", []string{"f0"}},
		{"limit=1", []string{"f1"}},
	} {
		w := e.do(t, h, call{method: "GET", path: "/admin/api/alerts/responsiveness?scope=fleet&" + tc.q})
		var d struct{ Alerts []FleetAlertJSON }
		if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil || w.Code != 200 {
			t.Fatalf("%s: %d %s", tc.q, w.Code, w.Body.String())
		}
		var got []string
		for _, a := range d.Alerts {
			got = append(got, a.ID)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: %v; want %v", tc.q, got, tc.want)
		}
	}
	for _, q := range []string{"state=bogus", "severity=x", "limit=0"} {
		w := e.do(t, h, call{method: "GET", path: "/admin/api/alerts/responsiveness?scope=fleet&" + q})
		if w.Code != 400 || !strings.Contains(w.Body.String(), strings.Split(q, "=")[0]) {
			t.Errorf("%s: %d %s; want 400 naming the parameter", q, w.Code, w.Body.String())
		}
	}

	f.err = errors.New("dial tcp: connection refused")
	w = e.do(t, h, call{method: "GET", path: "/admin/api/alerts/responsiveness?scope=fleet"})
	if w.Code != 503 || !strings.Contains(w.Body.String(), "shared store cannot be read") {
		t.Errorf("store down: %d %s; want 503", w.Code, w.Body.String())
	}
}
