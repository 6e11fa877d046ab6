package releases

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/latency"
)

// population draws request latencies (log-normal, median and spread given)
// and failures (probability errRate).
type population struct {
	median  time.Duration
	sigma   float64
	errRate float64
}

// sample draws n requests into the proxy's histogram layout.
func (p population) sample(r *rand.Rand, release string, n int) Sample {
	s := Sample{Release: release, Buckets: make([]uint64, latency.Buckets), Requests: uint64(n)}
	mu := math.Log(p.median.Seconds())
	for range n {
		d := time.Duration(math.Exp(mu+p.sigma*r.NormFloat64()) * float64(time.Second))
		s.Buckets[latency.Index(d)]++
		if r.Float64() < p.errRate {
			s.Errors++
		}
	}
	return s
}

var steady = population{median: 80 * time.Millisecond, sigma: 0.9, errRate: 0.02}

// rates runs trials comparisons of two samples of n requests each and
// returns how often each figure, and either, was flagged.
func rates(t *testing.T, seed uint64, before, after population, n, trials int, o Options) (p95, errs, any float64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var a, b, c int
	for range trials {
		cmp, err := Compare(before.sample(r, "v1", n), after.sample(r, "v2", n), o)
		if err != nil {
			t.Fatal(err)
		}
		if !cmp.Compared {
			t.Fatalf("not compared: %s", cmp.Why)
		}
		if cmp.P95.Regressed {
			a++
		}
		if cmp.ErrorRate.Regressed {
			b++
		}
		if cmp.Regressed {
			c++
		}
	}
	f := float64(trials)
	return float64(a) / f, float64(b) / f, float64(c) / f
}

// bound is alpha plus three binomial standard errors of a rate measured
// over trials: a measured false-alarm rate above it means the test's
// stated level does not hold.
func bound(alpha float64, trials int) float64 {
	return alpha + 3*math.Sqrt(alpha*(1-alpha)/float64(trials))
}

// TestFalseAlarmRateOnIdenticalDistributions measures, by simulation, how
// often two releases drawn from the same distribution are flagged. With
// the effect floors off, the rate is the tests' own size and must stay
// within alpha (plus sampling noise); with the defaults it is lower still.
func TestFalseAlarmRateOnIdenticalDistributions(t *testing.T) {
	pure := Options{Alpha: 0.05, MinRequests: 200}
	for _, tc := range []struct {
		n, trials int
		seed      uint64
	}{{200, 4000, 1}, {1000, 4000, 2}, {10000, 2500, 3}} {
		p95, errs, any := rates(t, tc.seed, steady, steady, tc.n, tc.trials, pure)
		t.Logf("alpha 0.05, no effect floor, n=%d per release, %d trials: false alarms p95 %.4f, error rate %.4f, either %.4f",
			tc.n, tc.trials, p95, errs, any)
		if any > bound(pure.Alpha, tc.trials) {
			t.Errorf("n=%d: false-alarm rate %.4f above alpha %.2f + 3 standard errors (%.4f)", tc.n, any, pure.Alpha, bound(pure.Alpha, tc.trials))
		}
		if p95 > bound(pure.Alpha/2, tc.trials) || errs > bound(pure.Alpha/2, tc.trials) {
			t.Errorf("n=%d: a single test's false-alarm rate (p95 %.4f, errors %.4f) above its Bonferroni share %.3f", tc.n, p95, errs, pure.Alpha/2)
		}
	}
	def := DefaultOptions()
	_, _, any := rates(t, 4, steady, steady, 1000, 4000, def)
	t.Logf("defaults (alpha %.2f, +%.0f%% p95, +%.1f points errors), n=1000, 4000 trials: false alarms %.4f",
		def.Alpha, def.MinP95Increase*100, def.MinErrorRateIncrease*100, any)
	if any > bound(def.Alpha, 4000) {
		t.Errorf("defaults: false-alarm rate %.4f above alpha %.2f", any, def.Alpha)
	}
}

// TestDetectsPlantedRegressions: a slower release (every request ×1.3) and
// a more failing one (2 % → 4 %) are flagged most of the time with 2000
// requests each, and each for the right figure.
func TestDetectsPlantedRegressions(t *testing.T) {
	o := DefaultOptions()
	slower := steady
	slower.median = steady.median * 13 / 10
	p95, errs, _ := rates(t, 5, steady, slower, 2000, 500, o)
	t.Logf("p95 ×1.3, n=2000: flagged p95 %.3f, error rate %.3f", p95, errs)
	if p95 < 0.9 {
		t.Errorf("a 30%% slower release is flagged only %.3f of the time", p95)
	}
	if errs > bound(o.Alpha/2, 500) {
		t.Errorf("a slower release with the same errors flags the error rate %.3f of the time", errs)
	}
	failing := steady
	failing.errRate = 0.04
	p95, errs, _ = rates(t, 6, steady, failing, 2000, 500, o)
	t.Logf("error rate 2%% → 4%%, n=2000: flagged p95 %.3f, error rate %.3f", p95, errs)
	if errs < 0.8 {
		t.Errorf("an error rate doubling from 2%% is flagged only %.3f of the time", errs)
	}
	if p95 > bound(o.Alpha/2, 500) {
		t.Errorf("a release with the same latency flags p95 %.3f of the time", p95)
	}
	// A faster, less failing release is never a regression.
	better := population{median: steady.median / 2, sigma: steady.sigma, errRate: 0.005}
	if _, _, any := rates(t, 7, steady, better, 2000, 200, o); any != 0 {
		t.Errorf("an improvement was flagged %.3f of the time", any)
	}
}

func TestTooFewRequestsAreNotCompared(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	c, err := Compare(steady.sample(r, "v1", 5000), steady.sample(r, "v2", 150), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if c.Compared || c.Regressed || !strings.Contains(c.Why, "150 after, need 200") {
		t.Errorf("150 requests compared: %+v", c)
	}
	if c.BeforeRequests != 5000 || c.AfterRequests != 150 {
		t.Errorf("sample counts %d/%d, want 5000/150", c.BeforeRequests, c.AfterRequests)
	}
}

func TestCompareReportsFiguresAndRejectsBadOptions(t *testing.T) {
	mk := func(ms float64, n int, errs uint64) Sample {
		s := Sample{Buckets: make([]uint64, latency.Buckets), Requests: uint64(n), Errors: errs}
		s.Buckets[latency.Index(time.Duration(ms*float64(time.Millisecond)))] = uint64(n)
		return s
	}
	c, err := Compare(mk(100, 1000, 10), mk(300, 1000, 60), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(c.P95.Before-0.1)/0.1 > 0.016 || math.Abs(c.P95.After-0.3)/0.3 > 0.016 {
		t.Errorf("p95 %v → %v, want 0.1 → 0.3 within the histogram's 1.6%%", c.P95.Before, c.P95.After)
	}
	if c.ErrorRate.Before != 0.01 || c.ErrorRate.After != 0.06 || !c.P95.Regressed || !c.ErrorRate.Regressed || !c.Regressed {
		t.Errorf("comparison %+v: want both regressed", c)
	}
	if c.Test != TestDescription {
		t.Errorf("test = %q", c.Test)
	}
	for _, o := range []Options{{}, {Alpha: 1, MinRequests: 1}, {Alpha: 0.01, MinRequests: 1, MinP95Increase: math.NaN()}} {
		if _, err := Compare(mk(1, 10, 0), mk(1, 10, 0), o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if _, err := Compare(Sample{Buckets: make([]uint64, latency.Buckets+1)}, Sample{}, DefaultOptions()); err == nil {
		t.Error("a histogram longer than the layout was accepted")
	}
}

// TestUpperTail checks the exact and approximate tails against values
// computed by hand (and by scipy.stats.hypergeom.sf(x-1, N, K, n)).
func TestUpperTail(t *testing.T) {
	for _, c := range []struct {
		x, n, K, N uint64
		want, tol  float64
	}{
		{0, 10, 5, 20, 1, 0},
		{6, 10, 5, 20, 0, 0},                 // more successes than exist
		{5, 10, 5, 20, 0.016253869969, 1e-9}, // C(10,5)/C(20,5) = 252/15504
		{1, 1, 1, 2, 0.5, 1e-12},
	} {
		if got := upperTail(c.x, c.n, c.K, c.N); math.Abs(got-c.want) > c.tol {
			t.Errorf("upperTail(%d, %d, %d, %d) = %v, want %v", c.x, c.n, c.K, c.N, got, c.want)
		}
	}
	// Large counts take the normal approximation: P(X ≥ mean) ≈ 0.5.
	if got := upperTail(5000, 10000, 10000, 20000); math.Abs(got-0.5) > 0.01 {
		t.Errorf("upper tail at the mean = %v, want ≈ 0.5", got)
	}
}
