package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/latency"
)

func TestHistJSONIsSparseAndRoundTrips(t *testing.T) {
	h := Hist{}
	h.Record(5 * time.Millisecond)
	h.Record(5 * time.Millisecond)
	h.Record(300 * time.Millisecond)
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("[[%d,2],[%d,1]]", latency.Index(5*time.Millisecond), latency.Index(300*time.Millisecond))
	if string(b) != want {
		t.Errorf("JSON = %s; want %s", b, want)
	}
	var back Hist
	if err := json.Unmarshal(b, &back); err != nil || back.Count() != 3 {
		t.Errorf("round trip: %v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`[[100000,1]]`), &back); err == nil {
		t.Error("a bucket out of range was accepted")
	}
}

func hb(fleet, inst string, at time.Time, status string, r Rollup) Heartbeat {
	return Heartbeat{Fleet: fleet, Instance: inst, Time: at, Interval: 10 * time.Second, Status: status, ConfigVersion: 3,
		Components: []Component{{Name: "system", Status: status, Reason: "cpu 50%"}}, Rollup: r}
}

func fp(v float64) *float64 { return &v }

// TestFleetHeartbeatsStaleAndPrune: the latest row per instance, stale
// after 3 intervals, pruned after 24 h; heartbeats pruned by age.
func TestFleetHeartbeatsStaleAndPrune(t *testing.T) {
	sqlStores(t, func(t *testing.T, s *SQL) {
		ctx := context.Background()
		f := s.fleet
		r := Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": 90, "5xx": 10}, Errors: map[string]uint64{"app_5xx": 10},
			Latency: Hist{latency.Index(20 * time.Millisecond): 100}, CPU: fp(0.5), Memory: fp(0.25),
			DB: &DBFigures{PoolInUse: 2, PoolSize: 10}, Redis: &RedisFigures{LatencySeconds: fp(0.001)}}
		var batch []Heartbeat
		for i := range 3 {
			batch = append(batch, hb(f, "web-1", t0.Add(time.Duration(i)*10*time.Second), "ok", r))
		}
		batch = append(batch, hb(f, "web-2", t0.Add(-time.Minute), "critical", r))
		if err := s.WriteHeartbeats(ctx, batch); err != nil {
			t.Fatal(err)
		}
		// A replayed older heartbeat does not move web-1 back, nor add a row.
		if err := s.WriteHeartbeats(ctx, batch[:1]); err != nil {
			t.Fatal(err)
		}
		now := t0.Add(30 * time.Second)
		got, err := s.Instances(ctx, f, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("Instances = %+v; want web-1 and web-2", got)
		}
		w1, w2 := got[0], got[1]
		if w1.Instance != "web-1" || !w1.LastSeen.Equal(t0.Add(20*time.Second)) || w1.Stale {
			t.Errorf("web-1 = %+v; want last seen t0+20s, fresh", w1)
		}
		if w1.ThroughputRPS != 10 || math.Abs(w1.ErrorRate-0.1) > 1e-12 || w1.ConfigVersion != 3 || *w1.CPUUsage != 0.5 {
			t.Errorf("web-1 figures = %+v", w1)
		}
		if p := w1.P99ResponseTime; math.Abs(p-0.020)/0.020 > 0.02 {
			t.Errorf("web-1 p99 = %g; want ≈ 0.020", p)
		}
		if w1.Heartbeat.Rollup.DB == nil || w1.Heartbeat.Rollup.DB.PoolSize != 10 || len(w1.Heartbeat.Components) != 1 || w1.Heartbeat.Interval != 10*time.Second {
			t.Errorf("web-1 heartbeat not kept whole: %+v", w1.Heartbeat)
		}
		// web-2 last seen 90 s before now: more than 3 × 10 s.
		if w2.Instance != "web-2" || !w2.Stale || w2.Status != "critical" {
			t.Errorf("web-2 = %+v; want stale (silent 90 s with a 10 s interval)", w2)
		}
		m, err := s.MergedRollup(ctx, f, t0.Add(-time.Hour), now)
		if err != nil {
			t.Fatal(err)
		}
		_, fm, err := s.FleetNow(ctx, f, now)
		if err != nil {
			t.Fatal(err)
		}
		if fm.Answered != 100 || len(fm.Instances) != 1 || fm.Instances[0] != "web-1" || !fm.From.Equal(t0.Add(10*time.Second)) {
			t.Errorf("FleetNow merged = %+v; want web-1's latest interval only (web-2 is stale)", fm)
		}
		if m.Rows != 4 || m.Answered != 400 || m.Failed != 40 || len(m.Instances) != 2 {
			t.Errorf("merged = rows %d answered %d failed %d instances %v; want 4, 400, 40, 2 (the replay replaced its row)", m.Rows, m.Answered, m.Failed, m.Instances)
		}

		// Pruning: heartbeats older than 24 h go; instances silent for 24 h go.
		later := t0.Add(-time.Minute).Add(24*time.Hour + time.Second)
		if err := s.WriteHeartbeats(ctx, []Heartbeat{hb(f, "web-1", later, "ok", r)}); err != nil {
			t.Fatal(err)
		}
		pr, err := s.PruneFleet(ctx, f, later, Retention{KeepStale: 24 * time.Hour, KeepFine: 48 * time.Hour, KeepHeartbeats: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if pr.Instances != 1 || pr.Heartbeats != 1 {
			t.Errorf("prune = %+v; want web-2 and its one old heartbeat gone", pr)
		}
		got, _ = s.Instances(ctx, f, later)
		if len(got) != 1 || got[0].Instance != "web-1" {
			t.Errorf("after prune: %+v; want web-1 only", got)
		}
	})
}

// TestFleetCompactionKeepsCountsAndPercentiles: rows older than KeepFine
// become one row per instance and 5-minute window; the merged rollup over
// the range answers the same counts, buckets and percentiles; a late row
// for a compacted window merges into it; a second pruner skips.
func TestFleetCompactionKeepsCountsAndPercentiles(t *testing.T) {
	sqlStores(t, func(t *testing.T, s *SQL) {
		ctx := context.Background()
		f := s.fleet
		rng := rand.New(rand.NewPCG(3, 4))
		var batch []Heartbeat
		for _, inst := range []string{"web-1", "web-2"} {
			for i := range 60 { // 10 minutes at 10 s, from t0 (a 5-minute boundary)
				h := Hist{}
				for range 50 {
					h.Record(time.Duration(0.02 * math.Exp(rng.NormFloat64()) * float64(time.Second)))
				}
				r := Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": 49, "5xx": 1}, Errors: map[string]uint64{"app_5xx": 1},
					Latency: h, Timing: map[string]float64{"app": 0.5}, CPU: fp(float64(i) / 100)}
				batch = append(batch, hb(f, inst, t0.Add(time.Duration(i+1)*10*time.Second), "ok", r))
			}
		}
		if err := s.WriteHeartbeats(ctx, batch); err != nil {
			t.Fatal(err)
		}
		from, to := t0, t0.Add(time.Hour)
		before, err := s.MergedRollup(ctx, f, from, to)
		if err != nil {
			t.Fatal(err)
		}
		now := t0.Add(2 * time.Hour)
		pr, err := s.PruneFleet(ctx, f, now, Retention{})
		if err != nil {
			t.Fatal(err)
		}
		if pr.Compacted != 120 || pr.Heartbeats != 0 {
			t.Errorf("prune = %+v; want 120 rows compacted, none deleted", pr)
		}
		after, err := s.MergedRollup(ctx, f, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if after.Rows != 4 {
			t.Errorf("after compaction %d rows; want 4 (2 instances × 2 windows of 5 min)", after.Rows)
		}
		if after.Answered != before.Answered || after.Failed != before.Failed || after.Latency.Count() != before.Latency.Count() ||
			after.P50 != before.P50 || after.P99 != before.P99 || after.Timing["app"] != before.Timing["app"] {
			t.Errorf("compaction changed the figures: before %+v / after %+v", before, after)
		}
		for i, b := range before.Latency {
			if after.Latency[i] != b {
				t.Fatalf("bucket %d: %d before, %d after", i, b, after.Latency[i])
			}
		}
		// A late heartbeat of an already compacted window merges into it.
		late := hb(f, "web-1", t0.Add(95*time.Second), "ok", Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": 7}})
		if err := s.WriteHeartbeats(ctx, []Heartbeat{late}); err != nil {
			t.Fatal(err)
		}
		if pr, err = s.PruneFleet(ctx, f, now, Retention{}); err != nil || pr.Compacted != 1 {
			t.Errorf("second prune = %+v, %v; want the late row compacted", pr, err)
		}
		again, _ := s.MergedRollup(ctx, f, from, to)
		if again.Rows != 4 || again.Answered != before.Answered+7 {
			t.Errorf("after the late row: %d rows, %d answered; want 4 rows, %d", again.Rows, again.Answered, before.Answered+7)
		}
		// The merged row carries the latest verdict and gauges of its window.
		insts, _ := s.Instances(ctx, f, now)
		if len(insts) != 2 || *insts[0].CPUUsage != 0.59 {
			t.Errorf("instances after compaction = %+v (the latest row is untouched)", insts)
		}
		// While one sidecar prunes, another skips the round.
		conn, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		got, unlock, err := s.tryLock(ctx, conn, "pulsegate_prune:"+f)
		if err != nil || !got {
			t.Fatalf("tryLock = %v, %v", got, err)
		}
		if pr, err := s.PruneFleet(ctx, f, now.Add(48*time.Hour), Retention{}); err != nil || pr != (PruneResult{}) {
			t.Errorf("prune while another holds the lock = %+v, %v; want a skipped round", pr, err)
		}
		unlock()
	})
}

// TestFleetPercentilesFromMergedBuckets: three instances with different
// latency distributions; the fleet p50/p95/p99 from the merged buckets
// equal the percentiles over every sample within the histogram's error.
func TestFleetPercentilesFromMergedBuckets(t *testing.T) {
	sqlStores(t, func(t *testing.T, s *SQL) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(1, 2))
		var all []float64
		var batch []Heartbeat
		for i, c := range []struct {
			median float64
			n      int
		}{{0.010, 5000}, {0.050, 2000}, {0.400, 300}} {
			for tick := range 3 {
				h := Hist{}
				for range c.n / 3 {
					v := c.median * math.Exp(rng.NormFloat64()*0.6)
					d := time.Duration(v * float64(time.Second))
					all = append(all, d.Seconds())
					h.Record(d)
				}
				r := Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": h.Count()}, Latency: h}
				batch = append(batch, hb(s.fleet, fmt.Sprintf("web-%d", i), t0.Add(time.Duration(tick)*10*time.Second), "ok", r))
			}
		}
		if err := s.WriteHeartbeats(ctx, batch); err != nil {
			t.Fatal(err)
		}
		m, err := s.MergedRollup(ctx, s.fleet, t0.Add(-time.Second), t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		sort.Float64s(all)
		exact := func(q float64) float64 {
			rank := int(q*float64(len(all)) + 0.5)
			rank = min(max(rank, 1), len(all))
			return all[rank-1]
		}
		if m.Answered != uint64(len(all)) || m.Latency.Count() != uint64(len(all)) {
			t.Fatalf("merged %d answered, %d in buckets; want %d", m.Answered, m.Latency.Count(), len(all))
		}
		for _, c := range []struct {
			name string
			q    float64
			got  float64
		}{{"p50", 0.5, m.P50}, {"p95", 0.95, m.P95}, {"p99", 0.99, m.P99}} {
			want := exact(c.q)
			if rel := math.Abs(c.got-want) / want; rel > 0.02 {
				t.Errorf("fleet %s = %g; over all samples %g (%.2f%% off, want ≤ 2%%)", c.name, c.got, want, rel*100)
			}
		}
		// Not an average of percentiles: that would be far off here.
		var avgP99 float64
		for i := range 3 {
			h := Hist{}
			for _, b := range batch[i*3 : i*3+3] {
				h.Merge(b.Rollup.Latency)
			}
			avgP99 += h.Quantile(0.99) / 3
		}
		if math.Abs(avgP99-m.P99)/m.P99 < 0.1 {
			t.Errorf("test data too uniform: the average of p99s (%g) is close to the fleet p99 (%g)", avgP99, m.P99)
		}
	})
}

// TestFleetConfigCompareAndSet: versions count up from 1; a stale version
// gets ErrVersionConflict with the current one; of concurrent writers on
// one version exactly one wins; a null document removes the live changes.
func TestFleetConfigCompareAndSet(t *testing.T) {
	sqlStores(t, func(t *testing.T, s *SQL) {
		ctx := context.Background()
		f := s.fleet
		cv, err := s.FleetConfig(ctx, f)
		if err != nil || cv.Version != 0 || cv.Doc != nil {
			t.Fatalf("empty fleet config = %+v, %v; want version 0", cv, err)
		}
		doc := json.RawMessage(`{"responsiveness":{"slow_request_threshold":2}}`)
		cv, err = s.SetFleetConfig(ctx, f, 0, doc, "web-1", "token:abc", t0)
		if err != nil || cv.Version != 1 {
			t.Fatalf("first set = %+v, %v", cv, err)
		}
		if _, err := s.SetFleetConfig(ctx, f, 0, doc, "web-2", "token:def", t0); !errors.Is(err, ErrVersionConflict) {
			t.Errorf("second create on version 0: err = %v; want ErrVersionConflict", err)
		}
		var wg sync.WaitGroup
		wins := make(chan int64, 8)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := json.RawMessage(fmt.Sprintf(`{"responsiveness":{"slow_request_threshold":%d}}`, i+3))
				cv, err := s.SetFleetConfig(ctx, f, 1, d, fmt.Sprintf("web-%d", i), "token:x", t0.Add(time.Second))
				if err == nil {
					wins <- cv.Version
				} else if !errors.Is(err, ErrVersionConflict) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		close(wins)
		if n := len(wins); n != 1 {
			t.Errorf("%d of 8 concurrent writers on version 1 won; want exactly 1", n)
		}
		got, _ := s.FleetConfig(ctx, f)
		if got.Version != 2 || got.Actor != "token:x" || !got.Updated.Equal(t0.Add(time.Second)) {
			t.Errorf("stored = %+v; want version 2 by token:x", got)
		}
		cv, err = s.SetFleetConfig(ctx, f, 2, nil, "web-1", "token:abc", t0.Add(2*time.Second))
		if err != nil || cv.Version != 3 {
			t.Fatalf("removing live changes: %+v, %v", cv, err)
		}
		got, _ = s.FleetConfig(ctx, f)
		if got.Version != 3 || got.Doc != nil {
			t.Errorf("after removal = %+v; want version 3, no document", got)
		}
		if _, err := s.SetFleetConfig(ctx, f, 3, json.RawMessage(`{bad`), "web-1", "x", t0); err == nil {
			t.Error("invalid JSON accepted")
		}
	})
}

// TestFleetAlertsOneIDAcrossSidecars: the same rule raised by three
// sidecars (at once) is one alert with one id and three instances; an
// acknowledgement on one is seen by all; it resolves when the last
// instance resolves, and a new occurrence gets a new id.
func TestFleetAlertsOneIDAcrossSidecars(t *testing.T) {
	sqlStores(t, func(t *testing.T, s *SQL) {
		ctx := context.Background()
		f := s.fleet
		ids := make([]string, 3)
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := AlertRecord{ID: fmt.Sprintf("local-%d", i), Key: "cpu_usage", Rule: "cpu_usage", Severity: SeverityWarning,
					Value: 0.85 + float64(i)/100, FirstSeen: t0, LastSeen: t0}
				fa, err := s.RaiseFleetAlert(ctx, f, fmt.Sprintf("web-%d", i), a)
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = fa.ID
			}()
		}
		wg.Wait()
		if ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
			t.Fatalf("ids = %v; want one id for the three sidecars", ids)
		}
		id := ids[0]
		fa, err := s.AcknowledgeFleetAlert(ctx, f, id, Acknowledgement{AlertID: id, Time: t0.Add(time.Minute), By: "alice", Note: "on it"})
		if err != nil {
			t.Fatal(err)
		}
		if fa.State != StateAcknowledged || fa.AcknowledgedBy != "alice" || len(fa.Instances) != 3 {
			t.Errorf("acknowledged = %+v", fa)
		}
		// Still firing on web-0: raising again keeps the acknowledgement.
		if fa, err = s.RaiseFleetAlert(ctx, f, "web-0", AlertRecord{Key: "cpu_usage", Severity: SeverityCritical, Value: 0.95, LastSeen: t0.Add(2 * time.Minute)}); err != nil || fa.ID != id || fa.State != StateAcknowledged {
			t.Errorf("raise after ack = %+v, %v; want the same acknowledged alert", fa, err)
		}
		for i := range 3 {
			fa, err = s.ResolveFleetAlert(ctx, f, fmt.Sprintf("web-%d", i), "cpu_usage", t0.Add(3*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if want := i == 2; (fa.State == StateResolved) != want {
				t.Errorf("after %d of 3 resolved: state %s", i+1, fa.State)
			}
		}
		if _, err := s.AcknowledgeFleetAlert(ctx, f, id, Acknowledgement{By: "bob"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("acknowledging a resolved alert: %v; want ErrNotFound", err)
		}
		fa, err = s.RaiseFleetAlert(ctx, f, "web-1", AlertRecord{Key: "cpu_usage", FirstSeen: t0.Add(time.Hour)})
		if err != nil || fa.ID == id || fa.State != StateFiring {
			t.Errorf("new occurrence = %+v, %v; want a new firing alert with a new id", fa, err)
		}
		// A sidecar reusing a resolved occurrence's id gets a fresh one.
		if _, err := s.ResolveFleetAlert(ctx, f, "web-1", "cpu_usage", t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		reused, err := s.RaiseFleetAlert(ctx, f, "web-1", AlertRecord{ID: id, Key: "cpu_usage", FirstSeen: t0.Add(3 * time.Hour)})
		if err != nil || reused.ID == id || reused.ID == "" {
			t.Errorf("raise with a resolved occurrence's id = %+v, %v; want a new id", reused, err)
		}
		fa = reused
		all, err := s.FleetAlerts(ctx, f, false)
		if err != nil || len(all) != 3 || all[0].ID != fa.ID {
			t.Errorf("FleetAlerts = %+v, %v; want 3, newest first", all, err)
		}
		active, _ := s.FleetAlerts(ctx, f, true)
		if len(active) != 1 {
			t.Errorf("active = %d; want 1", len(active))
		}
		// Resolved fleet alerts are pruned with the alert history (the
		// newest keep stay); the active one is never pruned.
		if err := s.PruneAlerts(1); err != nil {
			t.Fatal(err)
		}
		all, err = s.FleetAlerts(ctx, f, false)
		if err != nil || len(all) != 2 || all[0].ID != fa.ID || all[0].State == StateResolved || all[1].State != StateResolved || all[1].ID == id {
			t.Errorf("after PruneAlerts(1): %+v, %v; want the active alert and the newest resolved one", all, err)
		}
		var left int
		if err := s.db.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM pulsegate_fleet_alert_instances WHERE alert_id = ?`), id).Scan(&left); err != nil || left != 0 {
			t.Errorf("instance rows of the pruned alert: %d, %v; want 0", left, err)
		}
	})
}

func TestHistJSONRejectsMalformed(t *testing.T) {
	for _, in := range []string{`{}`, `[[1]]`, `[[1,2,3]]`, `[[1,-2]]`, `[[1,2]`, `[[1,2]]x`, `[[1,2],]`, `[[99999999999999999999,1]]`, `"x"`} {
		var h Hist
		if err := json.Unmarshal([]byte(in), &h); err == nil {
			t.Errorf("%s accepted as %v", in, h)
		}
	}
	var h Hist
	if err := json.Unmarshal([]byte(` [ [ 3 , 4 ] , [3,1] ] `), &h); err != nil || h[3] != 5 {
		t.Errorf("spaced pairs: %v %v", h, err)
	}
	if err := json.Unmarshal([]byte(`[]`), &h); err != nil || len(h) != 0 {
		t.Errorf("empty: %v %v", h, err)
	}
}

// BenchmarkDecodeHeartbeat: the fleet query's per-row cost in Go.
func BenchmarkDecodeHeartbeat(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	h := Hist{}
	for range 400 {
		h.Record(time.Duration(0.03 * math.Exp(rng.NormFloat64()*0.7) * float64(time.Second)))
	}
	doc, _ := json.Marshal(hb("f", "web-001", t0, "ok", Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": 400}, Latency: h,
		Timing: map[string]float64{"app": 1, "upstream_wait": 2}, CPU: fp(0.4), DB: &DBFigures{PoolSize: 20}}))
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		var x Heartbeat
		if err := json.Unmarshal(doc, &x); err != nil {
			b.Fatal(err)
		}
	}
}
