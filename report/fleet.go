package report

import (
	"context"
	"maps"
	"sort"
	"time"

	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/store"
)

// fleetAggregation says how each fleet series merges the instances (the
// history endpoint's "aggregation" for ?scope=fleet, and docs/report.md's
// fleet section): the series of a history.View made by FleetView.
// FleetAggregation hands out copies.
var fleetAggregation = map[string]string{
	"p50_response_time": "from the instances' merged latency buckets",
	"p95_response_time": "from the instances' merged latency buckets",
	"p99_response_time": "from the instances' merged latency buckets",
	"avg_response_time": "total time ÷ requests over every instance",
	"throughput_rps":    "sum of the instances",
	"error_rate":        "fleet errors ÷ fleet answered",
	"cpu_usage":         "highest instance",
	"memory_usage":      "highest instance",
	"requests":          "sum of the instances, per step",
	"errors":            "sum of the instances, per step",
	"instances":         "instances with a heartbeat in the step",
	// Backpressure's figures (store.CapacityFigures), from heartbeats of
	// schema version 5 on; null before.
	"rejections_rps":            "sum of the instances' rejections in the step ÷ the step's seconds",
	"rejections_rate_limit_rps": "sum of the instances' rate-limit rejections (rate, rate_client) ÷ the step's seconds",
	"rejections_queue_rps":      "sum of the instances' queue rejections (queue_full, queue_timeout) ÷ the step's seconds",
	"rejections_shed_rps":       "sum of the instances' shed rejections (overload:<signal>) ÷ the step's seconds",
	"in_flight":                 "highest, over the step's minutes, sum of the instances' peak in flight in the minute (an upper bound: their peaks need not coincide)",
	"queue_depth":               "highest, over the step's minutes, sum of the instances' peak queued in the minute (an upper bound)",
	"concurrency_limit":         "highest, over the step's minutes, sum of the concurrency limits of the instances reporting one (the fleet's capacity; 0 = no limit set)",
}

// fleetPeakSums are the fleet series that sum the instances' peaks: no
// instance's value, so the thresholds (set per instance) are not judged
// on them (capacity reads them).
var fleetPeakSums = []string{"in_flight", "queue_depth"}

// FleetAggregation is how each fleet series merges the instances (a copy).
func FleetAggregation() map[string]string { return maps.Clone(fleetAggregation) }

// FleetView lays the fleet's merged steps out as the history's columns
// (tier "fleet"): one point per step that holds a heartbeat row, the
// series of fleetAggregation. rangeName, from and to describe the asked
// range (history.Request).
func FleetView(fs store.FleetSeries, rangeName string, from, to time.Time) history.View {
	n := len(fs.Steps)
	v := history.View{Range: rangeName, Tier: "fleet", StepSeconds: int64(fs.Step / time.Second),
		ResolutionSeconds: int64(fs.Step / time.Second), From: from.Unix(), To: to.Unix(),
		Time: make([]int64, n), Health: make([]string, n), Series: map[string][]*float64{}}
	for name := range fleetAggregation {
		v.Series[name] = make([]*float64, n)
	}
	set := func(name string, i int, x float64) { v.Series[name][i] = &x }
	for i, st := range fs.Steps {
		m := st.Merged
		v.Time[i] = st.Start.Unix()
		v.Health[i] = st.Status
		if st.Status == "ok" {
			v.Health[i] = "healthy"
		}
		set("requests", i, float64(m.Answered))
		set("errors", i, float64(m.Failed))
		set("instances", i, float64(len(m.Instances)))
		set("throughput_rps", i, st.ThroughputRPS)
		if m.Answered > 0 {
			set("error_rate", i, m.ErrorRate)
		}
		if m.Latency.Count() > 0 {
			set("p50_response_time", i, m.P50)
			set("p95_response_time", i, m.P95)
			set("p99_response_time", i, m.P99)
		}
		if c := m.Timing["count"]; c > 0 {
			set("avg_response_time", i, m.Timing["total"]/c)
		}
		if st.CPU != nil {
			set("cpu_usage", i, *st.CPU)
		}
		if st.Memory != nil {
			set("memory_usage", i, *st.Memory)
		}
		if c := st.Capacity; c != nil {
			secs := fs.Step.Seconds()
			set("rejections_rps", i, float64(c.Rejections)/secs)
			set("rejections_rate_limit_rps", i, float64(c.RejectedRateLimit)/secs)
			set("rejections_queue_rps", i, float64(c.RejectedQueue)/secs)
			set("rejections_shed_rps", i, float64(c.RejectedShed)/secs)
			set("in_flight", i, float64(c.PeakInFlight))
			set("queue_depth", i, float64(c.PeakQueued))
			set("concurrency_limit", i, float64(c.ConcurrencyLimit))
		}
	}
	return v
}

// FleetSeriesReader reads the fleet's merged steps of (from, to]
// (store.(*SQL).FleetSeries with the fleet's name bound).
type FleetSeriesReader func(ctx context.Context, from, to time.Time, step time.Duration) (store.FleetSeries, error)

// FleetSeries is the report's Series for a fleet: the shared store's
// fleet-merged rows (the minute rows for the 1 min tier, the hour rows for
// the 1 h tier), laid out by FleetView. It remembers which instances had
// rows in each step, for Instances. Not safe for concurrent use: one
// report reads it.
type FleetSeries struct {
	ctx     context.Context
	read    FleetSeriesReader
	minStep time.Duration
	// seen is every step read: its start and its instances.
	seen []fleetStepInstances
}

type fleetStepInstances struct {
	start     time.Time
	instances []string
}

// NewFleetSeries is the fleet's series read through read, each read
// bounded by ctx, in steps of at least minStep: the store's compaction
// window (store.Retention.Window), since the heartbeat rows older than
// its KeepFine (and the minute rows made from them) are one row per
// instance and window, and finer steps would hold one of them every few
// steps.
func NewFleetSeries(ctx context.Context, read FleetSeriesReader, minStep time.Duration) *FleetSeries {
	return &FleetSeries{ctx: ctx, read: read, minStep: minStep}
}

// Query answers [from, to) from the fleet rows in the tier's step
// (history.Tier1m: minutes, history.Tier1h: hours) or minStep when
// longer. The store raises the step to the longest heartbeat interval
// among the rows; the report then reads the coarser points (see
// readPoints). name is ignored: every fleet series is answered.
func (f *FleetSeries) Query(_ string, tier int, from, to time.Time) (history.View, error) {
	// The store reads rows stamped in (from, to]; a row stamped t belongs
	// to the step holding t−1 µs, so the steps start in [from, to).
	fs, err := f.read(f.ctx, from, to, max(history.TierStep(tier), f.minStep))
	if err != nil {
		return history.View{}, err
	}
	for _, st := range fs.Steps {
		f.seen = append(f.seen, fleetStepInstances{st.Start, st.Merged.Instances})
	}
	return FleetView(fs, "", from, to), nil
}

// Instances are the instances with rows in the steps read that start in
// [from, to), sorted.
func (f *FleetSeries) Instances(from, to time.Time) []string {
	set := map[string]bool{}
	for _, s := range f.seen {
		if !s.start.Before(from) && s.start.Before(to) {
			for _, in := range s.instances {
				set[in] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for in := range set {
		out = append(out, in)
	}
	sort.Strings(out)
	return out
}

// FleetAlertSource is an AlertSource that also knows the instances each
// alert fired on: the fleet's alerts (one fleet alert = one occurrence).
// Build lists them per rule (RuleStats.Instances).
type FleetAlertSource interface {
	AlertSource
	FleetAlerts() ([]store.FleetAlert, error)
}

// FleetAlerts is the report's AlertSource for a fleet: the shared store's
// fleet alerts, each one occurrence from the first instance's first_seen
// until the last instance resolved it, acknowledged by the fleet's
// acknowledgement; and the fleet's audit log.
type FleetAlerts struct {
	// Load returns the fleet's alerts with their instances
	// (store.(*SQL).FleetAlerts with activeOnly false).
	Load func() ([]store.FleetAlert, error)
	// AuditLog pages the fleet's audit log (store.(*SQL).Audit).
	AuditLog func(limit int, before time.Time) ([]store.AuditEntry, error)
}

var _ FleetAlertSource = FleetAlerts{}

// FleetAlerts returns the fleet's alerts.
func (f FleetAlerts) FleetAlerts() ([]store.FleetAlert, error) { return f.Load() }

// LoadAlerts returns the fleet's alerts as records (without their instances).
func (f FleetAlerts) LoadAlerts() ([]store.AlertRecord, error) {
	fas, err := f.Load()
	out := make([]store.AlertRecord, 0, len(fas))
	for _, fa := range fas {
		out = append(out, fa.AlertRecord)
	}
	return out, err
}

// Audit pages the fleet's audit log.
func (f FleetAlerts) Audit(limit int, before time.Time) ([]store.AuditEntry, error) {
	return f.AuditLog(limit, before)
}

// loadAlerts reads src's alerts and, for a fleet source, the instances
// each fired on (by alert id).
func loadAlerts(src AlertSource) ([]store.AlertRecord, map[string][]string, error) {
	fs, ok := src.(FleetAlertSource)
	if !ok {
		as, err := src.LoadAlerts()
		return as, nil, err
	}
	fas, err := fs.FleetAlerts()
	as := make([]store.AlertRecord, 0, len(fas))
	insts := make(map[string][]string, len(fas))
	for _, fa := range fas {
		as = append(as, fa.AlertRecord)
		for _, in := range fa.Instances {
			insts[fa.ID] = append(insts[fa.ID], in.Instance)
		}
	}
	return as, insts, err
}
