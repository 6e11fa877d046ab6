package adminapi

import (
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/store"
	"go.uber.org/zap"
)

// HistoryEvents is where the history endpoint reads its events: the
// store's alert history and audit log (*store.Store and *store.SQL both
// serve it).
type HistoryEvents interface {
	LoadAlerts() ([]store.AlertRecord, error)
	Audit(limit int, before time.Time) ([]store.AuditEntry, error)
}

// MaxHistoryEvents bounds the events of one history answer (the newest
// are kept; events_truncated says so).
const MaxHistoryEvents = 1000

// Event kinds on the history timeline.
const (
	EventAlertFired        = "alert_fired"
	EventAlertAcknowledged = "alert_acknowledged"
	EventAlertResolved     = "alert_resolved"
	EventConfigChange      = "config_change"
)

// HistoryEvent is one event on the trend timeline.
type HistoryEvent struct {
	Time time.Time `json:"time"`
	// Kind is alert_fired, alert_acknowledged, alert_resolved or config_change.
	Kind string `json:"kind"`
	// Alert events: the rule, its subject (probe or task, if any), the
	// highest level the occurrence reached, its id and message.
	Rule    string `json:"rule,omitempty"`
	Subject string `json:"subject,omitempty"`
	Level   string `json:"level,omitempty"`
	AlertID string `json:"alert_id,omitempty"`
	Message string `json:"message,omitempty"`
	// By is who acknowledged the alert or changed the configuration (an
	// identity such as "token:3f2a9c", never a credential).
	By string `json:"by,omitempty"`
	// Note is the acknowledgement's note.
	Note string `json:"note,omitempty"`
	// Changes are a config change's keys with old and new values (secrets redacted).
	Changes []store.Change `json:"changes,omitempty"`
	// Instance is the sidecar that changed the configuration (shared store only).
	Instance string `json:"instance,omitempty"`
}

// historyAnswer is the history endpoint's JSON: the view's fields and the events.
type historyAnswer struct {
	history.View
	Events          []HistoryEvent `json:"events"`
	EventsTruncated bool           `json:"events_truncated,omitempty"`
	EventsError     string         `json:"events_error,omitempty"`
}

// history serves GET /admin/responsiveness/api/history?range= (or
// from/to): the trend series from the tier the range calls for, and the
// alert transitions and config changes in the range.
func (a *API) history(w http.ResponseWriter, r *http.Request, p principal) {
	if sc := r.URL.Query().Get("scope"); sc != "" && sc != "instance" {
		a.fleetHistory(w, r, sc) // fleet_history.go
		return
	}
	if _, ok := r.URL.Query()["instance"]; ok {
		a.instanceHistory(w, r) // instance_history.go
		return
	}
	if a.d.History == nil {
		a.dashboard(w, r, p)
		return
	}
	now := a.d.Now()
	req, err := history.ParseRequest(r.URL.Query(), now)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	v, err := a.d.History.View(req, now)
	if err != nil {
		a.d.Log.Warn("history_read_failed", zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "history: "+err.Error())
		return
	}
	out := historyAnswer{View: v, Events: []HistoryEvent{}}
	if a.d.HistoryEvents != nil {
		from, to := time.Unix(v.From, 0), time.Unix(v.To, 0)
		if out.Events, out.EventsTruncated, err = historyEvents(a.d.HistoryEvents, from, to); err != nil {
			a.d.Log.Warn("history_events_failed", zap.Error(err))
			out.EventsError = "events could not be read from the store"
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// historyEvents collects the events in [from, to), oldest first, at most
// MaxHistoryEvents (the newest).
func historyEvents(src HistoryEvents, from, to time.Time) ([]HistoryEvent, bool, error) {
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	out := []HistoryEvent{}
	alerts, aerr := src.LoadAlerts()
	for _, al := range alerts {
		base := HistoryEvent{Rule: al.Rule, Subject: al.Subject, Level: al.PeakSeverity, AlertID: al.ID}
		if in(al.FirstSeen) {
			e := base
			e.Time, e.Kind, e.Message = al.FirstSeen, EventAlertFired, al.Message
			out = append(out, e)
		}
		if al.AcknowledgedAt != nil && in(*al.AcknowledgedAt) {
			e := base
			e.Time, e.Kind, e.By, e.Note = *al.AcknowledgedAt, EventAlertAcknowledged, al.AcknowledgedBy, al.AckNote
			out = append(out, e)
		}
		if al.ResolvedAt != nil && in(*al.ResolvedAt) {
			e := base
			e.Time, e.Kind, e.Message = *al.ResolvedAt, EventAlertResolved, al.Message
			out = append(out, e)
		}
	}
	// The audit log, newest first, paged back from to until from.
	var uerr error
	before, pages := to, 0
	for pages < 20 {
		entries, err := src.Audit(500, before)
		if err != nil {
			uerr = err
			break
		}
		pages++
		for _, e := range entries {
			if e.Action == store.ActionConfigUpdate && e.Outcome == store.OutcomeOK && in(e.Time) {
				out = append(out, HistoryEvent{Time: e.Time, Kind: EventConfigChange, By: e.Actor,
					Changes: e.Changes, Instance: e.Instance})
			}
		}
		if len(entries) < 500 || entries[len(entries)-1].Time.Before(from) {
			break
		}
		before = entries[len(entries)-1].Time
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	truncated := len(out) > MaxHistoryEvents
	if truncated {
		out = out[len(out)-MaxHistoryEvents:]
	}
	return out, truncated, errors.Join(aerr, uerr)
}
