package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/store"
)

// InstanceHistory reads one instance's long history (the 1 min and 1 h
// points its archive copied to the shared store), so a pod that is gone
// keeps its history (GET /admin/responsiveness/api/history?scope=instance&instance=<name>).
type InstanceHistory interface {
	// InstanceView answers req for instance from the shared store's copy
	// of its archive; an instance without any stored point is
	// store.ErrNotFound (wrapped).
	InstanceView(ctx context.Context, instance string, req history.Request) (history.View, error)
}

// ErrInstanceHistoryNeedsStore is the 400 of ?instance= on the history
// endpoint without a shared store.
const ErrInstanceHistoryNeedsStore = "instance: reading another instance's history needs a shared store (store.dsn); this sidecar answers for itself without the parameter"

// instanceAnswer is the history answer for a named instance: the view,
// with the instance named. Events stay empty: this sidecar's alert
// history is its own, not the named instance's.
type instanceAnswer struct {
	historyAnswer
	Scope    string `json:"scope"`
	Instance string `json:"instance"`
}

// checkInstanceName checks ?instance= as config checks instance names.
func checkInstanceName(s string) error {
	if s == "" {
		return errors.New("instance: must name an instance (letters, digits and . _ - :)")
	}
	if p := config.NameProblem(s); p != "" {
		return fmt.Errorf("instance: %s, got %s", p, quote(s))
	}
	return nil
}

// instanceHistory answers the history endpoint with ?instance=: that
// instance's 1 min or 1 h points from the shared store.
func (a *API) instanceHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("instance")
	if err := checkInstanceName(name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := a.d.Now()
	req, err := history.ParseRequest(q, now)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if a.d.InstanceHistory == nil {
		writeError(w, http.StatusBadRequest, ErrInstanceHistoryNeedsStore)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), fleetQueryTimeout)
	defer cancel()
	v, err := a.d.InstanceHistory.InstanceView(ctx, name, req)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("instance: %s has no history in the shared store (unknown instance, or its history is older than history.retention_1h)", quote(name)))
		return
	}
	if err != nil {
		a.d.Log.Warn("instance_history_read_failed", zap.String("instance", name), zap.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "the shared store cannot be read: "+err.Error())
		return
	}
	out := instanceAnswer{historyAnswer: historyAnswer{View: v, Events: []HistoryEvent{}}, Scope: "instance", Instance: name}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}
