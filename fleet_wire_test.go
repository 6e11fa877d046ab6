package main

import (
	"context"
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
