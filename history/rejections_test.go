package history

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/monitor"
	"github.com/pulsegate/pulsegate/proxy"
	"go.etcd.io/bbolt"
)

// rejTick is a tick at at carrying backpressure's cumulative rejection
// counters (by reason, as backpressure.State reports them) and rps.
func rejTick(at time.Time, rps float64, rejections map[string]uint64) *monitor.Tick {
	c := make(map[string]uint64, len(rejections))
	for k, v := range rejections {
		c[k] = v
	}
	return &monitor.Tick{Time: at, Requests: proxy.WindowStats{Window: "1m", ThroughputRPS: rps},
		Backpressure: &backpressure.State{Rejections: c}}
}

func val(t *testing.T, v View, name string, i int) float64 {
	t.Helper()
	col, ok := v.Series[name]
	if !ok {
		t.Fatalf("no series %s in the answer", name)
	}
	if i >= len(col) || col[i] == nil {
		return math.NaN()
	}
	return *col[i]
}

// TestRejectionRatesFromCounters: two 5 s ticks per 10 s step turn the
// limiter's cumulative counters into the rate over the step, in all and
// by cause; the first tick (no earlier counters) and a tick without
// limiter state are not measured (null), never 0.
func TestRejectionRatesFromCounters(t *testing.T) {
	h := mustHistory(t, 10*time.Second, time.Hour)
	c := map[string]uint64{"rate": 0, "rate_client": 0, "queue_full": 0, "queue_timeout": 0, "overload:cpu": 0}
	h.Record(rejTick(t0, 1, c)) // baseline
	// Step t0+10s: the ticks at +10 s (covering the 10 s since the
	// baseline) and +15 s (5 s).
	c["rate"], c["queue_full"] = 30, 10 // 40 in 10 s
	h.Record(rejTick(t0.Add(10*time.Second), 1, c))
	c["rate_client"], c["overload:cpu"] = 5, 15 // 20 more in 5 s
	h.Record(rejTick(t0.Add(15*time.Second), 1, c))
	// Step t0+20s: nothing rejected.
	h.Record(rejTick(t0.Add(20*time.Second), 1, c))
	// Step t0+30s: no limiter state (nil Backpressure): not measured, and
	// the next tick has no baseline.
	h.Record(&monitor.Tick{Time: t0.Add(30 * time.Second), Requests: proxy.WindowStats{Window: "1m", ThroughputRPS: 1}})
	c["rate"] = 100
	h.Record(rejTick(t0.Add(40*time.Second), 1, c))

	v := h.QueryRange("", t0, t0.Add(50*time.Second))
	if len(v.Time) != 5 {
		t.Fatalf("%d points, want 5", len(v.Time))
	}
	want := []struct{ all, rate, queue, shed float64 }{
		{math.NaN(), math.NaN(), math.NaN(), math.NaN()}, // the baseline tick
		{4, 35.0 / 15, 10.0 / 15, 1},                     // 60 in 15 s: rate limit 35, queue 10, shed 15
		{0, 0, 0, 0},                                     // no growth
		{math.NaN(), math.NaN(), math.NaN(), math.NaN()}, // no limiter state
		{math.NaN(), math.NaN(), math.NaN(), math.NaN()}, // no baseline again
	}
	for i, w := range want {
		got := []float64{val(t, v, "rejections_rps", i), val(t, v, "rejections_rate_limit_rps", i), val(t, v, "rejections_queue_rps", i), val(t, v, "rejections_shed_rps", i)}
		for j, x := range []float64{w.all, w.rate, w.queue, w.shed} {
			if math.IsNaN(x) != math.IsNaN(got[j]) || (!math.IsNaN(x) && math.Abs(got[j]-x) > 1e-5) {
				t.Errorf("point %d: rejections (all, rate limit, queue, shed) %v, want %v", i, got, []float64{w.all, w.rate, w.queue, w.shed})
				break
			}
		}
	}
	// The rejection series follow every older series, in that order.
	names := Series()
	if n := len(names); names[n-4] != "rejections_rps" || names[n-1] != "rejections_shed_rps" || names[0] != "memory_usage" || names[16] != "in_flight" {
		t.Errorf("series order: %v", names)
	}
}

// TestRejectionRollupsCompose: two hours of 5 s ticks with random bursts
// of rejections, flushed every minute into the real bbolt file. Every
// rejection is in the series exactly once: the 1 min points' rate × 60
// and the 1 h points' rate × 3600 add up to the rejections counted, and
// an hour rolled up from minutes equals the hour from the 10 s points
// (as throughput_rps composes).
func TestRejectionRollupsCompose(t *testing.T) {
	a := openArchive(t, t.TempDir(), DefaultRetention)
	defer a.Close()
	h := mustHistory(t, 10*time.Second, 24*time.Hour)
	rng := rand.New(rand.NewPCG(4, 12))
	c := map[string]uint64{"rate": 0, "queue_timeout": 0, "overload:error_rate": 0}
	var counted [4]float64 // all, rate limit, queue, shed: after the baseline tick
	end := t0.Add(2 * time.Hour)
	for at := t0; at.Before(end); at = at.Add(5 * time.Second) {
		if at.After(t0) && rng.IntN(10) == 0 { // a burst in one tick of ten
			r, q, s := uint64(rng.IntN(200)), uint64(rng.IntN(20)), uint64(rng.IntN(50))
			c["rate"] += r
			c["queue_timeout"] += q
			c["overload:error_rate"] += s
			counted[0] += float64(r + q + s)
			counted[1] += float64(r)
			counted[2] += float64(q)
			counted[3] += float64(s)
		}
		h.Record(rejTick(at, 10+5*math.Sin(float64(at.Unix())/300), c))
		if next := at.Add(5 * time.Second); next.Unix()%60 == 0 {
			if err := a.Flush(h, next); err != nil {
				t.Fatal(err)
			}
		}
	}
	if counted[0] == 0 {
		t.Fatal("no rejections planted")
	}
	names := []string{"rejections_rps", "rejections_rate_limit_rps", "rejections_queue_rps", "rejections_shed_rps"}
	sum := func(tier int) [4]float64 {
		v, err := a.Query("", tier, t0, end)
		if err != nil {
			t.Fatal(err)
		}
		var out [4]float64
		for i := range v.Time {
			for j, n := range names {
				if x := val(t, v, n, i); !math.IsNaN(x) {
					out[j] += x * float64(v.StepSeconds)
				}
			}
		}
		return out
	}
	m, hr := sum(Tier1m), sum(Tier1h)
	for j, n := range names {
		// Rates are over the seconds their ticks covered, so even the
		// first step (its tick is the baseline) adds up.
		if math.Abs(m[j]-counted[j]) > 1e-4*counted[j]+1 {
			t.Errorf("%s: 1 min points add up to %.2f rejections, %.0f counted", n, m[j], counted[j])
		}
		if math.Abs(hr[j]-m[j]) > 1e-4*counted[j]+1 {
			t.Errorf("%s: 1 h points add up to %.2f, the 1 min points to %.2f", n, hr[j], m[j])
		}
	}
	// An hour from its minutes equals the hour from its 10 s points.
	for hour := t0; hour.Before(end); hour = hour.Add(time.Hour) {
		tens, _ := a.rows(Tier10s, hour.Unix(), hour.Add(time.Hour).Unix())
		direct := aggregate(hour.Unix(), tens)
		stored, _ := a.rows(Tier1h, hour.Unix(), hour.Unix()+1)
		if len(stored) != 1 {
			t.Fatalf("hour %s: %d rows", hour, len(stored))
		}
		for _, i := range []int{sRPS, sRejections, sRejRateLimit, sRejQueue, sRejShed} {
			if d := math.Abs(float64(direct.v[i] - stored[0].v[i])); d > 1e-4*math.Abs(float64(direct.v[i])) {
				t.Errorf("hour %s, %s: from minutes %v, from 10 s points %v", hour, seriesNames[i], stored[0].v[i], direct.v[i])
			}
		}
	}
	t.Logf("counted %v; 1 min points %v; 1 h points %v", counted, m, hr)
}

// TestRejectionsReadOldRows: rows written before the rejection series
// existed (17 series) still read after a restart: their other series are
// served, the rejection series are null (not measured, never 0), the ring
// restores them, and the minute and the hour they share with newer rows
// roll up from the newer rows' rates alone.
func TestRejectionsReadOldRows(t *testing.T) {
	dir := t.TempDir()
	a := openArchive(t, dir, DefaultRetention)
	// An old pulsegate's rows: the first half minute, without rejections.
	err := a.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(tierBuckets[Tier10s])
		for i := range 3 {
			r := row{start: t0.Unix() + int64(10*i), n: 1, ticks: 2, health: healthHealthy}
			for j := range r.v {
				r.v[j] = float32(math.NaN())
			}
			r.v[sRPS], r.v[sCPU] = 8, 0.3
			enc := r.encode()
			old := append([]byte(nil), enc[:11+4*17]...)
			old[10] = 17
			if err := b.Put(key(r.start), old); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// The new pulsegate starts: the old rows come back into the ring.
	a2 := openArchive(t, dir, DefaultRetention)
	defer a2.Close()
	h := mustHistory(t, 10*time.Second, 24*time.Hour)
	if err := a2.Load(h, t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	c := map[string]uint64{"queue_full": 0}
	for i := range 6 { // the second half minute, 5 s ticks, 12 queue_full a tick
		h.Record(rejTick(t0.Add(30*time.Second+time.Duration(i)*5*time.Second), 8, c))
		c["queue_full"] += 12
	}
	if err := a2.Flush(h, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	v := h.QueryRange("", t0, t0.Add(time.Minute))
	if len(v.Time) != 6 {
		t.Fatalf("ring: %d points, want 6", len(v.Time))
	}
	for i := range 3 {
		if x := val(t, v, "throughput_rps", i); x != 8 {
			t.Errorf("old point %d: throughput %v, want 8", i, x)
		}
		if x := val(t, v, "rejections_rps", i); !math.IsNaN(x) {
			t.Errorf("old point %d: rejections %v, want null", i, x)
		}
	}
	// The new points: 12 every 5 s = 2.4/s (the first tick is the baseline).
	if x := val(t, v, "rejections_queue_rps", 4); math.Abs(x-2.4) > 1e-6 {
		t.Errorf("new point: queue rejections %v/s, want 2.4", x)
	}
	m, err := a2.Query("", Tier1m, t0, t0.Add(time.Minute))
	if err != nil || len(m.Time) != 1 {
		t.Fatalf("1m: %d points, %v", len(m.Time), err)
	}
	// Old rows carry no rejection rate: the minute's rate is the mean of
	// the three measured 10 s points (not diluted by the old ones), the
	// throughput the mean of all six.
	if x := val(t, m, "rejections_rps", 0); math.Abs(x-2.4) > 1e-6 {
		t.Errorf("1m rejections %v/s, want 2.4", x)
	}
	if x := val(t, m, "throughput_rps", 0); x != 8 {
		t.Errorf("1m throughput %v, want 8", x)
	}
	if x := val(t, m, "rejections_shed_rps", 0); x != 0 {
		t.Errorf("1m shed %v, want 0", x)
	}
}
