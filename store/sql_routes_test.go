package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/latency"
)

// routeRow makes one instance's row with n requests of random latencies.
func routeRow(rng *rand.Rand, route, version string, step time.Duration, start time.Time, n int) RouteRow {
	r := RouteRow{Route: route, Version: version, Step: step, Start: start, Requests: uint64(n)}
	b := make([]uint64, latency.Buckets)
	last := 0
	for range n {
		d := time.Duration((5 + rng.ExpFloat64()*40) * float64(time.Millisecond))
		i := latency.Index(d)
		b[i]++
		last = max(last, i)
		r.SumUS += uint64(d / time.Microsecond)
	}
	r.Errors = uint64(rng.IntN(n/10 + 1))
	r.AppErrors = r.Errors / 2
	r.Buckets = b[:last+1]
	return r
}

// mergedWant merges rows per (start, version) as a fleet read must.
func mergedWant(rows []RouteRow, step time.Duration, route string, from, to time.Time) []RouteRow {
	type k struct {
		start   int64
		version string
	}
	m := map[k]*RouteRow{}
	var keys []k
	for _, r := range rows {
		if r.Step != step || r.Route != route || r.Start.Before(from) || !r.Start.Before(to) {
			continue
		}
		key := k{r.Start.UnixMicro(), r.Version}
		e := m[key]
		if e == nil {
			e = &RouteRow{Route: route, Version: r.Version, Step: r.Step, Start: r.Start.UTC()}
			m[key] = e
			keys = append(keys, key)
		}
		e.Requests += r.Requests
		e.Errors += r.Errors
		e.AppErrors += r.AppErrors
		e.SumUS += r.SumUS
		if len(r.Buckets) > len(e.Buckets) {
			e.Buckets = append(e.Buckets, make([]uint64, len(r.Buckets)-len(e.Buckets))...)
		}
		for i, v := range r.Buckets {
			e.Buckets[i] += v
		}
	}
	slices.SortFunc(keys, func(a, b k) int {
		if a.start != b.start {
			return int(a.start - b.start)
		}
		if a.version < b.version {
			return -1
		}
		if a.version > b.version {
			return 1
		}
		return 0
	})
	out := make([]RouteRow, len(keys))
	for i, key := range keys {
		out[i] = *m[key]
	}
	return out
}

func scanAll(t *testing.T, s *SQL, instance string, step time.Duration, route string, from, to time.Time) []RouteRow {
	t.Helper()
	var out []RouteRow
	err := s.ScanRouteRows(context.Background(), s.fleet, instance, step, route, from, to, func(r *RouteRow) {
		c := *r
		c.Instance = ""
		c.Buckets = slices.Clone(r.Buckets)
		out = append(out, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRouteRowsWriteReplaceMergePrune: two instances write their route
// rows (1 min and 1 h) and history points; a rewrite of the same rows
// (the archive's current minute and hour) replaces them, never adds; the
// fleet read merges both instances per (start, version) — counts summed,
// buckets added — and one instance's read is its rows alone; volumes sum
// per route; each tier's rows past its retention are pruned, the rest kept.
func TestRouteRowsWriteReplaceMergePrune(t *testing.T) {
	sqlStores(t, func(t *testing.T, s *SQL) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(4, 12))
		start := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
		var all []RouteRow
		byInst := map[string][]RouteRow{}
		for _, inst := range []string{"web-a", "web-b"} {
			var rows []RouteRow
			for m := range 90 {
				at := start.Add(time.Duration(m) * time.Minute)
				for _, route := range []string{"/users/:id", "/orders", "*"} {
					ver := "v1"
					if m >= 45 {
						ver = "v2"
					}
					rows = append(rows, routeRow(rng, route, ver, StepMinute, at, 1+rng.IntN(200)))
				}
			}
			for h := range 2 {
				rows = append(rows, routeRow(rng, "/users/:id", "v1", StepHour, start.Add(time.Duration(h)*time.Hour), 500))
			}
			// A first write, then the same rows again with the last minute grown (the archive's rewrite).
			if err := s.WriteRouteBatch(ctx, RouteBatch{Fleet: s.fleet, Instance: inst, Routes: rows[:len(rows)-10],
				Points: []HistoryPoint{{Step: StepMinute, Start: start, Data: []byte("first " + inst)}}}); err != nil {
				t.Fatal(err)
			}
			if err := s.WriteRouteBatch(ctx, RouteBatch{Fleet: s.fleet, Instance: inst, Routes: rows,
				Points: []HistoryPoint{{Step: StepMinute, Start: start, Data: []byte("point " + inst)},
					{Step: StepHour, Start: start, Data: []byte("hour " + inst)}}}); err != nil {
				t.Fatal(err)
			}
			all = append(all, rows...)
			byInst[inst] = rows
		}
		from, to := start.Add(10*time.Minute), start.Add(80*time.Minute)
		for _, route := range []string{"/users/:id", "*"} {
			got := scanAll(t, s, "", StepMinute, route, from, to)
			want := mergedWant(all, StepMinute, route, from, to)
			if len(got) != 70*1 || !reflect.DeepEqual(got, want) {
				t.Fatalf("fleet rows of %s: %d rows, want %d merged rows equal to the sums of both instances\ngot[0]  %+v\nwant[0] %+v", route, len(got), len(want), got[0], want[0])
			}
			one := scanAll(t, s, "web-b", StepMinute, route, from, to)
			if !reflect.DeepEqual(one, mergedWant(byInst["web-b"], StepMinute, route, from, to)) {
				t.Errorf("web-b's rows of %s differ from what it wrote", route)
			}
		}
		hours := scanAll(t, s, "", StepHour, "/users/:id", start, start.Add(2*time.Hour))
		if !reflect.DeepEqual(hours, mergedWant(all, StepHour, "/users/:id", start, start.Add(2*time.Hour))) || len(hours) != 2 {
			t.Errorf("fleet hour rows = %+v", hours)
		}
		vol, err := s.RouteVolumes(ctx, s.fleet, "", StepMinute, start, start.Add(90*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		wantVol := map[string]uint64{}
		for _, r := range all {
			if r.Step == StepMinute {
				wantVol[r.Route] += r.Requests
			}
		}
		if !reflect.DeepEqual(vol, wantVol) {
			t.Errorf("volumes = %v; want %v", vol, wantVol)
		}
		pts, err := s.HistoryPoints(ctx, s.fleet, "web-a", StepMinute, start, start.Add(time.Hour))
		if err != nil || len(pts) != 1 || string(pts[0].Data) != "point web-a" || !pts[0].Start.Equal(start) {
			t.Errorf("web-a's points = %+v, %v; want the rewritten one", pts, err)
		}
		if _, err := s.HistoryPoints(ctx, s.fleet, "web-gone", StepMinute, start, start.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
			t.Errorf("an unknown instance's points: %v; want ErrNotFound", err)
		}

		// Prune at start+14d+30m with 14 days of minutes and 400 of hours:
		// the first 30 minutes of minute rows go, the hour rows stay.
		now := start.Add(14*24*time.Hour + 30*time.Minute)
		res, err := s.PruneFleet(ctx, s.fleet, now, Retention{KeepMinutes: 14 * 24 * time.Hour, KeepHours: 400 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		// 2 instances × 30 minutes × 3 routes, plus each instance's first-minute point.
		if res.RouteRows != 2*30*3+2 {
			t.Errorf("pruned %d route rows and points; want %d", res.RouteRows, 2*30*3+2)
		}
		if got := scanAll(t, s, "", StepMinute, "*", start, start.Add(90*time.Minute)); len(got) != 60 || !got[0].Start.Equal(start.Add(30*time.Minute)) {
			t.Errorf("after the prune %d minute rows of * from %v; want 60 from +30m", len(got), got[0].Start)
		}
		if got := scanAll(t, s, "", StepHour, "/users/:id", start, start.Add(2*time.Hour)); len(got) != 2 {
			t.Errorf("after the prune %d hour rows; want 2 kept", len(got))
		}
	})
}

// TestWriterRoutesCoalesceAndSurviveAnOutage: with the store cut, route
// rows queue without blocking, a rewrite of a waiting row replaces it
// (the queue holds one entry per stored row), the health says how many
// wait; past the bound the oldest are dropped, counted and logged once;
// once the store is back the newest version of every row is written.
func TestWriterRoutesCoalesceAndSurviveAnOutage(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		s, p := proxiedStore(t, sv)
		ctx := context.Background()
		core, logs := observer.New(zapcore.InfoLevel)
		w, err := NewWriter(s, zap.New(core), prometheus.NewRegistry(), WriterOptions{MaxRouteRows: 100})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(7, 7))
		start := time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC)
		p.down()
		var last []RouteRow
		for m := range 60 { // an hour of flushes: each writes its minute row and rewrites the hour row
			at := start.Add(time.Duration(m) * time.Minute)
			minute := routeRow(rng, "/a", "v1", StepMinute, at, 10)
			hour := routeRow(rng, "/a", "v1", StepHour, start, 10*(m+1))
			if err := w.Routes(RouteBatch{Fleet: s.fleet, Instance: "web-1", Routes: []RouteRow{minute, hour},
				Points: []HistoryPoint{{Step: StepHour, Start: start, Data: []byte(fmt.Sprint("hour after ", m))}}}); err != nil {
				t.Fatal(err)
			}
			last = []RouteRow{minute, hour}
		}
		if err := w.Flush(ctx); err == nil {
			t.Fatal("Flush with the store cut succeeded")
		}
		if h := w.Health(); h.QueuedRouteRows != 62 || h.DroppedRouteRows != 0 || h.State != HealthDegraded {
			t.Errorf("health while down = %+v; want 62 rows waiting (60 minutes, 1 hour row, 1 point), none dropped", h)
		}
		for m := 60; m < 100; m++ { // 40 more minute rows: 102 > 100, the two queued first (minutes 0 and 1) go
			if err := w.Routes(RouteBatch{Fleet: s.fleet, Instance: "web-1",
				Routes: []RouteRow{routeRow(rng, "/a", "v1", StepMinute, start.Add(time.Duration(m)*time.Minute), 10)}}); err != nil {
				t.Fatal(err)
			}
		}
		if h := w.Health(); h.QueuedRouteRows != 100 || h.DroppedRouteRows != 2 {
			t.Errorf("health past the bound = %+v; want 100 waiting, 2 dropped", h)
		}
		if got := testutil.ToFloat64(w.metricDrop.WithLabelValues("route")); got != 2 {
			t.Errorf("pulsegate_store_dropped_total{kind=route} = %g; want 2", got)
		}
		if logs.FilterMessage("store_route_rows_dropped").Len() != 1 {
			t.Errorf("want one store_route_rows_dropped line, got %d", logs.FilterMessage("store_route_rows_dropped").Len())
		}
		p.up(t)
		if err := w.Flush(ctx); err != nil {
			t.Fatalf("Flush after the store came back: %v", err)
		}
		if h := w.Health(); h.QueuedRouteRows != 0 || h.State != HealthOK {
			t.Errorf("health after recovery = %+v", h)
		}
		hours := scanAll(t, s, "web-1", StepHour, "/a", start, start.Add(time.Hour))
		if len(hours) != 1 || !reflect.DeepEqual(hours[0], mergedWant(last[1:], StepHour, "/a", start, start.Add(time.Hour))[0]) {
			t.Errorf("hour row = %+v; want the last rewrite %+v", hours, last[1])
		}
		minutes := scanAll(t, s, "web-1", StepMinute, "/a", start, start.Add(100*time.Minute))
		if len(minutes) != 98 || !minutes[0].Start.Equal(start.Add(2*time.Minute)) {
			t.Errorf("%d minute rows from %v; want 98 from +2m (the two oldest dropped)", len(minutes), minutes[0].Start)
		}
		pts, err := s.HistoryPoints(ctx, s.fleet, "web-1", StepHour, start, start.Add(time.Hour))
		if err != nil || len(pts) != 1 || string(pts[0].Data) != "hour after 59" {
			t.Errorf("hour point = %+v, %v; want the last rewrite", pts, err)
		}
	})
}

// TestMeasureRouteRowsDiskUse measures the shared store's disk use of one
// instance's day of route rows and history points at 20 routes (plus the
// whole app's "*" row), 50–300 requests per route and minute, one app
// version: it writes measureDays days of one instance as the Writer
// would (batches of routeBatchSize) into a private database and reports
// the tables' rows and bytes per instance and day, from the server's own
// table sizes. Run with PULSEGATE_MEASURE_ROUTES=1 (docs/store.md quotes it).
func TestMeasureRouteRowsDiskUse(t *testing.T) {
	if os.Getenv("PULSEGATE_MEASURE_ROUTES") == "" {
		t.Skip("set PULSEGATE_MEASURE_ROUTES=1 to measure the route tables' disk use")
	}
	const measureDB, routes, measureDays = "pulsegate_sqlroutes_measure", 20, 3
	sqlServers(t, func(t *testing.T, sv *server) {
		if err := sv.createDB(measureDB); err != nil {
			t.Fatal(err)
		}
		s := openSQLTest(t, sv.storeDSN(sv.adminUser(), "", measureDB), WithInstance("measure", "web-1"))
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(20, 26))
		start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		point := make([]byte, 11+4*17+6) // the archive's row: header, 17 series, a version "1.4.2"
		var batch RouteBatch
		write := func(force bool) {
			if len(batch.Routes)+len(batch.Points) >= routeBatchSize || force {
				if err := s.WriteRouteBatch(ctx, batch); err != nil {
					t.Fatal(err)
				}
				batch = RouteBatch{Fleet: "measure", Instance: "web-1"}
			}
		}
		batch = RouteBatch{Fleet: "measure", Instance: "web-1"}
		for m := range measureDays * 24 * 60 {
			at := start.Add(time.Duration(m) * time.Minute)
			all := RouteRow{Route: "*", Version: "1.4.2", Step: StepMinute, Start: at}
			for r := range routes {
				row := routeRow(rng, fmt.Sprintf("/api/v1/resource%02d/<id>", r), "1.4.2", StepMinute, at, 50+rng.IntN(250))
				batch.Routes = append(batch.Routes, row)
				all.Requests += row.Requests
				all.Errors += row.Errors
				if len(row.Buckets) > len(all.Buckets) {
					all.Buckets = append(all.Buckets, make([]uint64, len(row.Buckets)-len(all.Buckets))...)
				}
				for i, v := range row.Buckets {
					all.Buckets[i] += v
				}
				if m%60 == 59 { // the hour's row, whole
					h := routeRow(rng, row.Route, "1.4.2", StepHour, at.Truncate(time.Hour), 60*175)
					batch.Routes = append(batch.Routes, h)
				}
			}
			batch.Routes = append(batch.Routes, all)
			for i := range point {
				point[i] = byte(rng.Uint32())
			}
			batch.Points = append(batch.Points, HistoryPoint{Step: StepMinute, Start: at, Data: slices.Clone(point)})
			if m%60 == 59 {
				batch.Routes = append(batch.Routes, routeRow(rng, "*", "1.4.2", StepHour, at.Truncate(time.Hour), 60*175*routes))
				batch.Points = append(batch.Points, HistoryPoint{Step: StepHour, Start: at.Truncate(time.Hour), Data: slices.Clone(point)})
			}
			write(false)
		}
		write(true)
		for _, table := range []string{tableRouteRollups, tableInstHistory} {
			var rows, bytes, index int64
			if err := s.db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if sv.driver == "mysql" {
				if _, err := s.db.Exec(`ANALYZE TABLE ` + table); err != nil {
					t.Fatal(err)
				}
				if err := s.db.QueryRow(`SELECT data_length + index_length, index_length FROM information_schema.TABLES WHERE table_schema = ? AND table_name = ?`,
					measureDB, table).Scan(&bytes, &index); err != nil {
					t.Fatal(err)
				}
			} else {
				if _, err := s.db.Exec(`VACUUM ANALYZE ` + table); err != nil {
					t.Fatal(err)
				}
				if err := s.db.QueryRow(`SELECT pg_total_relation_size($1), pg_indexes_size($1)`, table).Scan(&bytes, &index); err != nil {
					t.Fatal(err)
				}
			}
			var blob float64
			col := map[string]string{tableRouteRollups: "buckets", tableInstHistory: "point"}[table]
			lenFn := map[string]string{"mysql": "LENGTH", "pgx": "OCTET_LENGTH"}[sv.driver]
			if err := s.db.QueryRow(`SELECT AVG(` + lenFn + `(` + col + `)) FROM ` + table).Scan(&blob); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %s: %d rows/day, %.1f MB/day (%.1f MB of it indexes), %.0f bytes/row of which %.0f the %s column (per instance, %d routes + *)",
				sv.name, table, rows/measureDays, float64(bytes)/measureDays/1e6, float64(index)/measureDays/1e6, float64(bytes)/float64(rows), blob, col, routes)
		}
	})
}

// TestWriterBackfillYieldsAndNeverDropsLiveRows: the history backfill's
// batches (Writer.Backfill) never enter the live queue, so however many
// rows it copies no live row is dropped; it yields while live rows wait
// (ErrBackfillBusy) and while the store is degraded (ErrStoreDegraded,
// nothing read); a row the archive rewrote while the batch was read (a
// live flush queued it) is left out of the batch and the live, newer one
// is what the store keeps; a batch written twice is stored once.
func TestWriterBackfillYieldsAndNeverDropsLiveRows(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		s, p := proxiedStore(t, sv)
		ctx := context.Background()
		w, err := NewWriter(s, zap.NewNop(), prometheus.NewRegistry(), WriterOptions{MaxRouteRows: 10})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(9, 9))
		start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		var old RouteBatch // 600 minute rows of the archive's past: 60 times the queue's bound
		old.Fleet, old.Instance = s.fleet, "web-1"
		for m := range 300 {
			at := start.Add(time.Duration(m) * time.Minute)
			old.Routes = append(old.Routes, routeRow(rng, "/a", "v1", StepMinute, at, 10))
			old.Points = append(old.Points, HistoryPoint{Step: StepMinute, Start: at, Data: []byte(fmt.Sprint("old ", m))})
		}
		reads := 0
		read := func(b RouteBatch) func() (RouteBatch, error) {
			return func() (RouteBatch, error) { reads++; return b, nil }
		}

		// Live rows wait: the backfill yields without reading.
		live := RouteBatch{Fleet: s.fleet, Instance: "web-1", Routes: []RouteRow{routeRow(rng, "/a", "v1", StepMinute, start.Add(24*time.Hour), 5)}}
		if err := w.Routes(live); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Backfill(ctx, read(old)); !errors.Is(err, ErrBackfillBusy) || reads != 0 {
			t.Fatalf("Backfill with live rows waiting = %v after %d reads; want ErrBackfillBusy, no read", err, reads)
		}
		// The store is down: the live flush fails, the backfill waits for the writer.
		p.down()
		if err := w.Flush(ctx); err == nil {
			t.Fatal("Flush with the store cut succeeded")
		}
		if _, err := w.Backfill(ctx, read(old)); !errors.Is(err, ErrStoreDegraded) || reads != 0 {
			t.Fatalf("Backfill with the store degraded = %v after %d reads; want ErrStoreDegraded, no read", err, reads)
		}
		p.up(t)
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}

		// 600 rows in one batch, twice: written, stored once, nothing queued or dropped.
		for range 2 {
			n, err := w.Backfill(ctx, read(old))
			if err != nil || n != 600 {
				t.Fatalf("Backfill = %d, %v; want 600 rows", n, err)
			}
		}
		if h := w.Health(); h.QueuedRouteRows != 0 || h.DroppedRouteRows != 0 {
			t.Errorf("after backfilling 1200 rows with a queue of 10: %+v; want nothing queued or dropped", h)
		}
		got := scanAll(t, s, "web-1", StepMinute, "/a", start, start.Add(300*time.Minute))
		if want := mergedWant(old.Routes, StepMinute, "/a", start, start.Add(300*time.Minute)); !reflect.DeepEqual(got, want) {
			t.Errorf("stored %d rows after two backfills; want the 300 rows once", len(got))
		}

		// A live flush rewrites minute 299 while the backfill reads it: the live row wins.
		newer := routeRow(rng, "/a", "v1", StepMinute, start.Add(299*time.Minute), 50)
		newerPoint := HistoryPoint{Step: StepMinute, Start: newer.Start, Data: []byte("newer")}
		n, err := w.Backfill(ctx, func() (RouteBatch, error) {
			if err := w.Routes(RouteBatch{Fleet: s.fleet, Instance: "web-1", Routes: []RouteRow{newer}, Points: []HistoryPoint{newerPoint}}); err != nil {
				return RouteBatch{}, err
			}
			return RouteBatch{Fleet: s.fleet, Instance: "web-1", Routes: old.Routes[298:], Points: old.Points[298:]}, nil
		})
		if err != nil || n != 2 {
			t.Fatalf("Backfill with minute 299 queued meanwhile = %d, %v; want the 2 rows of minute 298", n, err)
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		last := scanAll(t, s, "web-1", StepMinute, "/a", newer.Start, newer.Start.Add(time.Minute))
		pts, err := s.HistoryPoints(ctx, s.fleet, "web-1", StepMinute, newer.Start, newer.Start.Add(time.Minute))
		if len(last) != 1 || last[0].Requests != 50 || err != nil || len(pts) != 1 || string(pts[0].Data) != "newer" {
			t.Errorf("minute 299 = %+v, %+v (%v); want the live rewrite", last, pts, err)
		}
		oldest, ok, err := s.OldestHistoryPoint(ctx, s.fleet, "web-1", StepMinute)
		if err != nil || !ok || !oldest.Equal(start) {
			t.Errorf("OldestHistoryPoint = %v, %v, %v; want %v", oldest, ok, err, start)
		}
		if _, ok, err := s.OldestHistoryPoint(ctx, s.fleet, "web-2", StepMinute); ok || err != nil {
			t.Errorf("OldestHistoryPoint of an instance without points = %v, %v; want none", ok, err)
		}
	})
}
