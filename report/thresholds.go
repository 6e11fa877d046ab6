package report

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/figures"
	"github.com/pulsegate/pulsegate/store"
)

// How a suggested threshold is computed (never applied): a high
// percentile of the figure's worst value per point (minute, or hour for
// 30d) over the period's quiet points, with a margin.
const (
	// SuggestQuantile is the percentile of the quiet values for figures
	// bad above; figures bad below (Apdex) take 1 − SuggestQuantile.
	SuggestQuantile = 0.99
	// SuggestMargin is added on top (bad above: × 1.2; bad below: × 0.9).
	SuggestMarginAbove = 1.2
	SuggestMarginBelow = 0.9
	// SuggestMinPoints is the fewest quiet points a suggestion needs.
	SuggestMinPoints = 60
)

// SuggestMethod states the method for the JSON and the docs.
var SuggestMethod = fmt.Sprintf("warning = the %gth percentile of the figure's worst value per history point over the period's quiet points "+
	"(no alert of any rule active), × %g for figures bad above (the 1st percentile × %g for Apdex); critical keeps the configured "+
	"critical÷warning ratio; ratios are capped at 0.99; at least %d quiet points; advice is raise (lower for Apdex) only when the "+
	"suggestion is beyond the configured warning, else keep", SuggestQuantile*100, SuggestMarginAbove, SuggestMarginBelow, SuggestMinPoints)

// Threshold is one judged figure's thresholds over the period.
type Threshold struct {
	Figure  string `json:"figure"`
	Label   string `json:"label"`
	Unit    string `json:"unit"`
	BadWhen string `json:"bad_when"`
	// InHistory: the figure is kept in the history series, so trips and
	// suggestions are computed; otherwise only its alerts are counted.
	InHistory bool `json:"in_history"`
	// Measured: the history has at least one value of the figure in the period.
	Measured bool `json:"measured"`
	// Levels are warning then critical.
	Levels []Level `json:"levels"`
	// Rules are the alert rules that read the figure.
	Rules []string `json:"rules"`
	// Alerts, Acknowledged and Ignored count the rules' occurrences in the period.
	Alerts       int `json:"alerts"`
	Acknowledged int `json:"acknowledged"`
	Ignored      int `json:"ignored"`
	// Flapping: one of the rules flapped (see alerts.flapping_criterion).
	Flapping bool `json:"flapping"`
	// Suggestion is the suggested levels; never applied.
	Suggestion Suggestion `json:"suggestion"`
}

// Level is one threshold level.
type Level struct {
	// Level is warning or critical.
	Level string `json:"level"`
	// Key is the configuration key it comes from.
	Key string `json:"key"`
	// Value is the configured threshold in the figure's unit; null = off.
	Value *float64 `json:"value"`
	// Trips counts the times the figure reached the level (runs of
	// consecutive history points at or beyond it).
	Trips int `json:"trips"`
	// Seconds is how long it stayed at or beyond it.
	Seconds float64 `json:"seconds"`
}

// Suggestion is a threshold computed from the history. It is advice:
// pulsegate never applies it.
type Suggestion struct {
	// Warning and Critical are the suggested values; null when there is
	// not enough quiet history (Why says so).
	Warning  *float64 `json:"warning"`
	Critical *float64 `json:"critical"`
	// Advice is keep, raise (bad above) or lower (bad below).
	Advice string `json:"advice"`
	// QuietPoints is how many points the suggestion was computed from.
	QuietPoints int    `json:"quiet_points"`
	Why         string `json:"why,omitempty"`
}

// buildThresholds judges every figure with thresholds; kept are the
// series the points hold (history.Series, or a fleet's fleetAggregation).
func buildThresholds(cfg *config.Config, p *points, kept []string, as []store.AlertRecord, al Alerts, w Window, now time.Time) []Threshold {
	occ := inPeriod(as, w, now)
	lo, hi := p.slice(w.From, w.To)
	quiet := quietPoints(p, occ, lo, hi)
	var out []Threshold
	for _, f := range figures.All() {
		t := f.Thresholds(cfg)
		if t.WarningKey == "" && t.CriticalKey == "" {
			continue
		}
		th := Threshold{Figure: string(f.Name), Label: f.Label, Unit: string(f.Unit), BadWhen: string(f.BadWhen),
			InHistory: slices.Contains(kept, string(f.Name)), Rules: []string{}}
		lv := []struct {
			name string
			key  string
			v    float64
			on   bool
		}{{"warning", t.WarningKey, t.Warning, t.WarningOn}, {"critical", t.CriticalKey, t.Critical, t.CriticalOn}}
		col := p.col(string(f.Name))
		if !th.InHistory {
			col = p.col("") // not measured: e.g. a fleet's sum of the instances' peaks (fleetPeakSums)
		}
		for i := lo; i < hi && !th.Measured; i++ {
			th.Measured = !math.IsNaN(col[i])
		}
		for _, l := range lv {
			L := Level{Level: l.name, Key: l.key}
			if l.on {
				L.Value = num(l.v)
				if th.InHistory {
					L.Trips, L.Seconds = trips(p, col, lo, hi, f.BadWhen, l.v)
				}
			}
			th.Levels = append(th.Levels, L)
		}
		for _, o := range occ {
			if o.a.Metric != string(f.Name) {
				continue
			}
			th.Alerts++
			if o.a.AcknowledgedAt != nil {
				th.Acknowledged++
			} else {
				th.Ignored++
			}
			if !slices.Contains(th.Rules, o.a.Rule) {
				th.Rules = append(th.Rules, o.a.Rule)
			}
		}
		for _, rs := range al.Rules {
			if rs.Metric == string(f.Name) && rs.Flapping {
				th.Flapping = true
			}
		}
		sort.Strings(th.Rules)
		th.Suggestion = suggest(f, t, col, quiet, th.InHistory)
		out = append(out, th)
	}
	return out
}

// quietPoints are the indexes in [lo, hi) of points no alert occurrence overlaps.
func quietPoints(p *points, occ []occurrence, lo, hi int) []int {
	step := int64(p.Step / time.Second)
	busy := make([]bool, hi-lo)
	for _, o := range occ {
		// Points [t, t+step) with t < end and t+step > start.
		a := sort.Search(hi-lo, func(i int) bool { return p.Time[lo+i]+step > o.start.Unix() })
		for i := a; i < hi-lo && p.Time[lo+i] <= o.end.Unix(); i++ {
			busy[i] = true
		}
	}
	var q []int
	for i, b := range busy {
		if !b {
			q = append(q, lo+i)
		}
	}
	return q
}

// trips counts runs of points at or beyond thr (a gap of more than two
// steps without points ends a run) and the time spent there.
func trips(p *points, col []float64, lo, hi int, dir figures.Direction, thr float64) (int, float64) {
	n, secs := 0, 0.0
	in := false
	var last int64
	step := int64(p.Step / time.Second)
	for i := lo; i < hi; i++ {
		x := col[i]
		if math.IsNaN(x) {
			continue
		}
		bad := x >= thr
		if dir == figures.Below {
			bad = x <= thr
		}
		if in && p.Time[i]-last > 2*step {
			in = false
		}
		if bad {
			secs += float64(step)
			if !in {
				n++
			}
		}
		in, last = bad, p.Time[i]
	}
	return n, secs
}

func suggest(f figures.Figure, t figures.Thresholds, col []float64, quiet []int, inHistory bool) Suggestion {
	s := Suggestion{Advice: "keep"}
	if !inHistory {
		s.Why = "the figure is not kept in the history series"
		return s
	}
	var vals []float64
	for _, i := range quiet {
		if !math.IsNaN(col[i]) {
			vals = append(vals, col[i])
		}
	}
	s.QuietPoints = len(vals)
	if len(vals) < SuggestMinPoints {
		s.Why = fmt.Sprintf("%d quiet points with a value, need %d", len(vals), SuggestMinPoints)
		return s
	}
	var warn float64
	if f.BadWhen == figures.Below {
		warn = quantile(vals, 1-SuggestQuantile) * SuggestMarginBelow
	} else {
		warn = quantile(vals, SuggestQuantile) * SuggestMarginAbove
	}
	warn = nice(warn, f)
	crit := math.NaN()
	if t.WarningOn && t.CriticalOn && t.Warning != 0 {
		crit = nice(warn*t.Critical/t.Warning, f)
	}
	s.Warning, s.Critical = num(warn), num(crit)
	if t.WarningOn {
		switch {
		case f.BadWhen == figures.Below && warn < t.Warning:
			s.Advice = "lower"
		case f.BadWhen != figures.Below && warn > t.Warning:
			s.Advice = "raise"
		}
	}
	return s
}

// nice rounds a suggestion in the figure's unit, away from the bad side:
// ratios and scores to 0.01 (capped at 0.99), counts to a whole number,
// seconds to two significant digits.
func nice(x float64, f figures.Figure) float64 {
	up := f.BadWhen != figures.Below
	r := func(v, step float64) float64 {
		if up {
			return math.Ceil(v/step-1e-9) * step
		}
		return math.Floor(v/step+1e-9) * step
	}
	switch f.Unit {
	case figures.Ratio, figures.Score:
		return math.Min(0.99, math.Max(0.01, r(x, 0.01)))
	case figures.Count:
		return math.Max(1, r(x, 1))
	}
	if x <= 0 {
		return x
	}
	mag := math.Pow(10, math.Floor(math.Log10(x))-1)
	return r(x, mag)
}
