package adminapi

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/store"
)

// FleetView reads the shared store's view of the fleet (Deps.Fleet; nil
// without a shared store).
type FleetView interface {
	// Name is the fleet's name (RESPONSIVENESS_FLEET).
	Name() string
	// Now returns every instance's latest heartbeat (stale ones flagged)
	// and the merge of the fleet's rollups over (now−window, now].
	Now(ctx context.Context, now time.Time, window time.Duration) ([]store.InstanceStatus, store.MergedRollup, error)
}

// fleetWindow is the window of the fleet's performance figures, as the
// instance answer's product fields use the 1-minute window.
const fleetWindow = time.Minute

// fleetQueryTimeout bounds one fleet read from the shared store.
const fleetQueryTimeout = 5 * time.Second

// scopeFleet reads ?scope=: false for "" or "instance" (the caller
// answers for this instance); true when it answered (the fleet, or an
// error). A bad value is a 400 naming the parameter; fleet without a
// shared store a 409 naming RESPONSIVENESS_STORE_DSN.
func (a *API) scopeFleet(w http.ResponseWriter, r *http.Request, answer func(http.ResponseWriter, *http.Request, FleetView)) bool {
	switch sc := r.URL.Query().Get("scope"); sc {
	case "", "instance":
		return false
	case "fleet":
		if a.d.Fleet == nil {
			writeError(w, http.StatusConflict, "scope=fleet needs a shared store: set RESPONSIVENESS_STORE_DSN (store.dsn) on every sidecar of the fleet; this sidecar uses the embedded store and answers for itself only")
			return true
		}
		answer(w, r, a.d.Fleet)
		return true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("scope: want instance or fleet, got %q", truncate(sc, 64)))
		return true
	}
}

// fleetState reads the fleet; it answers 503 itself when the store cannot be read.
func (a *API) fleetState(w http.ResponseWriter, r *http.Request, f FleetView) (fleetAnswer, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), fleetQueryTimeout)
	defer cancel()
	now := a.d.Now()
	insts, merged, err := f.Now(ctx, now, fleetWindow)
	if err != nil {
		a.d.Log.Warn("fleet_read_failed", zap.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "the shared store cannot be read: "+err.Error())
		return fleetAnswer{}, false
	}
	return newFleetAnswer(f.Name(), now, insts, merged), true
}

// fleetAnswer is what both fleet answers share.
type fleetAnswer struct {
	now       time.Time
	fleet     string
	instances []FleetInstance
	fresh     []store.InstanceStatus
	merged    store.MergedRollup
	reporting string
}

// FleetInstance is one row of a fleet answer's "instances" (also read by
// `pulsegate status --fleet`).
type FleetInstance struct {
	Instance        string   `json:"instance"`
	Status          string   `json:"status"`
	LastSeen        string   `json:"last_seen"`
	Stale           bool     `json:"stale"`
	ConfigVersion   int64    `json:"config_version"`
	ThroughputRPS   float64  `json:"throughput_rps"`
	ErrorRate       float64  `json:"error_rate"`
	P99ResponseTime *float64 `json:"p99_response_time"`
	MemoryUsage     *float64 `json:"memory_usage"`
	CPUUsage        *float64 `json:"cpu_usage"`
}

func newFleetAnswer(fleet string, now time.Time, insts []store.InstanceStatus, merged store.MergedRollup) fleetAnswer {
	sort.Slice(insts, func(i, j int) bool { return insts[i].Instance < insts[j].Instance })
	fa := fleetAnswer{now: now, fleet: fleet, merged: merged, instances: make([]FleetInstance, 0, len(insts))}
	for _, s := range insts {
		row := FleetInstance{Instance: s.Instance, Status: s.Status, LastSeen: s.LastSeen.UTC().Format(time.RFC3339Nano),
			Stale: s.Stale, ConfigVersion: s.ConfigVersion, ThroughputRPS: s.ThroughputRPS, ErrorRate: s.ErrorRate,
			MemoryUsage: s.MemoryUsage, CPUUsage: s.CPUUsage}
		if s.Heartbeat.Rollup.Latency.Count() > 0 {
			p := s.P99ResponseTime
			row.P99ResponseTime = &p
		}
		fa.instances = append(fa.instances, row)
		if !s.Stale {
			fa.fresh = append(fa.fresh, s)
		}
	}
	fa.reporting = fmt.Sprintf("%d of %d instances reporting", len(fa.fresh), len(insts))
	return fa
}

// common are the fields every fleet answer carries.
func (fa fleetAnswer) common(out map[string]any) map[string]any {
	out["scope"] = "fleet"
	out["fleet"] = fa.fleet
	out["instances"] = fa.instances
	out["reporting"] = fa.reporting
	return out
}

// statusRank orders verdict levels; unknown levels rank as warning.
func statusRank(s string) int {
	switch s {
	case "healthy", "ok", "":
		return 0
	case "critical":
		return 2
	}
	return 1
}

// fleetHealth is GET /admin/api/health/responsiveness?scope=fleet: the
// worst verdict of the fresh instances, each reason naming its instance.
func (a *API) fleetHealth(w http.ResponseWriter, r *http.Request, f FleetView) {
	fa, ok := a.fleetState(w, r, f)
	if !ok {
		return
	}
	status := "healthy"
	reasons := []string{fa.reporting}
	components := map[string]string{}
	for _, s := range fa.fresh {
		if statusRank(s.Status) > statusRank(status) {
			status = s.Status
		}
		for _, c := range s.Heartbeat.Components {
			if cur, seen := components[c.Name]; !seen || statusRank(c.Status) > statusRank(cur) {
				components[c.Name] = c.Status
			}
			if statusRank(c.Status) > 0 && c.Reason != "" {
				reasons = append(reasons, s.Instance+": "+c.Reason)
			}
		}
		if statusRank(s.Status) > 0 && len(s.Heartbeat.Components) == 0 {
			reasons = append(reasons, s.Instance+": "+s.Status)
		}
	}
	if len(fa.fresh) == 0 {
		status = "critical"
		reasons = append(reasons, "no instance of fleet "+fa.fleet+" has sent a heartbeat within 3 monitoring intervals")
	}
	writeJSON(w, http.StatusOK, fa.common(map[string]any{
		"status":     status,
		"components": components,
		"metrics":    fa.metrics(),
		"window":     "1m",
		"reasons":    reasons,
		"last_check": fa.now.UTC().Format(time.RFC3339),
	}))
}

// metrics are the fleet's figures: throughput summed over the fresh
// instances' latest intervals; error rate and percentiles over the merged
// rollups of the last minute.
func (fa fleetAnswer) metrics() map[string]any {
	var tput float64
	for _, s := range fa.fresh {
		tput += s.ThroughputRPS
	}
	m := fa.merged
	out := map[string]any{
		"throughput_rps":    tput,
		"error_rate":        m.ErrorRate,
		"requests":          m.Answered,
		"errors":            m.Failed,
		"p50_response_time": nil,
		"p95_response_time": nil,
		"p99_response_time": nil,
		"avg_response_time": nil,
	}
	if m.Latency.Count() > 0 {
		out["p50_response_time"], out["p95_response_time"], out["p99_response_time"] = m.P50, m.P95, m.P99
	}
	if n := m.Timing["count"]; n > 0 {
		out["avg_response_time"] = m.Timing["total"] / n
	}
	return out
}

// fleetPerformance is GET /admin/api/performance/responsiveness?scope=fleet.
func (a *API) fleetPerformance(w http.ResponseWriter, r *http.Request, f FleetView) {
	fa, ok := a.fleetState(w, r, f)
	if !ok {
		return
	}
	res := map[string]any{"memory_usage_percent": nil, "cpu_usage_percent": nil}
	// The fleet's resources are each fresh instance's: the highest is the one to watch.
	var mem, cpu *float64
	for _, s := range fa.fresh {
		mem, cpu = maxPtr(mem, s.MemoryUsage), maxPtr(cpu, s.CPUUsage)
	}
	res["memory_usage_percent"], res["cpu_usage_percent"] = pct(mem), pct(cpu)
	pm := fa.metrics()
	pm["window"] = "1m"
	writeJSON(w, http.StatusOK, fa.common(map[string]any{
		"timestamp":           fa.now.UTC().Format(time.RFC3339),
		"performance_metrics": pm,
		"resource_metrics":    res,
		"status_classes":      fa.merged.Requests,
		"error_classes":       fa.merged.Errors,
	}))
}

func maxPtr(a, b *float64) *float64 {
	if a == nil || (b != nil && *b > *a) {
		return b
	}
	return a
}
