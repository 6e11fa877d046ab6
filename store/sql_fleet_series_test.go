package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"
)

// seriesDB is this file's private database on each server (created once,
// dropped when the package's tests end).
var seriesDB = testDB + "_series"

var seriesDBOnce = map[string]*sync.Once{"mariadb": {}, "postgres": {}}

// seriesStore opens a store on the private database under a fleet of its own.
func seriesStore(t *testing.T, sv *server) *SQL {
	t.Helper()
	var err error
	seriesDBOnce[sv.name].Do(func() { err = sv.createDB(seriesDB) })
	if err != nil {
		t.Fatalf("creating %s on %s: %v", seriesDB, sv.name, err)
	}
	return openSQLTest(t, sv.storeDSN(sv.adminUser(), "", seriesDB), WithInstance(fleetName(t), "web-1"))
}

// TestFleetSeriesMergesInstancesPerStep: three instances heartbeat every
// 10 s for two minutes with different latencies and loads; each 30 s step
// of the fleet series has p50/p99 from the merged buckets (equal, within
// 2 %, to the percentiles over every latency of the step, and far from the
// average of the instances' p99s), throughput summed over the instances,
// error rate = failures ÷ answered, CPU and memory of the highest
// instance, and the worst verdict. Another fleet's rows stay out.
func TestFleetSeriesMergesInstancesPerStep(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		s := seriesStore(t, sv)
		ctx := context.Background()
		base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		rng := rand.New(rand.NewPCG(7, 11))
		type inst struct {
			name     string
			median   float64
			perTick  int
			failEach int // one failure per failEach requests
			cpu, mem float64
			status   string
		}
		insts := []inst{
			{"web-a", 0.010, 200, 100, 0.20, 0.40, "ok"},
			{"web-b", 0.050, 100, 20, 0.70, 0.30, "ok"},
			{"web-c", 0.600, 10, 5, 0.35, 0.90, "warning"},
		}
		step := 30 * time.Second
		// Every latency and count per step, as a client would have seen them.
		type want struct {
			lat              []float64
			answered, failed uint64
			instP99          map[string]Hist
		}
		wants := map[int64]*want{}
		var batch []Heartbeat
		for tick := 1; tick <= 12; tick++ {
			at := base.Add(time.Duration(tick) * 10 * time.Second)
			k := at.Add(-time.Microsecond).Truncate(step).Unix()
			w := wants[k]
			if w == nil {
				w = &want{instP99: map[string]Hist{}}
				wants[k] = w
			}
			for _, in := range insts {
				h := Hist{}
				for range in.perTick {
					d := time.Duration(in.median * math.Exp(rng.NormFloat64()*0.5) * float64(time.Second))
					h.Record(d)
					w.lat = append(w.lat, d.Seconds())
				}
				if w.instP99[in.name] == nil {
					w.instP99[in.name] = Hist{}
				}
				w.instP99[in.name].Merge(h)
				failed := uint64(in.perTick / in.failEach)
				w.answered += uint64(in.perTick)
				w.failed += failed
				r := Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": uint64(in.perTick) - failed, "5xx": failed},
					Errors: map[string]uint64{"app_5xx": failed}, Latency: h, CPU: fp(in.cpu), Memory: fp(in.mem)}
				batch = append(batch, hb(s.fleet, in.name, at, in.status, r))
			}
		}
		// A neighbour fleet in the same tables.
		other := hb(s.fleet+"_other", "web-x", base.Add(20*time.Second), "critical",
			Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": 5000}, Latency: Hist{10: 5000}, CPU: fp(1)})
		if err := s.WriteHeartbeats(ctx, append(batch, other)); err != nil {
			t.Fatal(err)
		}

		got, err := s.FleetSeries(ctx, s.fleet, base, base.Add(2*time.Minute), step)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Steps) != 4 || got.Step != step {
			t.Fatalf("%d steps of %s; want 4 of 30s", len(got.Steps), got.Step)
		}
		if len(got.Instances) != 3 || got.Instances[0] != "web-a" || got.Instances[2] != "web-c" {
			t.Fatalf("instances %v; want web-a, web-b, web-c (not the other fleet's)", got.Instances)
		}
		for _, st := range got.Steps {
			w := wants[st.Start.Unix()]
			if w == nil {
				t.Fatalf("step at %s holds no heartbeat of the test", st.Start)
			}
			m := st.Merged
			if m.Answered != w.answered || m.Failed != w.failed {
				t.Errorf("step %s: %d answered, %d failed; want %d, %d", st.Start, m.Answered, m.Failed, w.answered, w.failed)
			}
			if want := float64(w.failed) / float64(w.answered); math.Abs(m.ErrorRate-want) > 1e-12 {
				t.Errorf("step %s: error rate %g; want errors ÷ answered = %g", st.Start, m.ErrorRate, want)
			}
			// 200 + 100 + 10 requests every 10 s on the three instances.
			if math.Abs(st.ThroughputRPS-31) > 1e-9 {
				t.Errorf("step %s: throughput %g req/s; want the instances' rates summed, 31", st.Start, st.ThroughputRPS)
			}
			sort.Float64s(w.lat)
			exact := func(q float64) float64 {
				rank := min(max(int(q*float64(len(w.lat))+0.5), 1), len(w.lat))
				return w.lat[rank-1]
			}
			for _, c := range []struct {
				name string
				q    float64
				got  float64
			}{{"p50", 0.5, m.P50}, {"p99", 0.99, m.P99}} {
				if e := exact(c.q); math.Abs(c.got-e)/e > 0.02 {
					t.Errorf("step %s: fleet %s %g; over every latency %g (want within 2%%)", st.Start, c.name, c.got, e)
				}
			}
			var avg float64
			for _, h := range w.instP99 {
				avg += h.Quantile(0.99) / 3
			}
			if math.Abs(avg-m.P99)/m.P99 < 0.1 {
				t.Errorf("step %s: the average of the instances' p99 (%g) is close to the merged p99 (%g): the test data cannot tell them apart", st.Start, avg, m.P99)
			}
			if st.CPU == nil || *st.CPU != 0.70 || st.Memory == nil || *st.Memory != 0.90 {
				t.Errorf("step %s: cpu %v memory %v; want the highest instance's, 0.70 and 0.90", st.Start, st.CPU, st.Memory)
			}
			if st.Status != "warning" {
				t.Errorf("step %s: status %q; want the worst instance's, warning", st.Start, st.Status)
			}
		}

		// A step shorter than the heartbeat interval is raised to it: no
		// empty steps between heartbeats, no halved rates.
		fine, err := s.FleetSeries(ctx, s.fleet, base, base.Add(2*time.Minute), 4*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if fine.Step != 12*time.Second {
			t.Errorf("a 4s step over 10s heartbeats became %s; want 12s (the next multiple of 4s ≥ 10s)", fine.Step)
		}
		for _, st := range fine.Steps {
			if st.ThroughputRPS < 25 {
				t.Errorf("step %s: throughput %g req/s; a step between heartbeats must not halve the rate", st.Start, st.ThroughputRPS)
			}
		}

		// Nothing in range: no steps, no error.
		empty, err := s.FleetSeries(ctx, s.fleet, base.Add(-time.Hour), base, step)
		if err != nil || len(empty.Steps) != 0 || len(empty.Instances) != 0 {
			t.Errorf("an empty range: %d steps, %v, %v", len(empty.Steps), empty.Instances, err)
		}
	})
}

// BenchmarkFleetSeries24h: the fleet trend query over 24 h (the
// dashboard's 2-minute step) for 20 and 200 instances as the retention
// leaves them (the last hour every 10 s, 5-minute merged rows before: 636
// rows per instance, ~30 latency buckets each). Heartbeats is the series
// merged from every heartbeat row (FleetSeries before the minute rows, and
// its path when none are rolled up); FleetSeries reads the minute rows the
// prune pass wrote and the heartbeat rows after them (the last 7 minutes
// just before a pass, the last 2 just after); PruneFleet is a prune pass
// with nothing new to roll up (its scans for changed minutes).
func BenchmarkFleetSeries24h(b *testing.B) {
	for _, sv := range []*server{mariadb, postgres} {
		for _, n := range []int{20, 200} {
			b.Run(fmt.Sprintf("%s/%d", sv.name, n), func(b *testing.B) { benchFleetSeries(b, sv, n) })
		}
	}
}

func benchFleetSeries(b *testing.B, sv *server, instances int) {
	var err error
	seriesDBOnce[sv.name].Do(func() { err = sv.createDB(seriesDB) })
	if err != nil {
		b.Skipf("%s: %v", sv.name, err)
	}
	s, err := OpenSQL(context.Background(), sv.storeDSN(sv.adminUser(), "", seriesDB), nil,
		WithInstance(fmt.Sprintf("bench_%d", time.Now().UnixNano()%1e9), "web-1"))
	if err != nil {
		b.Skipf("%s: %v", sv.name, err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(3, 5))
	row := func(inst string, at time.Time, secs float64) Heartbeat {
		h := Hist{}
		n := int(secs * 20)
		for range n {
			h.Record(time.Duration(0.02 * math.Exp(rng.NormFloat64()*0.8) * float64(time.Second)))
		}
		return hb(s.fleet, inst, at, "ok", Rollup{Seconds: secs, Requests: map[string]uint64{"2xx": uint64(n)}, Latency: h, CPU: fp(0.4), Memory: fp(0.5)})
	}
	var batch []Heartbeat
	flush := func() {
		if err := s.WriteHeartbeats(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range instances {
		inst := fmt.Sprintf("web-%03d", i)
		for at := now.Add(-24 * time.Hour).Add(5 * time.Minute); !at.After(now.Add(-time.Hour)); at = at.Add(5 * time.Minute) {
			batch = append(batch, row(inst, at, 300))
		}
		for at := now.Add(-time.Hour).Add(10 * time.Second); !at.After(now); at = at.Add(10 * time.Second) {
			batch = append(batch, row(inst, at, 10))
			if len(batch) >= 200 {
				flush()
			}
		}
		flush()
	}
	// The 5-minute rows as the compaction leaves them (span_us = window),
	// so the prune pass below has nothing to compact.
	if _, err := s.db.ExecContext(ctx, s.rebind(`UPDATE pulsegate_heartbeats SET span_us = ? WHERE fleet = ? AND ts_us <= ?`),
		DefaultRetention.Window.Microseconds(), s.fleet, now.Add(-time.Hour).UnixMicro()); err != nil {
		b.Fatal(err)
	}
	from := now.Add(-24 * time.Hour)
	step := 120 * time.Second
	b.Run("Heartbeats", func(b *testing.B) {
		for b.Loop() {
			hbs, err := s.readHeartbeats(ctx, s.db, s.fleet, from.UnixMicro(), now.UnixMicro())
			if fs := seriesOf(hbs, from, now, step); err != nil || len(fs.Instances) != instances {
				b.Fatal(err, len(fs.Instances))
			}
		}
	})
	// Roll the day up as a prune pass 5 minutes ago left it (the minute
	// rows end 7 minutes ago: the most heartbeat rows a read takes between
	// two passes), then as one now left it (they end 2 minutes ago).
	for _, lag := range []time.Duration{5 * time.Minute, 0} {
		at := now.Add(-lag)
		start := time.Now()
		for range 10 {
			if _, err := s.PruneFleet(ctx, s.fleet, at, DefaultRetention); err != nil {
				b.Fatal(err)
			}
			if _, hi, err := s.fleetMinutesSpan(ctx, s.fleet); err != nil || hi == minuteFloor(at.Add(-minuteSettle).UnixMicro()) {
				break
			}
		}
		b.Logf("%d instances: rolling up to %s before now took %s", instances, lag+minuteSettle, time.Since(start).Round(time.Millisecond))
		b.Run(fmt.Sprintf("FleetSeries/rolled-%s-ago", lag+minuteSettle), func(b *testing.B) {
			for b.Loop() {
				fs, err := s.FleetSeries(ctx, s.fleet, from, now, step)
				if err != nil || len(fs.Instances) != instances {
					b.Fatal(err, len(fs.Instances))
				}
			}
		})
	}
	b.Run("PruneFleet", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.PruneFleet(ctx, s.fleet, now, DefaultRetention); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The parts of that pass: the compaction's scan for fine rows (there
	// before the minute rows), the same scan for the windows it will
	// compact (compactingMinutes), and the rollup's comparison.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	window := DefaultRetention.Window.Microseconds()
	before := now.Add(-DefaultRetention.KeepFine).UnixMicro() / window * window
	b.Run("PruneFleet/compaction-scan", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := s.compact(ctx, conn, s.fleet, before, window); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PruneFleet/compactingMinutes", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.compactingMinutes(ctx, conn, s.fleet, before, window); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PruneFleet/rollup", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.rollupFleetMinutes(ctx, conn, s.fleet, now, DefaultRetention, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
