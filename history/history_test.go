package history

import (
	"math"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/health"
	"github.com/pulsegate/pulsegate/monitor"
	"github.com/pulsegate/pulsegate/proxy"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func f(v float64) *float64 { return &v }

func tick(at time.Time, cpu float64) *monitor.Tick {
	return &monitor.Tick{Time: at, Figures: map[string]float64{"cpu_usage": cpu}}
}

func mustHistory(t *testing.T, res, ret time.Duration) *History {
	t.Helper()
	h, err := New(res, ret)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHistoryRejectsBadSizes(t *testing.T) {
	for _, c := range []struct{ res, ret time.Duration }{
		{0, time.Hour}, {1500 * time.Millisecond, time.Hour}, {10 * time.Second, 5 * time.Second}, {time.Second, 365 * 24 * time.Hour},
	} {
		if _, err := New(c.res, c.ret); err == nil {
			t.Errorf("New(%v, %v): no error", c.res, c.ret)
		}
	}
}

// A day of ticks every 5 s into a 1 h ring: memory stays at 360 points
// and only the last hour is answered.
func TestHistoryIsBounded(t *testing.T) {
	h := mustHistory(t, 10*time.Second, time.Hour)
	if h.Capacity() != 360 {
		t.Fatalf("capacity %d, want 360", h.Capacity())
	}
	end := t0.Add(24 * time.Hour)
	for at := t0; at.Before(end); at = at.Add(5 * time.Second) {
		h.Record(tick(at, 0.5))
	}
	if len(h.ring) != 360 {
		t.Fatalf("ring grew to %d", len(h.ring))
	}
	v := h.Query("24h", 24*time.Hour, end.Add(-time.Second))
	if len(v.Time) == 0 || len(v.Time) > 360 {
		t.Fatalf("24h over a 1h ring: %d points", len(v.Time))
	}
	if first := time.Unix(v.Time[0], 0); first.Before(end.Add(-time.Hour - 10*time.Second)) {
		t.Errorf("oldest point %v is older than the ring's hour before %v", first, end)
	}
}

// Range selection: only points inside the range, oldest first, with the
// values recorded for each step.
func TestHistoryRangeSelection(t *testing.T) {
	h := mustHistory(t, 10*time.Second, 24*time.Hour)
	// one tick per minute for 2 hours, cpu = minutes/1000
	for m := 0; m < 120; m++ {
		h.Record(tick(t0.Add(time.Duration(m)*time.Minute), float64(m)/1000))
	}
	now := t0.Add(119*time.Minute + 5*time.Second)
	for _, c := range []struct {
		name   string
		d      time.Duration
		points int
		first  float64
	}{
		{"15m", 15 * time.Minute, 15, 0.105},
		{"1h", time.Hour, 60, 0.060},
		{"24h", 24 * time.Hour, 60, 0.001}, // 2-min steps: two ticks each, the higher kept
	} {
		v := h.Query(c.name, c.d, now)
		if len(v.Time) != c.points {
			t.Errorf("%s: %d points, want %d", c.name, len(v.Time), c.points)
			continue
		}
		cpu := v.Series["cpu_usage"]
		if got := *cpu[0]; math.Abs(got-c.first) > 1e-6 {
			t.Errorf("%s: first cpu %v, want %v", c.name, got, c.first)
		}
		if got := *cpu[len(cpu)-1]; math.Abs(got-0.119) > 1e-6 {
			t.Errorf("%s: last cpu %v, want 0.119", c.name, got)
		}
		for i := 1; i < len(v.Time); i++ {
			if v.Time[i] <= v.Time[i-1] {
				t.Fatalf("%s: times not increasing at %d", c.name, i)
			}
		}
		if v.From > v.Time[0] || v.To <= v.Time[len(v.Time)-1] || v.To-v.From != int64(c.d/time.Second) {
			t.Errorf("%s: bounds [%d,%d) do not hold the points %d..%d", c.name, v.From, v.To, v.Time[0], v.Time[len(v.Time)-1])
		}
		if v.Series["memory_usage"][0] != nil {
			t.Errorf("%s: memory never measured but not null", c.name)
		}
	}
}

// Two ticks in one step keep the worse of each figure: the higher
// latency, the lower Apdex, the worse verdict.
func TestHistoryKeepsWorstPerStep(t *testing.T) {
	h := mustHistory(t, 10*time.Second, time.Hour)
	h.Record(&monitor.Tick{Time: t0, Figures: map[string]float64{"memory_usage": 0.4},
		Requests: proxy.WindowStats{Window: "1m", P95: f(0.2), Apdex: f(0.9), ThroughputRPS: 5, ErrorRate: 0.01},
		Verdict:  health.Verdict{Status: health.Critical}, Backpressure: &backpressure.State{InFlight: 3, Queued: 7}})
	h.Record(&monitor.Tick{Time: t0.Add(4 * time.Second), Figures: map[string]float64{"memory_usage": 0.3, "cpu_usage": math.NaN()},
		Requests: proxy.WindowStats{Window: "1m", P95: f(0.5), Apdex: f(0.7), ThroughputRPS: 4, ErrorRate: 0.02},
		Verdict:  health.Verdict{Status: health.Healthy}, Backpressure: &backpressure.State{InFlight: 1, Queued: 2}})
	v := h.Query("15m", 15*time.Minute, t0.Add(5*time.Second))
	if len(v.Time) != 1 {
		t.Fatalf("%d points, want 1", len(v.Time))
	}
	want := map[string]float64{"memory_usage": 0.4, "p95_response_time": 0.5, "apdex": 0.7, "throughput_rps": 5,
		"error_rate": 0.02, "in_flight": 3, "queue_depth": 7}
	for k, w := range want {
		if got := v.Series[k][0]; got == nil || math.Abs(*got-w) > 1e-6 {
			t.Errorf("%s: got %v, want %v", k, got, w)
		}
	}
	if v.Series["cpu_usage"][0] != nil {
		t.Error("NaN cpu recorded as a value")
	}
	if v.Health[0] != "critical" {
		t.Errorf("health %q, want critical", v.Health[0])
	}
}

// Long ranges are merged to at most MaxPoints steps.
func TestHistoryDownsamplesLongRanges(t *testing.T) {
	h := mustHistory(t, 10*time.Second, 24*time.Hour)
	end := t0.Add(24 * time.Hour)
	i := 0
	for at := t0; at.Before(end); at = at.Add(10 * time.Second) {
		h.Record(tick(at, float64(i%12)/100)) // a saw tooth: each 2-min step has a max of 0.11
		i++
	}
	v := h.Query("24h", 24*time.Hour, end.Add(-time.Second))
	if len(v.Time) > MaxPoints || len(v.Time) < MaxPoints-1 {
		t.Fatalf("%d points, want about %d", len(v.Time), MaxPoints)
	}
	if v.StepSeconds != 120 || v.ResolutionSeconds != 10 {
		t.Errorf("step %d resolution %d, want 120 and 10", v.StepSeconds, v.ResolutionSeconds)
	}
	for j, p := range v.Series["cpu_usage"] {
		if p == nil || math.Abs(*p-0.11) > 1e-6 {
			t.Fatalf("point %d: %v, want the step's peak 0.11", j, p)
		}
	}
}

// Gaps stay gaps, a tick from before the ring's window is dropped, and a
// slot is never overwritten by an older step.
func TestHistoryGapsAndOldTicks(t *testing.T) {
	h := mustHistory(t, 10*time.Second, 10*time.Minute) // 60 slots
	h.Record(tick(t0, 0.1))
	h.Record(tick(t0.Add(5*time.Minute), 0.2))
	h.Record(tick(t0.Add(-time.Hour), 0.9))      // far older than the ring
	h.Record(tick(t0.Add(-10*time.Minute), 0.8)) // same slot as t0, older step
	h.Record(nil)
	h.Record(&monitor.Tick{})
	v := h.Query("15m", 15*time.Minute, t0.Add(6*time.Minute))
	if len(v.Time) != 2 || *v.Series["cpu_usage"][0] != 0.1 || *v.Series["cpu_usage"][1] != 0.2 {
		t.Fatalf("got %v %v", v.Time, v.Series["cpu_usage"])
	}
	if v.Time[1]-v.Time[0] != 300 {
		t.Errorf("gap %d s, want 300", v.Time[1]-v.Time[0])
	}
}

func BenchmarkRecord(b *testing.B) {
	h, _ := New(10*time.Second, 24*time.Hour)
	tk := &monitor.Tick{Figures: map[string]float64{"cpu_usage": 0.5, "memory_usage": 0.3, "disk_usage": 0.2, "error_rate": 0.01},
		Requests: proxy.WindowStats{Window: "1m", P95: f(0.2), P99: f(0.4), Apdex: f(0.9)}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tk.Time = t0.Add(time.Duration(i) * 5 * time.Second)
		h.Record(tk)
	}
}

func BenchmarkQuery24h(b *testing.B) {
	h, _ := New(10*time.Second, 24*time.Hour)
	for i := 0; i < 8640*2; i++ {
		h.Record(tick(t0.Add(time.Duration(i)*5*time.Second), 0.5))
	}
	now := t0.Add(24 * time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		h.Query("24h", 24*time.Hour, now)
	}
}
