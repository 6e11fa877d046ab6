package report

import (
	"math"
	"time"

	"github.com/pulsegate/pulsegate/history"
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
	// app reads the app's merged rollup of w (ok false without one).
	app := func(w Window) (history.RouteRollup, bool) {
		if rs == nil || rollupErr {
			return history.RouteRollup{}, false
		}
		m, err := merged(rs, history.AllRoutes, w)
		if err != nil {
			rollupErr = true
			*problems = append(*problems, "route rollups: "+err.Error())
			return m.all, false
		}
		return m.all, true
	}
	var daily []history.RouteRollup
	for _, d := range days(r.Period) {
		f := spanFigures(p, d)
		if m, ok := app(d); ok {
			withRollup(&f, m)
			daily = append(daily, m)
		}
		t.Days = append(t.Days, f)
	}
	t.Period = spanFigures(p, r.Period)
	if rs != nil && !rollupErr {
		withRollup(&t.Period, history.MergeRollups(daily))
	}
	t.Previous = spanFigures(p, r.Previous)
	if m, ok := app(r.Previous); ok {
		withRollup(&t.Previous, m)
	}
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

// withRollup sets the figures the app's rollup gives: the request count,
// the percentiles of the merged buckets and the error rate.
func withRollup(f *Figures, m history.RouteRollup) {
	n := m.Requests
	f.Requests = &n
	if m.Timed() > 0 {
		f.P50Seconds, f.P95Seconds, f.P99Seconds = num(m.Quantile(0.5)), num(m.Quantile(0.95)), num(m.Quantile(0.99))
	}
	if m.Requests > 0 {
		f.ErrorRate = num(float64(m.Errors) / float64(m.Requests))
	}
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
