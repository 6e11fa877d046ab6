package history

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/latency"
)

// fakeCounters plays the proxy's cumulative per-(route, version) counters.
type fakeCounters struct{ c map[[2]string]*RouteCounter }

func newFakeCounters() *fakeCounters { return &fakeCounters{c: map[[2]string]*RouteCounter{}} }

func (p *fakeCounters) add(route, version string, d time.Duration, failed bool) {
	k := [2]string{route, version}
	c := p.c[k]
	if c == nil {
		c = &RouteCounter{Route: route, Version: version, Buckets: make([]uint64, latency.Buckets)}
		p.c[k] = c
	}
	c.Requests++
	if failed {
		c.Errors++
		c.AppErrors++
	}
	c.Buckets[latency.Index(d)]++
	c.SumUS += uint64(d / time.Microsecond)
}

func (p *fakeCounters) read() []RouteCounter {
	out := make([]RouteCounter, 0, len(p.c))
	for _, c := range p.c {
		cp := *c
		cp.Buckets = slices.Clone(c.Buckets)
		out = append(out, cp)
	}
	return out
}

// lognormal draws a latency with the given median and spread.
func lognormal(r *rand.Rand, median time.Duration, sigma float64) time.Duration {
	return time.Duration(math.Exp(math.Log(median.Seconds())+sigma*r.NormFloat64()) * float64(time.Second))
}

// exactQuantile is the nearest-rank q-quantile of xs (sorted in place).
func exactQuantile(xs []float64, q float64) float64 {
	sort.Float64s(xs)
	rank := int(q*float64(len(xs)) + 0.5)
	rank = max(1, min(rank, len(xs)))
	return xs[rank-1]
}

// TestRouteRollupsSevenDays: a simulated week of traffic over 12 routes,
// flushed every minute into the real bbolt archive. The week's p95 and
// p99 of a route, and of the whole app, come from merged 1 min and merged
// 1 h buckets and equal the exact percentiles of the generated latencies
// within the bucket geometry's ±1.6 %; the request and error counts are
// exact.
func TestRouteRollupsSevenDays(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a week")
	}
	t.Parallel() // a simulated week, CPU-bound: the longest test of the package
	dir := t.TempDir()
	a := openArchive(t, dir, DefaultRetention)
	defer a.Close()
	a.db.NoSync = true // 10 080 transactions; durability is not under test
	src := newFakeCounters()
	a.SetRouteSource(src.read, 0)
	ring := mustHistory(t, 10*time.Second, time.Hour)
	rnd := rand.New(rand.NewPCG(7, 11))
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	end := start.Add(7 * 24 * time.Hour)
	routes := make([]string, 12)
	for i := range routes {
		routes[i] = fmt.Sprintf("/api/r%d/:id", i)
	}
	const watched = "/api/r1/:id"
	var watchedLat, allLat []float64
	var watchedReq, watchedErr, allReq uint64
	for at := start; at.Before(end); at = at.Add(time.Minute) {
		// The watched route is slower at night (hours 0-5): a worst-of per
		// minute would not give the week's p95.
		for i, rt := range routes {
			n := 24 / (i + 1) // Zipf-like volumes
			med := time.Duration(20+10*i) * time.Millisecond
			if rt == watched && at.Hour() < 6 {
				med *= 4
			}
			for range n {
				d := lognormal(rnd, med, 0.7)
				failed := rnd.Float64() < 0.01
				src.add(rt, "v1", d, failed)
				allLat = append(allLat, d.Seconds())
				allReq++
				if rt == watched {
					watchedLat = append(watchedLat, d.Seconds())
					watchedReq++
					if failed {
						watchedErr++
					}
				}
			}
		}
		if err := a.Flush(ring, at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	wantP95, wantP99 := exactQuantile(watchedLat, 0.95), exactQuantile(watchedLat, 0.99)
	wantAll := exactQuantile(allLat, 0.95)

	r := Reader{Archive: a, Now: func() time.Time { return end }}
	for _, tier := range []int{Tier1m, Tier1h} {
		rows, err := routeRows(a, tier, watched, start, end.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		wantRows := 7 * 24 * 60
		if tier == Tier1h {
			wantRows = 7 * 24
		}
		if len(rows) != wantRows && len(rows) != wantRows+1 { // the last interval's middle may fall in the next step
			t.Fatalf("tier %s: %d rows, want %d", tierNames[tier], len(rows), wantRows)
		}
		m := MergeRollups(rows)
		if m.Requests != watchedReq || m.Errors != watchedErr || m.Timed() != watchedReq || m.Version != "v1" || m.Route != watched {
			t.Fatalf("tier %s merged: %d requests %d errors %d timed (%q %q), want %d, %d", tierNames[tier],
				m.Requests, m.Errors, m.Timed(), m.Route, m.Version, watchedReq, watchedErr)
		}
		for _, c := range []struct {
			q, want float64
		}{{0.95, wantP95}, {0.99, wantP99}} {
			if got := m.Quantile(c.q); math.Abs(got-c.want)/c.want > 0.016 {
				t.Errorf("tier %s: p%v over 7 days %.4f s, exact %.4f s (off by %.2f %%)", tierNames[tier], c.q*100, got, c.want, 100*math.Abs(got-c.want)/c.want)
			}
		}
	}
	// Through the Reader: 7 days are within the 1 min tier's 14.
	rows, err := r.RouteRollups(AllRoutes, end.Add(-7*24*time.Hour), end.Add(time.Minute))
	if err != nil || len(rows) == 0 || rows[0].Step != time.Minute {
		t.Fatalf("AllRoutes over 7d: %d rows, %v", len(rows), err)
	}
	m := MergeRollups(rows)
	if m.Requests != allReq {
		t.Errorf("AllRoutes counts %d requests, want %d", m.Requests, allReq)
	}
	if got := m.Quantile(0.95); math.Abs(got-wantAll)/wantAll > 0.016 {
		t.Errorf("the app's p95 over 7 days %.4f s, exact %.4f s", got, wantAll)
	}
	names, err := r.RouteNames(start, end.Add(time.Minute))
	if err != nil || len(names) != len(routes) || !slices.Equal(names[:3], routes[:3]) {
		t.Errorf("RouteNames = %v, %v; want the 12 routes busiest first", names, err)
	}
	// The route view of range=7d: 720 steps of 14 min from the 1 min tier.
	view, err := r.RouteView(watched, Request{Name: "7d", From: end.Add(-7 * 24 * time.Hour), To: end})
	if err != nil || view.Tier != "1m" || view.StepSeconds != 840 || len(view.Timestamps) != 720 || len(view.Versions) != 720 {
		t.Fatalf("7d view: tier %s step %d, %d points, %v", view.Tier, view.StepSeconds, len(view.Timestamps), err)
	}
	var sum float64
	for i, n := range view.Series["requests"] {
		sum += *n
		if view.Series["p95_response_time"][i] == nil || *view.Versions[i] != "v1" {
			t.Fatalf("step %d: p95 %v version %v", i, view.Series["p95_response_time"][i], view.Versions[i])
		}
	}
	if uint64(sum) != watchedReq || len(view.Releases) != 1 || view.Comparison != nil {
		t.Errorf("7d view: %v requests (want %d), releases %+v, comparison %+v", sum, watchedReq, view.Releases, view.Comparison)
	}
	// 30 days reach past the 1 min tier: the 1 h tier answers.
	rows, err = r.RouteRollups(watched, end.Add(-30*24*time.Hour), end.Add(time.Hour))
	if err != nil || len(rows) < 7*24 || rows[0].Step != time.Hour {
		t.Fatalf("30d: %d rows (step %v), %v; want the 1 h tier", len(rows), rows[0].Step, err)
	}
	if got := MergeRollups(rows).Quantile(0.95); math.Abs(got-wantP95)/wantP95 > 0.016 {
		t.Errorf("30d p95 %.4f, exact %.4f", got, wantP95)
	}
}

// TestRouteHistorySurvivesRestart: rollups written before a restart are
// read after it, and the new process's counters (from zero) add to them.
func TestRouteHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ring := mustHistory(t, 10*time.Second, time.Hour)
	a := openArchive(t, dir, DefaultRetention)
	src := newFakeCounters()
	a.SetRouteSource(src.read, 0)
	for i := range 100 {
		src.add("/reports/:id", "v1", 100*time.Millisecond, i%10 == 0)
	}
	if err := a.Flush(ring, t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	a2 := openArchive(t, dir, DefaultRetention)
	defer a2.Close()
	src2 := newFakeCounters() // a new process counts from zero
	a2.SetRouteSource(src2.read, 0)
	r := Reader{Archive: a2, Now: func() time.Time { return t0.Add(time.Hour) }}
	rows, err := r.RouteRollups("/reports/:id", t0.Add(-time.Hour), t0.Add(time.Hour))
	if err != nil || len(rows) != 1 || rows[0].Requests != 100 || rows[0].Errors != 10 || rows[0].Version != "v1" {
		t.Fatalf("after restart: %+v, %v; want one row of 100 requests, 10 errors, v1", rows, err)
	}
	for range 50 {
		src2.add("/reports/:id", "v1", 100*time.Millisecond, false)
	}
	if err := a2.Flush(ring, t0.Add(50*time.Second)); err != nil {
		t.Fatal(err)
	}
	rows, _ = r.RouteRollups("/reports/:id", t0.Add(-time.Hour), t0.Add(time.Hour))
	if len(rows) != 1 || rows[0].Requests != 150 || rows[0].Quantile(0.5) < 0.098 || rows[0].Quantile(0.5) > 0.102 {
		t.Fatalf("the same minute after restart: %+v, want 150 requests at 100 ms", rows)
	}
	if names, _ := r.RouteNames(t0.Add(-time.Hour), t0.Add(time.Hour)); !slices.Equal(names, []string{"/reports/:id"}) {
		t.Errorf("RouteNames = %v", names)
	}
}

// TestRouteRollupsAreBounded: a flush keeps the busiest routes and folds
// the rest into "other"; the whole app's row counts every request.
func TestRouteRollupsAreBounded(t *testing.T) {
	a := openArchive(t, t.TempDir(), DefaultRetention)
	defer a.Close()
	src := newFakeCounters()
	a.SetRouteSourceLive(src.read, func() int { return 3 })
	total := 0
	for i := range 8 {
		for range 10 * (8 - i) {
			src.add(fmt.Sprintf("/r%d", i), "v1", time.Millisecond, false)
			total++
		}
	}
	src.add(OtherRoute, "v1", time.Millisecond, false) // the proxy's own overflow
	total++
	ring := mustHistory(t, 10*time.Second, time.Hour)
	if err := a.Flush(ring, t0); err != nil {
		t.Fatal(err)
	}
	r := Reader{Archive: a, Now: func() time.Time { return t0 }}
	names, err := r.RouteNames(t0.Add(-time.Hour), t0.Add(time.Hour))
	if err != nil || !slices.Equal(names, []string{OtherRoute, "/r0", "/r1", "/r2"}) {
		t.Fatalf("RouteNames = %v, %v; want other (151 requests) and the 3 busiest", names, err)
	}
	other, _ := r.RouteRollups(OtherRoute, t0.Add(-time.Hour), t0.Add(time.Hour))
	all, _ := r.RouteRollups(AllRoutes, t0.Add(-time.Hour), t0.Add(time.Hour))
	if len(other) != 1 || other[0].Requests != 50+40+30+20+10+1 || len(all) != 1 || all[0].Requests != uint64(total) {
		t.Fatalf("other %+v, all %+v; want 151 and %d requests", other, all, total)
	}
}

// TestRouteRollupsPruned: rows older than their tier's retention go, and
// with them the buckets of routes no longer seen.
func TestRouteRollupsPruned(t *testing.T) {
	ret := Retention{time.Hour, 2 * time.Hour, 3 * time.Hour}
	a := openArchive(t, t.TempDir(), ret)
	defer a.Close()
	src := newFakeCounters()
	a.SetRouteSource(src.read, 0)
	ring := mustHistory(t, 10*time.Second, time.Hour)
	src.add("/old", "v1", time.Millisecond, false)
	if err := a.Flush(ring, t0.Add(31*time.Second)); err != nil { // rows of 12:00
		t.Fatal(err)
	}
	src.add("/new", "v1", time.Millisecond, false)
	if err := a.Flush(ring, t0.Add(150*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if rows, _ := routeRows(a, Tier1m, "/old", t0.Add(-time.Hour), t0.Add(5*time.Hour)); len(rows) != 0 {
		t.Errorf("/old's 1 min rows kept past 2 h: %+v", rows)
	}
	if rows, _ := routeRows(a, Tier1h, "/old", t0.Add(-time.Hour), t0.Add(5*time.Hour)); len(rows) != 1 {
		t.Errorf("/old's 1 h row: %d rows, want 1 (3 h retention)", len(rows))
	}
	if err := a.Flush(ring, t0.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	vol, _ := a.routeVolumes(Tier1h, t0.Add(-time.Hour), t0.Add(6*time.Hour))
	if _, ok := vol["/old"]; ok {
		t.Errorf("/old still has 1 h rows after its retention: %v", vol)
	}
}

// TestRouteRowDecode: rows round-trip; damaged ones are an error (left out by the readers).
func TestRouteRowDecode(t *testing.T) {
	d := routeDelta{requests: 5, errors: 1, appErrors: 1, sumUS: 12345, buckets: make([]uint64, latency.Buckets)}
	d.buckets[3], d.buckets[700], d.buckets[latency.Buckets-1] = 2, 2, 1
	d.buckets[10], d.buckets[11], d.buckets[13], d.buckets[16], d.buckets[20] = 1, 300, 1, 1<<40, 7 // runs with holes
	got, err := decodeRouteDelta(d.encode(), true)
	if err != nil || got.requests != 5 || got.sumUS != 12345 || !slices.Equal(got.buckets, d.buckets) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {9}, {1, 5}, append(d.encode()[:len(d.encode())-1:len(d.encode())-1], 0x80)} {
		if _, err := decodeRouteDelta(bad, true); err == nil {
			t.Errorf("%x decoded without error", bad)
		}
	}
}

// TestRouteDiskPerDay measures history.db with the route rollups of a
// realistic app (the figures in docs/history.md): 40 routes with
// Zipf-like traffic (≈ 50 req/s in all), two versions in the day, 10 s
// ring points as well, flushed every minute for two simulated days.
func TestRouteDiskPerDay(t *testing.T) {
	if testing.Short() || os.Getenv("PULSEGATE_DISK_FIGURE") == "" {
		t.Skip("set PULSEGATE_DISK_FIGURE=1 to measure (simulates two days)")
	}
	dir := t.TempDir()
	a := openArchive(t, dir, DefaultRetention)
	defer a.Close()
	a.db.NoSync = true
	src := newFakeCounters()
	a.SetRouteSource(src.read, 0)
	ring := mustHistory(t, 10*time.Second, 24*time.Hour)
	rnd := rand.New(rand.NewPCG(3, 5))
	at := t0
	var data []int64
	for day := range 2 {
		for end := at.Add(24 * time.Hour); at.Before(end); at = at.Add(10 * time.Second) {
			ring.Record(trafficTick(at, 50, 0.01, 0.25, 0.3))
			ver := "v1"
			if at.Hour() >= 12 {
				ver = "v2"
			}
			for i := range 40 {
				// 500 requests per 10 s in all, route i gets a share ∝ 1/(i+1).
				n := int(500 / (float64(i+1) * 4.28))
				if rnd.Float64() < 500/(float64(i+1)*4.28)-float64(n) {
					n++
				}
				for range n {
					src.add(fmt.Sprintf("/api/r%d/:id", i), ver, lognormal(rnd, time.Duration(30+5*i)*time.Millisecond, 0.8), rnd.Float64() < 0.01)
				}
			}
			if next := at.Add(10 * time.Second); next.Unix()%60 == 0 {
				if err := a.Flush(ring, next); err != nil {
					t.Fatal(err)
				}
			}
		}
		data = append(data, a.Size())
		_ = day
	}
	fi, _ := os.Stat(filepath.Join(dir, FileName))
	t.Logf("pages in use after day 1: %d bytes, after day 2: %d bytes (file %d bytes)", data[0], data[1], fi.Size())
	_ = a.db.View(func(tx *bbolt.Tx) error {
		for _, tier := range []int{Tier1m, Tier1h} {
			var rows, kv, buckets int
			top := tx.Bucket(routeBuckets[tier])
			_ = top.ForEachBucket(func(name []byte) error {
				return top.Bucket(name).ForEach(func(k, v []byte) error {
					rows++
					kv += len(k) + len(v)
					d, _ := decodeRouteDelta(v, true)
					for _, n := range d.buckets {
						if n != 0 {
							buckets++
						}
					}
					return nil
				})
			})
			t.Logf("tier %s: %d rows, %d bytes of keys and values (%.0f per row, %.1f histogram buckets per row)",
				tierNames[tier], rows, kv, float64(kv)/float64(rows), float64(buckets)/float64(rows))
		}
		return nil
	})
}

// releaseWeek runs three days of v1 then three of v2 over three routes,
// flushed every 10 minutes; slow makes /reports/:id 40 % slower under v2.
func releaseWeek(t *testing.T, seed uint64, slow bool) []RouteRelease {
	t.Helper()
	a := openArchive(t, t.TempDir(), DefaultRetention)
	defer a.Close()
	a.db.NoSync = true
	src := newFakeCounters()
	a.SetRouteSource(src.read, 0)
	ring := mustHistory(t, 10*time.Second, time.Hour)
	rnd := rand.New(rand.NewPCG(seed, 99))
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	end := start.Add(6 * 24 * time.Hour)
	for at := start; at.Before(end); at = at.Add(10 * time.Minute) {
		ver := "v1"
		if at.Sub(start) >= 3*24*time.Hour {
			ver = "v2"
		}
		for i, rt := range []string{"/reports/:id", "/users/:id", "/"} {
			for range 20 - 5*i {
				med := time.Duration(50+20*i) * time.Millisecond
				if slow && ver == "v2" && rt == "/reports/:id" {
					med = med * 14 / 10
				}
				src.add(rt, ver, lognormal(rnd, med, 0.6), rnd.Float64() < 0.02)
			}
		}
		if err := a.Flush(ring, at.Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	r := Reader{Archive: a, Now: func() time.Time { return end }}
	rel, err := r.Releases(start, end.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// TestReleasesFlagPlantedSlowRelease: v2 makes /reports/:id 40 % slower;
// the comparison of v2 against v1 flags that route (and the whole app,
// which it dominates), with the sample counts, and no other route.
func TestReleasesFlagPlantedSlowRelease(t *testing.T) {
	t.Parallel()
	rel := releaseWeek(t, 1, true)
	if len(rel) != 4 || rel[0].Route != AllRoutes {
		t.Fatalf("releases: %+v; want the app and 3 routes", rel)
	}
	for _, r := range rel {
		c := r.Comparison
		if r.Before.Version != "v1" || r.After.Version != "v2" || c == nil || !c.Compared {
			t.Fatalf("%s: %+v", r.Route, r)
		}
		if c.BeforeRequests != r.Before.Requests || c.AfterRequests != r.After.Requests || r.Before.Requests == 0 {
			t.Errorf("%s: sample counts %d/%d, releases %d/%d", r.Route, c.BeforeRequests, c.AfterRequests, r.Before.Requests, r.After.Requests)
		}
		want := r.Route == "/reports/:id" || r.Route == AllRoutes
		if c.Regressed != want || c.P95.Regressed != want || c.ErrorRate.Regressed {
			t.Errorf("%s: regressed %v (p95 %.3f → %.3f, p %.2g; errors %.3f → %.3f), want %v",
				r.Route, c.Regressed, c.P95.Before, c.P95.After, c.P95.PValue, c.ErrorRate.Before, c.ErrorRate.After, want)
		}
	}
	if !rel[0].Before.FirstSeen.Before(rel[0].After.FirstSeen) || !rel[0].Before.LastSeen.Before(rel[0].After.LastSeen) {
		t.Errorf("release order: %+v", rel[0])
	}
}

// TestReleasesIdenticalNotFlagged: two releases drawn from the same
// distributions are not flagged, over several seeds.
func TestReleasesIdenticalNotFlagged(t *testing.T) {
	t.Parallel()
	for seed := range uint64(5) {
		for _, r := range releaseWeek(t, 100+seed, false) {
			if r.Comparison == nil || !r.Comparison.Compared || r.Comparison.Regressed {
				t.Errorf("seed %d %s: %+v", seed, r.Route, r.Comparison)
			}
		}
	}
}

// TestHistoryRowsCarryVersion: every tick records the app's version; the
// ring, the archived 10 s points (across a restart) and the 1 min
// rollups (the newest version of the minute) answer it.
func TestHistoryRowsCarryVersion(t *testing.T) {
	dir := t.TempDir()
	a := openArchive(t, dir, DefaultRetention)
	h := mustHistory(t, 10*time.Second, 24*time.Hour)
	ver := "v1"
	h.SetVersion(func() string { return ver })
	for at := t0; at.Before(t0.Add(10 * time.Minute)); at = at.Add(10 * time.Second) {
		if at.Equal(t0.Add(5*time.Minute + 30*time.Second)) {
			ver = "v2"
		}
		h.Record(tick(at, 0.3))
	}
	v := h.QueryRange("", t0, t0.Add(10*time.Minute))
	if len(v.Versions) != 60 || *v.Versions[0] != "v1" || *v.Versions[59] != "v2" {
		t.Fatalf("ring versions: %d, first %v", len(v.Versions), v.Versions[0])
	}
	if err := a.Flush(h, t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	a = openArchive(t, dir, DefaultRetention)
	defer a.Close()
	h2 := mustHistory(t, 10*time.Second, 24*time.Hour)
	if err := a.Load(h2, t0.Add(11*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if v := h2.QueryRange("", t0, t0.Add(10*time.Minute)); len(v.Versions) != 60 || *v.Versions[32] != "v1" || *v.Versions[33] != "v2" {
		t.Fatalf("after restart: %d versions, 32: %v 33: %v", len(v.Versions), *v.Versions[32], *v.Versions[33])
	}
	m, err := a.Query("", Tier1m, t0, t0.Add(10*time.Minute))
	if err != nil || len(m.Versions) != 10 || *m.Versions[4] != "v1" || *m.Versions[5] != "v2" {
		t.Fatalf("1 min tier versions %v, %v", m.Versions, err)
	}
}

// BenchmarkFlushMinuteRoutes is BenchmarkFlushMinute with the route
// rollups of 40 routes under one version, each with a minute of requests
// (a few hundred latency buckets in all) added between flushes.
func BenchmarkFlushMinuteRoutes(b *testing.B) {
	a, err := OpenArchive(b.TempDir(), zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	src := newFakeCounters()
	a.SetRouteSource(src.read, 0)
	rnd := rand.New(rand.NewPCG(1, 2))
	traffic := func() {
		for i := range 40 {
			for range 3000 / (i + 1) / 4 {
				src.add(fmt.Sprintf("/api/r%d/:id", i), "v1", lognormal(rnd, 40*time.Millisecond, 0.8), false)
			}
		}
	}
	h, _ := New(10*time.Second, 24*time.Hour)
	at := t0
	a.db.NoSync = true
	for range 8640 {
		h.Record(trafficTick(at, 12, 0.01, 0.25, 0.3))
		at = at.Add(10 * time.Second)
	}
	traffic()
	_ = a.Flush(h, at)
	a.db.NoSync = false
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		traffic()
		b.StartTimer()
		for range 6 {
			h.Record(trafficTick(at, 12, 0.01, 0.25, 0.3))
			at = at.Add(10 * time.Second)
		}
		if err := a.Flush(h, at); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReleasesOrderRollback: after v1, v2 and a rollback to v1, the
// release serving now is v1 and the one before it v2; unknown versions
// are never a release.
func TestReleasesOrderRollback(t *testing.T) {
	row := func(min int, v string) RouteRollup {
		return RouteRollup{Route: "/r", Version: v, Start: t0.Add(time.Duration(min) * time.Minute), Step: time.Minute, Requests: 10}
	}
	rels, by := ReleasesOf([]RouteRollup{row(0, "v1"), row(1, ""), row(2, "v2"), row(3, "v2"), row(4, "v1")})
	if len(rels) != 2 || rels[0].Version != "v2" || rels[1].Version != "v1" || len(by["v1"]) != 2 {
		t.Fatalf("releases %+v", rels)
	}
	if !rels[1].FirstSeen.Equal(t0) || !rels[1].LastSeen.Equal(t0.Add(5*time.Minute)) || rels[1].Requests != 20 {
		t.Errorf("v1: %+v", rels[1])
	}
	if rr, err := CompareReleases("/r", []RouteRollup{row(0, "v1"), row(1, "")}, ReleaseOptions()); rr != nil || err != nil {
		t.Errorf("one known version compared: %+v %v", rr, err)
	}
}
