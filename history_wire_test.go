package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/monitor"
	"github.com/pulsegate/pulsegate/proxy"
	"github.com/pulsegate/pulsegate/store"
)

const histToken = "i12h-history-token"

func historyConfig(t *testing.T, dataDir, upstream string) *config.Config {
	t.Helper()
	cfg := config.Defaults()
	cfg.Proxy.UpstreamURL = upstream
	cfg.Proxy.ListenAddr = "127.0.0.1:0"
	cfg.Proxy.DrainDelay = 0
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Admin.Token = config.Secret(histToken)
	cfg.DataDir = dataDir
	cfg.Responsiveness.MonitoringEnabled = false
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func historyGet(t *testing.T, a *app, query string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest("GET", "http://"+a.adminLn.Addr().String()+"/admin/responsiveness/api/history"+query, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Authorization", "Bearer "+histToken)
	rec := httptest.NewRecorder()
	a.adminSrv.Handler.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("history%s: %d %s", query, rec.Code, rec.Body.String())
	}
	return rec.Code, out
}

// runAndStop runs the built sidecar as serve does and stops it, so that
// the history loop makes its final flush and everything is closed.
func runAndStop(t *testing.T, a *app) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- a.serve(ctx, make(chan os.Signal)) }()
	cancel() // the loops still start; the history loop flushes once as it stops
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}

// TestHistorySurvivesRestart: pulsegate is built, fed ticks, run and
// stopped; a second pulsegate on the same data_dir shows the earlier
// history on the dashboard's 1h range and the 7d range, with the config
// change made before the restart on the timeline.
func TestHistorySurvivesRestart(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	dir := t.TempDir()
	cfg := historyConfig(t, dir, upstream.URL)

	a, err := build(cfg, zap.NewNop(), zap.NewAtomicLevel(), dashboardHandler(cfg))
	if err != nil {
		t.Fatal(err)
	}
	// Half an hour of ticks ending now (the dashboard's ring is fed by the tick).
	now := time.Now()
	if a.archive == nil {
		t.Fatal("the archive was not opened")
	}
	hist := dashboardRing(t, a)
	for at := now.Add(-30 * time.Minute); !at.After(now); at = at.Add(10 * time.Second) {
		hist.Record(&monitor.Tick{Time: at, Figures: map[string]float64{"cpu_usage": 0.42},
			Requests: proxy.WindowStats{Window: "1m", ThroughputRPS: 7, ErrorRate: 0.01}})
	}
	// A config change through the API and an alert occurrence in the store.
	req := httptest.NewRequest("POST", "http://"+a.adminLn.Addr().String()+"/admin/api/config/responsiveness",
		strings.NewReader(`{"responsiveness": {"slow_request_threshold": 3}}`))
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Authorization", "Bearer "+histToken)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	a.adminSrv.Handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("config POST: %d %s", rec.Code, rec.Body.String())
	}
	fired, acked, resolved := now.Add(-20*time.Minute), now.Add(-15*time.Minute), now.Add(-10*time.Minute)
	if err := a.st.SaveAlert(store.AlertRecord{ID: "i12h-1", Key: "cpu_usage", Rule: "cpu_usage", Severity: "critical",
		PeakSeverity: "critical", State: store.StateResolved, Metric: "cpu_usage", Message: "CPU usage at 97%",
		FirstSeen: fired, LastSeen: resolved, ResolvedAt: &resolved, AcknowledgedAt: &acked, AcknowledgedBy: "token:ab12cd"}); err != nil {
		t.Fatal(err)
	}
	_, before := historyGet(t, a, "?range=1h")
	runAndStop(t, a)

	cfg2 := historyConfig(t, dir, upstream.URL)
	b, err := build(cfg2, zap.NewNop(), zap.NewAtomicLevel(), dashboardHandler(cfg2))
	if err != nil {
		t.Fatal(err)
	}
	defer b.closeAll()
	code, after := historyGet(t, b, "?range=1h")
	if code != http.StatusOK || after["tier"] != "10s" {
		t.Fatalf("1h after restart: %d %v", code, after["tier"])
	}
	bt, at := before["time"].([]any), after["time"].([]any)
	if len(bt) < 180 || len(at) < len(bt) {
		t.Fatalf("1h before the restart: %d points, after: %d; want the half hour back", len(bt), len(at))
	}
	cpu := after["series"].(map[string]any)["cpu_usage"].([]any)
	if cpu[0] != 0.42 || at[0] != bt[0] {
		t.Errorf("first point after restart: %v at %v, want 0.42 at %v", cpu[0], at[0], bt[0])
	}
	code, week := historyGet(t, b, "?range=7d")
	// Half an hour of 1 min points, merged into 14 min steps: 3 or 4 steps.
	if n := len(week["time"].([]any)); code != http.StatusOK || week["tier"] != "1m" || n < 3 || n > 4 {
		t.Fatalf("7d after restart: %d tier %v, %d points", code, week["tier"], n)
	}
	if rps := week["series"].(map[string]any)["throughput_rps"].([]any); rps[1] != 7.0 {
		t.Errorf("7d throughput %v, want 7", rps)
	}
	var kinds []string
	for _, e := range week["events"].([]any) {
		ev := e.(map[string]any)
		kinds = append(kinds, ev["kind"].(string))
		switch ev["kind"] {
		case "config_change":
			ch := ev["changes"].([]any)[0].(map[string]any)
			if ch["key"] != "responsiveness.slow_request_threshold" || ch["new"] != "3" || ev["by"] == "" {
				t.Errorf("config change event: %v", ev)
			}
		case "alert_acknowledged":
			if ev["by"] != "token:ab12cd" || ev["rule"] != "cpu_usage" || ev["level"] != "critical" {
				t.Errorf("acknowledgement event: %v", ev)
			}
		}
	}
	if strings.Join(kinds, ",") != "alert_fired,alert_acknowledged,alert_resolved,config_change" {
		t.Errorf("events in time order: %v", kinds)
	}
	code, bad := historyGet(t, b, "?range=2w")
	if code != http.StatusBadRequest || !strings.HasPrefix(bad["error"].(string), "range: ") {
		t.Errorf("range=2w: %d %v", code, bad)
	}
	code, bad = historyGet(t, b, "?from=yesterday")
	if code != http.StatusBadRequest || !strings.HasPrefix(bad["error"].(string), "from: ") {
		t.Errorf("from=yesterday: %d %v", code, bad)
	}
}

// TestHistoryCorruptFileStillServes: a damaged history.db is logged and
// moved aside; pulsegate starts, proxies and answers the history.
func TestHistoryCorruptFileStillServes(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("app")) }))
	defer upstream.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, history.FileName), []byte(strings.Repeat("garbage ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := historyConfig(t, dir, upstream.URL)
	core, logs := observer.New(zap.InfoLevel)
	a, err := build(cfg, zap.New(core), zap.NewAtomicLevel(), dashboardHandler(cfg))
	if err != nil {
		t.Fatalf("a corrupt history stopped pulsegate: %v", err)
	}
	defer a.closeAll()
	if n := len(logs.FilterMessage("history_corrupt").All()); n != 1 {
		t.Fatalf("history_corrupt logged %d times: %v", n, logs.All())
	}
	rec := httptest.NewRecorder()
	a.proxySrv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "http://app/x", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "app" {
		t.Fatalf("proxy: %d %q", rec.Code, rec.Body.String())
	}
	if code, v := historyGet(t, a, "?range=15m"); code != http.StatusOK || v["tier"] != "10s" {
		t.Fatalf("history: %d %v", code, v)
	}
}

// dashboardRing is the ring the archive flushes (the dashboard's).
func dashboardRing(t *testing.T, a *app) *history.History {
	t.Helper()
	if a.historyReader == nil || a.historyReader.Ring == nil {
		t.Fatal("no history reader")
	}
	return a.historyReader.Ring
}
