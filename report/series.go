package report

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/pulsegate/pulsegate/history"
)

// Series is where the report reads the trend series: the history archive
// (*history.Archive).
type Series interface {
	// Query answers [from, to) from a tier (history.Tier1m, history.Tier1h),
	// at most history.MaxPoints points.
	Query(name string, tier int, from, to time.Time) (history.View, error)
}

// points are one tier's stored points over a span, as columns: Time[i] is
// the point's start, Step its length, Cols[series][i] the value (NaN = not
// measured), Health[i] the worst verdict in the point.
type points struct {
	Step   time.Duration
	Time   []int64
	Health []string
	Cols   map[string][]float64
}

// readPoints reads [from, to) of tier in chunks the archive answers one
// stored point per step (no merging), so every figure keeps its own worst
// value per minute (or hour). Points.Step is the tier's step, or the
// whole multiple of it the source answered (a fleet's longer heartbeat
// interval).
func readPoints(src Series, tier int, from, to time.Time) (*points, error) {
	step := history.TierStep(tier)
	out := &points{Step: step, Cols: map[string][]float64{}}
	for _, n := range history.Series() {
		out.Cols[n] = nil
	}
	for n := range fleetAggregation { // a fleet's series (concurrency_limit)
		out.Cols[n] = nil
	}
	if src == nil {
		return out, nil
	}
	from = from.Truncate(step)
	stepSet := false
	chunk := time.Duration(history.MaxPoints) * step
	for f := from; f.Before(to); f = f.Add(chunk) {
		t := f.Add(chunk)
		if t.After(to) {
			t = to
		}
		v, err := src.Query("", tier, f, t)
		if err != nil {
			return out, err
		}
		// The archive answers the tier's step. The fleet's rows may come in
		// a whole multiple of it (the store raises the step to the longest
		// heartbeat interval): every point then stands for that longer step.
		vs := time.Duration(v.StepSeconds) * time.Second
		switch {
		case len(v.Time) == 0:
			continue
		case !stepSet && vs >= step && vs%step == 0:
			out.Step, stepSet = vs, true
		case vs != out.Step:
			return out, fmt.Errorf("history answered %ds steps for the %s tier (after %s ones)", v.StepSeconds, step, out.Step)
		}
		out.Time = append(out.Time, v.Time...)
		out.Health = append(out.Health, v.Health...)
		for n := range out.Cols {
			col := v.Series[n]
			for i := range v.Time {
				x := math.NaN()
				if i < len(col) && col[i] != nil {
					x = *col[i]
				}
				out.Cols[n] = append(out.Cols[n], x)
			}
		}
	}
	return out, nil
}

// slice returns the indexes of the points starting in [from, to).
func (p *points) slice(from, to time.Time) (lo, hi int) {
	f, t := from.Unix(), to.Unix()
	lo = sort.Search(len(p.Time), func(i int) bool { return p.Time[i] >= f })
	hi = sort.Search(len(p.Time), func(i int) bool { return p.Time[i] >= t })
	return lo, hi
}

// col is one series (NaN-filled when the series is not kept).
func (p *points) col(name string) []float64 {
	c, ok := p.Cols[name]
	if !ok || len(c) != len(p.Time) {
		c = make([]float64, len(p.Time))
		for i := range c {
			c[i] = math.NaN()
		}
	}
	return c
}

// weightedMean is the mean of x over [lo, hi) weighted by w (points where
// either is NaN or the weight is not positive are left out); NaN when no
// point counts.
func weightedMean(x, w []float64, lo, hi int) float64 {
	var s, ws float64
	for i := lo; i < hi; i++ {
		if math.IsNaN(x[i]) || math.IsNaN(w[i]) || w[i] <= 0 {
			continue
		}
		s += x[i] * w[i]
		ws += w[i]
	}
	if ws == 0 {
		return math.NaN()
	}
	return s / ws
}

// quantile is the q-quantile (nearest rank) of the values, NaN when empty.
func quantile(vals []float64, q float64) float64 {
	if len(vals) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), vals...)
	sort.Float64s(s)
	r := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(r, len(s)-1))]
}

// Fit is a least-squares line through a resource's hourly worst values.
type Fit struct {
	// SlopePerDay is the fitted change per day, in the figure's unit.
	SlopePerDay float64 `json:"slope_per_day"`
	// R2 is the coefficient of determination of the fit (0..1).
	R2 float64 `json:"r2"`
	// Points is how many hourly values the fit used.
	Points int `json:"points"`
	// SpanHours is the time between the first and the last of them.
	SpanHours float64 `json:"span_hours"`
}

// linearFit fits y = a + b·t (t in days) by least squares.
func linearFit(ts []int64, ys []float64) (Fit, float64) {
	n := float64(len(ts))
	if len(ts) < 2 {
		return Fit{Points: len(ts)}, math.NaN()
	}
	t0 := ts[0]
	var st, sy, stt, sty float64
	for i := range ts {
		t := float64(ts[i]-t0) / 86400
		st += t
		sy += ys[i]
		stt += t * t
		sty += t * ys[i]
	}
	den := n*stt - st*st
	f := Fit{Points: len(ts), SpanHours: float64(ts[len(ts)-1]-t0) / 3600}
	if den == 0 {
		return f, math.NaN()
	}
	b := (n*sty - st*sy) / den
	a := (sy - b*st) / n
	var ssRes, ssTot float64
	mean := sy / n
	for i := range ts {
		t := float64(ts[i]-t0) / 86400
		e := ys[i] - (a + b*t)
		ssRes += e * e
		ssTot += (ys[i] - mean) * (ys[i] - mean)
	}
	f.SlopePerDay = b
	if ssTot > 0 {
		f.R2 = 1 - ssRes/ssTot
	}
	// The fitted value at the last point.
	return f, a + b*float64(ts[len(ts)-1]-t0)/86400
}

// hourlyWorst merges a column into hours: the highest value of each hour
// that has one (the archive keeps the worst value of each point).
func hourlyWorst(p *points, name string, lo, hi int) ([]int64, []float64) {
	c := p.col(name)
	var ts []int64
	var ys []float64
	for i := lo; i < hi; i++ {
		if math.IsNaN(c[i]) {
			continue
		}
		h := p.Time[i] - p.Time[i]%3600
		if len(ts) > 0 && ts[len(ts)-1] == h {
			ys[len(ys)-1] = math.Max(ys[len(ys)-1], c[i])
			continue
		}
		ts = append(ts, h)
		ys = append(ys, c[i])
	}
	return ts, ys
}
