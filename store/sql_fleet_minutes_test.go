package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// minutesRetention is DefaultRetention; spelled out so the test's layout
// (fine rows for an hour, 5-minute rows before) is visible.
var minutesRetention = Retention{KeepStale: 24 * time.Hour, KeepFine: time.Hour, Window: 5 * time.Minute, KeepHeartbeats: 24 * time.Hour,
	KeepMinutes: 24 * time.Hour, KeepHours: 48 * time.Hour}

// minutesFleet writes three hours of heartbeats of six instances (one on
// a 30 s interval, gauges sometimes missing, verdicts of every rank) up to
// now, and returns them.
func minutesFleet(t *testing.T, s *SQL, rng *rand.Rand, from, to time.Time, insts []string) {
	t.Helper()
	statuses := []string{"ok", "ok", "ok", "healthy", "warning", "degraded", "critical"}
	var batch []Heartbeat
	for i, name := range insts {
		iv := 10 * time.Second
		if i == 0 {
			iv = 30 * time.Second
		}
		for at := from.Add(iv); !at.After(to); at = at.Add(iv) {
			h := Hist{}
			n := rng.IntN(40)
			for range n {
				h.Record(time.Duration(0.02 * math.Exp(rng.NormFloat64()) * float64(time.Second)))
			}
			failed := uint64(rng.IntN(n/4 + 1))
			r := Rollup{Seconds: iv.Seconds(), Requests: map[string]uint64{"2xx": uint64(n) - failed, "5xx": failed},
				Errors: map[string]uint64{"app_5xx": failed}, Latency: h,
				Timing: map[string]float64{"total": rng.Float64() * float64(n), "count": float64(n)}}
			if rng.IntN(5) > 0 {
				r.CPU = fp(rng.Float64())
			}
			if rng.IntN(5) > 0 {
				r.Memory = fp(rng.Float64())
			}
			r.Capacity = randCapacity(rng)
			row := hb(s.fleet, name, at, statuses[rng.IntN(len(statuses))], r)
			row.Interval = iv
			batch = append(batch, row)
			if len(batch) >= 500 {
				if err := s.WriteHeartbeats(context.Background(), batch); err != nil {
					t.Fatal(err)
				}
				batch = batch[:0]
			}
		}
	}
	if err := s.WriteHeartbeats(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
}

// sameSeries fails t where the two series differ: counts, buckets,
// percentiles, verdicts, gauges and instances exactly; float sums (timing,
// the summed rates) to 1e-9 relative, as their addition order differs.
func sameSeries(t *testing.T, what string, got, want FleetSeries) {
	t.Helper()
	if got.Step != want.Step || len(got.Steps) != len(want.Steps) || !reflect.DeepEqual(got.Instances, want.Instances) {
		t.Fatalf("%s: step %s, %d steps, instances %v; from the heartbeat rows %s, %d, %v",
			what, got.Step, len(got.Steps), got.Instances, want.Step, len(want.Steps), want.Instances)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	gauge := func(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	for i, g := range got.Steps {
		w := want.Steps[i]
		gm, wm := g.Merged, w.Merged
		if !g.Start.Equal(w.Start) || g.Status != w.Status || !near(g.ThroughputRPS, w.ThroughputRPS) ||
			!gauge(g.CPU, w.CPU) || !gauge(g.Memory, w.Memory) {
			t.Errorf("%s: step %d at %s: status %s, %g req/s, cpu %v, memory %v; from the heartbeat rows at %s: %s, %g, %v, %v",
				what, i, g.Start, g.Status, g.ThroughputRPS, g.CPU, g.Memory, w.Start, w.Status, w.ThroughputRPS, w.CPU, w.Memory)
		}
		if gm.Rows != wm.Rows || gm.Answered != wm.Answered || gm.Failed != wm.Failed || gm.ErrorRate != wm.ErrorRate ||
			gm.P50 != wm.P50 || gm.P95 != wm.P95 || gm.P99 != wm.P99 || !reflect.DeepEqual(gm.Requests, wm.Requests) ||
			!reflect.DeepEqual(gm.Errors, wm.Errors) || !reflect.DeepEqual(gm.Latency, wm.Latency) ||
			!reflect.DeepEqual(gm.Instances, wm.Instances) || !gm.From.Equal(wm.From) || !gm.To.Equal(wm.To) {
			t.Errorf("%s: step %d at %s merged differently: %d rows %d/%d p50 %g p99 %g %v; from the heartbeat rows %d rows %d/%d p50 %g p99 %g %v",
				what, i, g.Start, gm.Rows, gm.Failed, gm.Answered, gm.P50, gm.P99, gm.Instances, wm.Rows, wm.Failed, wm.Answered, wm.P50, wm.P99, wm.Instances)
		}
		if len(gm.Timing) != len(wm.Timing) {
			t.Errorf("%s: step %d timing %v; want %v", what, i, gm.Timing, wm.Timing)
		}
		for k, v := range wm.Timing {
			if !near(gm.Timing[k], v) {
				t.Errorf("%s: step %d timing %s %g; want %g", what, i, k, gm.Timing[k], v)
			}
		}
		if !reflect.DeepEqual(g.Capacity, w.Capacity) {
			t.Errorf("%s: step %d capacity %+v; from the heartbeat rows %+v", what, i, g.Capacity, w.Capacity)
		}
	}
}

// randCapacity is a heartbeat's backpressure figures, or (one in five)
// none: a row from before schema version 5.
func randCapacity(rng *rand.Rand) *CapacityFigures {
	if rng.IntN(5) == 0 {
		return nil
	}
	c := &CapacityFigures{RejectedRateLimit: uint64(rng.IntN(3)), RejectedQueue: uint64(rng.IntN(3)), RejectedShed: uint64(rng.IntN(2)),
		PeakInFlight: int64(rng.IntN(30)), PeakQueued: int64(rng.IntN(5)), ConcurrencyLimit: int64(20 + 10*rng.IntN(2))}
	c.Rejections = c.RejectedRateLimit + c.RejectedQueue + c.RejectedShed + uint64(rng.IntN(2))
	return c
}

// TestFleetSeriesFromMinuteRowsEqualsHeartbeats: a fleet of six
// instances heartbeats for three hours; the prune pass compacts the rows
// older than an hour and rolls complete minutes up into minute rows. The
// fleet series over ranges not on minute boundaries, at steps of 1, 2, 3
// and 5 minutes, read from the minute rows (plus the heartbeat rows of
// the partial minutes and of the minutes not yet rolled up), equals the
// series merged from the heartbeat rows alone. Then late rows are
// replayed (an old compacted window, a recent rolled minute, a new
// instance): the next prune pass folds them in and the series still
// equals the heartbeat rows' — also after the next pass compacts more
// rows. Minutes older than KeepHeartbeats are deleted.
func TestFleetSeriesFromMinuteRowsEqualsHeartbeats(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		t.Parallel() // MariaDB and PostgreSQL side by side
		s := seriesStore(t, sv)
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(17, 29))
		now := time.Date(2026, 3, 3, 12, 0, 7, 0, time.UTC)
		insts := []string{"web a", "web-b", "web-c", "web-d", "web-e", "web-f"}
		minutesFleet(t, s, rng, now.Add(-3*time.Hour), now, insts)

		check := func(what string, now time.Time) {
			t.Helper()
			ranges := [][2]time.Time{{now.Add(-3*time.Hour - 17*time.Second), now}, {now.Add(-2*time.Hour + 31*time.Second), now.Add(-10*time.Minute + 3*time.Second)}}
			for _, rg := range ranges {
				for _, step := range []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 5 * time.Minute} {
					got, err := s.FleetSeries(ctx, s.fleet, rg[0], rg[1], step)
					if err != nil {
						t.Fatal(err)
					}
					hbs, err := s.readHeartbeats(ctx, s.db, s.fleet, rg[0].UnixMicro(), rg[1].UnixMicro())
					if err != nil {
						t.Fatal(err)
					}
					sameSeries(t, fmt.Sprintf("%s, %s step over %s", what, step, rg[1].Sub(rg[0])), got, seriesOf(hbs, rg[0], rg[1], step))
				}
			}
		}
		if _, err := s.PruneFleet(ctx, s.fleet, now, minutesRetention); err != nil {
			t.Fatal(err)
		}
		lo, hi, err := s.fleetMinutesSpan(ctx, s.fleet)
		if err != nil {
			t.Fatal(err)
		}
		// Three hours of complete minutes, from the first heartbeat row's
		// (the first compacted window's, stamped at its end) up to now − 2
		// min settle.
		if want := minuteFloor(now.Add(-minuteSettle).UnixMicro()); hi != want || lo > now.Add(-3*time.Hour+5*time.Minute).UnixMicro() {
			t.Fatalf("minute rows cover [%s, %s); want up to %s", time.UnixMicro(lo).UTC(), time.UnixMicro(hi).UTC(), time.UnixMicro(want).UTC())
		}
		check("after the first prune", now)

		// Late rows: two in windows compacted long ago (one idle: it
		// changes no count, only the verdict, a gauge and the seconds), one
		// in a rolled minute of the last hour (from a new instance too).
		late := []Heartbeat{
			hb(s.fleet, "web-b", now.Add(-2*time.Hour-7*time.Minute+5*time.Second), "critical",
				Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": 900}, Latency: Hist{40: 900}, CPU: fp(0.99)}),
			hb(s.fleet, "web-c", now.Add(-2*time.Hour-31*time.Minute+5*time.Second), "critical",
				Rollup{Seconds: 10, CPU: fp(0.98)}),
			hb(s.fleet, "web-late", now.Add(-20*time.Minute+3*time.Second), "warning",
				Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": 50}, Latency: Hist{60: 50}, Memory: fp(0.97)}),
		}
		if err := s.WriteHeartbeats(ctx, late); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PruneFleet(ctx, s.fleet, now.Add(time.Second), minutesRetention); err != nil {
			t.Fatal(err)
		}
		check("after late rows and a prune", now)

		// Five minutes on: more rows, another compaction and rollup.
		later := now.Add(5 * time.Minute)
		minutesFleet(t, s, rng, now, later, insts)
		if _, err := s.PruneFleet(ctx, s.fleet, later, minutesRetention); err != nil {
			t.Fatal(err)
		}
		check("five minutes later", later)

		// A day on, everything is past KeepHeartbeats: no minute rows left.
		if _, err := s.PruneFleet(ctx, s.fleet, later.Add(25*time.Hour), minutesRetention); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := s.db.QueryRow(s.rebind(`SELECT COUNT(*) FROM pulsegate_fleet_minutes WHERE fleet = ?`), s.fleet).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d minute rows a day after the last heartbeat (%v); want 0", n, err)
		}
	})
}
