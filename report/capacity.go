package report

import (
	"fmt"
	"math"
	"time"

	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/figures"
	"github.com/pulsegate/pulsegate/store"
)

// A resource is projected only when a straight line explains its hourly
// worst values well: R² ≥ ProjectionMinR2 over at least
// ProjectionMinPoints hourly values spanning ProjectionMinSpan, rising.
// A projection within FillingHorizon days is a finding.
const (
	ProjectionMinR2     = 0.8
	ProjectionMinPoints = 24
	ProjectionMinSpan   = 23 * time.Hour
	FillingHorizonDays  = 30
)

// ProjectionCriterion states it for the JSON and the docs.
var ProjectionCriterion = fmt.Sprintf("least-squares line through the hourly worst values of the period; projected only when R² ≥ %g over at least %d hourly values spanning ≥ 23 h and rising; a finding when full within %d days",
	ProjectionMinR2, ProjectionMinPoints, FillingHorizonDays)

// CapacityMethod states how the measured capacity is found.
const CapacityMethod = "the highest per-point throughput while requests waited in pulsegate's queue (every concurrency slot busy: the app answered as fast as it could)"

// rejectionRule is the alert rule for pulsegate's own rejections.
const rejectionRule = "backpressure_rejections"

// resourceFigures are the projected resources (ratios, full at 1).
var resourceFigures = []figures.Name{figures.DiskUsage, figures.MemoryUsage, figures.CPUUsage, figures.ConnectionPoolUtilization, figures.RedisMemoryUsage}

// Capacity is peak load against the limits, and resource trends.
type Capacity struct {
	// PeakThroughputRPS is the highest per-point throughput of the period
	// (requests per second, per-minute mean; per hour for 30d), at PeakAt.
	PeakThroughputRPS *float64   `json:"peak_throughput_rps"`
	PeakAt            *time.Time `json:"peak_at"`
	// PeakInFlight is the most requests in flight to the app in a point.
	PeakInFlight *float64 `json:"peak_in_flight"`
	// ConcurrencyLimit is the limit in force now (fixed, adaptive or the
	// lower of both; 0 = none); MaxConcurrency the configured fixed limit.
	ConcurrencyLimit *int `json:"concurrency_limit"`
	MaxConcurrency   int  `json:"max_concurrency"`
	// PeakInFlightShareOfLimit is PeakInFlight ÷ ConcurrencyLimit.
	PeakInFlightShareOfLimit *float64 `json:"peak_in_flight_share_of_limit"`
	// SaturatedSeconds is the time requests waited in the queue; null when
	// not measured (a fleet's rows carry no queue).
	SaturatedSeconds *float64 `json:"saturated_seconds"`
	// MeasuredCapacityRPS is the app's measured capacity (CapacityMethod);
	// null when it never saturated (CapacityWhy says so).
	MeasuredCapacityRPS *float64 `json:"measured_capacity_rps"`
	CapacityMethod      string   `json:"capacity_method"`
	CapacityWhy         string   `json:"capacity_why,omitempty"`
	// PeakShareOfCapacity is PeakThroughputRPS ÷ MeasuredCapacityRPS.
	PeakShareOfCapacity *float64 `json:"peak_share_of_capacity"`
	// DrainPerSecondNow is the limiter's measured slot release rate now.
	DrainPerSecondNow *float64 `json:"drain_per_second_now"`
	// RejectionAlerts and RejectionAlertSeconds: occurrences of the
	// backpressure_rejections rule in the period and their time firing.
	RejectionAlerts       int     `json:"rejection_alerts"`
	RejectionAlertSeconds float64 `json:"rejection_alert_seconds"`
	// RejectionsSinceStart counts pulsegate's rejections by reason since
	// this sidecar started (not limited to the period); null when unknown.
	RejectionsSinceStart map[string]uint64 `json:"rejections_since_start"`
	// Rejections are pulsegate's rejections in the period and the
	// previous one, from the history's rejection series.
	Rejections Rejections `json:"rejections"`
	// Resources are the resource trends.
	Resources           []Resource `json:"resources"`
	ProjectionCriterion string     `json:"projection_criterion"`
}

// RejectionsMethod states how rejections are counted from the history.
const RejectionsMethod = "each stored point's rejections_rps (rejections per second over the time the monitor ticks covered, from backpressure's counters) × the point's length, summed; the causes are rejections_rate_limit_rps (rate, rate_client), rejections_queue_rps (queue_full, queue_timeout) and rejections_shed_rps (overload:<signal>)"

// Rejection causes: the history's rejection series and the settings
// that govern each (named by the rejections finding).
var rejectionCauses = []struct {
	name, series string
	keys         []string
}{
	{"rate_limit", "rejections_rate_limit_rps", []string{"backpressure.rate_limit_rps", "backpressure.per_client_rps"}},
	{"queue", "rejections_queue_rps", []string{"backpressure.max_concurrency", "backpressure.queue_size", "backpressure.queue_timeout"}},
	{"shed", "rejections_shed_rps", []string{"backpressure.shed_signals", "backpressure.shed_fraction"}},
}

// Rejections are pulsegate's own 429/503 answers (rate limits, the
// concurrency queue, shedding) per day of the period, against the
// previous period, and the worst hour.
type Rejections struct {
	// Days holds each day of the period (as trends.days).
	Days []RejectionCount `json:"days"`
	// Period and Previous are the two periods' counts.
	Period   RejectionCount `json:"period"`
	Previous RejectionCount `json:"previous"`
	// Change is (period − previous) ÷ previous of the totals; null when
	// either is not measured or the previous period had none.
	Change *float64 `json:"change"`
	// PeakHour is the start of the period's hour with the most
	// rejections, PeakHourRejections their number; null without any.
	PeakHour           *time.Time `json:"peak_hour"`
	PeakHourRejections *int64     `json:"peak_hour_rejections"`
	Method             string     `json:"method"`
}

// RejectionCount is a span's rejections, in all and by cause; null when
// the history holds no rejection series for the span (before they were
// kept, or nothing stored).
type RejectionCount struct {
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Total     *int64    `json:"total"`
	RateLimit *int64    `json:"rate_limit"`
	Queue     *int64    `json:"queue"`
	Shed      *int64    `json:"shed"`
	// PerDay is Total ÷ the span's length in days.
	PerDay *float64 `json:"per_day"`
	// Coverage is the share of the span with a measured rejection rate (0..1).
	Coverage float64 `json:"coverage"`
}

// cause is the count of a rejectionCauses name.
func (rc RejectionCount) cause(name string) *int64 {
	switch name {
	case "rate_limit":
		return rc.RateLimit
	case "queue":
		return rc.Queue
	case "shed":
		return rc.Shed
	}
	return nil
}

// rejectionCount counts w's rejections from the points.
func rejectionCount(p *points, w Window) RejectionCount {
	rc := RejectionCount{From: w.From, To: w.To}
	lo, hi := p.slice(w.From, w.To)
	step := p.Step.Seconds()
	count := func(name string) (*int64, int) {
		col := p.col(name)
		var n float64
		measured := 0
		for i := lo; i < hi; i++ {
			if !math.IsNaN(col[i]) {
				n += col[i] * step
				measured++
			}
		}
		if measured == 0 {
			return nil, 0
		}
		c := int64(math.Round(n))
		return &c, measured
	}
	var measured int
	rc.Total, measured = count("rejections_rps")
	rc.RateLimit, _ = count("rejections_rate_limit_rps")
	rc.Queue, _ = count("rejections_queue_rps")
	rc.Shed, _ = count("rejections_shed_rps")
	if rc.Total != nil {
		rc.PerDay = num(float64(*rc.Total) / w.To.Sub(w.From).Hours() * 24)
	}
	if want := w.To.Sub(w.From) / p.Step; want > 0 {
		rc.Coverage = round6(math.Min(1, float64(measured)/float64(want)))
	}
	return rc
}

func buildRejections(p *points, period, previous Window) Rejections {
	r := Rejections{Days: []RejectionCount{}, Method: RejectionsMethod,
		Period: rejectionCount(p, period), Previous: rejectionCount(p, previous)}
	for _, d := range days(period) {
		r.Days = append(r.Days, rejectionCount(p, d))
	}
	if c, pv := r.Period.Total, r.Previous.Total; c != nil && pv != nil && *pv > 0 {
		r.Change = num(float64(*c-*pv) / float64(*pv))
	}
	lo, hi := p.slice(period.From, period.To)
	col := p.col("rejections_rps")
	hours := map[int64]float64{}
	for i := lo; i < hi; i++ {
		if !math.IsNaN(col[i]) {
			hours[p.Time[i]-p.Time[i]%3600] += col[i] * p.Step.Seconds()
		}
	}
	var peak float64
	for h, n := range hours {
		n = math.Round(n)
		if n >= 1 && (n > peak || n == peak && r.PeakHour != nil && h < r.PeakHour.Unix()) {
			at, c := time.Unix(h, 0).UTC(), int64(n)
			peak, r.PeakHour, r.PeakHourRejections = n, &at, &c
		}
	}
	return r
}

// Resource is one resource figure's trend over the period.
type Resource struct {
	Figure string `json:"figure"`
	// Mean and Max over the period's points (ratio 0..1).
	Mean *float64 `json:"mean"`
	Max  *float64 `json:"max"`
	// DailyMax is the highest value of each day of trends.days.
	DailyMax []*float64 `json:"daily_max"`
	// Fit is the line through the hourly worst values; null without two.
	Fit *Fit `json:"fit"`
	// Projection is set only when the fit meets ProjectionCriterion.
	Projection *Projection `json:"projection"`
	// Why says why there is no projection.
	Why string `json:"why,omitempty"`
}

// Projection is when a rising resource reaches its critical threshold and 100 %.
type Projection struct {
	// FullInDays is the days until the line reaches 1 (100 %).
	FullInDays float64 `json:"full_in_days"`
	// CriticalInDays is the days until it reaches the critical threshold
	// (null when the critical level is off or already reached).
	CriticalInDays *float64 `json:"critical_in_days"`
	// Message reads e.g. "disk_usage full in ~13 days at this rate (+3.0 %/day)".
	Message string `json:"message"`
}

func buildCapacity(cfg *config.Config, bp *backpressure.State, p *points, as []store.AlertRecord, w, prev Window, now time.Time) Capacity {
	c := Capacity{Rejections: buildRejections(p, w, prev), MaxConcurrency: cfg.Backpressure.MaxConcurrency, CapacityMethod: CapacityMethod, ProjectionCriterion: ProjectionCriterion, Resources: []Resource{}}
	lo, hi := p.slice(w.From, w.To)
	rps, inFlight, queue := p.col("throughput_rps"), p.col("in_flight"), p.col("queue_depth")
	peak, peakIF, capRPS, saturated := math.NaN(), math.NaN(), math.NaN(), 0.0
	for i := lo; i < hi; i++ {
		if !math.IsNaN(rps[i]) && !(rps[i] <= peak) {
			peak = rps[i]
			at := time.Unix(p.Time[i], 0).UTC()
			c.PeakAt = &at
		}
		if !math.IsNaN(inFlight[i]) && !(inFlight[i] <= peakIF) {
			peakIF = inFlight[i]
		}
		if queue[i] > 0 {
			saturated += p.Step.Seconds()
			if !math.IsNaN(rps[i]) && !(rps[i] <= capRPS) {
				capRPS = rps[i]
			}
		}
	}
	c.PeakThroughputRPS, c.PeakInFlight, c.MeasuredCapacityRPS, c.SaturatedSeconds = num(peak), num(peakIF), num(capRPS), num(saturated)
	if math.IsNaN(capRPS) {
		c.CapacityWhy = "no request waited in the queue during the period: the app never reached its concurrency limit, so its capacity is at least the peak throughput"
		if bp != nil && bp.Limit == 0 {
			c.CapacityWhy = "no concurrency limit is set (backpressure.max_concurrency or adaptive), so requests never queue and the capacity cannot be measured from the history"
		}
	} else if capRPS > 0 {
		c.PeakShareOfCapacity = num(peak / capRPS)
	}
	if bp != nil {
		l := bp.Limit
		c.ConcurrencyLimit = &l
		if l > 0 {
			c.PeakInFlightShareOfLimit = num(peakIF / float64(l))
		}
		c.DrainPerSecondNow = num(bp.DrainPerSecond)
		c.RejectionsSinceStart = map[string]uint64{}
		for k, v := range bp.Rejections {
			c.RejectionsSinceStart[k] = v
		}
	}
	for _, o := range inPeriod(as, w, now) {
		if o.a.Rule != rejectionRule {
			continue
		}
		c.RejectionAlerts++
		c.RejectionAlertSeconds += math.Round(o.secondsIn(w))
	}
	for _, name := range resourceFigures {
		c.Resources = append(c.Resources, resource(cfg, p, name, w))
	}
	return c
}

func resource(cfg *config.Config, p *points, name figures.Name, w Window) Resource {
	r := Resource{Figure: string(name), DailyMax: []*float64{}}
	col := p.col(string(name))
	lo, hi := p.slice(w.From, w.To)
	ones := make([]float64, len(col))
	for i := range ones {
		ones[i] = 1
	}
	r.Mean = num(weightedMean(col, ones, lo, hi))
	mx := math.NaN()
	for i := lo; i < hi; i++ {
		if !math.IsNaN(col[i]) && !(col[i] <= mx) {
			mx = col[i]
		}
	}
	r.Max = num(mx)
	for _, d := range days(w) {
		dl, dh := p.slice(d.From, d.To)
		m := math.NaN()
		for i := dl; i < dh; i++ {
			if !math.IsNaN(col[i]) && !(col[i] <= m) {
				m = col[i]
			}
		}
		r.DailyMax = append(r.DailyMax, num(m))
	}
	ts, ys := hourlyWorst(p, string(name), lo, hi)
	switch len(ts) {
	case 0:
		r.Why = "not measured in the period"
		return r
	case 1:
		r.Why = "one hourly value so far: no trend yet"
		return r
	}
	fit, last := linearFit(ts, ys)
	fit.SlopePerDay, fit.R2, fit.SpanHours = round6(fit.SlopePerDay), round6(fit.R2), round6(fit.SpanHours)
	r.Fit = &fit
	switch {
	case fit.Points < ProjectionMinPoints || fit.SpanHours < ProjectionMinSpan.Hours():
		r.Why = fmt.Sprintf("too little history for a projection: %d hourly values over %.0f h", fit.Points, fit.SpanHours)
	case fit.SlopePerDay <= 0:
		r.Why = "not rising"
	case fit.R2 < ProjectionMinR2:
		r.Why = fmt.Sprintf("no clear linear trend (R² %.2f < %g)", fit.R2, ProjectionMinR2)
	case last >= 1:
		r.Why = "already full"
	default:
		pr := &Projection{FullInDays: round1((1 - last) / fit.SlopePerDay)}
		f, _ := figures.Lookup(name)
		if t := f.Thresholds(cfg); t.CriticalOn && last < t.Critical {
			pr.CriticalInDays = num(round1((t.Critical - last) / fit.SlopePerDay))
		}
		pr.Message = fmt.Sprintf("%s full in ~%.0f days at this rate (+%.1f %%/day, R² %.2f)", name, math.Max(1, math.Round(pr.FullInDays)), fit.SlopePerDay*100, fit.R2)
		r.Projection = pr
	}
	return r
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// FleetCapacityWhy is a fleet report's capacity_why.
const FleetCapacityWhy = "the fleet's rows sum the instances: peak_in_flight is the highest per-minute sum of the instances' peaks (an upper bound, " +
	"their peaks need not coincide), concurrency_limit the sum of the instances' limits at that point, saturated_seconds the time some instance " +
	"queued; the measured capacity, the drain rate and the rejections since start are per instance (`pulsegate report` against each sidecar); " +
	"peak_throughput_rps is the fleet's (the sum of the instances' throughput)"

// fleetCapacity keeps what the fleet rows measure (the fleet's
// throughput, rejections, peak in flight and time queued, see
// fleetAggregation) and sets the concurrency limit from them: the fleet's
// limit at the point of the peak in flight. Figures only an instance has
// are null.
func fleetCapacity(c *Capacity, p *points, w Window) {
	c.ConcurrencyLimit, c.PeakInFlightShareOfLimit = nil, nil
	c.MeasuredCapacityRPS, c.PeakShareOfCapacity, c.DrainPerSecondNow, c.RejectionsSinceStart = nil, nil, nil, nil
	c.CapacityWhy = FleetCapacityWhy
	lo, hi := p.slice(w.From, w.To)
	inFlight, limit, queue := p.col("in_flight"), p.col("concurrency_limit"), p.col("queue_depth")
	peak := -1
	measured := false
	for i := lo; i < hi; i++ {
		measured = measured || !math.IsNaN(queue[i])
		if !math.IsNaN(inFlight[i]) && (peak < 0 || inFlight[i] > inFlight[peak]) {
			peak = i
		}
	}
	if !measured {
		c.SaturatedSeconds = nil
	}
	if peak >= 0 && !math.IsNaN(limit[peak]) {
		l := int(limit[peak])
		c.ConcurrencyLimit = &l
		if l > 0 {
			c.PeakInFlightShareOfLimit = num(inFlight[peak] / float64(l))
		}
	}
	for i, r := range c.Resources {
		if _, ok := fleetAggregation[r.Figure]; !ok {
			c.Resources[i].Why = "not in the fleet rows: each instance's report has it"
		}
	}
}
