package adminapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/store"
)

// FleetAlertsView is what a FleetView also implements when it can list
// the fleet's alerts (GET /admin/api/alerts/responsiveness?scope=fleet).
type FleetAlertsView interface {
	// FleetAlerts returns the fleet's alerts, newest first (activeOnly:
	// firing and acknowledged ones only), and every instance's latest
	// heartbeat (stale ones flagged).
	FleetAlerts(ctx context.Context, now time.Time, activeOnly bool) ([]store.FleetAlert, []store.InstanceStatus, error)
}

// alertQuery is the alert list's filter: ?state=&severity=&limit=.
type alertQuery struct {
	state, severity string
	limit           int
}

// parseAlertQuery reads the filter; a bad one is a 400 naming the
// parameter (answered here, ok false).
func parseAlertQuery(w http.ResponseWriter, r *http.Request) (alertQuery, bool) {
	q := r.URL.Query()
	aq := alertQuery{state: q.Get("state"), severity: q.Get("severity"), limit: 100}
	switch aq.state {
	case "", "active", "firing", "acknowledged", "resolved":
	default:
		writeError(w, http.StatusBadRequest, "state: want active, firing, acknowledged or resolved")
		return aq, false
	}
	switch aq.severity {
	case "", "warning", "critical":
	default:
		writeError(w, http.StatusBadRequest, "severity: want warning or critical")
		return aq, false
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit: want a number from 1 to 1000")
			return aq, false
		}
		aq.limit = n
	}
	return aq, true
}

func (aq alertQuery) match(a store.AlertRecord) bool {
	switch aq.state {
	case "":
	case "active":
		if !a.Active() {
			return false
		}
	default:
		if a.State != aq.state {
			return false
		}
	}
	return aq.severity == "" || a.Severity == aq.severity
}

// FleetAlertJSON is one alert of the fleet answer: the instance answer's
// fields (one id for every sidecar) and the instances that see or saw it.
type FleetAlertJSON struct {
	store.AlertRecord
	Instances []FleetAlertInstance `json:"instances"`
}

// FleetAlertInstance is one instance's part in a fleet alert. Since is
// when the instance started to see it (null once it resolved there);
// LastSeen is its latest heartbeat while it sees it (its resolution time
// after); ResolvedAt is when it stopped seeing it (null while it does).
type FleetAlertInstance struct {
	Instance   string     `json:"instance"`
	State      string     `json:"state"`
	Severity   string     `json:"severity"`
	Value      float64    `json:"value"`
	Since      *time.Time `json:"since"`
	LastSeen   time.Time  `json:"last_seen"`
	ResolvedAt *time.Time `json:"resolved_at"`
	// Stale: the instance has been silent for 3 monitoring intervals.
	Stale bool `json:"stale"`
}

func severityRank(s string) int {
	if s == store.SeverityCritical {
		return 2
	}
	if s == store.SeverityWarning {
		return 1
	}
	return 0
}

// fleetAlertJSON merges a fleet alert with its instances: while it is
// active, its severity is the worst of the instances that see it, its
// value that instance's, its last_seen their latest heartbeat.
func fleetAlertJSON(fa store.FleetAlert, hb map[string]store.InstanceStatus) FleetAlertJSON {
	out := FleetAlertJSON{AlertRecord: fa.AlertRecord.Clone(), Instances: make([]FleetAlertInstance, 0, len(fa.Instances))}
	worst := -1
	var last time.Time
	for _, ai := range fa.Instances {
		row := FleetAlertInstance{Instance: ai.Instance, State: ai.State, Severity: ai.Severity, Value: ai.Value, LastSeen: ai.LastSeen.UTC()}
		st, known := hb[ai.Instance]
		row.Stale = known && st.Stale
		if ai.State == store.StateResolved {
			t := ai.LastSeen.UTC()
			row.ResolvedAt = &t
		} else {
			since := ai.LastSeen.UTC()
			row.Since = &since
			if known && st.LastSeen.After(since) {
				row.LastSeen = st.LastSeen.UTC()
			}
			if fa.Active() {
				if r := severityRank(ai.Severity); r > worst {
					worst = r
					out.Severity, out.Value = ai.Severity, ai.Value
				}
				if row.LastSeen.After(last) {
					last = row.LastSeen
				}
			}
		}
		out.Instances = append(out.Instances, row)
	}
	if fa.Active() {
		if severityRank(out.Severity) > severityRank(out.PeakSeverity) {
			out.PeakSeverity = out.Severity
		}
		if last.After(out.LastSeen) {
			out.LastSeen = last
		}
	}
	return out
}

// fleetAlerts is GET /admin/api/alerts/responsiveness?scope=fleet: the
// fleet's alerts (one per rule key and occurrence, the same id on every
// sidecar) with their instances, filtered as the instance answer.
func (a *API) fleetAlerts(w http.ResponseWriter, r *http.Request, f FleetView) {
	fv, ok := f.(FleetAlertsView)
	if !ok {
		writeError(w, http.StatusNotImplemented, "scope=fleet: this sidecar's fleet view cannot list alerts")
		return
	}
	aq, ok := parseAlertQuery(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), fleetQueryTimeout)
	defer cancel()
	now := a.d.Now()
	activeOnly := aq.state == "active" || aq.state == store.StateFiring || aq.state == store.StateAcknowledged
	fas, insts, err := fv.FleetAlerts(ctx, now, activeOnly)
	if err != nil {
		a.d.Log.Warn("fleet_read_failed", zap.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "the shared store cannot be read: "+err.Error())
		return
	}
	hb := make(map[string]store.InstanceStatus, len(insts))
	for _, s := range insts {
		hb[s.Instance] = s
	}
	list := make([]FleetAlertJSON, 0, len(fas))
	for _, fa := range fas {
		j := fleetAlertJSON(fa, hb)
		if !aq.match(j.AlertRecord) {
			continue
		}
		list = append(list, j)
		if len(list) == aq.limit {
			break
		}
	}
	fa := newFleetAnswer(f.Name(), now, insts, store.MergedRollup{})
	writeJSON(w, http.StatusOK, fa.common(map[string]any{"alerts": list}))
}
