package adminapi

import (
	"bytes"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/report"
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
	if a.scopeFleet(w, r, func(w http.ResponseWriter, _ *http.Request, _ FleetView) {
		writeError(w, http.StatusNotImplemented, "the fleet report is not available yet: the shared store keeps the fleet-merged series (see ?scope=fleet on the history endpoint) but no per-route history, so a fleet report's routes and releases cannot be computed; run `pulsegate report` against each sidecar (scope=instance)")
	}) {
		return
	}
	cfg, _ := a.d.Config.Get()
	in := report.Inputs{Since: since, Now: a.d.Now(), Config: cfg, Instance: cfg.Instance}
	if h := a.d.History; h != nil {
		if h.Archive != nil {
			in.Series = h.Archive
		}
		in.Routes = routeSource(h)
	}
	if a.d.HistoryEvents != nil {
		in.Alerts = a.d.HistoryEvents
	}
	if a.d.Backpressure != nil {
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
		a.d.Log.Warn("report_source_unavailable", zap.String("since", since), zap.String("problem", p))
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

// routeSource is the history's per-route rollups; nil without an archive.
func routeSource(h *history.Reader) report.RouteSource {
	if h.Archive == nil {
		return nil
	}
	return report.HourlyRoutes(*h)
}
