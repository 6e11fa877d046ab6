package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/internal/fleettest"
	"github.com/pulsegate/pulsegate/monitor"
	"github.com/pulsegate/pulsegate/proxy"
	"github.com/pulsegate/pulsegate/store"
	"github.com/pulsegate/pulsegate/test/chaos"
)

// TestFleetRoutesFromTheSharedStore: two sidecars of one fleet on one
// SQL store, each in front of its own app (one answers in about 1 ms,
// the other in about 10 ms), serve release 1.0.0 and then 1.1.0. Every
// archive flush is copied to the store; while the store is cut the
// proxies keep serving and the flush is kept, and written once the store
// is back. Then either sidecar answers ?scope=fleet: the route's per-step
// p95 is the p95 of both instances' merged latency buckets (not either
// instance's), requests add up, and the releases comparison counts both
// instances' requests. ?instance= reads the other sidecar's long history;
// an unknown instance is 404 naming it, a bad name 400.
func TestFleetRoutesFromTheSharedStore(t *testing.T) {
	eachFleetDB(t, func(t *testing.T, d fleettest.DB) {
		dbName := d.Private(t, "pulsegate_sqlroutes")
		storeSw, err := chaos.New(d.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer storeSw.Close()

		var version atomic.Value
		version.Store("1.0.0")
		fleet := "sqlroutes-" + d.Name
		names := []string{"sqlroutes-a", "sqlroutes-b"}
		var apps []*app
		for i, name := range names {
			delay := []time.Duration{time.Millisecond, 10 * time.Millisecond}[i]
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(delay)
				w.Header().Set("X-App-Version", version.Load().(string))
			}))
			defer up.Close()
			cfg := historyConfig(t, t.TempDir(), up.URL)
			cfg.App.VersionHeader = "X-App-Version"
			cfg.Proxy.RoutePatterns = []string{"/reports/<id>"}
			cfg.Store.DSN = config.Secret(d.DSN(storeSw.Addr(), dbName))
			cfg.Instance, cfg.Fleet = name, fleet
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			a, err := build(cfg, zap.NewNop(), zap.NewAtomicLevel(), dashboardHandler(cfg))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			defer a.closeAll()
			if a.archive == nil || a.writer == nil {
				t.Fatalf("%s: want an archive and a store writer", name)
			}
			apps = append(apps, a)
		}
		send := func(n int) {
			t.Helper()
			for _, a := range apps {
				for i := range n {
					rec := httptest.NewRecorder()
					a.proxySrv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", fmt.Sprintf("http://app/reports/%d", i), nil))
					if rec.Code != http.StatusOK {
						t.Fatalf("the proxy answered %d", rec.Code)
					}
				}
			}
		}
		tick := func(from, to time.Time) {
			for _, a := range apps {
				for at := from; at.Before(to); at = at.Add(10 * time.Second) {
					dashboardRing(t, a).Record(&monitor.Tick{Time: at, Figures: map[string]float64{"cpu_usage": 0.3},
						Requests: proxy.WindowStats{Window: "1m", ThroughputRPS: 4, ErrorRate: 0}})
				}
			}
		}
		flush := func(at time.Time, wantStored bool) {
			t.Helper()
			for _, a := range apps {
				if err := a.archive.Flush(dashboardRing(t, a), at); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := a.writer.Flush(ctx)
				cancel()
				if wantStored && err != nil {
					t.Fatalf("writing to the store: %v", err)
				}
				if !wantStored && err == nil {
					t.Fatal("writing to a cut store succeeded")
				}
			}
		}

		now := time.Now()
		tick(now.Add(-6*time.Minute), now.Add(-3*time.Minute))
		send(200)
		flush(now.Add(-3*time.Minute), true)

		// The store is cut: the proxies serve release 1.1.0 and the archives flush; the rows wait.
		storeSw.Set(chaos.Fault{Mode: chaos.Reset})
		storeSw.ResetAll()
		version.Store("1.1.0")
		tick(now.Add(-3*time.Minute), now)
		send(300)
		flush(now, false)
		for _, a := range apps {
			if h := a.writer.Health(); h.QueuedRouteRows == 0 || h.State != store.HealthDegraded {
				t.Fatalf("while the store is cut: %+v; want route rows waiting", h)
			}
		}
		storeSw.Set(chaos.Fault{Mode: chaos.Pass})
		for _, a := range apps {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := a.writer.Flush(ctx)
			cancel()
			if err != nil {
				t.Fatalf("after the store came back: %v", err)
			}
			if h := a.writer.Health(); h.QueuedRouteRows != 0 {
				t.Fatalf("after the store came back: %+v", h)
			}
		}

		// The expected fleet figures, from each sidecar's own archive.
		const route = "/reports/<id>"
		from, to := now.Add(-time.Hour), now.Add(time.Minute)
		var local []history.RouteRollup
		for _, a := range apps {
			rows, err := a.historyReader.RouteRollups(route, from, to)
			if err != nil {
				t.Fatal(err)
			}
			local = append(local, rows...)
		}
		all := history.MergeRollups(local)
		if all.Requests != 1000 {
			t.Fatalf("the archives hold %d requests; want 1000", all.Requests)
		}
		fleetRd := apps[0].fleetRoutes().(history.Reader)
		fleetRd.HourlyRoutes = false
		fleetRows, err := fleetRd.RouteRollups(route, from, to)
		if err != nil {
			t.Fatal(err)
		}
		merged := history.MergeRollups(fleetRows)
		if merged.Requests != all.Requests || merged.Quantile(0.95) != all.Quantile(0.95) {
			t.Errorf("fleet rollups: %d requests, p95 %g; want %d, p95 %g (both instances' merged buckets)",
				merged.Requests, merged.Quantile(0.95), all.Requests, all.Quantile(0.95))
		}
		code, v := adminGet(t, apps[0], "/admin/responsiveness/api/history/route?route=/reports/<id>&range=1h&scope=fleet")
		if code != http.StatusOK || v["scope"] != "fleet" || v["tier"] != "1m" {
			t.Fatalf("fleet route history: %d %v", code, v)
		}
		series := v["series"].(map[string]any)
		stamps := v["timestamps"].([]any)
		var total float64
		for i, ts := range stamps {
			var at []history.RouteRollup
			for _, r := range local {
				if r.Start.Unix() == int64(ts.(float64)) {
					at = append(at, r)
				}
			}
			m := history.MergeRollups(at)
			want := math.Round(m.Quantile(0.95)*1e6) / 1e6
			if got := series["p95_response_time"].([]any)[i]; got != want {
				t.Errorf("step %v: fleet p95 %v; want %g, the p95 of both instances' merged buckets", ts, got, want)
			}
			n := series["requests"].([]any)[i].(float64)
			if n != float64(m.Requests) {
				t.Errorf("step %v: %v requests; want %d", ts, n, m.Requests)
			}
			total += n
		}
		if total != 1000 {
			t.Errorf("the fleet route history counts %v requests; want 1000", total)
		}
		if rels := v["releases"].([]any); len(rels) != 2 || rels[1].(map[string]any)["requests"] != 600.0 {
			t.Errorf("fleet releases of the route: %v; want 1.0.0 then 1.1.0 with 600 requests", rels)
		}

		code, r := adminGet(t, apps[1], "/admin/api/releases/responsiveness?since=24h&scope=fleet")
		routes, _ := r["routes"].([]any)
		if code != http.StatusOK || r["scope"] != "fleet" || len(routes) != 2 {
			t.Fatalf("fleet releases: %d %v", code, r)
		}
		first := routes[0].(map[string]any)
		if first["route"] != "*" || first["before"].(map[string]any)["version"] != "1.0.0" || first["before"].(map[string]any)["requests"] != 400.0 ||
			first["after"].(map[string]any)["version"] != "1.1.0" || first["after"].(map[string]any)["requests"] != 600.0 ||
			first["comparison"].(map[string]any)["compared"] != true {
			t.Errorf("fleet releases[0] = %v; want * from 1.0.0 (400 requests) to 1.1.0 (600)", first)
		}
		code, own := adminGet(t, apps[1], "/admin/api/releases/responsiveness?since=24h")
		if ownFirst := own["routes"].([]any)[0].(map[string]any); code != http.StatusOK || ownFirst["after"].(map[string]any)["requests"] != 300.0 {
			t.Errorf("instance releases: %d %v; want this instance's 300 requests of 1.1.0", code, ownFirst)
		}

		// The other sidecar's long history, from the store.
		code, h := historyGet(t, apps[0], "?scope=instance&instance=sqlroutes-b&range=1h")
		if code != http.StatusOK || h["instance"] != "sqlroutes-b" || h["tier"] != "1m" || len(h["time"].([]any)) < 5 {
			t.Fatalf("sqlroutes-b's history from sqlroutes-a: %d %v", code, h)
		}
		if cpu := h["series"].(map[string]any)["cpu_usage"].([]any); cpu[0] != 0.3 {
			t.Errorf("sqlroutes-b's cpu_usage from the store: %v", cpu)
		}
		code, e := historyGet(t, apps[0], "?scope=instance&instance=sqlroutes-gone&range=1h")
		if msg, _ := e["error"].(string); code != http.StatusNotFound || !strings.Contains(msg, `"sqlroutes-gone"`) {
			t.Errorf("an unknown instance: %d %v; want 404 naming it", code, e)
		}
		code, e = historyGet(t, apps[0], "?scope=instance&instance=web%20b&range=1h")
		if msg, _ := e["error"].(string); code != http.StatusBadRequest || !strings.HasPrefix(msg, "instance: ") {
			t.Errorf("a bad instance name: %d %v; want 400 naming instance", code, e)
		}
	})
}

// TestFleetRoutesNeedASharedStore: without store.dsn, ?scope=fleet on the
// route history and releases endpoints and ?instance= on the history
// endpoint are 400 saying a shared store is needed; a bad scope is 400.
func TestFleetRoutesNeedASharedStore(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	cfg := historyConfig(t, t.TempDir(), upstream.URL)
	a, err := build(cfg, zap.NewNop(), zap.NewAtomicLevel(), dashboardHandler(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeAll()
	for _, c := range []struct{ path, want string }{
		{"/admin/responsiveness/api/history/route?route=*&scope=fleet", "store.dsn"},
		{"/admin/api/releases/responsiveness?scope=fleet", "store.dsn"},
		{"/admin/responsiveness/api/history?instance=web-2", "store.dsn"},
		{"/admin/responsiveness/api/history/route?route=*&scope=all", "scope: "},
		{"/admin/api/releases/responsiveness?scope=all", "scope: "},
	} {
		code, out := adminGet(t, a, c.path)
		if msg, _ := out["error"].(string); code != http.StatusBadRequest || !strings.Contains(msg, c.want) {
			t.Errorf("%s: %d %v; want 400 mentioning %q", c.path, code, out, c.want)
		}
	}
}
