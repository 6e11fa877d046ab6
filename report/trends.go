package report

import (
	"math"
	"time"
)

// Figures is one span's request figures (a day, or a whole period).
type Figures struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Requests answered in the span (from the route rollups; null when
	// they are not kept).
	Requests *uint64 `json:"requests"`
	// ThroughputRPS is the mean of the per-minute (30d: per-hour)
	// throughput over the points the history holds, requests per second.
	ThroughputRPS *float64 `json:"throughput_rps"`
	// P50Seconds, P95Seconds, P99Seconds are percentiles of every request
	// of the span, from the merged latency buckets of the app's rollups.
	P50Seconds *float64 `json:"p50_seconds"`
	P95Seconds *float64 `json:"p95_seconds"`
	P99Seconds *float64 `json:"p99_seconds"`
	// ErrorRate is failed ÷ answered requests (rollups), or else the
	// request-weighted mean of the per-minute error rates (0..1).
	ErrorRate *float64 `json:"error_rate"`
	// Apdex is the request-weighted mean of the per-minute Apdex scores (0..1).
	Apdex *float64 `json:"apdex"`
	// Coverage is the share of the span the history has points for (0..1).
	Coverage float64 `json:"coverage"`
}

// Trends are the figures per day, for the whole period and the previous
// period, and the change between the two.
type Trends struct {
	Days     []Figures `json:"days"`
	Period   Figures   `json:"period"`
	Previous Figures   `json:"previous"`
	// Change is (period − previous) ÷ previous per figure; null when
	// either is not measured or previous is 0.
	Change Change `json:"change"`
}

// Change is the relative change of each figure against the previous period.
type Change struct {
	Requests      *float64 `json:"requests"`
	ThroughputRPS *float64 `json:"throughput_rps"`
	P50Seconds    *float64 `json:"p50_seconds"`
	P95Seconds    *float64 `json:"p95_seconds"`
	P99Seconds    *float64 `json:"p99_seconds"`
	ErrorRate     *float64 `json:"error_rate"`
	Apdex         *float64 `json:"apdex"`
}

func buildTrends(p *points, rs RouteSource, r *Report, problems *[]string) Trends {
	t := Trends{Days: []Figures{}}
	rollupErr := false
	span := func(w Window) Figures {
		f := spanFigures(p, w)
		if rs != nil && !rollupErr {
			a, err := allRoutes(rs, w)
			if err != nil {
				rollupErr = true
				*problems = append(*problems, "route rollups: "+err.Error())
			} else if a.requests > 0 {
				n := a.requests
				f.Requests = &n
				f.P50Seconds, f.P95Seconds, f.P99Seconds = num(a.p50), num(a.p95), num(a.p99)
				f.ErrorRate = num(float64(a.errors) / float64(a.requests))
			} else {
				zero := uint64(0)
				f.Requests = &zero
			}
		}
		return f
	}
	for _, d := range days(r.Period) {
		t.Days = append(t.Days, span(d))
	}
	t.Period = span(r.Period)
	t.Previous = span(r.Previous)
	rel := func(cur, prev *float64) *float64 {
		if cur == nil || prev == nil || *prev == 0 {
			return nil
		}
		return num((*cur - *prev) / *prev)
	}
	u := func(x *uint64) *float64 {
		if x == nil {
			return nil
		}
		v := float64(*x)
		return &v
	}
	c, pv := t.Period, t.Previous
	t.Change = Change{Requests: rel(u(c.Requests), u(pv.Requests)), ThroughputRPS: rel(c.ThroughputRPS, pv.ThroughputRPS),
		P50Seconds: rel(c.P50Seconds, pv.P50Seconds), P95Seconds: rel(c.P95Seconds, pv.P95Seconds), P99Seconds: rel(c.P99Seconds, pv.P99Seconds),
		ErrorRate: rel(c.ErrorRate, pv.ErrorRate), Apdex: rel(c.Apdex, pv.Apdex)}
	return t
}

// spanFigures computes the series-based figures of w.
func spanFigures(p *points, w Window) Figures {
	f := Figures{From: w.From, To: w.To}
	lo, hi := p.slice(w.From, w.To)
	rps := p.col("throughput_rps")
	step := make([]float64, len(p.Time))
	for i := range step {
		step[i] = p.Step.Seconds()
	}
	f.ThroughputRPS = num(weightedMean(rps, step, lo, hi))
	f.ErrorRate = num(weightedMean(p.col("error_rate"), rps, lo, hi))
	f.Apdex = num(weightedMean(p.col("apdex"), rps, lo, hi))
	if want := w.To.Sub(w.From) / p.Step; want > 0 {
		f.Coverage = round6(math.Min(1, float64(hi-lo)/float64(want)))
	}
	return f
}
