package alerts

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
)

// TestRulesListsEveryRule: Rules names each rule once, including the
// probe and task rules that are not in the figure table.
func TestRulesListsEveryRule(t *testing.T) {
	rules := Rules()
	for _, want := range []string{RuleMemoryUsage, RuleCPUUsage, RuleDiskUsage, RuleConnectionPool, RuleDBLatency,
		RuleDBLongQueries, RuleDBConnectionLeak, RuleDBIdleInTx, RuleJobQueueDepth, RuleQueueDepth, RuleErrorRate,
		RuleAvgResponseTime, RuleRedisMemoryUsage, RuleRedisEvictions, RuleSessionWithoutTTL, RuleProbeDown, RuleTaskFailing} {
		if !slices.Contains(rules, want) {
			t.Errorf("Rules() lacks %s", want)
		}
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r] {
			t.Errorf("Rules() lists %s twice", r)
		}
		seen[r] = true
	}
}

// amReceiver is a real HTTP Alertmanager stand-in recording every alert posted.
type amReceiver struct {
	mu     sync.Mutex
	alerts []AlertmanagerAlert
}

func (r *amReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body []AlertmanagerAlert
	if req.Method != http.MethodPost || req.URL.Path != "/api/v2/alerts" || json.NewDecoder(req.Body).Decode(&body) != nil {
		http.Error(w, "want POST /api/v2/alerts with a JSON list", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.alerts = append(r.alerts, body...)
	r.mu.Unlock()
}

// last returns the latest posted alert of rule (and whether there is one).
func (r *amReceiver) last(rule string) (AlertmanagerAlert, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.alerts) - 1; i >= 0; i-- {
		if r.alerts[i].Labels["rule"] == rule {
			return r.alerts[i], true
		}
	}
	return AlertmanagerAlert{}, false
}

// apiRunbooks is rule → runbook_url as the alerts API serves them (the JSON
// of Manager.List); a rule without the field maps to "(absent)".
func apiRunbooks(t *testing.T, m *Manager) map[string]string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"alerts": m.List(Filter{})})
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Alerts []map[string]any `json:"alerts"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range body.Alerts {
		u, ok := a["runbook_url"].(string)
		if !ok {
			u = "(absent)"
		}
		out[a["rule"].(string)] = u
	}
	return out
}

// TestAlertsCarryRunbookURL: every alert carries runbook_url =
// alerts.runbook_base_url/<rule>.md in the alerts API and as an annotation
// of the Alertmanager push; a live change of the base reaches both; an
// empty base leaves the field out.
func TestAlertsCarryRunbookURL(t *testing.T) {
	recv := &amReceiver{}
	srv := httptest.NewServer(recv)
	defer srv.Close()

	cfg := config.Defaults()
	if cfg.Alerts.RunbookBaseURL != config.DefaultRunbookBaseURL {
		t.Fatalf("default alerts.runbook_base_url = %q", cfg.Alerts.RunbookBaseURL)
	}
	cfg.Alerts.AlertmanagerURL = config.Secret(srv.URL)
	h := newHarness(t, cfg, nil)
	h.m.resendInterval = time.Hour
	h.run(t)

	in := figs("memory_usage", 0.95, "app_error_rate", 0.2) // the error_rate rule reads what the app caused
	in.ProbeStatus = map[string]string{"database_manager": "down"}
	in.Tasks = map[string]string{"cleanup": "failing"}
	h.m.Evaluate(t0, in)

	want := map[string]string{}
	for _, r := range []string{RuleMemoryUsage, RuleErrorRate, RuleProbeDown, RuleTaskFailing} {
		want[r] = config.DefaultRunbookBaseURL + "/" + r + ".md"
	}
	if got := apiRunbooks(t, h.m); !maps.Equal(got, want) {
		t.Errorf("alerts API runbook_url = %v; want %v", got, want)
	}
	// The log line carries it too.
	eventually(t, "alert_firing log line with runbook_url", func() bool {
		return h.logs.FilterMessage("alert_firing").FilterField(zap.String("runbook_url", want[RuleMemoryUsage])).Len() == 1
	})
	for r, u := range want {
		eventually(t, "Alertmanager post of "+r, func() bool {
			a, ok := recv.last(r)
			return ok && a.Annotations["runbook_url"] == u
		})
	}

	// A live change of the base URL (trailing slash tolerated) reaches the
	// next evaluation's alerts and pushes.
	next := config.Defaults()
	next.Alerts.AlertmanagerURL = config.Secret(srv.URL)
	next.Alerts.RunbookBaseURL = "https://wiki.example.com/ops/pulsegate/"
	if err := h.m.Apply(next); err != nil {
		t.Fatal(err)
	}
	h.m.Evaluate(t0.Add(time.Minute), figs("memory_usage", 0.95, "error_rate", 0.2, "disk_usage", 0.99))
	if got := apiRunbooks(t, h.m)[RuleDiskUsage]; got != "https://wiki.example.com/ops/pulsegate/disk_usage.md" {
		t.Errorf("disk_usage runbook_url = %q after the base changed", got)
	}
	if got := apiRunbooks(t, h.m)[RuleMemoryUsage]; got != "https://wiki.example.com/ops/pulsegate/memory_usage.md" {
		t.Errorf("memory_usage runbook_url = %q; an active alert follows the new base", got)
	}
	eventually(t, "Alertmanager post of disk_usage", func() bool {
		a, ok := recv.last(RuleDiskUsage)
		return ok && a.Annotations["runbook_url"] == "https://wiki.example.com/ops/pulsegate/disk_usage.md"
	})

	// An empty base leaves runbook_url out of both.
	none := config.Defaults()
	none.Alerts.AlertmanagerURL = config.Secret(srv.URL)
	none.Alerts.RunbookBaseURL = ""
	if err := h.m.Apply(none); err != nil {
		t.Fatal(err)
	}
	h.m.Evaluate(t0.Add(2*time.Minute), figs("memory_usage", 0.95, "error_rate", 0.2, "disk_usage", 0.99, "cpu_usage", 0.95))
	if got := apiRunbooks(t, h.m)[RuleCPUUsage]; got != "(absent)" {
		t.Errorf("cpu_usage runbook_url = %q with no base URL; want the field left out", got)
	}
	eventually(t, "Alertmanager post of cpu_usage", func() bool {
		_, ok := recv.last(RuleCPUUsage)
		return ok
	})
	if a, _ := recv.last(RuleCPUUsage); a.Annotations["runbook_url"] != "" {
		t.Errorf("Alertmanager annotation runbook_url = %q with no base URL", a.Annotations["runbook_url"])
	}
}
