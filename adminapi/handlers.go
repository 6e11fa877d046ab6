package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/figures"
	"github.com/pulsegate/pulsegate/store"
)

// maxBody bounds every JSON body the API reads.
const maxBody = 64 << 10

func pct(f *float64) *float64 {
	if f == nil {
		return nil
	}
	v := *f * 100
	return &v
}

// performance is the product's GET /admin/api/performance/responsiveness,
// plus richer sections. Product fields come from the 1-minute window.
func (a *API) performance(w http.ResponseWriter, r *http.Request, _ principal) {
	if a.scopeFleet(w, r, a.fleetPerformance) {
		return
	}
	now := a.d.Now()
	var res Resources
	if a.d.Resources != nil {
		res = a.d.Resources()
	}
	out := map[string]any{"timestamp": now.UTC().Format(time.RFC3339)}
	rm := map[string]any{
		"memory_usage_percent":                    pct(res.MemoryUsage),
		"cpu_usage_percent":                       pct(res.CPUUsage),
		string(figures.ConnectionPoolUtilization): pct(res.ConnectionPoolUtilization),
		"active_threads":                          nil,
	}
	if s := a.d.Requests; s != nil {
		topN := 10
		if v, err := strconv.Atoi(r.URL.Query().Get("top")); err == nil && v > 0 && v <= 100 {
			topN = v
		}
		snap := s.Snapshot(now, topN)
		w1 := snap.Windows["1m"]
		rm["active_threads"] = snap.InFlight
		out["performance_metrics"] = map[string]any{
			string(figures.AvgResponseTime): w1.AvgResponseTime,
			"slow_request_count":            w1.SlowRequests,
			string(figures.ErrorRate):       w1.ErrorRate,
			string(figures.AppErrorRate):    w1.AppErrorRate,
			"rejections":                    w1.Rejections,
			"rejection_rate":                w1.RejectionRate,
			"throughput_rps":                w1.ThroughputRPS,
			"p50_response_time":             w1.P50,
			string(figures.P95ResponseTime): w1.P95,
			"p99_response_time":             w1.P99,
			string(figures.Apdex):           w1.Apdex,
			"requests":                      w1.Requests,
			"db_query_time":                 res.DBLatency,
			"window":                        "1m",
		}
		out["windows"] = snap.Windows
		out["routes"] = snap.Routes
		out["routes_tracked"] = snap.RoutesTracked
		out["route_cap"] = snap.RouteCap
		out["recent_slow_requests"] = snap.SlowRequests
		out["status_classes"] = snap.Totals.StatusClasses
		out["error_classes"] = snap.Totals.ErrorClasses
		out["total_requests"] = snap.Totals.Requests
		out["timing_split"] = w1.TimingSplit
		out["in_flight"] = snap.InFlight
		out["uptime_seconds"] = snap.Uptime
	}
	out["resource_metrics"] = rm
	// Judged with the configuration in force now: a threshold just posted
	// shows at once, on the latest measurements.
	judgements := map[figures.Name]figures.Judgement{}
	if a.d.Judgements != nil {
		cfg, _ := a.d.Config.Get()
		judgements = a.d.Judgements(cfg)
	}
	out["judgements"] = judgements
	if a.d.Backpressure != nil {
		out["backpressure"] = a.d.Backpressure()
	}
	if a.d.Extra != nil {
		for k, v := range a.d.Extra() {
			out[k] = v
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) health(w http.ResponseWriter, r *http.Request, _ principal) {
	if a.scopeFleet(w, r, a.fleetHealth) {
		return
	}
	if a.d.Health == nil {
		writeError(w, http.StatusServiceUnavailable, "health verdict not available yet")
		return
	}
	writeJSON(w, http.StatusOK, a.d.Health())
}

// configDoc renders the effective configuration (secrets redacted) with
// its version as a top-level "version" field.
func configDoc(cfg *config.Config, version uint64) map[string]any {
	b, _ := json.Marshal(cfg)
	var doc map[string]any
	_ = json.Unmarshal(b, &doc)
	doc["version"] = version
	return doc
}

func (a *API) getConfig(w http.ResponseWriter, r *http.Request, _ principal) {
	if a.d.FleetConfig != nil {
		a.getFleetConfig(w, r)
		return
	}
	cfg, ver := a.d.Config.Get()
	w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(ver, 10)))
	writeJSON(w, http.StatusOK, configDoc(cfg, ver))
}

// postConfig applies a partial configuration all-or-nothing.
func (a *API) postConfig(w http.ResponseWriter, r *http.Request, who principal) {
	body, status, err := readBody(w, r)
	if err != nil {
		a.auditRefused(r, who, store.ActionConfigRejected, err.Error())
		writeError(w, status, err.Error())
		return
	}
	from, err := requestedVersion(r, body)
	if err != nil {
		a.auditRefused(r, who, store.ActionConfigRejected, err.Error())
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if a.d.FleetConfig != nil {
		a.postFleetConfig(w, r, who, body, from)
		return
	}
	cur, curVer := a.d.Config.Get()
	next, err := config.Patch(cur, body)
	if err != nil {
		a.auditRefused(r, who, store.ActionConfigRejected, err.Error())
		writeError(w, http.StatusBadRequest, "configuration refused; nothing changed", errorLines(err)...)
		return
	}
	ver, err := a.d.Config.Update(from, next)
	if errors.Is(err, config.ErrStaleVersion) {
		msg := fmt.Sprintf("stale version %d: the configuration is at version %d; GET it again and retry", from, curVer)
		a.auditRefused(r, who, store.ActionConfigRejected, msg)
		writeError(w, http.StatusConflict, msg)
		return
	}
	if err != nil {
		a.auditRefused(r, who, store.ActionConfigRejected, err.Error())
		writeError(w, http.StatusBadRequest, "configuration refused; nothing changed", errorLines(err)...)
		return
	}
	var changes []store.Change
	for _, c := range config.Diff(cur, next) {
		changes = append(changes, store.Change{Key: c.Key, Old: c.Old, New: c.New})
	}
	a.record(store.AuditEntry{Actor: who.actor, Source: r.RemoteAddr, Action: store.ActionConfigUpdate,
		Outcome: store.OutcomeOK, Target: "version " + strconv.FormatUint(ver, 10), Changes: changes})
	applied, _ := a.d.Config.Get()
	w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(ver, 10)))
	// Settings read only at start keep their old value until a restart:
	// the answer names every such change since start.
	writeJSON(w, http.StatusOK, map[string]any{"version": ver, "changes": changes,
		"restart_required": a.d.Config.PendingRestart(), "config": configDoc(applied, ver)})
}

// requestedVersion reads the expected version from If-Match or the body's
// "version" field; 0 means the caller did not ask for a check.
func requestedVersion(r *http.Request, body []byte) (uint64, error) {
	if im := strings.Trim(r.Header.Get("If-Match"), `" `); im != "" && im != "*" {
		v, err := strconv.ParseUint(im, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("If-Match: want a version number, got %q", im)
		}
		return v, nil
	}
	var doc struct {
		Version json.RawMessage `json:"version"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || len(doc.Version) == 0 || string(doc.Version) == "null" {
		return 0, nil // Patch reports malformed JSON with the field
	}
	v, err := strconv.ParseUint(string(doc.Version), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("version: want a whole number, got %s", truncate(string(doc.Version), 40))
	}
	return v, nil
}

func errorLines(err error) []string {
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// readBody reads a bounded JSON body: 413 past maxBody.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes", maxBody)
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading body: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, http.StatusBadRequest, errors.New("empty body: send a JSON document")
	}
	return b, 0, nil
}

func (a *API) auditRefused(r *http.Request, who principal, action, why string) {
	a.record(store.AuditEntry{Actor: who.actor, Source: r.RemoteAddr, Action: action,
		Outcome: store.OutcomeRejected, Error: why})
}

// record appends to the audit log and logs the same line.
func (a *API) record(e store.AuditEntry) {
	if e.Time.IsZero() {
		e.Time = a.d.Now()
	}
	a.d.Log.Info("audit", zap.Object("entry", e))
	if a.d.Audit != nil {
		if err := a.d.Audit.AppendAudit(e); err != nil {
			a.d.Log.Error("audit_write_failed", zap.Error(err))
		}
	}
}

func (a *API) audit(w http.ResponseWriter, r *http.Request, _ principal) {
	if a.d.Audit == nil {
		writeError(w, http.StatusNotFound, "no audit store configured")
		return
	}
	limit := 100
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v > 0 && v <= 1000 {
		limit = v
	}
	entries, err := a.d.Audit.Audit(limit, time.Time{})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading the audit log failed")
		return
	}
	if entries == nil {
		entries = []store.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
}

func (a *API) listAlerts(w http.ResponseWriter, r *http.Request, _ principal) {
	if a.scopeFleet(w, r, a.fleetAlerts) {
		return
	}
	if a.d.Alerts == nil {
		writeJSON(w, http.StatusOK, map[string]any{"alerts": []any{}})
		return
	}
	aq, ok := parseAlertQuery(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": a.d.Alerts.List(aq.state, aq.severity, aq.limit)})
}

type ackRequest struct {
	AlertIDs []string `json:"alert_ids"`
	AlertID  string   `json:"alert_id"`
	Note     string   `json:"note"`
}

func (a *API) acknowledge(w http.ResponseWriter, r *http.Request, who principal) {
	body, status, err := readBody(w, r)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	var req ackRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		writeError(w, http.StatusBadRequest, `body: want {"alert_ids": ["..."], "note": "..."} (or "alert_id")`)
		return
	}
	ids := req.AlertIDs
	if req.AlertID != "" {
		ids = append(ids, req.AlertID)
	}
	if len(ids) == 0 || len(ids) > 1000 {
		writeError(w, http.StatusBadRequest, "alert_ids: want 1 to 1000 ids")
		return
	}
	if len(req.Note) > store.MaxTextLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("note: longer than %d bytes", store.MaxTextLen))
		return
	}
	if a.d.Alerts == nil {
		writeError(w, http.StatusNotFound, "unknown alert id")
		return
	}
	res, err := a.d.Alerts.Acknowledge(ids, req.Note, who.by())
	entry := store.AuditEntry{Actor: who.actor, Source: r.RemoteAddr, Action: store.ActionAlertAcknowledge,
		Target: strings.Join(ids, ","), Outcome: store.OutcomeOK}
	switch {
	case errors.Is(err, ErrUnknownAlert):
		entry.Outcome, entry.Error = store.OutcomeRejected, err.Error()
		a.record(entry)
		writeError(w, http.StatusNotFound, err.Error())
		return
	case errors.Is(err, ErrAlertConflict):
		entry.Outcome, entry.Error = store.OutcomeRejected, err.Error()
		a.record(entry)
		writeError(w, http.StatusConflict, err.Error())
		return
	case errors.Is(err, ErrAlertsUnavailable):
		entry.Outcome, entry.Error = store.OutcomeFailed, err.Error()
		a.record(entry)
		writeError(w, http.StatusServiceUnavailable, err.Error()+"; nothing was acknowledged, try again")
		return
	case err != nil:
		entry.Outcome, entry.Error = store.OutcomeFailed, err.Error()
		a.record(entry)
		writeError(w, http.StatusInternalServerError, "acknowledging failed")
		return
	}
	a.record(entry)
	writeJSON(w, http.StatusOK, map[string]any{"acknowledged": res})
}

// login exchanges the admin token for a browser session cookie.
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	if err := a.csrf.Check(r); err != nil {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	body, status, err := readBody(w, r)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	var req struct {
		Token string `json:"token"`
		Name  string `json:"name"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Token == "" {
		writeError(w, http.StatusBadRequest, `body: want {"token": "...", "name": "your name"}`)
		return
	}
	name, err := cleanName(req.Name)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cfg, _ := a.d.Config.Get()
	tok := cfg.Admin.Token.Reveal()
	want, got := tokenHash(tok), tokenHash(req.Token)
	if tok == "" {
		writeError(w, http.StatusForbidden, "no RESPONSIVENESS_ADMIN_TOKEN is configured, so there is nothing to sign in with: set it and restart pulsegate (until then the dashboard is read-only, for loopback clients only)")
		return
	}
	if !equalHash(want, got) {
		a.record(store.AuditEntry{Actor: "peer:" + r.RemoteAddr, Source: r.RemoteAddr, Action: "session.login", Outcome: store.OutcomeRejected, Error: "invalid token"})
		writeError(w, http.StatusUnauthorized, "invalid token")
		return
	}
	c := newSession(tok, name, a.d.Now())
	c.Secure = r.TLS != nil
	http.SetCookie(w, c)
	actor := fingerprint("token", req.Token)
	if name != "" {
		actor = name + " (" + actor + ")"
	}
	a.record(store.AuditEntry{Actor: actor, Source: r.RemoteAddr, Action: "session.login", Outcome: store.OutcomeOK})
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "name": name, "expires": c.Expires.UTC().Format(time.RFC3339)})
}

func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	if err := a.csrf.Check(r); err != nil {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/admin/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// stream pushes live events over Server-Sent Events until the client
// leaves or the server shuts down.
func (a *API) stream(w http.ResponseWriter, r *http.Request, _ principal) {
	if a.d.Events == nil {
		writeError(w, http.StatusNotFound, "no live event source")
		return
	}
	onlyAlerts := strings.HasPrefix(r.URL.Path, "/admin/api/alerts/")
	ch, cancel := a.d.Events.Subscribe(64)
	defer cancel()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "retry: 3000\n\n")
	_ = rc.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			_ = rc.Flush()
		case ev, ok := <-ch:
			if !ok {
				return // the source closed: server shutting down
			}
			if onlyAlerts && !strings.HasPrefix(ev.Type, "alert") {
				continue
			}
			b, err := json.Marshal(ev.Data)
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, b); err != nil {
				return
			}
			_ = rc.Flush()
		}
	}
}
