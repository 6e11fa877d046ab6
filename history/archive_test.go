package history

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/monitor"
	"github.com/pulsegate/pulsegate/proxy"
	"go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func openArchive(t *testing.T, dir string, ret Retention) *Archive {
	t.Helper()
	a, err := OpenArchive(dir, zap.NewNop(), func() Retention { return ret })
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// trafficTick is a tick at at with rps requests per second, an error
// rate, a p95 and a CPU figure.
func trafficTick(at time.Time, rps, errRate, p95, cpu float64) *monitor.Tick {
	return &monitor.Tick{Time: at, Figures: map[string]float64{"cpu_usage": cpu},
		Requests: proxy.WindowStats{Window: "1m", ThroughputRPS: rps, ErrorRate: errRate, P95: f(p95)}}
}

// TestArchiveSurvivesRestart: points flushed by one process are back in
// the ring of the next (as serve reopens data_dir), and the 1h range
// answers the same values across the restart.
func TestArchiveSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	a := openArchive(t, dir, DefaultRetention)
	h := mustHistory(t, 10*time.Second, 24*time.Hour)
	end := t0.Add(2 * time.Hour)
	for at := t0; at.Before(end); at = at.Add(10 * time.Second) {
		h.Record(trafficTick(at, 5, 0.01, 0.2, 0.4+0.1*math.Sin(float64(at.Unix())/600)))
	}
	if err := a.Flush(h, end); err != nil {
		t.Fatal(err)
	}
	before := h.Query("1h", time.Hour, end.Add(-time.Second))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	a2 := openArchive(t, dir, DefaultRetention)
	defer a2.Close()
	h2 := mustHistory(t, 10*time.Second, 24*time.Hour)
	if err := a2.Load(h2, end.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	after := h2.Query("1h", time.Hour, end.Add(-time.Second))
	if len(after.Time) != 360 || len(before.Time) != 360 {
		t.Fatalf("1h after restart: %d points (before: %d), want 360", len(after.Time), len(before.Time))
	}
	for i := range before.Time {
		b, c := before.Series["cpu_usage"][i], after.Series["cpu_usage"][i]
		if before.Time[i] != after.Time[i] || b == nil || c == nil || *b != *c {
			t.Fatalf("point %d differs after restart: %v %v / %v %v", i, before.Time[i], b, after.Time[i], c)
		}
	}
	// Ticks after the restart continue the same ring and archive.
	h2.Record(trafficTick(end.Add(30*time.Second), 5, 0.01, 0.2, 0.5))
	if err := a2.Flush(h2, end.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	rows, _ := a2.rows(Tier10s, t0.Unix(), end.Add(time.Hour).Unix())
	if len(rows) != 721 {
		t.Errorf("10s tier holds %d points, want 720 + 1", len(rows))
	}
}

// TestArchiveSevenDays: a week of 10 s ticks on a simulated clock, flushed
// every 10 minutes into the real bbolt file. range=7d is answered from the
// 1 min tier, 720 steps of 14 min, with counts and weighted averages
// aggregated correctly; range=30d from the 1 h tier.
func TestArchiveSevenDays(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := openArchive(t, dir, DefaultRetention)
	defer a.Close()
	a.db.NoSync = true // a simulated week: 1008 transactions; durability is not under test
	h := mustHistory(t, 10*time.Second, 24*time.Hour)
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	end := start.Add(7 * 24 * time.Hour)
	spike := start.Add(50*time.Hour + 7*time.Minute + 20*time.Second)
	for at := start; at.Before(end); at = at.Add(10 * time.Second) {
		// Even minutes: 10 rps, 10 % errors, p95 0.1 s; odd: 30 rps, no errors, p95 0.3 s.
		rps, er, p95 := 10.0, 0.1, 0.1
		if at.Unix()/60%2 == 1 {
			rps, er, p95 = 30, 0, 0.3
		}
		cpu := 0.2
		if at.Equal(spike) {
			cpu = 0.95
		}
		h.Record(trafficTick(at, rps, er, p95, cpu))
		if next := at.Add(10 * time.Second); next.Unix()%600 == 0 {
			if err := a.Flush(h, next); err != nil {
				t.Fatal(err)
			}
		}
	}

	r := Reader{Ring: h, Archive: a}
	req := Request{Name: "7d", From: end.Add(-7 * 24 * time.Hour), To: end}
	v, err := r.View(req, end)
	if err != nil {
		t.Fatal(err)
	}
	if v.Tier != "1m" || v.ResolutionSeconds != 60 || v.StepSeconds != 14*60 {
		t.Fatalf("7d: tier %q, resolution %d s, step %d s; want 1m, 60, 840", v.Tier, v.ResolutionSeconds, v.StepSeconds)
	}
	if len(v.Time) != 720 {
		t.Fatalf("7d: %d points, want 720", len(v.Time))
	}
	spikeSeen := 0
	for i := range v.Time {
		rps, er, p95, cpu := *v.Series["throughput_rps"][i], *v.Series["error_rate"][i], *v.Series["p95_response_time"][i], *v.Series["cpu_usage"][i]
		// 7 even and 7 odd minutes: mean rps 20; errors weighted by
		// requests: 7×10×0.1 / (7×10 + 7×30) = 0.025 (the unweighted mean
		// would be 0.05); p95 the worst minute's.
		if rps != 20 || math.Abs(er-0.025) > 1e-6 || p95 != 0.3 {
			t.Fatalf("step %d (%s): rps %v, error rate %v, p95 %v; want 20, 0.025, 0.3", i, time.Unix(v.Time[i], 0).UTC(), rps, er, p95)
		}
		if cpu == 0.95 {
			spikeSeen++
			if t0 := time.Unix(v.Time[i], 0); spike.Before(t0) || !spike.Before(t0.Add(14*time.Minute)) {
				t.Errorf("CPU spike at %s shown in the step of %s", spike, t0.UTC())
			}
		} else if cpu != 0.2 {
			t.Fatalf("step %d: cpu %v, want 0.2 (the max)", i, cpu)
		}
	}
	if spikeSeen != 1 {
		t.Errorf("the one-tick CPU spike is in %d steps, want 1 (max keeps it)", spikeSeen)
	}

	// The 1 min tier itself: one point per minute, alternating.
	m, err := a.Query("", Tier1m, start.Add(48*time.Hour), start.Add(49*time.Hour))
	if err != nil || len(m.Time) != 60 || m.StepSeconds != 60 {
		t.Fatalf("an hour of the 1m tier: %d points, step %d, %v", len(m.Time), m.StepSeconds, err)
	}
	if *m.Series["throughput_rps"][0] != 10 || *m.Series["error_rate"][0] != 0.1 || *m.Series["throughput_rps"][1] != 30 {
		t.Errorf("1m points: rps %v %v, error rate %v", *m.Series["throughput_rps"][0], *m.Series["throughput_rps"][1], *m.Series["error_rate"][0])
	}

	// 30d from the 1 h tier: 720 hourly steps, of which the week's 168 hold data.
	v30, err := r.View(Request{Name: "30d", From: end.Add(-30 * 24 * time.Hour), To: end}, end)
	if err != nil || v30.Tier != "1h" || v30.StepSeconds != 3600 || len(v30.Time) != 168 {
		t.Fatalf("30d: tier %q step %d, %d points (want 1h, 3600, 168), %v", v30.Tier, v30.StepSeconds, len(v30.Time), err)
	}
	for i := range v30.Time {
		if rps, er := *v30.Series["throughput_rps"][i], *v30.Series["error_rate"][i]; rps != 20 || math.Abs(er-0.025) > 1e-6 {
			t.Fatalf("hour %d: rps %v, error rate %v; want 20, 0.025", i, rps, er)
		}
	}

	// Pruning: the 10 s tier keeps 24 h.
	if rows, _ := a.rows(Tier10s, 0, end.Unix()+1); len(rows) > 8640+60 {
		t.Errorf("10s tier holds %d points after a week, want about 8640", len(rows))
	}
}

// TestArchiveDiskPerDay measures the file after each of 16 simulated days
// of 10 s ticks flushed every minute with pruning on (the figures in
// docs/history.md): day 1 fills the 10 s tier, days 2-14 add 1 min and
// 1 h rollups, from day 15 the 1 min tier is pruned too.
func TestArchiveDiskPerDay(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates two days")
	}
	t.Parallel()
	dir := t.TempDir()
	a := openArchive(t, dir, DefaultRetention)
	defer a.Close()
	a.db.NoSync = true
	h := mustHistory(t, 10*time.Second, 24*time.Hour)
	size := func() int64 {
		fi, err := os.Stat(filepath.Join(dir, FileName))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	at := t0
	var sizes, data []int64
	for day := 0; day < 16; day++ {
		for end := at.Add(24 * time.Hour); at.Before(end); at = at.Add(10 * time.Second) {
			h.Record(trafficTick(at, 12, 0.01, 0.25, 0.3))
			if next := at.Add(10 * time.Second); next.Unix()%60 == 0 {
				if err := a.Flush(h, next); err != nil {
					t.Fatal(err)
				}
			}
		}
		sizes = append(sizes, size())
		data = append(data, a.Size())
	}
	t.Logf("history.db file after each of 16 days: %v bytes", sizes)
	t.Logf("pages in use: %v bytes", data)
	t.Logf("day 1: %d bytes; days 2-14: %d bytes/day; days 15-16 (1m tier pruned too): %d bytes/day",
		data[0], (data[13]-data[0])/13, (data[15]-data[13])/2)
	if data[0] > 2<<20 || data[13] > 8<<20 || data[15]-data[13] > 64<<10 {
		t.Errorf("history.db larger than documented: %v", data)
	}
}

// TestArchiveCorruptFileIsMovedAside: a damaged history.db is logged,
// kept under another name, and an empty archive starts in its place.
func TestArchiveCorruptFileIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, []byte("this is not a bbolt file, it is a note left by someone"), 0o600); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	a, err := OpenArchive(dir, zap.New(core), nil)
	if err != nil {
		t.Fatalf("a corrupt history must not fail the open: %v", err)
	}
	defer a.Close()
	entries := logs.FilterMessage("history_corrupt").All()
	if len(entries) != 1 {
		t.Fatalf("want one history_corrupt line, got %v", logs.All())
	}
	aside, _ := entries[0].ContextMap()["moved_to"].(string)
	if b, err := os.ReadFile(aside); err != nil || string(b) != "this is not a bbolt file, it is a note left by someone" {
		t.Fatalf("the damaged file is not kept at %q: %v", aside, err)
	}
	h := mustHistory(t, 10*time.Second, time.Hour)
	h.Record(trafficTick(t0, 1, 0, 0.1, 0.1))
	if err := a.Flush(h, t0.Add(10*time.Second)); err != nil {
		t.Fatalf("the fresh archive does not take writes: %v", err)
	}
}

// TestArchiveWriteFailureLogsOnce: a failing write is logged once, not at
// every flush, and the recovery is logged.
func TestArchiveWriteFailureLogsOnce(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	a, err := OpenArchive(t.TempDir(), zap.New(core), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := mustHistory(t, 10*time.Second, time.Hour)
	h.Record(trafficTick(t0, 1, 0, 0.1, 0.1))
	// Delete the bucket under the archive: every flush now fails.
	_ = a.db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket(tierBuckets[Tier1m]) })
	for range 3 {
		if a.Flush(h, t0.Add(time.Minute)) == nil {
			t.Fatal("flush into a missing bucket succeeded")
		}
	}
	if n := len(logs.FilterMessage("history_write_failed").All()); n != 1 {
		t.Fatalf("history_write_failed logged %d times, want once", n)
	}
	_ = a.db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket(tierBuckets[Tier1m]); return err })
	if err := a.Flush(h, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := len(logs.FilterMessage("history_write_recovered").All()); n != 1 {
		t.Fatalf("history_write_recovered logged %d times, want once", n)
	}
}

// BenchmarkFlushMinute is the history loop's cost once a minute: six new
// 10 s points, their 1 min and 1 h rollups and the prune, in one
// transaction with fsync, on a file holding a full day of 10 s points.
func BenchmarkFlushMinute(b *testing.B) {
	a, err := OpenArchive(b.TempDir(), zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	h, _ := New(10*time.Second, 24*time.Hour)
	at := t0
	a.db.NoSync = true
	for range 8640 {
		h.Record(trafficTick(at, 12, 0.01, 0.25, 0.3))
		at = at.Add(10 * time.Second)
	}
	_ = a.Flush(h, at)
	a.db.NoSync = false
	b.ResetTimer()
	for range b.N {
		for range 6 {
			h.Record(trafficTick(at, 12, 0.01, 0.25, 0.3))
			at = at.Add(10 * time.Second)
		}
		if err := a.Flush(h, at); err != nil {
			b.Fatal(err)
		}
	}
}
