package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/pulsegate/pulsegate/latency"
)

// StaleIntervals is how many monitoring intervals an instance may stay
// silent before it is stale (and leaves the fleet's verdict).
const StaleIntervals = 3

// Retention of the fleet tables: PruneFleet's settings.
type Retention struct {
	// KeepStale is how long a silent instance stays listed before it is pruned.
	KeepStale time.Duration
	// KeepFine is how long each interval's heartbeat row is kept as written;
	// older rows are merged into one row per instance and Window.
	KeepFine time.Duration
	// Window is the span of a merged (compacted) row.
	Window time.Duration
	// KeepHeartbeats is how long any heartbeat row (the trend graphs' rollups) is kept.
	KeepHeartbeats time.Duration
	// KeepMinutes is how long the fleet's minute rows are kept (config
	// history.retention_1m); never less than KeepHeartbeats.
	KeepMinutes time.Duration
	// KeepHours is how long the fleet's hour rows are kept (config
	// history.retention_1h).
	KeepHours time.Duration
}

// DefaultRetention keeps stale instances 24 h, every heartbeat for an hour,
// 5-minute rollups per instance for 24 h, the fleet's minute rows 14 days
// and its hour rows 400 days (the history tiers' defaults).
var DefaultRetention = Retention{KeepStale: 24 * time.Hour, KeepFine: time.Hour, Window: 5 * time.Minute, KeepHeartbeats: 24 * time.Hour,
	KeepMinutes: 14 * 24 * time.Hour, KeepHours: 400 * 24 * time.Hour}

// DefaultKeepStale is DefaultRetention's KeepStale.
const DefaultKeepStale = 24 * time.Hour

// Heartbeat is one sidecar's row for one monitoring interval: its verdict,
// its components, its configuration version and the rollup of the interval.
type Heartbeat struct {
	Fleet    string    `json:"fleet"`
	Instance string    `json:"instance"`
	Time     time.Time `json:"time"`
	// Interval is the sidecar's monitoring interval (staleness is counted in it).
	Interval time.Duration `json:"interval_ns"`
	// Status is the instance's verdict: ok, warning or critical.
	Status        string      `json:"status"`
	Components    []Component `json:"components,omitempty"`
	ConfigVersion int64       `json:"config_version"`
	Rollup        Rollup      `json:"rollup"`
}

// Component is one part of an instance's verdict with its reason.
type Component struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// Rollup is what one sidecar saw during one interval. Counts and sums are
// for the interval; gauges are their value at its end; a nil pointer is a
// figure that was not measured.
type Rollup struct {
	// Seconds is the interval's length (throughput = requests / Seconds).
	Seconds float64 `json:"seconds"`
	// Requests counts answered requests by status class: "2xx", "3xx", "4xx", "5xx".
	Requests map[string]uint64 `json:"requests,omitempty"`
	// Errors counts failed requests by error class (e.g. "app_5xx",
	// "upstream_timeout", "rejected_429").
	Errors map[string]uint64 `json:"errors,omitempty"`
	// Latency is the interval's latency histogram, sparse.
	Latency Hist `json:"latency,omitempty"`
	// Timing sums each timing split over the interval's requests, seconds
	// (e.g. "upstream_connect", "app", "response_write").
	Timing map[string]float64 `json:"timing,omitempty"`

	InFlight         int    `json:"in_flight"`
	Queued           int    `json:"queued"`
	BackpressureMode string `json:"backpressure_mode,omitempty"`

	CPU    *float64 `json:"cpu_usage,omitempty"`
	Memory *float64 `json:"memory_usage,omitempty"`
	Disk   *float64 `json:"disk_usage,omitempty"`

	DB    *DBFigures    `json:"db,omitempty"`
	Redis *RedisFigures `json:"redis,omitempty"`

	// Capacity is backpressure's rejections, peaks and limit over the
	// interval (nil: not measured, e.g. a row from before schema 5).
	Capacity *CapacityFigures `json:"capacity,omitempty"`
}

// DBFigures are the database probe's figures at the end of the interval.
type DBFigures struct {
	PoolInUse       int      `json:"pool_in_use"`
	PoolSize        int      `json:"pool_size"`
	PoolUtilization *float64 `json:"pool_utilization,omitempty"`
	LatencySeconds  *float64 `json:"latency_seconds,omitempty"`
}

// RedisFigures are the Redis probe's figures at the end of the interval.
type RedisFigures struct {
	LatencySeconds *float64 `json:"latency_seconds,omitempty"`
	MemoryUsage    *float64 `json:"memory_usage,omitempty"`
	QueueDepth     *int     `json:"queue_depth,omitempty"`
}

// Answered is the interval's answered requests (every status class).
func (r Rollup) Answered() uint64 {
	var n uint64
	for _, v := range r.Requests {
		n += v
	}
	return n
}

// Failed is the interval's failed requests (every error class).
func (r Rollup) Failed() uint64 {
	var n uint64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// Hist is a sparse latency histogram: bucket index → count. In JSON it is
// a list of [index, count] pairs in index order.
type Hist map[int]uint64

// Record adds one observation.
func (h Hist) Record(d time.Duration) { h[latency.Index(d)]++ }

// Merge adds o's counts into h.
func (h Hist) Merge(o Hist) {
	for i, n := range o {
		h[i] += n
	}
}

// Count is the number of observations.
func (h Hist) Count() uint64 {
	var n uint64
	for _, v := range h {
		n += v
	}
	return n
}

// Quantile returns the q-quantile (0 < q ≤ 1) in seconds, or 0 when empty,
// with the proxy's rank rule (so a fleet of one answers as its instance).
func (h Hist) Quantile(q float64) float64 {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = max(rank, 1)
	rank = min(rank, total)
	idx := make([]int, 0, len(h))
	for i, n := range h {
		if n > 0 {
			idx = append(idx, i)
		}
	}
	sort.Ints(idx)
	var seen uint64
	for _, i := range idx {
		seen += h[i]
		if seen >= rank {
			return latency.Value(i)
		}
	}
	return latency.Value(idx[len(idx)-1])
}

// MarshalJSON writes [[index, count], ...] in index order.
func (h Hist) MarshalJSON() ([]byte, error) {
	idx := make([]int, 0, len(h))
	for i, n := range h {
		if n > 0 {
			idx = append(idx, i)
		}
	}
	sort.Ints(idx)
	pairs := make([][2]uint64, len(idx))
	for k, i := range idx {
		pairs[k] = [2]uint64{uint64(i), h[i]}
	}
	return json.Marshal(pairs)
}

// UnmarshalJSON reads [[index, count], ...]; an index outside the
// histogram is an error. It is parsed by hand: the fleet query decodes a
// histogram per instance and interval, and reflection was most of its time.
func (h *Hist) UnmarshalJSON(b []byte) error {
	p := histParser{b: b}
	// A pair takes at least 6 bytes ("[1,1],"): size the map once.
	out := make(Hist, len(b)/8+1)
	if p.lit("null") {
		*h = nil
		return nil
	}
	if !p.char('[') {
		return errors.New("latency histogram: want a list of [bucket, count] pairs")
	}
	if !p.char(']') {
		for {
			if !p.char('[') {
				return errors.New("latency histogram: want [bucket, count]")
			}
			i, ok1 := p.uint()
			okc := p.char(',')
			n, ok2 := p.uint()
			if !ok1 || !okc || !ok2 || !p.char(']') {
				return errors.New("latency histogram: want [bucket, count] of two unsigned integers")
			}
			if i >= latency.Buckets {
				return fmt.Errorf("latency bucket %d out of range", i)
			}
			out[int(i)] += n
			if p.char(']') {
				break
			}
			if !p.char(',') {
				return errors.New("latency histogram: want , or ] between pairs")
			}
		}
	}
	p.space()
	if p.i != len(p.b) {
		return errors.New("latency histogram: trailing data")
	}
	*h = out
	return nil
}

type histParser struct {
	b []byte
	i int
}

func (p *histParser) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\n' || p.b[p.i] == '\t' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *histParser) char(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *histParser) lit(s string) bool {
	p.space()
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

func (p *histParser) uint() (uint64, bool) {
	p.space()
	start := p.i
	var v uint64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		d := uint64(p.b[p.i] - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
		p.i++
	}
	return v, p.i > start
}

// InstanceStatus is an instance's latest heartbeat as the fleet sees it.
type InstanceStatus struct {
	Instance string    `json:"instance"`
	Status   string    `json:"status"`
	LastSeen time.Time `json:"last_seen"`
	// Stale is true after StaleIntervals intervals without a heartbeat.
	Stale           bool     `json:"stale"`
	ConfigVersion   int64    `json:"config_version"`
	ThroughputRPS   float64  `json:"throughput_rps"`
	ErrorRate       float64  `json:"error_rate"`
	P99ResponseTime float64  `json:"p99_response_time"`
	MemoryUsage     *float64 `json:"memory_usage"`
	CPUUsage        *float64 `json:"cpu_usage"`
	// Heartbeat is the whole latest row (components, rollup).
	Heartbeat Heartbeat `json:"-"`
}

// statusOf derives the instance row from its latest heartbeat.
func statusOf(hb Heartbeat, now time.Time) InstanceStatus {
	r := hb.Rollup
	st := InstanceStatus{
		Instance: hb.Instance, Status: hb.Status, LastSeen: hb.Time, ConfigVersion: hb.ConfigVersion,
		P99ResponseTime: r.Latency.Quantile(0.99), MemoryUsage: r.Memory, CPUUsage: r.CPU, Heartbeat: hb,
	}
	interval := hb.Interval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	st.Stale = now.Sub(hb.Time) > StaleIntervals*interval
	if r.Seconds > 0 {
		st.ThroughputRPS = float64(r.Answered()) / r.Seconds
	}
	if n := r.Answered(); n > 0 {
		st.ErrorRate = float64(r.Failed()) / float64(n)
	}
	return st
}

// MergedRollup is the fleet's rollups over a time range merged: counts and
// sums added, latency buckets merged, percentiles from the merged buckets
// (never an average of percentiles).
type MergedRollup struct {
	From      time.Time          `json:"from"`
	To        time.Time          `json:"to"`
	Rows      int                `json:"rows"`
	Instances []string           `json:"instances"`
	Requests  map[string]uint64  `json:"requests"`
	Errors    map[string]uint64  `json:"errors"`
	Latency   Hist               `json:"latency"`
	Timing    map[string]float64 `json:"timing"`
	Answered  uint64             `json:"answered"`
	Failed    uint64             `json:"failed"`
	// ErrorRate is fleet errors ÷ fleet answered (0 when nothing answered).
	ErrorRate float64 `json:"error_rate"`
	P50       float64 `json:"p50_response_time"`
	P95       float64 `json:"p95_response_time"`
	P99       float64 `json:"p99_response_time"`
}

func newMerged(from, to time.Time) MergedRollup {
	return MergedRollup{From: from, To: to, Instances: []string{}, Requests: map[string]uint64{},
		Errors: map[string]uint64{}, Latency: Hist{}, Timing: map[string]float64{}}
}

// add merges one heartbeat's rollup.
func (m *MergedRollup) add(hb Heartbeat) {
	m.Rows++
	r := hb.Rollup
	for k, v := range r.Requests {
		m.Requests[k] += v
	}
	for k, v := range r.Errors {
		m.Errors[k] += v
	}
	for k, v := range r.Timing {
		m.Timing[k] += v
	}
	m.Latency.Merge(r.Latency)
}

// finish derives the totals and percentiles.
func (m *MergedRollup) finish(instances map[string]bool) {
	for k := range instances {
		m.Instances = append(m.Instances, k)
	}
	sort.Strings(m.Instances)
	for _, v := range m.Requests {
		m.Answered += v
	}
	for _, v := range m.Errors {
		m.Failed += v
	}
	if m.Answered > 0 {
		m.ErrorRate = float64(m.Failed) / float64(m.Answered)
	}
	m.P50, m.P95, m.P99 = m.Latency.Quantile(0.5), m.Latency.Quantile(0.95), m.Latency.Quantile(0.99)
}

// PruneResult counts what PruneFleet did.
type PruneResult struct {
	// Compacted counts heartbeat rows merged into per-window rows.
	Compacted int64 `json:"compacted"`
	// Heartbeats and Instances count rows deleted for their age.
	Heartbeats int64 `json:"heartbeats"`
	Instances  int64 `json:"instances"`
	// RouteRows counts route rows and history points deleted for their age.
	RouteRows int64 `json:"route_rows"`
}

// mergeInto adds hb, a later row of the same instance, to acc: counts and
// sums added, buckets merged; the verdict, components, version and gauges
// are hb's; capacity figures as mergeSpans. The caller sets the merged row's time.
func mergeInto(acc *Heartbeat, hb Heartbeat) {
	a := acc.Rollup
	sum := hb.Rollup
	sum.Seconds += a.Seconds
	sum.Requests = addCounts(a.Requests, hb.Rollup.Requests)
	sum.Errors = addCounts(a.Errors, hb.Rollup.Errors)
	sum.Timing = map[string]float64{}
	for _, m := range []map[string]float64{a.Timing, hb.Rollup.Timing} {
		for k, v := range m {
			sum.Timing[k] += v
		}
	}
	sum.Latency = Hist{}
	sum.Latency.Merge(a.Latency)
	sum.Latency.Merge(hb.Rollup.Latency)
	sum.Capacity = mergeSpans(a.Capacity, hb.Rollup.Capacity)
	*acc = hb
	acc.Rollup = sum
}

func addCounts(a, b map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(a)+len(b))
	for _, m := range []map[string]uint64{a, b} {
		for k, v := range m {
			out[k] += v
		}
	}
	return out
}

// ConfigVersion is the fleet's stored live configuration: only the live
// changes (env and YAML stay the base); a null Doc means "no live changes".
type ConfigVersion struct {
	Fleet   string          `json:"fleet"`
	Version int64           `json:"version"`
	Doc     json.RawMessage `json:"doc"`
	Updated time.Time       `json:"updated"`
	// Instance took the change; Actor is the caller (never a credential).
	Instance string `json:"instance"`
	Actor    string `json:"actor"`
}

// FleetAlert is one alert occurrence for the whole fleet: one id for every
// sidecar, the instances that see it, one acknowledgement.
type FleetAlert struct {
	AlertRecord
	Fleet     string          `json:"fleet"`
	Instances []AlertInstance `json:"instances"`
}

// AlertInstance is one instance's view of a fleet alert.
type AlertInstance struct {
	Instance string    `json:"instance"`
	State    string    `json:"state"` // firing or resolved
	Severity string    `json:"severity"`
	Value    float64   `json:"value"`
	LastSeen time.Time `json:"last_seen"`
}
