// Package report is pulsegate's daily, weekly and monthly review (the
// product's "Maintenance Procedures") in one document: trends per day
// against the previous period, the slowest, most failing and worsened
// routes with their release, alert statistics, threshold effectiveness
// with suggested values (never applied), and capacity with resource
// projections. `pulsegate report` and GET /admin/api/report/responsiveness
// serve it; docs/report.md documents the JSON.
//
// Every number is computed from what pulsegate stored: the history
// archive's tiers (Series), the per-route rollups (Routes), the alert store
// (Alerts) and the configuration and limiter state in force. A part whose
// source cannot be read is left empty and named in Problems.
package report

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/store"
)

// SchemaVersion is the JSON's "schema_version"; it changes only when a
// field changes meaning or goes away.
const SchemaVersion = 1

// ranges are the periods a report covers.
var ranges = map[string]time.Duration{"24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}

// RangeNames lists the periods for error messages.
const RangeNames = "24h, 7d or 30d"

// formats are the renderings of a report.
var formats = []string{"text", "markdown", "json"}

// Formats lists the renderings of a report (a copy).
func Formats() []string { return append([]string(nil), formats...) }

// ParamError is a bad parameter (since, format, scope); Param names it.
type ParamError struct{ Param, Problem string }

func (e *ParamError) Error() string { return e.Param + ": " + e.Problem }

// ParseSince checks a --since / ?since= value.
func ParseSince(s string) (time.Duration, error) {
	d, ok := ranges[s]
	if !ok {
		return 0, &ParamError{"since", fmt.Sprintf("want %s, got %q", RangeNames, truncate(s, 32))}
	}
	return d, nil
}

// ParseFormat checks a --format / ?format= value ("" is json).
func ParseFormat(s string) (string, error) {
	if s == "" {
		return "json", nil
	}
	for _, f := range formats {
		if s == f {
			return s, nil
		}
	}
	return "", &ParamError{"format", fmt.Sprintf("want text, markdown or json, got %q", truncate(s, 32))}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// AlertSource is where the alert statistics come from: the store
// (*store.Store, *store.SQL).
type AlertSource interface {
	LoadAlerts() ([]store.AlertRecord, error)
	Audit(limit int, before time.Time) ([]store.AuditEntry, error)
}

// Inputs are what Build reads. Series, Routes and Alerts may be nil (not
// kept): their sections are then empty and Problems says why.
type Inputs struct {
	Since  string
	Now    time.Time
	Config *config.Config
	Series Series
	Routes RouteSource
	Alerts AlertSource
	// Backpressure is the limiter state now (the concurrency limit in
	// force and the rejections since start); nil = unknown.
	Backpressure *backpressure.State
	// Instance names this sidecar ("" outside a fleet).
	Instance string
	// Fleet, when set, makes this the fleet's report (scope "fleet", see
	// docs/report.md): Series are the shared store's fleet-merged rows
	// (*FleetSeries), Alerts the fleet's alerts and audit log
	// (FleetAlerts), Routes the fleet's per-route rollups (nil while the
	// store keeps none) and Backpressure nil (each instance has its own).
	Fleet string
}

// Window is a time span.
type Window struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Report is the document. docs/report.md documents every field.
type Report struct {
	SchemaVersion int       `json:"schema_version"`
	GeneratedAt   time.Time `json:"generated_at"`
	Since         string    `json:"since"`
	Scope         string    `json:"scope"`
	Instance      string    `json:"instance,omitempty"`
	// Fleet and Instances: a fleet report's fleet and the instances that
	// wrote heartbeat rows in the period, sorted (absent for an instance).
	Fleet     string   `json:"fleet,omitempty"`
	Instances []string `json:"instances,omitempty"`
	Period    Window   `json:"period"`
	Previous  Window   `json:"previous_period"`
	// Tier is the history tier the series were read from: "1m" or "1h".
	Tier string `json:"tier"`
	// StepSeconds is the length of one series point: the tier's step, or
	// a whole multiple of it for a fleet (docs/report.md).
	StepSeconds int64       `json:"step_seconds"`
	Findings    []Finding   `json:"findings"`
	Trends      Trends      `json:"trends"`
	Routes      Routes      `json:"routes"`
	Alerts      Alerts      `json:"alerts"`
	Thresholds  []Threshold `json:"thresholds"`
	Capacity    Capacity    `json:"capacity"`
	// Problems names the sources that could not be read (and so the parts
	// left empty).
	Problems []string `json:"problems"`
}

// Finding kinds.
const (
	FindingReleaseRegression = "release_regression"
	FindingRouteRegression   = "route_regression"
	FindingFlappingRule      = "flapping_rule"
	FindingIgnoredAlerts     = "ignored_alerts"
	FindingResourceFilling   = "resource_filling"
	FindingRejections        = "rejections"
)

// Finding is one thing the review should act on.
type Finding struct {
	// Kind is release_regression, route_regression, flapping_rule,
	// ignored_alerts, resource_filling or rejections.
	Kind string `json:"kind"`
	// Subject is what it is about: a route, an alert rule, a figure (for
	// rejections: rejections_rps).
	Subject string `json:"subject"`
	// Release is the app version a regression came with.
	Release string `json:"release,omitempty"`
	// ConfigKeys are the thresholds concerned (flapping or ignored
	// alerts), or the limits behind the rejections' causes.
	ConfigKeys []string `json:"config_keys,omitempty"`
	// Message says it in one sentence with the numbers.
	Message string `json:"message"`
}

// Build computes the report. It fails only for a bad since; unreadable
// sources leave their parts empty and are named in Problems.
func Build(in Inputs) (*Report, error) {
	d, err := ParseSince(in.Since)
	if err != nil {
		return nil, err
	}
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	if in.Config == nil {
		in.Config = config.Defaults()
	}
	// Whole hours, the current one included: the route rollups are read
	// from the 1 h tier, so every day of the period is 24 of its rows, and
	// the period ends at the end of the current hour (its points so far
	// count; trends' coverage shows the part not yet lived).
	to := in.Now.UTC().Truncate(time.Hour)
	if to.Before(in.Now) {
		to = to.Add(time.Hour)
	}
	from := to.Add(-d)
	r := &Report{SchemaVersion: SchemaVersion, GeneratedAt: in.Now.UTC(), Since: in.Since, Scope: "instance", Instance: in.Instance,
		Period: Window{from, to}, Previous: Window{from.Add(-d), from}, Findings: []Finding{}, Problems: []string{}, Thresholds: []Threshold{}}
	fleet := in.Fleet != ""
	kept := history.Series()
	if fleet {
		r.Scope, r.Instance, r.Fleet = "fleet", "", in.Fleet
		kept = slices.DeleteFunc(slices.Sorted(maps.Keys(fleetAggregation)), func(n string) bool { return slices.Contains(fleetPeakSums, n) })
	}
	tier := history.Tier1m
	r.Tier = "1m"
	if d > 7*24*time.Hour || (in.Config.History.Retention1m > 0 && 2*d > in.Config.History.Retention1m.Duration()) {
		tier, r.Tier = history.Tier1h, "1h"
	}
	if in.Series == nil {
		r.Problems = append(r.Problems, "history: no archive is kept (set data_dir); trends, thresholds and capacity have no series")
	}
	pts, err := readPoints(in.Series, tier, r.Previous.From, to)
	if err != nil {
		r.Problems = append(r.Problems, "history: "+err.Error())
	}
	r.StepSeconds = int64(pts.Step / time.Second)
	if fs, ok := in.Series.(interface {
		Instances(from, to time.Time) []string
	}); ok && fleet {
		r.Instances = fs.Instances(r.Period.From, r.Period.To)
		if len(r.Instances) == 0 && err == nil {
			r.Problems = append(r.Problems, fmt.Sprintf("history: no instance of fleet %s wrote heartbeat rows to the shared store in the period", in.Fleet))
		}
	}
	if fleet && in.Routes == nil {
		r.Problems = append(r.Problems, "routes: the shared store keeps no per-route rollups for the fleet; the routes, the releases and the trends' request counts and percentiles are empty (`pulsegate report` against one sidecar has its own)")
	}

	var alerts []store.AlertRecord
	var alertInstances map[string][]string
	var audit []store.AuditEntry
	if in.Alerts == nil {
		r.Problems = append(r.Problems, "alerts: no alert store")
	} else {
		if alerts, alertInstances, err = loadAlerts(in.Alerts); err != nil {
			r.Problems = append(r.Problems, "alerts: "+err.Error())
		}
		if audit, err = readAudit(in.Alerts, r.Period.From, to); err != nil {
			r.Problems = append(r.Problems, "audit log: "+err.Error())
		}
	}

	r.Trends = buildTrends(pts, in.Routes, r, &r.Problems)
	r.Routes = buildRoutes(in.Routes, r, &r.Problems)
	if fleet && in.Routes == nil {
		r.Routes.Why = "the shared store keeps no per-route rollups for the fleet"
	}
	r.Alerts = buildAlerts(alerts, alertInstances, audit, r.Period, in.Now)
	r.Thresholds = buildThresholds(in.Config, pts, kept, alerts, r.Alerts, r.Period, in.Now)
	r.Capacity = buildCapacity(in.Config, in.Backpressure, pts, alerts, r.Period, r.Previous, in.Now)
	if fleet {
		fleetCapacity(&r.Capacity, pts, r.Period)
	}
	// A rising resource's history chases its trend: no threshold is
	// suggested from it.
	for i, th := range r.Thresholds {
		for _, res := range r.Capacity.Resources {
			if res.Figure == th.Figure && res.Projection != nil {
				r.Thresholds[i].Suggestion = Suggestion{Advice: "keep", QuietPoints: th.Suggestion.QuietPoints,
					Why: "the figure is rising steadily (see capacity.resources): a threshold computed from its history would follow the trend"}
			}
		}
	}
	r.Findings = findings(r)
	return r, nil
}

// readAudit pages the audit log back from to until from (newest first).
func readAudit(src AlertSource, from, to time.Time) ([]store.AuditEntry, error) {
	var out []store.AuditEntry
	before := to
	for range 20 {
		es, err := src.Audit(500, before)
		if err != nil {
			return out, err
		}
		for _, e := range es {
			if !e.Time.Before(from) && e.Time.Before(to) {
				out = append(out, e)
			}
		}
		if len(es) < 500 || es[len(es)-1].Time.Before(from) {
			break
		}
		before = es[len(es)-1].Time
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// num is a JSON number that is null when not measured.
func num(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	v := round6(x)
	return &v
}

func round6(x float64) float64 {
	if math.Abs(x) >= 1e9 {
		return x
	}
	return math.Round(x*1e6) / 1e6
}

// days splits w into 24 h slices, oldest first.
func days(w Window) []Window {
	var out []Window
	for f := w.From; f.Before(w.To); f = f.Add(24 * time.Hour) {
		t := f.Add(24 * time.Hour)
		if t.After(w.To) {
			t = w.To
		}
		out = append(out, Window{f, t})
	}
	return out
}
