package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/internal/fleettest"
	"github.com/pulsegate/pulsegate/latency"
	"github.com/pulsegate/pulsegate/monitor"
	"github.com/pulsegate/pulsegate/proxy"
	"github.com/pulsegate/pulsegate/test/chaos"
)

// backfillRoutes are the routes fillArchive serves.
var backfillRoutes = []string{"/reports/<id>", "/api/items", "/api/items/<id>", "/login", "/search"}

// fillArchive writes days of history ending at end into dir/history.db as
// a sidecar without a shared store would have: a 10 s point every 10 s
// and, every minute, requests on backfillRoutes (release 1.0.0, then
// 1.1.0 for the last day) with latencies from a fixed seed, flushed into
// the 1 min and 1 h tiers and route rows. It returns the requests served.
func fillArchive(t testing.TB, dir string, days int, end time.Time) uint64 {
	t.Helper()
	ar, err := history.OpenArchive(dir, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ar.Close()
	ring, err := history.New(10*time.Second, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	version := "1.0.0"
	ring.SetVersion(func() string { return version })
	counters := map[[2]string]*history.RouteCounter{}
	ar.SetRouteSource(func() []history.RouteCounter {
		out := make([]history.RouteCounter, 0, len(counters))
		for _, c := range counters {
			cp := *c
			cp.Buckets = append([]uint64(nil), c.Buckets...)
			out = append(out, cp)
		}
		return out
	}, 0)
	rnd := rand.New(rand.NewPCG(3, 5))
	var total uint64
	start := end.Add(-time.Duration(days) * 24 * time.Hour)
	for at := start; at.Before(end); at = at.Add(time.Minute) {
		if end.Sub(at) <= 24*time.Hour {
			version = "1.1.0"
		}
		for i, route := range backfillRoutes {
			k := [2]string{route, version}
			c := counters[k]
			if c == nil {
				c = &history.RouteCounter{Route: route, Version: version, Buckets: make([]uint64, latency.Buckets)}
				counters[k] = c
			}
			for range 3 * (i + 1) {
				d := time.Duration(float64(time.Duration(5+10*i)*time.Millisecond) * (0.5 + rnd.Float64()))
				c.Requests++
				if rnd.IntN(50) == 0 {
					c.Errors++
					c.AppErrors++
				}
				c.Buckets[latency.Index(d)]++
				c.SumUS += uint64(d / time.Microsecond)
				total++
			}
		}
		for s := range 6 {
			p95 := 0.02 + 0.01*rnd.Float64()
			ring.Record(&monitor.Tick{Time: at.Add(time.Duration(s) * 10 * time.Second),
				Figures:  map[string]float64{"cpu_usage": 0.2 + 0.3*rnd.Float64(), "memory_usage": 0.4},
				Requests: proxy.WindowStats{Window: "1m", ThroughputRPS: 1.5 + rnd.Float64(), ErrorRate: 0.02, P95: &p95}})
		}
		if err := ar.Flush(ring, at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	return total
}

// copyArchive copies src/history.db into a new data_dir.
func copyArchive(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(src, history.FileName))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, history.FileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// storedCounts counts the instance's history points and route rows in
// the store starting before end, and sums its requests on the whole
// app's route rows per step.
type storedCounts struct {
	points, routes         int
	requests1m, requests1h int64
}

func countStored(t *testing.T, d fleettest.DB, dbName, fleet, instance string, end time.Time) storedCounts {
	t.Helper()
	db, err := sql.Open(d.Driver, d.Open(dbName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := func(query string, into any) {
		t.Helper()
		if d.Driver == "pgx" {
			for i := 1; strings.Contains(query, "?"); i++ {
				query = strings.Replace(query, "?", fmt.Sprintf("$%d", i), 1)
			}
		}
		if err := db.QueryRow(query, fleet, instance, end.UnixMicro()).Scan(into); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	var c storedCounts
	q(`SELECT COUNT(*) FROM pulsegate_instance_history WHERE fleet = ? AND instance = ? AND start_us < ?`, &c.points)
	q(`SELECT COUNT(*) FROM pulsegate_route_rollups WHERE fleet = ? AND instance = ? AND start_us < ?`, &c.routes)
	q(`SELECT COALESCE(SUM(requests), 0) FROM pulsegate_route_rollups WHERE fleet = ? AND instance = ? AND start_us < ? AND step_s = 60 AND route = '*'`, &c.requests1m)
	q(`SELECT COALESCE(SUM(requests), 0) FROM pulsegate_route_rollups WHERE fleet = ? AND instance = ? AND start_us < ? AND step_s = 3600 AND route = '*'`, &c.requests1h)
	return c
}

// backfillSidecar builds a sidecar on dataDir with the shared store at
// dsn, its backfill starting at once and retrying every 50 to 200 ms.
func backfillSidecar(t *testing.T, dataDir, upstream, dsn, fleet, instance string, log *zap.Logger) *app {
	t.Helper()
	cfg := historyConfig(t, dataDir, upstream)
	cfg.Store.DSN = config.Secret(dsn)
	cfg.Instance, cfg.Fleet = instance, fleet
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := build(cfg, log, zap.NewAtomicLevel(), dashboardHandler(cfg))
	if err != nil {
		t.Fatalf("%s: %v", instance, err)
	}
	if a.backfill == nil {
		t.Fatal("no history backfill with an archive and a shared store")
	}
	a.backfill.startDelay, a.backfill.retryMin, a.backfill.retryMax = 0, 50*time.Millisecond, 200*time.Millisecond
	return a
}

// serveBackground runs serve until the returned stop is called.
func serveBackground(t *testing.T, a *app) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- a.serve(ctx, make(chan os.Signal)) }()
	return func() {
		t.Helper()
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not stop within 30 s")
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func logged(obs *observer.ObservedLogs, msg string) []observer.LoggedEntry {
	return obs.FilterMessage(msg).All()
}

// TestHistoryBackfill: a sidecar ran two days without a shared store
// (two releases, five routes); started with one (real MariaDB and
// PostgreSQL), it copies that history in the background, and the named
// instance's history (1 min and 1 h tiers) and the fleet's route history
// and releases answer the old range exactly as its local archive does.
// A second start copies nothing (same row counts); a backfill stopped
// midway resumes on the next start without a duplicate or a double
// count; with the store down at start and cut midway the proxy answers
// every request, the waiting is logged once, and the copy completes when
// the store is back. No goroutine outlives a sidecar.
func TestHistoryBackfill(t *testing.T) {
	if testing.Short() {
		t.Skip("real databases, two simulated days")
	}
	src := t.TempDir()
	end := time.Now().Add(-5 * time.Minute).Truncate(time.Minute)
	served := fillArchive(t, src, 2, end)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()

	eachFleetDB(t, func(t *testing.T, d fleettest.DB) {
		leaks := goleak.IgnoreCurrent()
		defer goleak.VerifyNone(t, leaks, goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
		dbName := d.Private(t, "pulsegate_backfill")
		sw, err := chaos.New(d.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer sw.Close()
		dsn := d.DSN(sw.Addr(), dbName)
		fleet := "backfill-" + d.Name

		var want storedCounts
		t.Run("complete", func(t *testing.T) {
			core, obs := observer.New(zap.InfoLevel)
			dir := copyArchive(t, src)
			a := backfillSidecar(t, dir, upstream.URL, dsn, fleet, "bf-full", zap.New(core))
			stop := serveBackground(t, a)
			waitFor(t, "the backfill to finish", func() bool { return a.backfill.status().State == backfillDone })
			st := a.backfill.status()
			want = countStored(t, d, dbName, fleet, "bf-full", end)
			if want.requests1m != int64(served) || want.requests1h != int64(served) {
				t.Errorf("the store's whole-app rows count %d (1 min) and %d (1 h) requests; the archive served %d", want.requests1m, want.requests1h, served)
			}
			if st.RowsCopied < want.points+want.routes || st.RowsTotal != st.RowsCopied || st.StartedAt == nil || st.FinishedAt == nil {
				t.Errorf("status %+v; the store holds %d points and %d route rows", st, want.points, want.routes)
			}
			if s := logged(obs, "history_backfill_started"); len(s) != 1 || s[0].ContextMap()["rows"] != int64(st.RowsTotal) {
				t.Errorf("history_backfill_started: %v", s)
			}
			if s := logged(obs, "history_backfill_done"); len(s) != 1 || s[0].ContextMap()["rows"] != int64(st.RowsCopied) || s[0].ContextMap()["seconds"] == nil {
				t.Errorf("history_backfill_done: %v", s)
			}
			if got := counterValue(t, a, "pulsegate_history_backfill_rows_total"); got != float64(st.RowsCopied) {
				t.Errorf("pulsegate_history_backfill_rows_total = %v, want %d", got, st.RowsCopied)
			}
			code, perf := adminGet(t, a, "/admin/api/performance/responsiveness")
			bf, _ := perf["store"].(map[string]any)["history_backfill"].(map[string]any)
			if code != http.StatusOK || bf["state"] != "done" || bf["rows_copied"] != float64(st.RowsCopied) {
				t.Errorf("performance JSON store.history_backfill: %d %v", code, bf)
			}

			// The instance's history from the store equals the archive's, tier by tier.
			for _, span := range []time.Duration{49 * time.Hour, 30 * 24 * time.Hour} { // 1 min tier, 1 h tier
				q := "from=" + end.Add(-span).Format(time.RFC3339) + "&to=" + end.Format(time.RFC3339)
				_, local := adminGet(t, a, "/admin/responsiveness/api/history?"+q)
				code, remote := adminGet(t, a, "/admin/responsiveness/api/history?"+q+"&scope=instance&instance=bf-full")
				if code != http.StatusOK {
					t.Fatalf("instance history: %d %v", code, remote)
				}
				for _, k := range []string{"tier", "step_seconds", "time", "series", "health", "versions"} {
					if !reflect.DeepEqual(local[k], remote[k]) {
						t.Errorf("span %s: instance history %q differs from the local archive's", span, k)
					}
				}
				if n := len(local["time"].([]any)); n < 48 {
					t.Errorf("span %s: only %d steps", span, n)
				}
			}
			// The fleet's route history and releases (1 h rows) equal the archive's.
			q := "from=" + end.Add(-30*24*time.Hour).Format(time.RFC3339) + "&to=" + end.Format(time.RFC3339)
			for _, route := range append([]string{"*"}, backfillRoutes...) {
				_, local := adminGet(t, a, "/admin/responsiveness/api/history/route?route="+route+"&"+q)
				code, fl := adminGet(t, a, "/admin/responsiveness/api/history/route?route="+route+"&"+q+"&scope=fleet")
				if code != http.StatusOK || fl["scope"] != "fleet" {
					t.Fatalf("fleet route history: %d %v", code, fl)
				}
				for _, k := range []string{"tier", "timestamps", "series", "versions", "releases", "comparison"} {
					if !reflect.DeepEqual(local[k], fl[k]) {
						t.Errorf("route %s: fleet %q differs from the local archive's:\n%v\n%v", route, k, fl[k], local[k])
					}
				}
			}
			// And the 1 min route rows, row by row, for the fleet and the instance.
			for _, inst := range []string{"", "bf-full"} {
				for _, route := range append([]string{"*"}, backfillRoutes...) {
					lr := scanRows(t, a.archive, route, end.Add(-49*time.Hour), end)
					sr := scanRows(t, sqlRoutes{a: a, instance: inst}, route, end.Add(-49*time.Hour), end)
					if len(lr) < 2*24*60 || !reflect.DeepEqual(lr, sr) {
						t.Errorf("route %s instance %q: %d rows in the archive, %d in the store, or they differ", route, inst, len(lr), len(sr))
					}
				}
			}
			stop()

			// Again: nothing to copy, the same rows.
			core2, obs2 := observer.New(zap.InfoLevel)
			b := backfillSidecar(t, dir, upstream.URL, dsn, fleet, "bf-full", zap.New(core2))
			stop = serveBackground(t, b)
			waitFor(t, "the second start to look", func() bool { return b.backfill.status().State == backfillNotNeeded })
			stop()
			if got := countStored(t, d, dbName, fleet, "bf-full", end); got != want {
				t.Errorf("after a second start the store holds %+v; after the first %+v", got, want)
			}
			if n := len(logged(obs2, "history_backfill_started")); n != 0 {
				t.Errorf("the second start logged history_backfill_started %d times", n)
			}
		})
		if t.Failed() {
			return
		}

		t.Run("interrupted", func(t *testing.T) {
			core, obs := observer.New(zap.InfoLevel)
			dir := copyArchive(t, src)
			a := backfillSidecar(t, dir, upstream.URL, dsn, fleet, "bf-cut", zap.New(core))
			stop := serveBackground(t, a)
			waitFor(t, "3000 rows copied", func() bool { return a.backfill.status().RowsCopied >= 3000 })
			stop()
			st := a.backfill.status()
			if st.State != backfillStopped {
				t.Fatalf("stopped midway: %+v", st)
			}
			if s := logged(obs, "history_backfill_stopped"); len(s) != 1 || s[0].ContextMap()["remaining"] == int64(0) {
				t.Errorf("history_backfill_stopped: %v", s)
			}
			part := countStored(t, d, dbName, fleet, "bf-cut", end)
			if part.points+part.routes >= want.points+want.routes || part.points+part.routes == 0 {
				t.Fatalf("after the interruption the store holds %+v; all of it is %+v", part, want)
			}
			b := backfillSidecar(t, dir, upstream.URL, dsn, fleet, "bf-cut", zap.NewNop())
			stop = serveBackground(t, b)
			waitFor(t, "the resumed backfill to finish", func() bool { return b.backfill.status().State == backfillDone })
			stop()
			if got := countStored(t, d, dbName, fleet, "bf-cut", end); got != want {
				t.Errorf("after resuming the store holds %+v; want %+v (as the complete run)", got, want)
			}
			if got := b.backfill.status().RowsCopied; got >= st.RowsTotal {
				t.Errorf("the resumed run copied %d rows; the whole archive is %d: it started over", got, st.RowsTotal)
			}
		})

		t.Run("store down", func(t *testing.T) {
			core, obs := observer.New(zap.InfoLevel)
			dir := copyArchive(t, src)
			sw.Set(chaos.Fault{Mode: chaos.Reset})
			a := backfillSidecar(t, dir, upstream.URL, dsn, fleet, "bf-down", zap.New(core))
			attempts := 0
			var mu = make(chan struct{}, 1)
			mu <- struct{}{}
			oldest := a.backfill.oldest
			a.backfill.oldest = func(ctx context.Context, step time.Duration) (time.Time, bool, error) {
				<-mu
				attempts++
				mu <- struct{}{}
				return oldest(ctx, step)
			}
			tries := func() int { <-mu; n := attempts; mu <- struct{}{}; return n }
			stop := serveBackground(t, a)
			defer func() { sw.Set(chaos.Fault{Mode: chaos.Pass}) }()
			proxied := func() {
				t.Helper()
				for range 20 {
					resp, err := http.Get("http://" + a.proxyLn.Addr().String() + "/api/items")
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("the proxy answered %d while the store is down", resp.StatusCode)
					}
				}
			}
			waitFor(t, "five attempts on the down store", func() bool { return tries() >= 5 })
			proxied()
			if st := a.backfill.status(); st.State != backfillWaiting || !strings.Contains(st.Reason, "store") {
				t.Errorf("while the store is down: %+v", st)
			}
			if n := len(logged(obs, "history_backfill_waiting")); n != 1 {
				t.Errorf("history_backfill_waiting logged %d times over %d attempts; want once", n, tries())
			}

			sw.Set(chaos.Fault{Mode: chaos.Pass})
			waitFor(t, "2000 rows copied", func() bool { return a.backfill.status().RowsCopied >= 2000 })
			if n := len(logged(obs, "history_backfill_waiting")); n != 1 {
				t.Errorf("history_backfill_waiting logged %d times for one outage", n)
			}
			sw.Set(chaos.Fault{Mode: chaos.Reset}) // cut again midway
			sw.ResetAll()
			waitFor(t, "the cut noticed", func() bool { return len(logged(obs, "history_backfill_waiting")) == 2 })
			proxied()
			if st := a.backfill.status(); st.State != backfillRunning || st.Reason == "" {
				t.Errorf("cut midway: %+v", st)
				for _, e := range obs.All() {
					t.Logf("%s %v", e.Message, e.ContextMap())
				}
			}
			sw.Set(chaos.Fault{Mode: chaos.Pass})
			waitFor(t, "the backfill to finish", func() bool { return a.backfill.status().State == backfillDone })
			stop()
			if s := logged(obs, "history_backfill_resumed"); len(s) != 1 {
				t.Errorf("history_backfill_resumed: %v", s)
			}
			if got := countStored(t, d, dbName, fleet, "bf-down", end); got != want {
				t.Errorf("after the outages the store holds %+v; want %+v", got, want)
			}
		})
	})
}

// scanRows reads route's 1 min rows in [from, to) from rs.
func scanRows(t *testing.T, rs history.RouteStore, route string, from, to time.Time) []history.RouteRollup {
	t.Helper()
	var out []history.RouteRollup
	err := rs.ScanRoute(history.Tier1m, route, from, to, func(r *history.RouteRollup) {
		c := *r
		c.Buckets = append([]uint64(nil), r.Buckets...)
		c.SumSeconds = float64(int64(c.SumSeconds*1e6+0.5)) / 1e6
		out = append(out, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// counterValue reads a counter from the app's registry.
func counterValue(t *testing.T, a *app, name string) float64 {
	t.Helper()
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestMeasureHistoryBackfill measures how long the backfill of one
// instance's 7 days takes (five routes: 1 min and 1 h points and route
// rows, about 72 000 rows) through a running sidecar into MariaDB and
// PostgreSQL, yields and pauses included: alone, then while a loop sends
// requests through the proxy one at a time, whose latency it reports
// during the backfill and after it. Run with
// PULSEGATE_MEASURE_BACKFILL=1 (docs/store.md quotes it).
func TestMeasureHistoryBackfill(t *testing.T) {
	if os.Getenv("PULSEGATE_MEASURE_BACKFILL") == "" {
		t.Skip("set PULSEGATE_MEASURE_BACKFILL=1 to measure the history backfill")
	}
	src := t.TempDir()
	end := time.Now().Add(-5 * time.Minute).Truncate(time.Minute)
	began := time.Now()
	fillArchive(t, src, 7, end)
	t.Logf("filled 7 days in %.1f s", time.Since(began).Seconds())
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	eachFleetDB(t, func(t *testing.T, d fleettest.DB) {
		dbName := d.Private(t, "pulsegate_backfill_m")
		for _, busy := range []bool{false, true} {
			instance := map[bool]string{false: "bf-week", true: "bf-week-busy"}[busy]
			a := backfillSidecar(t, copyArchive(t, src), upstream.URL, d.DSN(d.Addr, dbName), "measure-"+d.Name, instance, zap.NewNop())
			stop := serveBackground(t, a)
			// With busy, requests through the proxy, one at a time, while the backfill runs and as many after it.
			get := func() time.Duration {
				t0 := time.Now()
				resp, err := http.Get("http://" + a.proxyLn.Addr().String() + "/api/items")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return time.Since(t0)
			}
			waitFor(t, "the backfill to start", func() bool { return a.backfill.status().State != backfillWaiting })
			var during, after []time.Duration
			for busy && a.backfill.status().State == backfillRunning {
				during = append(during, get())
			}
			waitFor(t, "the backfill to finish", func() bool { return a.backfill.status().State == backfillDone })
			for range len(during) {
				after = append(after, get())
			}
			stop()
			st := a.backfill.status()
			t.Logf("%s, %s: %d rows in %.1f s: %.0f rows/s", d.Name, map[bool]string{false: "alone", true: "under a request loop"}[busy],
				st.RowsCopied, st.Seconds, float64(st.RowsCopied)/st.Seconds)
			if busy {
				q := func(ds []time.Duration, p float64) float64 {
					s := slices.Clone(ds)
					slices.Sort(s)
					return s[min(len(s)-1, int(p*float64(len(s))))].Seconds() * 1000
				}
				t.Logf("%s: proxy p50/p99 %.2f/%.2f ms during the backfill, %.2f/%.2f ms after it (%d requests each)", d.Name,
					q(during, 0.5), q(during, 0.99), q(after, 0.5), q(after, 0.99), len(during))
			}
		}
	})
}
