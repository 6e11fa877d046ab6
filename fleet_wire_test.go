package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
)

// A shared store that cannot be reached at start does not stop the
// sidecar: it builds, serves from the embedded store, and the Writer
// reports the store degraded with the reason (no password in it).
func TestStoreDownAtStartStillStarts(t *testing.T) {
	cfg := config.Defaults()
	cfg.Proxy.UpstreamURL = "http://127.0.0.1:1"
	cfg.Proxy.ListenAddr, cfg.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Store.DSN = config.Secret("mysql://pg:s3cretpw@127.0.0.1:1/pulsegate_i11w")
	cfg.Instance = "i11w-a"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := build(cfg, zap.NewNop(), zap.NewAtomicLevel(), nil)
	if err != nil {
		t.Fatalf("build with the store down: %v", err)
	}
	defer a.closeAll()
	if a.writer == nil || a.link.Fleet() != nil {
		t.Fatal("want a writer and no fleet yet")
	}
	if _, ok := a.st.(*store.Store); !ok {
		t.Fatalf("backend %T; want the embedded store standing in", a.st)
	}
	a.writer.Heartbeat(store.Heartbeat{Fleet: "default", Instance: "i11w-a", Time: time.Now(), Status: "healthy"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.writer.Flush(ctx); err == nil {
		t.Fatal("flush to a closed port succeeded")
	}
	h := a.writer.Health()
	if h.State != store.HealthDegraded || !strings.Contains(h.Reason, "store unreachable") || strings.Contains(h.Reason, "s3cretpw") {
		t.Fatalf("health %+v", h)
	}
	if h.QueuedHeartbeats != 1 {
		t.Fatalf("queued %d; want the heartbeat kept", h.QueuedHeartbeats)
	}
	v := a.verdict()
	if v.Components["store"] != "warning" || !strings.Contains(strings.Join(v.Reasons, "|"), "store warning: store unreachable") {
		t.Fatalf("verdict components %v reasons %q: want the store component warning with the reason", v.Components, v.Reasons)
	}
	if _, _, err := a.fleetAPI().Now(ctx, time.Now(), time.Minute); err == nil || !strings.Contains(err.Error(), "store unreachable") {
		t.Fatalf("fleet view with the store down: %v", err)
	}
}

// status --fleet asks for scope=fleet and prints the instances table, stale rows marked.
func TestStatusFleetPrintsInstances(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("scope") != "fleet" {
			w.WriteHeader(400)
			return
		}
		w.Write([]byte(`{"status":"warning","scope":"fleet","components":{"store":"healthy"},"metrics":{"throughput_rps":12.5},
		"reasons":["1 of 2 instances reporting"],"reporting":"1 of 2 instances reporting","last_check":"2026-01-01T00:00:00Z",
		"instances":[{"instance":"web-a","status":"warning","last_seen":"2026-01-01T00:00:00Z","stale":false,"config_version":3,
		"throughput_rps":12.5,"error_rate":0.02,"p99_response_time":0.25,"memory_usage":0.5,"cpu_usage":null},
		{"instance":"web-b","status":"healthy","last_seen":"2025-12-31T23:59:00Z","stale":true,"config_version":2,
		"throughput_rps":0,"error_rate":0,"p99_response_time":null,"memory_usage":null,"cpu_usage":null}]}`))
	}))
	defer srv.Close()
	code, out, errOut := runCmd(t, nil, "status", "--admin", srv.URL, "--fleet")
	if code != 1 {
		t.Fatalf("exit %d; want 1 (warning): %s", code, errOut)
	}
	for _, want := range []string{"instances (1 of 2 instances reporting)", "web-a", "12.5", "2.0%", "0.250s", "50.0%", "web-b", "stale"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestFleetRetentionFollowsHistory: the shared store's prune pass keeps
// the fleet's minute and hour rows as long as history.retention_1m and
// history.retention_1h say; the heartbeat retention stays the default.
func TestFleetRetentionFollowsHistory(t *testing.T) {
	r := fleetRetention(config.History{Retention1m: 7 * 86400, Retention1h: 30 * 86400})
	if r.KeepMinutes != 7*24*time.Hour || r.KeepHours != 30*24*time.Hour || r.KeepHeartbeats != store.DefaultRetention.KeepHeartbeats {
		t.Errorf("retention %+v; want minutes 7 days, hours 30 days, heartbeats the default", r)
	}
	def := config.Defaults()
	if r := fleetRetention(def.History); r.KeepMinutes != 14*24*time.Hour || r.KeepHours != 400*24*time.Hour {
		t.Errorf("default retention %+v; want minute rows 14 days and hour rows 400 days", r)
	}
}
