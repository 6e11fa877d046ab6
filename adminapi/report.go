package adminapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/store"
)

// reportAnswer serves GET /admin/api/report/responsiveness?since=24h|7d|30d
// (&format=json|markdown|text, &scope=instance|fleet): the daily, weekly or
// monthly review computed from the history archive, the per-route
// rollups, the alert store and the configuration in force
// (docs/report.md). `pulsegate report` fetches it.
func (a *API) reportAnswer(w http.ResponseWriter, r *http.Request, _ principal) {
	q := r.URL.Query()
	since := q.Get("since")
	if since == "" {
		since = "24h"
	}
	if _, err := report.ParseSince(since); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	format, err := report.ParseFormat(q.Get("format"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cfg, _ := a.d.Config.Get()
	in := report.Inputs{Since: since, Now: a.d.Now(), Config: cfg, Instance: cfg.Instance}
	switch sc := q.Get("scope"); sc {
	case "", "instance":
	case "fleet":
		// As the history endpoint's ?scope=fleet without a shared store.
		fr, ok := a.d.Fleet.(FleetReportView)
		if a.d.Fleet == nil || !ok {
			writeError(w, http.StatusBadRequest, ErrFleetReportNeedsStore)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), fleetReportTimeout)
		defer cancel()
		a.fleetReportInputs(ctx, fr, &in)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("scope: want instance or fleet, got %q", truncate(sc, 64)))
		return
	}
	if h := a.d.History; h != nil && in.Fleet == "" {
		if h.Archive != nil {
			in.Series = h.Archive
		}
		in.Routes = routeSource(h)
	}
	if a.d.HistoryEvents != nil && in.Fleet == "" {
		in.Alerts = a.d.HistoryEvents
	}
	if a.d.Backpressure != nil && in.Fleet == "" {
		st := a.d.Backpressure()
		in.Backpressure = &st
	}
	rep, err := report.Build(in)
	if err != nil {
		var pe *report.ParamError
		if errors.As(err, &pe) {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		a.d.Log.Warn("report_failed", zap.Error(err))
		writeError(w, http.StatusInternalServerError, "report: "+err.Error())
		return
	}
	for _, p := range rep.Problems {
		a.d.Log.Warn("report_source_unavailable", zap.String("since", since), zap.String("scope", rep.Scope), zap.String("problem", p))
	}
	if format == "json" {
		writeJSON(w, http.StatusOK, rep)
		return
	}
	var buf bytes.Buffer
	_ = report.Render(&buf, rep, format)
	ct := "text/plain; charset=utf-8"
	if format == "markdown" {
		ct = "text/markdown; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// FleetReportView is what a FleetView also implements when it can serve
// the fleet report (GET /admin/api/report/responsiveness?scope=fleet): the
// fleet's merged series and its alerts, and the shared audit log.
type FleetReportView interface {
	FleetHistory
	FleetAlertsView
	// FleetAudit pages the shared store's audit log: up to limit entries
	// older than before, newest first (store.SQL.Audit).
	FleetAudit(ctx context.Context, limit int, before time.Time) ([]store.AuditEntry, error)
	// CompactionWindow is the window the store merges heartbeat rows older
	// than an hour into (store.Retention.Window): the fleet report's
	// shortest point.
	CompactionWindow() time.Duration
}

// ErrFleetReportNeedsStore is the 400 of ?scope=fleet on the report
// without a shared store (the history endpoint's answer, with the
// variable to set).
const ErrFleetReportNeedsStore = ErrFleetHistoryNeedsStore + ": set RESPONSIVENESS_STORE_DSN on every sidecar of the fleet; " +
	"this sidecar uses the embedded store and reports for itself only (scope=instance, `pulsegate report` without --fleet)"

// fleetReportTimeout bounds the shared store's reads of one fleet report
// (a 30d report reads two months of hour rows, in chunks).
const fleetReportTimeout = time.Minute

// fleetReportInputs sets the fleet report's sources: the shared store's
// fleet-merged rows, the fleet's alerts and audit log, and the fleet's
// per-route rollups when the store keeps them (Deps.FleetRoutes).
func (a *API) fleetReportInputs(ctx context.Context, fr FleetReportView, in *report.Inputs) {
	in.Fleet, in.Instance = a.d.Fleet.Name(), ""
	in.Series = report.NewFleetSeries(ctx, fr.Series, fr.CompactionWindow())
	now := in.Now
	in.Alerts = report.FleetAlerts{
		Load: func() ([]store.FleetAlert, error) {
			fas, _, err := fr.FleetAlerts(ctx, now, false)
			return fas, err
		},
		AuditLog: func(limit int, before time.Time) ([]store.AuditEntry, error) {
			return fr.FleetAudit(ctx, limit, before)
		},
	}
	if a.d.FleetRoutes != nil {
		in.Routes = a.d.FleetRoutes
	}
}

// routeSource is the history's per-route rollups; nil without an archive.
func routeSource(h *history.Reader) report.RouteSource {
	if h.Archive == nil {
		return nil
	}
	return report.HourlyRoutes(*h)
}
