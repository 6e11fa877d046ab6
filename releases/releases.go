// Package releases compares one route's requests under two releases of the
// app and decides whether the later release made the route slower (p95) or
// more failing (error rate) beyond what chance explains.
//
// The inputs are what pulsegate keeps per route: request latencies as the
// proxy's log-linear histogram (proxy/hist.go: microseconds, one bucket per
// µs below 32 µs, then 32 sub-buckets per power of two; Buckets[i] is the
// count of bucket i of that layout), plus request and error counts.
//
// # The tests
//
// Both figures are tested the same way, one-sided (only "worse" is a
// regression), with a test that is exact under the null hypothesis "both
// releases draw from the same distribution":
//
//   - Error rate: errors are successes among requests. Given the pooled
//     number of errors, the count that falls to the later release is
//     hypergeometric under the null; the p-value is its upper tail (Fisher's
//     exact test, one-sided).
//   - p95: the threshold t is the lower edge of the bucket that holds the
//     p95 of the **pooled** requests of both releases. Each request is
//     "slow" when it lies in that bucket or above (at least 5 % of the
//     pooled requests, so the test keeps its power even when many requests
//     share the threshold's bucket). The pooled threshold is a
//     function of the pooled multiset only, so under the null the slow
//     requests are exchangeable between the releases, and the number that
//     falls to the later one is again hypergeometric (a quantile test in
//     the manner of Mood's median test, at the 95th percentile). Using the
//     earlier release's own p95 as t, and a binomial test against 5 %,
//     would ignore that t was estimated from the earlier sample itself and
//     give more false alarms than stated.
//
// The upper tail is computed exactly (log-gamma terms) while the
// hypergeometric variance is below 50, and with the normal approximation
// with continuity correction above it. The two tests share Options.Alpha by
// Bonferroni: each is run at Alpha/2, so a route is falsely flagged with
// probability at most Alpha. A regression also needs a difference worth
// telling (Options.MinP95Increase, Options.MinErrorRateIncrease), so huge
// samples do not flag a 1 % change, and at least Options.MinRequests
// requests in each release, so a handful cannot decide.
//
// Comparing many routes multiplies the chances of a false alarm: to bound
// the chance of any false flag in a report over R routes, pass Alpha/R.
package releases

import (
	"errors"
	"fmt"
	"math"

	"github.com/pulsegate/pulsegate/latency"
)

// Sample is one route's requests under one release.
type Sample struct {
	// Release names the app version (RESPONSIVENESS_APP_VERSION or the version header).
	Release string
	// Buckets are latency counts in the proxy's histogram layout (len ≤ latency.Buckets).
	Buckets []uint64
	// Requests is the number of requests answered; Errors how many of them failed.
	// Requests may exceed the histogram's total (requests that were not timed,
	// e.g. streams); it is the denominator of the error rate.
	Requests, Errors uint64
}

// timed is the histogram's total.
func (s Sample) timed() uint64 {
	var n uint64
	for _, v := range s.Buckets {
		n += v
	}
	return n
}

// Options tune Compare. The zero value is not valid; start from DefaultOptions.
type Options struct {
	// Alpha is the probability of a false regression flag for one route
	// (both figures together; each test runs at Alpha/2).
	Alpha float64
	// MinRequests is the least number of timed requests, and of requests,
	// in each release for a comparison to be made.
	MinRequests uint64
	// MinP95Increase is the least relative p95 increase flagged (0.1 = +10 %).
	MinP95Increase float64
	// MinErrorRateIncrease is the least absolute error-rate increase flagged
	// (0.005 = half a percentage point).
	MinErrorRateIncrease float64
}

// DefaultOptions: a 1 % chance of a false flag per route, at least 200
// requests per release (about 10 above the p95 each), +10 % p95, +0.5 points
// of error rate.
func DefaultOptions() Options {
	return Options{Alpha: 0.01, MinRequests: 200, MinP95Increase: 0.10, MinErrorRateIncrease: 0.005}
}

func (o Options) validate() error {
	var errs []error
	if !(o.Alpha > 0 && o.Alpha < 1) {
		errs = append(errs, fmt.Errorf("alpha: must be in (0,1), got %v", o.Alpha))
	}
	if o.MinRequests < 1 {
		errs = append(errs, errors.New("min_requests: must be at least 1"))
	}
	if !(o.MinP95Increase >= 0) || math.IsInf(o.MinP95Increase, 0) {
		errs = append(errs, fmt.Errorf("min_p95_increase: must be a finite number ≥ 0, got %v", o.MinP95Increase))
	}
	if !(o.MinErrorRateIncrease >= 0 && o.MinErrorRateIncrease < 1) {
		errs = append(errs, fmt.Errorf("min_error_rate_increase: must be in [0,1), got %v", o.MinErrorRateIncrease))
	}
	return errors.Join(errs...)
}

// Figure is one compared figure: before and after, the test's p-value, and
// whether it regressed.
type Figure struct {
	Before float64 `json:"before"`
	After  float64 `json:"after"`
	// PValue is the one-sided p-value of "after is worse".
	PValue float64 `json:"p_value"`
	// Regressed: significant at Alpha/2 and at least the minimum increase.
	Regressed bool `json:"regressed"`
}

// Comparison is the verdict for one route.
type Comparison struct {
	// Before and After name the releases compared.
	Before string `json:"before_release"`
	After  string `json:"after_release"`
	// BeforeRequests and AfterRequests are the sample counts behind the figures.
	BeforeRequests uint64 `json:"before_requests"`
	AfterRequests  uint64 `json:"after_requests"`
	// Compared is false when a release has fewer than MinRequests requests;
	// Why says so, and no figure is judged.
	Compared bool   `json:"compared"`
	Why      string `json:"why,omitempty"`
	// P95 in seconds (bucket midpoints); ThresholdSeconds is the lower edge
	// of the pooled p95's bucket: the test counts requests at or above it.
	P95              Figure  `json:"p95"`
	ThresholdSeconds float64 `json:"threshold_seconds"`
	ErrorRate        Figure  `json:"error_rate"`
	// Regressed is P95.Regressed || ErrorRate.Regressed.
	Regressed bool `json:"regressed"`
	// Test names the method, for the API and the report.
	Test string `json:"test"`
}

// TestDescription is the one-line statement of the method (Comparison.Test).
const TestDescription = "one-sided exact conditional tests (Fisher's for errors; requests at or above the pooled p95 bucket for latency), Bonferroni over the two"

// Compare judges after against before. It returns an error only for
// invalid options or a histogram longer than latency.Buckets.
func Compare(before, after Sample, o Options) (Comparison, error) {
	if err := o.validate(); err != nil {
		return Comparison{}, err
	}
	if len(before.Buckets) > latency.Buckets || len(after.Buckets) > latency.Buckets {
		return Comparison{}, fmt.Errorf("buckets: at most %d (the proxy's histogram layout)", latency.Buckets)
	}
	c := Comparison{Before: before.Release, After: after.Release, BeforeRequests: before.Requests, AfterRequests: after.Requests, Test: TestDescription}
	tb, ta := before.timed(), after.timed()
	switch {
	case before.Requests < o.MinRequests || after.Requests < o.MinRequests:
		c.Why = fmt.Sprintf("too few requests to compare: %d before, %d after, need %d each", before.Requests, after.Requests, o.MinRequests)
		return c, nil
	case tb < o.MinRequests || ta < o.MinRequests:
		c.Why = fmt.Sprintf("too few timed requests to compare: %d before, %d after, need %d each", tb, ta, o.MinRequests)
		return c, nil
	case before.Errors > before.Requests || after.Errors > after.Requests:
		c.Why = "more errors than requests: counts are inconsistent"
		return c, nil
	}
	c.Compared = true
	level := o.Alpha / 2

	// p95: slow = in the pooled p95's bucket or above.
	pooled := make([]uint64, latency.Buckets)
	for i, v := range before.Buckets {
		pooled[i] += v
	}
	for i, v := range after.Buckets {
		pooled[i] += v
	}
	tIdx := quantileIndex(pooled, 0.95)
	c.ThresholdSeconds, _ = latency.Bounds(tIdx)
	slowB, slowA := atOrAbove(before.Buckets, tIdx), atOrAbove(after.Buckets, tIdx)
	c.P95.Before = latency.Value(quantileIndex(before.Buckets, 0.95))
	c.P95.After = latency.Value(quantileIndex(after.Buckets, 0.95))
	c.P95.PValue = upperTail(slowA, ta, slowA+slowB, ta+tb)
	c.P95.Regressed = c.P95.PValue <= level && c.P95.After >= c.P95.Before*(1+o.MinP95Increase) && c.P95.After > c.P95.Before

	// Error rate.
	c.ErrorRate.Before = float64(before.Errors) / float64(before.Requests)
	c.ErrorRate.After = float64(after.Errors) / float64(after.Requests)
	c.ErrorRate.PValue = upperTail(after.Errors, after.Requests, after.Errors+before.Errors, after.Requests+before.Requests)
	c.ErrorRate.Regressed = c.ErrorRate.PValue <= level && c.ErrorRate.After-c.ErrorRate.Before >= o.MinErrorRateIncrease &&
		c.ErrorRate.After > c.ErrorRate.Before

	c.Regressed = c.P95.Regressed || c.ErrorRate.Regressed
	return c, nil
}

// quantileIndex is the bucket holding the q-quantile, ranked as the proxy
// ranks it (nearest rank).
func quantileIndex(b []uint64, q float64) int {
	var total uint64
	for _, v := range b {
		total += v
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = max(1, min(rank, total))
	var seen uint64
	for i, v := range b {
		seen += v
		if seen >= rank {
			return i
		}
	}
	return len(b) - 1
}

// atOrAbove counts the requests in bucket idx and the buckets after it.
func atOrAbove(b []uint64, idx int) uint64 {
	var n uint64
	for i := idx; i < len(b); i++ {
		n += b[i]
	}
	return n
}

// upperTail is P(X ≥ x) for X hypergeometric: n draws from a population of
// N holding K successes.
func upperTail(x, n, K, N uint64) float64 {
	if x == 0 {
		return 1
	}
	lo := uint64(0)
	if n+K > N {
		lo = n + K - N
	}
	hi := min(n, K)
	if x > hi {
		return 0
	}
	if x <= lo {
		return 1
	}
	fN, fK, fn := float64(N), float64(K), float64(n)
	mean := fn * fK / fN
	variance := fn * (fK / fN) * (1 - fK/fN) * (fN - fn) / (fN - 1)
	if float64(x) < mean-40*math.Sqrt(variance) {
		return 1 // the upper tail from far below the mean: 1 to double precision
	}
	if variance >= 50 {
		z := (float64(x) - 0.5 - mean) / math.Sqrt(variance)
		return 0.5 * math.Erfc(z/math.Sqrt2)
	}
	// Exact: sum the pmf from x up; terms fall fast past the mode.
	logC := func(a, b float64) float64 {
		la, _ := math.Lgamma(a + 1)
		lb, _ := math.Lgamma(b + 1)
		lab, _ := math.Lgamma(a - b + 1)
		return la - lb - lab
	}
	den := logC(fN, fn)
	sum := 0.0
	for k := x; k <= hi; k++ {
		fk := float64(k)
		t := math.Exp(logC(fK, fk) + logC(fN-fK, fn-fk) - den)
		sum += t
		if fk > mean && t < sum*1e-17 {
			break
		}
	}
	return math.Min(1, sum)
}
