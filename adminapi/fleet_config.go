package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
)

// FleetConfig is the fleet's live configuration in the shared store
// (Deps.FleetConfig; nil without a shared store, and the config routes then
// answer for this sidecar alone). The stored version holds only the live
// changes over each sidecar's files (config.ApplyOverlay).
type FleetConfig interface {
	// State is what this sidecar knows of the fleet's configuration: the
	// latest version it read or stored, the version it runs, and every
	// instance's version from its heartbeat (read within ctx).
	State(ctx context.Context) FleetConfigState
	// Change stores body (a POST body) as the fleet's next version and
	// applies it here. expect is the version the caller read (0: no check,
	// on top of whatever is stored). Errors: ErrFleetConfigStale (wrapped,
	// 409), ErrFleetStoreDown (wrapped, 503), a *config.ValidationError
	// (400); nothing is stored or applied then.
	Change(ctx context.Context, expect int64, body []byte, actor string) (FleetConfigChange, error)
}

// FleetConfigState is the "fleet" object of the config GET.
type FleetConfigState struct {
	// Fleet names the fleet (RESPONSIVENESS_FLEET); Instance is this sidecar.
	Fleet    string
	Instance string
	// Version is the fleet's version as this sidecar last read or stored it
	// (0: no live changes stored), with who made it and when.
	Version           int64
	UpdatedAt         time.Time
	UpdatedByInstance string
	Actor             string
	// Running is the version this sidecar runs; it differs from Version
	// while Invalid says why this sidecar refused Version.
	Running int64
	Invalid string
	// Config is the configuration this sidecar runs, read together with
	// Running so one answer never shows a version with another version's
	// settings (nil: the handler reads Deps.Config).
	Config *config.Config
	// Instances is every instance with the version its last heartbeat ran.
	Instances []FleetConfigInstance
	// StoreError is why the store could not be read ("" when it was).
	StoreError string
}

// FleetConfigInstance is one row of the "fleet" object's "instances".
type FleetConfigInstance struct {
	Instance      string `json:"instance"`
	ConfigVersion int64  `json:"config_version"`
	Stale         bool   `json:"stale"`
}

// FleetConfigChange is what Change stored.
type FleetConfigChange struct {
	// Version is the fleet's new version.
	Version int64
	// Changes are the settings the POST changed (secrets never among them).
	Changes []config.Change
	// State is the fleet's state after the change.
	State FleetConfigState
}

// ErrFleetConfigStale is what FleetConfig.Change wraps when the caller's
// version is not the fleet's (409).
var ErrFleetConfigStale = errors.New("stale fleet configuration version")

// ErrFleetStoreDown is what FleetConfig.Change wraps when the shared store
// cannot be read or written (503: nothing changed anywhere).
var ErrFleetStoreDown = errors.New("the fleet configuration cannot be changed while the shared store is unreachable")

// fleetConfigTimeout bounds the store work of one config GET or POST.
const fleetConfigTimeout = 5 * time.Second

// fleetJSON renders the "fleet" object (contract C1).
func fleetJSON(st FleetConfigState, restart []string) map[string]any {
	var updated any
	if !st.UpdatedAt.IsZero() {
		updated = st.UpdatedAt.UTC().Format(time.RFC3339Nano)
	}
	insts := st.Instances
	if insts == nil {
		insts = []FleetConfigInstance{}
	}
	out := map[string]any{
		"version": st.Version, "updated_at": updated, "updated_by_instance": st.UpdatedByInstance, "actor": st.Actor,
		"instances": insts, "name": st.Fleet, "instance": st.Instance, "running_version": st.Running,
		"invalid": nilIfEmpty(st.Invalid), "store_error": nilIfEmpty(st.StoreError),
	}
	if restart != nil {
		out["restart_required"] = restart
	}
	return out
}

// withoutFleetObject drops the GET's read-only "fleet" object (it takes
// the place of the "fleet" setting, a string, in the GET) from a posted
// document, so what GET returned can be posted back.
func withoutFleetObject(body []byte) []byte {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return body // Patch names the problem
	}
	raw, ok := top["fleet"]
	if !ok || !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		return body
	}
	delete(top, "fleet")
	b, err := json.Marshal(top)
	if err != nil {
		return body
	}
	return b
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// getFleetConfig is the config GET with a shared store: the configuration
// this sidecar runs, "version" the fleet's version (what a POST's check
// compares), and the "fleet" object.
func (a *API) getFleetConfig(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), fleetConfigTimeout)
	defer cancel()
	st := a.d.FleetConfig.State(ctx)
	cfg := st.Config
	if cfg == nil {
		cfg, _ = a.d.Config.Get()
	}
	doc := configDoc(cfg, uint64(max(st.Version, 0)))
	doc["fleet"] = fleetJSON(st, a.d.Config.PendingRestart())
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(st.Version, 10)))
	writeJSON(w, http.StatusOK, doc)
}

// postFleetConfig is the config POST with a shared store: the change is
// stored as the fleet's next version (compare-and-set), then applied here;
// every other sidecar applies it at its next poll.
func (a *API) postFleetConfig(w http.ResponseWriter, r *http.Request, who principal, body []byte, from uint64) {
	ctx, cancel := context.WithTimeout(r.Context(), fleetConfigTimeout)
	defer cancel()
	res, err := a.d.FleetConfig.Change(ctx, int64(from), withoutFleetObject(body), who.actor)
	var ve *config.ValidationError
	switch {
	case err == nil:
	case errors.Is(err, ErrFleetConfigStale):
		a.auditRefused(r, who, store.ActionConfigRejected, err.Error())
		writeError(w, http.StatusConflict, err.Error()+"; nothing changed")
		return
	case errors.Is(err, ErrFleetStoreDown):
		a.auditRefused(r, who, store.ActionConfigRejected, err.Error())
		writeError(w, http.StatusServiceUnavailable, err.Error()+"; nothing changed")
		return
	case errors.As(err, &ve):
		a.auditRefused(r, who, store.ActionConfigRejected, err.Error())
		writeError(w, http.StatusBadRequest, "configuration refused; nothing changed", errorLines(err)...)
		return
	default:
		a.auditRefused(r, who, store.ActionConfigRejected, err.Error())
		writeError(w, http.StatusBadRequest, fmt.Sprintf("configuration refused; nothing changed: %v", err))
		return
	}
	changes := []store.Change{}
	for _, c := range res.Changes {
		changes = append(changes, store.Change{Key: c.Key, Old: c.Old, New: c.New})
	}
	a.record(store.AuditEntry{Actor: who.actor, Source: r.RemoteAddr, Action: store.ActionConfigUpdate,
		Outcome: store.OutcomeOK, Target: "fleet version " + strconv.FormatInt(res.Version, 10), Changes: changes,
		Instance: res.State.Instance})
	applied, _ := a.d.Config.Get()
	restart := a.d.Config.PendingRestart()
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(res.Version, 10)))
	doc := configDoc(applied, uint64(res.Version))
	doc["fleet"] = fleetJSON(res.State, restart)
	writeJSON(w, http.StatusOK, map[string]any{"version": res.Version, "changes": changes,
		"restart_required": restart, "config": doc})
}
