package store

import (
	"context"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/latency"
)

// TestFleetReadsFollowTheStore: the fleet view's reads keep decoded rows
// between calls, yet every answer is what the tables hold now: rows
// written by another sidecar, a late row stamped behind the newest one, a
// stale instance's old latest row, a merged row that compaction grows, and
// rows pruned away.
func TestFleetReadsFollowTheStore(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		ctx := context.Background()
		f := fleetName(t)
		reader := openSQLTest(t, sv.storeDSN(sv.adminUser(), "", testDB), WithInstance(f, "web-1"))
		other := openSQLTest(t, sv.storeDSN(sv.adminUser(), "", testDB), WithInstance(f, "web-2"))
		r := func(n uint64) Rollup {
			return Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": n}, Latency: Hist{latency.Index(20 * time.Millisecond): n}}
		}
		write := func(s *SQL, hbs ...Heartbeat) {
			t.Helper()
			if err := s.WriteHeartbeats(ctx, hbs); err != nil {
				t.Fatal(err)
			}
		}
		merged := func(from, to time.Time) uint64 {
			t.Helper()
			m, err := reader.MergedRollup(ctx, f, from, to)
			if err != nil {
				t.Fatal(err)
			}
			if m.Latency.Count() != m.Answered {
				t.Errorf("merged buckets %d != answered %d", m.Latency.Count(), m.Answered)
			}
			return m.Answered
		}
		// t0 is a 5-minute boundary: rows at t0+10s … t0+60s.
		for i := range 6 {
			write(reader, hb(f, "web-1", t0.Add(time.Duration(i+1)*10*time.Second), "ok", r(10)))
		}
		write(other, hb(f, "web-3", t0.Add(-10*time.Minute), "critical", r(7))) // long silent: stale
		now := t0.Add(time.Minute)
		if got := merged(now.Add(-time.Minute), now); got != 60 {
			t.Fatalf("first read: %d answered; want 60", got)
		}
		if got := merged(now.Add(-time.Minute), now); got != 60 {
			t.Errorf("second read (cached rows): %d answered; want 60", got)
		}
		// Another sidecar's rows, and a late row stamped 30 s behind the
		// newest cached one (beyond the watermark's lag).
		write(other, hb(f, "web-2", t0.Add(60*time.Second), "ok", r(5)), hb(f, "web-2", t0.Add(30*time.Second), "ok", r(3)))
		if got := merged(now.Add(-time.Minute), now); got != 68 {
			t.Errorf("after web-2's rows (one late): %d answered; want 68", got)
		}
		insts, err := reader.Instances(ctx, f, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(insts) != 3 || insts[0].Heartbeat.Rollup.Answered() != 10 || insts[1].Heartbeat.Rollup.Answered() != 5 || !insts[2].Stale || insts[2].Heartbeat.Rollup.Answered() != 7 {
			t.Fatalf("instances %+v; want web-1 (10), web-2 (5), web-3 stale (7)", insts)
		}
		// web-2's newer heartbeat replaces its latest row.
		write(other, hb(f, "web-2", t0.Add(70*time.Second), "warning", r(9)))
		insts, _ = reader.Instances(ctx, f, now.Add(10*time.Second))
		if len(insts) != 3 || insts[1].Status != "warning" || insts[1].Heartbeat.Rollup.Answered() != 9 {
			t.Errorf("web-2 after its next heartbeat: %+v; want warning, 9", insts[1])
		}

		// Compaction folds the fine rows into one per instance and window;
		// a late row for the window grows the merged row in place.
		window := t0.Add(5 * time.Minute) // the window (t0, t0+5m]
		before := merged(t0, window)
		if _, err := reader.PruneFleet(ctx, f, t0.Add(2*time.Hour), Retention{KeepFine: time.Hour, KeepHeartbeats: 48 * time.Hour, KeepStale: 48 * time.Hour}); err != nil {
			t.Fatal(err)
		}
		if got := merged(t0, window); got != before {
			t.Errorf("after compaction: %d answered; want %d", got, before)
		}
		write(other, hb(f, "web-2", t0.Add(40*time.Second), "ok", r(100)))
		if _, err := reader.PruneFleet(ctx, f, t0.Add(2*time.Hour), Retention{KeepFine: time.Hour, KeepHeartbeats: 48 * time.Hour, KeepStale: 48 * time.Hour}); err != nil {
			t.Fatal(err)
		}
		if got := merged(t0, window); got != before+100 {
			t.Errorf("after a late row compacted into its window: %d answered; want %d", got, before+100)
		}
		// Pruned by age: gone from the answers.
		if _, err := reader.PruneFleet(ctx, f, t0.Add(3*24*time.Hour), Retention{KeepFine: time.Hour, KeepHeartbeats: time.Hour, KeepStale: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if got := merged(t0.Add(-time.Hour), window); got != 0 {
			t.Errorf("after pruning everything: %d answered; want 0", got)
		}
		if insts, _ := reader.Instances(ctx, f, now); len(insts) != 0 {
			t.Errorf("after pruning every instance: %+v", insts)
		}
	})
}
