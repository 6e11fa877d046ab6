// Package health turns probe results, background-task health and request
// signals into one verdict with reasons: the JSON behind
// GET /admin/api/health/responsiveness.
//
// An Evaluator is pure and deterministic given its inputs and clock: it
// starts no goroutine and does no I/O. It keeps one piece of state per
// component, the hysteresis that stops the verdict from flapping: a
// component enters a worse level as soon as its underlying status reaches
// it, and returns to a better level only after the underlying status has
// stayed there for the hold time and at least HoldObservations fresh
// observations.
package health

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/figures"
	"github.com/pulsegate/pulsegate/probes"
)

// Level is a component's or the overall health.
type Level string

// Levels. Disabled components (no configuration) never count against the
// overall status.
const (
	Healthy  Level = "healthy"
	Warning  Level = "warning"
	Critical Level = "critical"
	Disabled Level = "disabled"
)

func (l Level) rank() int {
	switch l {
	case Warning:
		return 1
	case Critical:
		return 2
	}
	return 0
}

var levelByRank = [...]Level{Healthy, Warning, Critical}

// Component names, as the product's health JSON has them.
const (
	SystemOptimizer    = probes.SystemComponent // "system_optimizer"
	DatabaseManager    = "database_manager"
	BackgroundCleanup  = probes.TaskComponent // "background_cleanup"
	SessionMonitoring  = "session_monitoring"
	RequestPerformance = "request_performance"
)

// Components lists every component in the verdict, in display order.
func Components() []string {
	return []string{SystemOptimizer, DatabaseManager, BackgroundCleanup, SessionMonitoring, RequestPerformance}
}

// Defaults.
const (
	// DefaultHoldObservations is how many fresh observations of a better
	// status a component needs before it leaves a worse level.
	DefaultHoldObservations = 2
	// DefaultMinRequests is the traffic below which request_performance is
	// not judged ("not enough traffic").
	DefaultMinRequests = 10
)

// RequestSignals are the proxy's window figures (1-minute window).
type RequestSignals struct {
	// AvgResponseTime and P95 are seconds.
	AvgResponseTime float64 `json:"avg_response_time"`
	P95             float64 `json:"p95_response_time"`
	// ErrorRate is the share of answered requests that failed for their
	// client (rejections included); AppErrorRate the share the app caused,
	// which is what request_performance judges.
	ErrorRate     float64 `json:"error_rate"`
	AppErrorRate  float64 `json:"app_error_rate"`
	ThroughputRPS float64 `json:"throughput_rps"`
	// Requests is how many requests the window holds.
	Requests int64 `json:"requests"`
	// QueueDepth is requests waiting for a concurrency slot now.
	QueueDepth int `json:"queue_depth"`
	// Valid: the figures come from a running proxy. False makes
	// request_performance "disabled".
	Valid bool `json:"valid"`
}

// TaskSignals is the background_cleanup input: probes.Tasks' verdict and snapshot.
type TaskSignals struct {
	Status  probes.Status       `json:"status"`
	Reasons []string            `json:"reasons,omitempty"`
	Tasks   []probes.TaskStatus `json:"tasks"`
}

// TaskSignalsFrom reads t's verdict at now and its snapshot.
func TaskSignalsFrom(t *probes.Tasks, now time.Time) TaskSignals {
	st, reasons := t.Status(now)
	return TaskSignals{Status: st, Reasons: reasons, Tasks: t.Snapshot()}
}

// Inputs is everything one evaluation looks at.
type Inputs struct {
	// Probes are the latest results by probe name (probes.Store.Snapshot).
	Probes map[string]probes.Result
	// Tasks is background task health.
	Tasks TaskSignals
	// Request is the proxy's window.
	Request RequestSignals
	// Alerts are the active alerts, passed through to the JSON as they are.
	Alerts []any
}

// Metrics are the headline figures. A figure that was not measured is
// null, never 0.
type Metrics struct {
	MemoryUsage               *float64 `json:"memory_usage"`
	CPUUsage                  *float64 `json:"cpu_usage"`
	ConnectionPoolUtilization *float64 `json:"connection_pool_utilization"`
	AvgResponseTime           *float64 `json:"avg_response_time"`
	DiskUsage                 *float64 `json:"disk_usage"`
	P95ResponseTime           *float64 `json:"p95_response_time"`
	ErrorRate                 *float64 `json:"error_rate"`
	ThroughputRPS             *float64 `json:"throughput_rps"`
	QueueDepth                *float64 `json:"queue_depth"`
	DBLatency                 *float64 `json:"db_latency"`
	RedisLatency              *float64 `json:"redis_latency"`
	RedisMemoryUsage          *float64 `json:"redis_memory_usage"`
	SessionCount              *float64 `json:"session_count"`
}

// Verdict is the health JSON: the product's shape (status, components,
// metrics, alerts, last_check) plus reasons, the undamped component
// levels and each component's details.
type Verdict struct {
	Status     Level            `json:"status"`
	Components map[string]Level `json:"components"`
	Metrics    Metrics          `json:"metrics"`
	Alerts     []any            `json:"alerts"`
	LastCheck  string           `json:"last_check"`
	// Reasons explain every component that is not healthy (and a few
	// informational notes), in words with numbers.
	Reasons []string `json:"reasons"`
	// Underlying is each component's level before hysteresis.
	Underlying map[string]Level `json:"underlying"`
	// Details is each component's full report (probe Details, task
	// snapshot, request signals).
	Details map[string]any `json:"details"`
}

// Option configures an Evaluator.
type Option func(*Evaluator)

// WithHold sets the hold time (default: 2 × monitoring interval).
func WithHold(d time.Duration) Option {
	return func(e *Evaluator) { e.hold, e.holdSet = max(d, 0), true }
}

// WithHoldObservations sets how many fresh observations of a better status
// are needed to leave a worse level (default 2; at least 1).
func WithHoldObservations(n int) Option {
	return func(e *Evaluator) { e.holdObs = max(n, 1) }
}

// WithMinRequests sets the traffic below which request_performance is
// not judged (default 10).
func WithMinRequests(n int64) Option {
	return func(e *Evaluator) { e.minRequests = max(n, 0) }
}

type componentState struct {
	level   Level
	init    bool
	okSince [2]time.Time // raw ≤ healthy / ≤ warning continuously since (zero: not now)
	okObs   [2]int       // fresh observations in that run
	lastKey string
}

// Evaluator computes verdicts. It is safe for concurrent use.
type Evaluator struct {
	now   func() time.Time
	start time.Time // creation: the first probe results are still on their way

	mu          sync.Mutex
	cfg         *config.Config
	hold        time.Duration
	holdSet     bool
	holdObs     int
	minRequests int64
	state       map[string]*componentState
}

// New returns an Evaluator for cfg's thresholds; now may be nil (time.Now).
func New(cfg *config.Config, now func() time.Time, opts ...Option) *Evaluator {
	if now == nil {
		now = time.Now
	}
	e := &Evaluator{now: now, start: now(), holdObs: DefaultHoldObservations, minRequests: DefaultMinRequests, state: map[string]*componentState{}}
	for _, o := range opts {
		o(e)
	}
	e.Apply(cfg)
	return e
}

// Apply takes new thresholds (live configuration). Hysteresis state is kept.
func (e *Evaluator) Apply(cfg *config.Config) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg = cfg
	if !e.holdSet {
		e.hold = 2 * cfg.Responsiveness.MonitoringInterval.Duration()
	}
}

// Hold returns the hold time in force.
func (e *Evaluator) Hold() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hold
}

type rawComponent struct {
	level   Level
	reasons []string
	key     string // identifies a fresh observation; "" = every evaluation is one
	details any
}

// Evaluate computes the verdict for in at the Evaluator's clock and
// advances the hysteresis.
func (e *Evaluator) Evaluate(in Inputs) Verdict {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.evaluate(in)
}

// Preview is Evaluate without side effects: the hysteresis state is left
// as it was (for a reader asking before the first evaluation).
func (e *Evaluator) Preview(in Inputs) Verdict {
	e.mu.Lock()
	defer e.mu.Unlock()
	kept := e.state
	e.state = make(map[string]*componentState, len(kept))
	for k, st := range kept {
		c := *st
		e.state[k] = &c
	}
	defer func() { e.state = kept }()
	return e.evaluate(in)
}

func (e *Evaluator) evaluate(in Inputs) Verdict {
	now := e.now()
	cfg := e.cfg

	raw := map[string]rawComponent{
		SystemOptimizer:    e.probeComponent(now, SystemOptimizer, in.Probes, true, ""),
		DatabaseManager:    e.probeComponent(now, DatabaseManager, in.Probes, cfg.Database.DSN.IsSet(), "RESPONSIVENESS_DB_DSN"),
		SessionMonitoring:  e.probeComponent(now, SessionMonitoring, in.Probes, cfg.Redis.URL.IsSet(), "RESPONSIVENESS_REDIS_URL"),
		BackgroundCleanup:  taskComponent(in.Tasks),
		RequestPerformance: e.requestComponent(in.Request),
	}

	v := Verdict{
		Status:     Healthy,
		Components: map[string]Level{},
		Underlying: map[string]Level{},
		Details:    map[string]any{},
		Alerts:     in.Alerts,
		LastCheck:  now.UTC().Format(time.RFC3339),
		Reasons:    []string{},
	}
	if v.Alerts == nil {
		v.Alerts = []any{}
	}
	type reason struct {
		rank int
		name string
		text string
	}
	var reasons []reason
	for _, name := range Components() {
		rc := raw[name]
		level, holding := e.damp(name, rc, now)
		v.Components[name] = level
		v.Underlying[name] = rc.level
		if rc.details != nil {
			v.Details[name] = rc.details
		}
		if level != Disabled && level.rank() > v.Status.rank() {
			v.Status = level
		}
		text := strings.Join(rc.reasons, "; ")
		switch {
		case holding != "":
			reasons = append(reasons, reason{level.rank(), name, fmt.Sprintf("%s %s: %s", name, level, holding)})
		case text != "":
			reasons = append(reasons, reason{level.rank(), name, fmt.Sprintf("%s %s: %s", name, level, text)})
		}
	}
	slices.SortStableFunc(reasons, func(a, b reason) int {
		return cmp.Or(cmp.Compare(b.rank, a.rank), cmp.Compare(a.name, b.name))
	})
	for _, r := range reasons {
		v.Reasons = append(v.Reasons, r.text)
	}
	v.Metrics = metricsFrom(in)
	return v
}

// damp applies hysteresis. It returns the level to show and, when that is
// worse than the raw level, why it is held.
func (e *Evaluator) damp(name string, rc rawComponent, now time.Time) (Level, string) {
	st := e.state[name]
	if rc.level == Disabled {
		delete(e.state, name)
		return Disabled, ""
	}
	if st == nil {
		st = &componentState{}
		e.state[name] = st
	}
	r := rc.level.rank()
	fresh := rc.key == "" || rc.key != st.lastKey
	st.lastKey = rc.key
	for l := range st.okSince {
		if r <= l {
			if st.okSince[l].IsZero() {
				st.okSince[l], st.okObs[l] = now, 0
			}
			if fresh {
				st.okObs[l]++
			}
		} else {
			st.okSince[l], st.okObs[l] = time.Time{}, 0
		}
	}
	if !st.init || r >= st.level.rank() {
		st.level, st.init = rc.level, true
		return st.level, ""
	}
	for l := 0; l < st.level.rank(); l++ {
		if r <= l && now.Sub(st.okSince[l]) >= e.hold && st.okObs[l] >= e.holdObs {
			st.level = levelByRank[l]
			break
		}
	}
	if st.level.rank() <= r {
		return st.level, ""
	}
	l := st.level.rank() - 1
	held := fmt.Sprintf("recovering: underlying status %s for %s of the %s hold (%d of %d observations)",
		rc.level, roundDur(now.Sub(st.okSince[l])), roundDur(e.hold), st.okObs[l], e.holdObs)
	if len(rc.reasons) > 0 {
		held += "; now: " + strings.Join(rc.reasons, "; ")
	}
	return st.level, held
}

func roundDur(d time.Duration) string {
	if d >= time.Second {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Millisecond).String()
}

// probeComponent turns a probe's latest result into a raw level.
func (e *Evaluator) probeComponent(now time.Time, name string, results map[string]probes.Result, configured bool, envName string) rawComponent {
	cfg := e.cfg
	if !configured {
		return rawComponent{level: Disabled, reasons: []string{"not configured (set " + envName + ")"}}
	}
	if !cfg.Responsiveness.MonitoringEnabled {
		return rawComponent{level: Disabled, reasons: []string{"monitoring disabled (RESPONSIVENESS_MONITORING_ENABLED=false)"}}
	}
	r, ok := results[name]
	if !ok {
		// At start the verdict is computed before the first run finishes:
		// give the first result one interval (+10 s for a slow connect)
		// before its absence counts, or every start would show a warning
		// that hysteresis then holds.
		grace := cfg.Responsiveness.MonitoringInterval.Duration() + 10*time.Second
		if now.Sub(e.start) < grace {
			return rawComponent{level: Healthy, reasons: []string{"waiting for the first probe result"}}
		}
		return rawComponent{level: Warning, reasons: []string{"no probe result yet"}}
	}
	rc := rawComponent{key: r.Started.String(), details: r.Details}
	switch r.Status {
	case probes.StatusOK:
		rc.level = Healthy
	case probes.StatusWarning:
		rc.level, rc.reasons = Warning, r.Reasons
	case probes.StatusCritical:
		rc.level, rc.reasons = Critical, r.Reasons
	case probes.StatusDisabled:
		return rawComponent{level: Disabled, reasons: r.Reasons, details: r.Details}
	default: // down, or anything unknown
		msg := probes.RedactText(r.Error)
		if msg == "" {
			msg = "no error text"
		}
		rc.level = Critical
		rc.reasons = append([]string{"unreachable: " + msg}, r.Reasons...)
	}
	if rc.level == Critical && len(rc.reasons) == 0 {
		rc.reasons = []string{"probe reported critical"}
	}
	if rc.level == Warning && len(rc.reasons) == 0 {
		rc.reasons = []string{"probe reported warning"}
	}
	// A loop that stopped producing results (stuck, or the runner is not
	// running) must not leave an old "healthy" standing. Down targets are
	// retried at least every max(interval, DefaultMaxBackoff).
	iv := cfg.Responsiveness.MonitoringInterval.Duration()
	staleAfter := 5*max(iv, probes.DefaultMaxBackoff) + 10*time.Second
	if end := r.Started.Add(r.Duration); !r.Started.IsZero() && now.Sub(end) > staleAfter {
		if rc.level.rank() < Warning.rank() {
			rc.level = Warning
		}
		rc.reasons = append(rc.reasons, fmt.Sprintf("stale: last result %s ago (expected every %s)", roundDur(now.Sub(end)), roundDur(iv)))
	}
	return rc
}

func taskComponent(t TaskSignals) rawComponent {
	rc := rawComponent{reasons: t.Reasons, details: t}
	switch t.Status {
	case probes.StatusDisabled:
		rc.level = Disabled
	case probes.StatusWarning:
		rc.level = Warning
	case probes.StatusCritical, probes.StatusDown:
		rc.level = Critical
	default:
		rc.level = Healthy
	}
	if t.Status == "" { // no tracker wired: nothing to judge
		rc.level, rc.reasons = Disabled, []string{"task monitoring not wired"}
	}
	return rc
}

func (e *Evaluator) requestComponent(r RequestSignals) rawComponent {
	if !r.Valid {
		return rawComponent{level: Disabled, reasons: []string{"no request signals"}}
	}
	rc := rawComponent{level: Healthy, details: r}
	judge := func(name figures.Name, v float64, what string, format func(float64) string) {
		f, _ := figures.Lookup(name)
		t := f.Thresholds(e.cfg)
		switch figures.Compare(v, f.BadWhen, t) {
		case figures.Critical:
			rc.level = Critical
			rc.reasons = append(rc.reasons, fmt.Sprintf("%s %s ≥ critical %s", what, format(v), format(t.Critical)))
		case figures.Warning:
			rc.level = levelByRank[max(rc.level.rank(), Warning.rank())]
			rc.reasons = append(rc.reasons, fmt.Sprintf("%s %s ≥ warning %s", what, format(v), format(t.Warning)))
		}
	}
	percent := func(f float64) string { return strconv.FormatFloat(math.Round(f*1000)/10, 'f', -1, 64) + "%" }
	seconds := func(f float64) string { return strconv.FormatFloat(math.Round(f*1000)/1000, 'f', -1, 64) + " s" }
	count := func(f float64) string { return strconv.FormatFloat(f, 'f', 0, 64) }
	if r.Requests < e.minRequests {
		rc.reasons = append(rc.reasons, fmt.Sprintf("not enough traffic to judge (%d requests in the window, need %d)", r.Requests, e.minRequests))
	} else {
		judge(figures.AppErrorRate, r.AppErrorRate, fmt.Sprintf("app error rate over %d requests", r.Requests), percent)
		judge(figures.AvgResponseTime, r.AvgResponseTime, "average response time", seconds)
	}
	judge(figures.QueueDepth, float64(r.QueueDepth), "queued requests", count)
	return rc
}

func metricsFrom(in Inputs) Metrics {
	figs := map[string]float64{}
	for _, name := range slices.Sorted(maps.Keys(in.Probes)) {
		if r := in.Probes[name]; r.Status.Reached() {
			maps.Copy(figs, r.Figures)
		}
	}
	fig := func(name figures.Name) *float64 {
		v, ok := figs[string(name)]
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	m := Metrics{
		MemoryUsage:               fig(figures.MemoryUsage),
		CPUUsage:                  fig(figures.CPUUsage),
		ConnectionPoolUtilization: fig(figures.ConnectionPoolUtilization),
		DiskUsage:                 fig(figures.DiskUsage),
		DBLatency:                 fig(figures.DBLatency),
		RedisLatency:              fig(figures.RedisLatency),
		RedisMemoryUsage:          fig(figures.RedisMemoryUsage),
		SessionCount:              fig("session_count"),
	}
	if r := in.Request; r.Valid {
		q := float64(r.QueueDepth)
		m.QueueDepth = &q
		if r.Requests > 0 {
			avg, p95, er, rps := r.AvgResponseTime, r.P95, r.ErrorRate, r.ThroughputRPS
			m.AvgResponseTime, m.P95ResponseTime, m.ErrorRate, m.ThroughputRPS = &avg, &p95, &er, &rps
		}
	}
	return m
}
