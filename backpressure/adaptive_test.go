package backpressure

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

var gradCfg = GradientConfig{
	MinLimit:       4,
	MaxLimit:       100,
	Headroom:       0.1,
	MinRTTInterval: 60 * time.Second,
	Window:         time.Second,
	MinRTTSamples:  10,
}

// feed offers n samples of rtt at now with inFlight in flight.
func feed(g *Gradient, now time.Time, n int, rtt time.Duration, inFlight int) {
	for range n {
		g.OnSample(now, rtt, inFlight, false)
	}
}

// measured returns a gradient past its first min-RTT measurement of 10 ms.
func measured(t *testing.T, t0 time.Time) *Gradient {
	t.Helper()
	g := NewGradient(gradCfg, t0, func() float64 { return 0.5 }) // 0.5 = no jitter
	if g.Limit() != 4 || g.State().Phase != PhaseMinRTT {
		t.Fatalf("new gradient: limit %d phase %s, want pinned at 4 in min_rtt", g.Limit(), g.State().Phase)
	}
	feed(g, t0, 9, 10*time.Millisecond, 4)
	if g.State().Phase != PhaseMinRTT {
		t.Fatal("min_rtt phase ended before MinRTTSamples samples")
	}
	feed(g, t0, 1, 10*time.Millisecond, 4)
	st := g.State()
	if st.Phase != PhaseNormal || st.MinRTTSeconds != 0.01 || st.MinRTTMeasurement != 1 {
		t.Fatalf("after 10 samples: %+v", st)
	}
	return g
}

func TestGradientGrowsWhenLatencyFlat(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := measured(t, t0)
	prev := g.Limit()
	now := t0
	for i := range 5 {
		now = now.Add(time.Second)
		feed(g, now, 20, 10*time.Millisecond, prev) // fully used, RTT at the minimum
		now = now.Add(time.Millisecond)
		g.Tick(now.Add(time.Second))
		l := g.Limit()
		if l <= prev {
			t.Fatalf("window %d: limit %d did not grow from %d with RTT at the minimum", i, l, prev)
		}
		prev = l
	}
	if st := g.State(); st.Gradient != 1.1 && st.Gradient != 2 {
		// minRTT·1.1 / sample = 1.1 exactly
		if st.Gradient < 1.09 || st.Gradient > 1.11 {
			t.Errorf("gradient = %v, want 1.1", st.Gradient)
		}
	}
}

func TestGradientShrinksWhenLatencyRises(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := measured(t, t0)
	// Grow to a known level first.
	now := t0
	for range 6 {
		now = now.Add(time.Second)
		feed(g, now, 20, 10*time.Millisecond, g.Limit())
		g.Tick(now.Add(time.Second))
	}
	high := g.Limit()
	// Latency quadruples: gradient clamps at 0.5.
	now = now.Add(2 * time.Second)
	feed(g, now, 20, 40*time.Millisecond, high)
	g.Tick(now.Add(time.Second))
	got := g.Limit()
	want := int(0.5*float64(high) + sqrtf(float64(high)))
	if got != want {
		t.Errorf("after RTT ×4: limit %d, want ⌊0.5·%d + √%d⌋ = %d", got, high, high, want)
	}
	if g.State().Gradient != 0.5 {
		t.Errorf("gradient = %v, want clamped 0.5", g.State().Gradient)
	}
	// Sustained overload drives it to MinLimit and no lower.
	for range 20 {
		now = now.Add(2 * time.Second)
		feed(g, now, 20, time.Second, g.Limit())
		g.Tick(now.Add(time.Second))
	}
	if g.Limit() != 4 {
		t.Errorf("limit under sustained overload = %d, want MinLimit 4", g.Limit())
	}
}

func TestGradientClampsAtMax(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := measured(t, t0)
	now := t0
	for range 50 {
		now = now.Add(2 * time.Second)
		feed(g, now, 20, 5*time.Millisecond, g.Limit())
		g.Tick(now.Add(time.Second))
	}
	if g.Limit() != 100 {
		t.Errorf("limit = %d, want MaxLimit 100", g.Limit())
	}
}

// An under-used limit is not raised: no evidence the app could take more.
func TestGradientIdleDoesNotGrow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := measured(t, t0)
	now := t0
	for range 5 {
		now = now.Add(2 * time.Second)
		feed(g, now, 20, 10*time.Millisecond, 1) // one in flight of 4
		g.Tick(now.Add(time.Second))
	}
	if g.Limit() != 4 {
		t.Errorf("limit = %d after idle windows, want 4", g.Limit())
	}
}

// Every MinRTTInterval (± jitter) the limit is pinned to MinLimit while the
// minimum RTT is measured again, then restored.
func TestGradientRemeasuresMinRTT(t *testing.T) {
	t0 := time.Unix(1000, 0)
	rnd := 1.0 // jitter +15 %
	g := NewGradient(gradCfg, t0, func() float64 { return rnd - 1e-9 })
	feed(g, t0, 10, 10*time.Millisecond, 4)
	next := g.State().NextMinRTT
	want := t0.Add(69 * time.Second).UTC() // 60 s · (1 + 0.15)
	if got, _ := time.Parse(time.RFC3339Nano, next); got.Sub(want).Abs() > time.Millisecond {
		t.Fatalf("next min-RTT at %s, want %s (60 s + 15 %% jitter)", next, want)
	}
	now := t0
	for range 5 {
		now = now.Add(2 * time.Second)
		feed(g, now, 20, 10*time.Millisecond, g.Limit())
		g.Tick(now.Add(time.Second))
	}
	grown := g.Limit()
	g.Tick(t0.Add(70 * time.Second))
	if g.State().Phase != PhaseMinRTT || g.Limit() != 4 {
		t.Fatalf("at the interval: phase %s limit %d, want min_rtt pinned at 4", g.State().Phase, g.Limit())
	}
	// The app got slower meanwhile: the new minimum is 20 ms.
	feed(g, t0.Add(71*time.Second), 10, 20*time.Millisecond, 4)
	st := g.State()
	if st.Phase != PhaseNormal || st.MinRTTSeconds != 0.02 || g.Limit() != grown {
		t.Errorf("after re-measurement: %+v, want normal, 20 ms, limit restored to %d", st, grown)
	}
}

func TestGradientDroppedSamplesIgnored(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := NewGradient(gradCfg, t0, nil)
	for range 50 {
		g.OnSample(t0, time.Hour, 4, true)
	}
	if st := g.State(); st.Phase != PhaseMinRTT || st.DroppedSamples != 50 {
		t.Errorf("dropped samples moved the limiter: %+v", st)
	}
}

func sqrtf(x float64) float64 {
	// Newton's method; exact enough for the expectations above.
	z := x
	for range 50 {
		z -= (z*z - x) / (2 * z)
	}
	return z
}

// The Chain enforces the adaptive limit and reports it.
func TestChainAdaptiveEnforced(t *testing.T) {
	up := newBlockingUpstream()
	cfg := baseConfig()
	cfg.Backpressure.Adaptive.Enabled = true
	cfg.Backpressure.Adaptive.MinLimit = 3
	cfg.Backpressure.QueueTimeout = 60
	c, reg, _ := newTestChain(t, cfg, up)
	done := make(chan struct{}, 5)
	for range 5 {
		go func() {
			c.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
			done <- struct{}{}
		}()
	}
	// Pinned at min_limit while min RTT is measured: 3 in flight, 2 queued.
	waitFor(t, "3 in flight, 2 queued", func() bool { return up.cur.Load() == 3 && c.QueueDepth() == 2 })
	st := c.State()
	if st.Limit != 3 || st.Adaptive == nil || st.Adaptive.Phase != PhaseMinRTT {
		t.Errorf("state limit %d adaptive %+v", st.Limit, st.Adaptive)
	}
	if got := metricValue(t, reg, "pulsegate_backpressure_limit", ""); got != 3 {
		t.Errorf("limit gauge = %v", got)
	}
	up.open()
	for range 5 {
		<-done
	}
	// A fixed limit below the adaptive one wins.
	cfg2 := *cfg
	cfg2.Backpressure.MaxConcurrency = 2
	if err := c.Apply(&cfg2); err != nil {
		t.Fatal(err)
	}
	if st := c.State(); st.Limit != 2 {
		t.Errorf("limit with max_concurrency 2 and adaptive 3 = %d, want 2", st.Limit)
	}
	// Turning adaptive off removes its limit.
	cfg3 := *cfg
	cfg3.Backpressure.Adaptive.Enabled = false
	if err := c.Apply(&cfg3); err != nil {
		t.Fatal(err)
	}
	if st := c.State(); st.Limit != 0 || st.Adaptive != nil {
		t.Errorf("after disabling adaptive: limit %d adaptive %+v", st.Limit, st.Adaptive)
	}
	_ = http.StatusOK
}
