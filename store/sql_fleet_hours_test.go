package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"
)

// hoursDB is the long-history test's private database on each server.
var hoursDB = testDB + "_hours"

// hoursRetention keeps heartbeat rows a day, the last 4 h compared by each
// pass (where a late row lands); 60 s rows are one
// window each: nothing is compacted, so the raw rows are what the minute
// rows merged), minute rows 14 days and hour rows 400 (the defaults).
var hoursRetention = Retention{KeepStale: 24 * time.Hour, KeepFine: 4 * time.Hour, Window: time.Minute, KeepHeartbeats: 24 * time.Hour,
	KeepMinutes: 14 * 24 * time.Hour, KeepHours: 400 * 24 * time.Hour}

// hoursRows makes one heartbeat row per instance and minute stamped in
// (from, to], in series order (time, instance).
func hoursRows(fleet string, rng *rand.Rand, from, to time.Time, insts []string) []Heartbeat {
	statuses := []string{"ok", "ok", "ok", "ok", "healthy", "warning", "degraded", "critical"}
	var out []Heartbeat
	for at := from.Add(time.Minute); !at.After(to); at = at.Add(time.Minute) {
		for _, name := range insts {
			h := Hist{}
			n := rng.IntN(60)
			for range n {
				h.Record(time.Duration(0.03 * math.Exp(rng.NormFloat64()) * float64(time.Second)))
			}
			failed := uint64(rng.IntN(n/5 + 1))
			r := Rollup{Seconds: 60, Requests: map[string]uint64{"2xx": uint64(n) - failed, "5xx": failed},
				Errors: map[string]uint64{"app_5xx": failed}, Latency: h,
				Timing: map[string]float64{"total": rng.Float64() * float64(n), "count": float64(n)}}
			if rng.IntN(4) > 0 {
				r.CPU = fp(rng.Float64())
			}
			if rng.IntN(4) > 0 {
				r.Memory = fp(rng.Float64())
			}
			r.Capacity = randCapacity(rng)
			row := hb(fleet, name, at, statuses[rng.IntN(len(statuses))], r)
			row.Interval = time.Minute
			out = append(out, row)
		}
	}
	return out
}

func writeRows(t *testing.T, s *SQL, rows []Heartbeat) {
	t.Helper()
	for len(rows) > 0 {
		n := min(len(rows), 500)
		if err := s.WriteHeartbeats(context.Background(), rows[:n]); err != nil {
			t.Fatal(err)
		}
		rows = rows[n:]
	}
}

// TestFleetHistoryLongRangesFromMinuteAndHourRows: four instances
// heartbeat every minute for three days while the prune pass runs every
// six hours (simulated clock) and deletes heartbeat rows after a day. The
// fleet series over 7 days (14-minute steps: the minute rows) and over 30
// and 365 days (1 h and 13 h steps: the hour rows) equals, step by step —
// counts, merged buckets, p50/p95/p99, verdicts, gauges — the series
// merged from every raw row written, though two of the three days are no
// longer in the heartbeat table. Each hour row equals the merge of its
// minute rows; a late row recomputes its minute's hour. Minute rows past
// history.retention_1m and hour rows past history.retention_1h are
// deleted, and the series still answers from the hour rows meanwhile.
func TestFleetHistoryLongRangesFromMinuteAndHourRows(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		t.Parallel() // MariaDB and PostgreSQL side by side: the longest test of the package
		if err := sv.createDB(hoursDB); err != nil {
			t.Fatalf("creating %s on %s: %v", hoursDB, sv.name, err)
		}
		s := openSQLTest(t, sv.storeDSN(sv.adminUser(), "", hoursDB), WithInstance(fleetName(t), "web-1"))
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(12, 34))
		insts := []string{"web-a", "web-b", "web-c", "web-d"}
		start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		end := start.Add(72 * time.Hour)
		var all []Heartbeat
		for at := start; at.Before(end); at = at.Add(6 * time.Hour) {
			rows := hoursRows(s.fleet, rng, at, at.Add(6*time.Hour), insts)
			writeRows(t, s, rows)
			all = append(all, rows...)
			if _, err := s.PruneFleet(ctx, s.fleet, at.Add(6*time.Hour), hoursRetention); err != nil {
				t.Fatal(err)
			}
		}
		var held int
		if err := s.db.QueryRow(s.rebind(`SELECT COUNT(*) FROM pulsegate_heartbeats WHERE fleet = ?`), s.fleet).Scan(&held); err != nil || held > 24*60*len(insts)+len(insts) {
			t.Fatalf("%d heartbeat rows held (%v); want at most a day's", held, err)
		}

		raw := func(from, to time.Time) []Heartbeat {
			var out []Heartbeat
			for _, h := range all {
				if h.Time.After(from) && !h.Time.After(to) {
					out = append(out, h)
				}
			}
			return out
		}
		check := func(what string, now time.Time) {
			t.Helper()
			for _, c := range []struct {
				span, step time.Duration
			}{{7 * 24 * time.Hour, 14 * time.Minute}, {30 * 24 * time.Hour, time.Hour}, {365 * 24 * time.Hour, 13 * time.Hour}} {
				from := now.Add(-c.span)
				got, err := s.FleetSeries(ctx, s.fleet, from, now, c.step)
				if err != nil {
					t.Fatal(err)
				}
				want := seriesOf(raw(from, now), from, now, c.step)
				if len(want.Steps) < int(72*time.Hour/c.step)-1 {
					t.Fatalf("%s: only %d steps expected over %s", what, len(want.Steps), c.span)
				}
				sameSeries(t, fmt.Sprintf("%s, range %s in %s steps", what, c.span, c.step), got, want)
			}
		}
		check("three days", end)

		// Each hour row is the merge of its minute rows.
		hourRowsMatch := func(what string, wantHours int) {
			t.Helper()
			hours, err := s.readMergedRows(ctx, s.db, tableFleetHours, s.fleet, 0, math.MaxInt64)
			if err != nil {
				t.Fatal(err)
			}
			if len(hours) != wantHours {
				t.Errorf("%s: %d hour rows; want %d (the complete hours)", what, len(hours), wantHours)
			}
			for _, h := range hours {
				mins, err := s.readFleetMinutes(ctx, s.fleet, h.start.UnixMicro(), h.start.Add(time.Hour).UnixMicro())
				if err != nil {
					t.Fatal(err)
				}
				if len(mins) < 60 {
					continue // (partly) past the minute rows' retention: kept as written
				}
				m := newMinuteRow(h.start)
				for _, mi := range mins {
					m.addMinute(mi)
				}
				if m.rows != h.rows || !reflect.DeepEqual(m.doc, h.doc) || m.encodeInsts() != h.encodeInsts() {
					t.Errorf("%s: hour %s: %d rows %v; its %d minute rows merge to %d rows %v", what, h.start, h.rows, h.doc.Requests, len(mins), m.rows, m.doc.Requests)
				}
			}
		}
		hourRowsMatch("three days", 71)
		for _, table := range []string{tableFleetMinutes, tableFleetHours} {
			var n, bytes int64
			if err := s.db.QueryRow(s.rebind(`SELECT COUNT(*), SUM(LENGTH(doc) + LENGTH(insts)) FROM `+table+` WHERE fleet = ?`), s.fleet).Scan(&n, &bytes); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d rows of %d instances, %d bytes of doc+insts a row on average", table, n, len(insts), bytes/n)
		}

		// A late row in a rolled minute of the last day: the next pass
		// recomputes the minute and its hour.
		late := hb(s.fleet, "web-late", end.Add(-3*time.Hour-20*time.Minute+30*time.Second), "critical",
			Rollup{Seconds: 60, Requests: map[string]uint64{"2xx": 700}, Latency: Hist{90: 700}, CPU: fp(0.999)})
		late.Interval = time.Minute
		writeRows(t, s, []Heartbeat{late})
		all = append(all, late)
		sort.SliceStable(all, func(i, j int) bool {
			if !all[i].Time.Equal(all[j].Time) {
				return all[i].Time.Before(all[j].Time)
			}
			return all[i].Instance < all[j].Instance
		})
		if _, err := s.PruneFleet(ctx, s.fleet, end.Add(time.Second), hoursRetention); err != nil {
			t.Fatal(err)
		}
		check("after a late row", end)
		hourRowsMatch("after a late row", 71)

		// history.retention_1m of 36 h: the older minute rows go, the
		// hour rows stay and the 30 and 365 day series are unchanged.
		short := hoursRetention
		short.KeepMinutes = 36 * time.Hour
		if _, err := s.PruneFleet(ctx, s.fleet, end.Add(time.Second), short); err != nil {
			t.Fatal(err)
		}
		var oldest int64
		if err := s.db.QueryRow(s.rebind(`SELECT MIN(minute_us) FROM pulsegate_fleet_minutes WHERE fleet = ?`), s.fleet).Scan(&oldest); err != nil {
			t.Fatal(err)
		}
		if b := end.Add(time.Second - 36*time.Hour); time.UnixMicro(oldest).Before(b) {
			t.Errorf("oldest minute row %s; want none before %s", time.UnixMicro(oldest).UTC(), b)
		}
		for _, c := range []time.Duration{30 * 24 * time.Hour, 365 * 24 * time.Hour} {
			step := time.Hour
			if c > 30*24*time.Hour {
				step = 13 * time.Hour
			}
			got, err := s.FleetSeries(ctx, s.fleet, end.Add(-c), end, step)
			if err != nil {
				t.Fatal(err)
			}
			sameSeries(t, fmt.Sprintf("minute rows pruned, range %s", c), got, seriesOf(raw(end.Add(-c), end), end.Add(-c), end, step))
		}
		hourRowsMatch("minute rows pruned", 71)

		// 300 days on: no minute row left, every hour row kept; 401 days
		// on: none.
		count := func(table string) int {
			var n int
			if err := s.db.QueryRow(s.rebind(`SELECT COUNT(*) FROM `+table+` WHERE fleet = ?`), s.fleet).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if _, err := s.PruneFleet(ctx, s.fleet, end.Add(300*24*time.Hour), hoursRetention); err != nil {
			t.Fatal(err)
		}
		if m, h := count(tableFleetMinutes), count(tableFleetHours); m != 0 || h != 71 {
			t.Errorf("300 days on: %d minute rows, %d hour rows; want 0 and 71", m, h)
		}
		if _, err := s.PruneFleet(ctx, s.fleet, end.Add(401*24*time.Hour), hoursRetention); err != nil {
			t.Fatal(err)
		}
		if h := count(tableFleetHours); h != 0 {
			t.Errorf("401 days on: %d hour rows; want 0", h)
		}
	})
}
