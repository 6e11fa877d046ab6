package adminapi

import (
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/releases"
	"github.com/pulsegate/pulsegate/report"
)

// The per-route history and the release comparison (contract R1):
//
//	GET /admin/responsiveness/api/history/route?route=<template>&range=<15m..365d> (or from/to)[&scope=instance|fleet]
//	GET /admin/api/releases/responsiveness?since=24h|7d|30d[&scope=instance|fleet]

// maxRouteParam bounds the route parameter (route templates are at most
// 128 bytes).
const maxRouteParam = 256

// routeHistoryAnswer is the route endpoint's JSON.
type routeHistoryAnswer struct {
	history.RouteView
	// Scope is "fleet" when the rows of every instance were merged
	// (?scope=fleet); absent for this instance's own.
	Scope           string         `json:"scope,omitempty"`
	Events          []HistoryEvent `json:"events"`
	EventsTruncated bool           `json:"events_truncated,omitempty"`
	EventsError     string         `json:"events_error,omitempty"`
}

// ErrFleetRoutesNeedStore is the 400 of ?scope=fleet on the route
// history and releases endpoints without a shared store.
const ErrFleetRoutesNeedStore = "scope=fleet needs a shared store (store.dsn): set RESPONSIVENESS_STORE_DSN on every sidecar of the fleet; this sidecar answers for itself only"

// routeHistoryReader is the reader ?scope= asks for on the API's clock:
// this instance's archive ("" or instance), or the fleet's per-route rows
// in the shared store (fleet: Deps.FleetRoutes, a history.Reader over
// them). It returns nil with an answer written when there is none: 400
// for a bad scope or fleet without a shared store, 501 when the fleet
// view cannot read per-route rows, 503 without a persisted history.
func (a *API) routeHistoryReader(w http.ResponseWriter, r *http.Request) *history.Reader {
	switch sc := r.URL.Query().Get("scope"); sc {
	case "", "instance":
	case "fleet":
		if a.d.FleetRoutes == nil {
			if a.d.Fleet == nil {
				writeError(w, http.StatusBadRequest, ErrFleetRoutesNeedStore)
			} else {
				writeError(w, http.StatusNotImplemented, "scope=fleet: this sidecar's fleet view cannot read per-route rollups")
			}
			return nil
		}
		rd, ok := a.d.FleetRoutes.(history.Reader)
		if !ok {
			writeError(w, http.StatusNotImplemented, "scope=fleet: this sidecar's fleet view cannot read per-route rollups")
			return nil
		}
		rd.Now = a.d.Now
		rd.HourlyRoutes = false // the route endpoints pick the tier by the span (the report reads 1 h rows)
		return &rd
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("scope: want instance or fleet, got %s", quote(sc)))
		return nil
	}
	if a.d.History == nil || a.d.History.Archive == nil {
		writeError(w, http.StatusServiceUnavailable, "route history needs the persisted history (<data_dir>/history.db), which is not open")
		return nil
	}
	rd := *a.d.History
	rd.Now = a.d.Now
	return &rd
}

// routeHistory serves GET /admin/responsiveness/api/history/route: one
// route's (or "*", the whole app's) p50/p95/p99 from merged latency
// buckets, throughput, error rate and requests per step, the version of
// each step, the releases in the range with the comparison of the last
// two, and the history endpoint's events.
func (a *API) routeHistory(w http.ResponseWriter, r *http.Request, _ principal) {
	q := r.URL.Query()
	route := q.Get("route")
	switch {
	case route == "":
		writeError(w, http.StatusBadRequest, `route: required (a route template such as /users/:id, or "*" for the whole app)`)
		return
	case len(route) > maxRouteParam || !utf8.ValidString(route):
		writeError(w, http.StatusBadRequest, "route: must be valid UTF-8 of at most 256 bytes")
		return
	}
	now := a.d.Now()
	req, err := history.ParseRequest(q, now)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rd := a.routeHistoryReader(w, r)
	if rd == nil {
		return
	}
	v, err := rd.RouteView(route, req)
	if err != nil {
		a.d.Log.Warn("history_read_failed", zap.String("route", route), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "route history could not be read")
		return
	}
	out := routeHistoryAnswer{RouteView: v, Scope: scopeName(r), Events: []HistoryEvent{}}
	if a.d.HistoryEvents != nil {
		if out.Events, out.EventsTruncated, err = historyEvents(a.d.HistoryEvents, time.Unix(v.From, 0), time.Unix(v.To, 0)); err != nil {
			a.d.Log.Warn("history_events_failed", zap.Error(err))
			out.EventsError = "events could not be read from the store"
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// releasesAnswer is the releases endpoint's JSON.
type releasesAnswer struct {
	Since string `json:"since"`
	// Scope is "fleet" when the rows of every instance were merged; absent otherwise.
	Scope string `json:"scope,omitempty"`
	// From and To bound the rollups compared.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Routes: the whole app ("*") first, then each route with two known
	// versions in the range, busiest first.
	Routes []history.RouteRelease `json:"routes"`
	// Test states the method; Alpha the chance of any false flag in this
	// answer (shared among the routes compared).
	Test  string  `json:"test"`
	Alpha float64 `json:"alpha"`
}

// releasesList serves GET /admin/api/releases/responsiveness?since=: per
// route, the last release against the one before.
func (a *API) releasesList(w http.ResponseWriter, r *http.Request, _ principal) {
	since := r.URL.Query().Get("since")
	if since == "" {
		since = "7d"
	}
	d, err := report.ParseSince(since) // the report's periods: one table
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rd := a.routeHistoryReader(w, r)
	if rd == nil {
		return
	}
	now := a.d.Now()
	rels, err := rd.Releases(now.Add(-d), now)
	if err != nil {
		a.d.Log.Warn("history_read_failed", zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "route history could not be read")
		return
	}
	writeJSON(w, http.StatusOK, releasesAnswer{Since: since, Scope: scopeName(r), From: now.Add(-d).UTC(), To: now.UTC(), Routes: rels,
		Test: releases.TestDescription, Alpha: history.ReleaseOptions().Alpha})
}

// quote quotes a parameter for an error message, cut to 64 bytes.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for _, c := range []byte(s) {
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			b = append(b, '?')
			continue
		}
		b = append(b, c)
	}
	return string(append(b, '"'))
}

// scopeName is "fleet" for ?scope=fleet, else "" (this instance).
func scopeName(r *http.Request) string {
	if r.URL.Query().Get("scope") == "fleet" {
		return "fleet"
	}
	return ""
}
