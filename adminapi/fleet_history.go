package adminapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/store"
)

// FleetHistory is a FleetView that also serves the fleet's trend series
// (GET /admin/responsiveness/api/history?scope=fleet).
type FleetHistory interface {
	// Series merges the fleet's heartbeat rows stamped in (from, to] into
	// steps of at least step (store.SQL.FleetSeries).
	Series(ctx context.Context, from, to time.Time, step time.Duration) (store.FleetSeries, error)
}

// ErrFleetHistoryNeedsStore is the 400 of ?scope=fleet on the history
// endpoint without a shared store (contract F1).
const ErrFleetHistoryNeedsStore = "scope=fleet needs a shared store (store.dsn)"

// fleetHistoryAnswer is the history answer in fleet scope: the same shape,
// plus scope, the fleet's name, how many instances the range holds and how
// each series merges them.
type fleetHistoryAnswer struct {
	historyAnswer
	Scope         string            `json:"scope"`
	Fleet         string            `json:"fleet"`
	Instances     int               `json:"instances"`
	InstanceNames []string          `json:"instance_names"`
	Aggregation   map[string]string `json:"aggregation"`
}

// fleetHistory answers the history endpoint for ?scope= other than
// instance: the fleet's series from the shared store's merged heartbeat
// rollups, with the same events as the instance answer.
func (a *API) fleetHistory(w http.ResponseWriter, r *http.Request, scope string) {
	if scope != "fleet" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("scope: want instance or fleet, got %q", truncate(scope, 64)))
		return
	}
	fh, ok := a.d.Fleet.(FleetHistory)
	if a.d.Fleet == nil || !ok {
		writeError(w, http.StatusBadRequest, ErrFleetHistoryNeedsStore)
		return
	}
	now := a.d.Now()
	req, err := history.ParseRequest(r.URL.Query(), now)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), fleetQueryTimeout)
	defer cancel()
	fs, err := fh.Series(ctx, req.From, req.To, fleetStep(req.To.Sub(req.From)))
	if err != nil {
		a.d.Log.Warn("fleet_history_read_failed", zap.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "the shared store cannot be read: "+err.Error())
		return
	}
	out := fleetHistoryAnswer{
		historyAnswer: historyAnswer{View: report.FleetView(fs, req.Name, req.From, req.To), Events: []HistoryEvent{}},
		Scope:         "fleet", Fleet: a.d.Fleet.Name(), Instances: len(fs.Instances), InstanceNames: fs.Instances,
		Aggregation: report.FleetAggregation(),
	}
	if a.d.HistoryEvents != nil {
		if out.Events, out.EventsTruncated, err = historyEvents(a.d.HistoryEvents, req.From, req.To); err != nil {
			a.d.Log.Warn("history_events_failed", zap.Error(err))
			out.EventsError = "events could not be read from the store"
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// fleetStep is the asked step for a span: at most history.MaxPoints
// steps, a whole number of 10 s (the store raises it to the heartbeat
// interval), of minutes beyond an hour's span (the store's minute rows)
// and of hours beyond 14 days' (its hour rows, kept history.retention_1h).
func fleetStep(span time.Duration) time.Duration {
	unit := 10 * time.Second
	switch {
	case span > 14*24*time.Hour:
		unit = time.Hour
	case span > time.Hour:
		unit = time.Minute
	}
	step := span / history.MaxPoints
	return max(unit, (step+unit-1)/unit*unit)
}
