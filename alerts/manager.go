// Package alerts turns figures into alerts: rules over every threshold of
// the configuration, with warning and critical levels, hysteresis, a
// minimum duration and dedup by key; a lifecycle firing → acknowledged →
// resolved where an acknowledgement holds until the condition clears; a
// bounded, persisted history (package store); and notification channels
// (log, live stream, email, webhook, Alertmanager), each asynchronous with a
// bounded queue, a timeout and retries, never blocking Evaluate.
//
// main calls Evaluate every monitoring tick with the latest figures, probe
// statuses and task states; the admin API calls List, Active, Acknowledge
// and Subscribe; Run owns the delivery workers.
package alerts

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
)

// Alert is one alert occurrence as served by the admin API (see
// store.AlertRecord for the fields and their JSON names).
type Alert = store.AlertRecord

// Input is what one evaluation sees. A figure, probe or task missing from
// its map is unknown: it neither fires nor resolves anything.
type Input struct {
	// Figures are the named numbers of docs/ARCHITECTURE.md (fractions
	// 0..1, seconds). NaN and ±Inf count as unknown.
	Figures map[string]float64
	// ProbeStatus maps a probe name to ok|warning|critical|down|disabled.
	// "down" fires a critical probe_down alert; any other known status
	// resolves it.
	ProbeStatus map[string]string
	// Tasks maps a background task name to ok|failing|stuck. failing and
	// stuck fire a critical task_failing alert; ok resolves it.
	Tasks map[string]string
}

// Filter selects alerts for List. Empty fields match everything.
type Filter struct {
	// State is firing, acknowledged, resolved, or active (firing + acknowledged).
	State string
	// Severity is warning or critical.
	Severity string
	// Limit caps the result (newest first); 0 means no cap.
	Limit int
}

// Validate reports a bad filter with the field named, for a 400.
func (f Filter) Validate() error {
	switch f.State {
	case "", store.StateFiring, store.StateAcknowledged, store.StateResolved, "active":
	default:
		return fmt.Errorf("state: must be firing, acknowledged, resolved or active, got %q", f.State)
	}
	switch f.Severity {
	case "", store.SeverityWarning, store.SeverityCritical:
	default:
		return fmt.Errorf("severity: must be warning or critical, got %q", f.Severity)
	}
	if f.Limit < 0 {
		return fmt.Errorf("limit: must be >= 0, got %d", f.Limit)
	}
	return nil
}

func (f Filter) match(a *Alert) bool {
	switch f.State {
	case "":
	case "active":
		if !a.Active() {
			return false
		}
	default:
		if a.State != f.State {
			return false
		}
	}
	return f.Severity == "" || a.Severity == f.Severity
}

// Event types of the live stream and the channels.
const (
	EventFiring       = "alert.firing"
	EventAcknowledged = "alert.acknowledged"
	EventResolved     = "alert.resolved"
	EventEscalated    = "alert.escalated"
	// EventDeescalated: critical fell back to warning within the same alert.
	EventDeescalated = "alert.deescalated"
)

// Event is one alert transition.
type Event struct {
	Type  string    `json:"type"`
	Time  time.Time `json:"time"`
	Alert Alert     `json:"alert"`
	// PreviousSeverity is set on escalation and de-escalation.
	PreviousSeverity string `json:"previous_severity,omitempty"`
}

// Errors of Acknowledge; test with errors.Is.
var (
	// ErrUnknownAlert: no alert (active or in history) has this id (a 404).
	ErrUnknownAlert = errors.New("unknown alert")
	// ErrResolved: the alert has resolved and can no longer be acknowledged (a 409).
	ErrResolved = errors.New("alert already resolved")
	// ErrNoAlertIDs: the request named no alert.
	ErrNoAlertIDs = errors.New("no alert ids given")
)

// MaxNoteLen bounds an acknowledgement note (bytes); longer notes are cut.
const MaxNoteLen = store.MaxTextLen

// track is the evaluation state of one key.
type track struct {
	key, rule, subject string
	// pendingSince: the condition has held since then (zero: not holding).
	pendingSince time.Time
	// critSince: the critical condition has held since then.
	critSince time.Time
	// first is the value when the alert fired (for "growing" messages).
	first float64
	alert *Alert // the active occurrence, nil when none
	// fleetID is the id of the fleet's alert for this key (shared store),
	// when known and different from alert.ID.
	fleetID string
}

// Manager evaluates rules, keeps alerts and feeds the channels. It is safe
// for concurrent use.
type Manager struct {
	log  *zap.Logger
	st   store.Backend
	now  func() time.Time
	met  *metrics
	cfg  atomic.Pointer[config.Config]
	host string

	mu      sync.Mutex
	tracks  map[string]*track
	byID    map[string]*track // active alerts by id
	history []Alert           // resolved, oldest first, bounded by alerts.history_size
	stream  Stream            // live listeners (events.Hub); nil: none

	// fleet links the manager to the fleet's shared store (UseFleet); nil: none.
	fleet *FleetOptions
	// fleetActive are the fleet's active alerts by id as last read from
	// the shared store; fleetKey maps their keys to ids. Under mu.
	fleetActive map[string]store.FleetAlert
	fleetKey    map[string]string

	channels []*channel
	running  atomic.Bool
	client   *http.Client

	// Test seams.
	backoffBase    time.Duration
	backoffMax     time.Duration
	resendInterval time.Duration
	tlsConfig      *tls.Config
}

// New builds a Manager from cfg, registering its metrics on reg and loading
// the persisted alerts from st (nil: nothing persists). now is the clock
// for acknowledgements and Alertmanager timestamps (nil: time.Now).
func New(cfg *config.Config, log *zap.Logger, reg prometheus.Registerer, st store.Backend, now func() time.Time) (*Manager, error) {
	if s, ok := st.(*store.Store); ok && s == nil {
		st = nil // a nil *store.Store is "no store", as before Backend
	}
	if log == nil {
		log = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	met, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering alert metrics: %w", err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	m := &Manager{
		log:            log,
		st:             st,
		now:            now,
		met:            met,
		host:           host,
		tracks:         map[string]*track{},
		byID:           map[string]*track{},
		client:         &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		backoffBase:    500 * time.Millisecond,
		backoffMax:     30 * time.Second,
		resendInterval: time.Minute,
	}
	m.cfg.Store(cfg)
	m.channels = m.newChannels()
	if err := m.load(cfg); err != nil {
		return nil, err
	}
	m.updateGauges()
	return m, nil
}

// load restores persisted alerts: active ones resume evaluation under
// their key, resolved ones form the history.
func (m *Manager) load(cfg *config.Config) error {
	if m.st == nil {
		return nil
	}
	recs, err := m.st.LoadAlerts()
	if err != nil {
		return fmt.Errorf("loading alert history: %w", err)
	}
	var fix []Alert
	// recs are newest first: the first active alert of a key wins.
	for i := range recs {
		a := recs[i]
		if !a.Active() {
			m.history = append(m.history, a)
			continue
		}
		if _, dup := m.tracks[a.Key]; dup {
			// Two active occurrences of one key cannot happen through this
			// package; resolve the older one rather than drop it.
			t := a.LastSeen
			a.State, a.ResolvedAt = store.StateResolved, &t
			m.history = append(m.history, a)
			fix = append(fix, a)
			continue
		}
		tr := &track{key: a.Key, rule: a.Rule, subject: a.Subject, pendingSince: a.FirstSeen, first: a.Value}
		if a.Severity == store.SeverityCritical {
			tr.critSince = a.FirstSeen
		}
		alert := a
		tr.alert = &alert
		m.tracks[a.Key] = tr
		m.byID[a.ID] = tr
	}
	sort.SliceStable(m.history, func(i, j int) bool { return resolvedAt(m.history[i]).Before(resolvedAt(m.history[j])) })
	if len(fix) > 0 {
		if err := m.st.SaveAlerts(fix...); err != nil {
			return fmt.Errorf("loading alert history: %w", err)
		}
	}
	if err := m.trimHistory(cfg.Alerts.HistorySize); err != nil {
		return fmt.Errorf("loading alert history: %w", err)
	}
	m.log.Info("alerts_loaded", zap.Int("active", len(m.byID)), zap.Int("history", len(m.history)))
	return nil
}

func resolvedAt(a Alert) time.Time {
	if a.ResolvedAt != nil {
		return *a.ResolvedAt
	}
	return a.LastSeen
}

// trimHistory drops the oldest resolved alerts beyond size, in memory and
// in the store. Callers hold m.mu (or own m exclusively).
func (m *Manager) trimHistory(size int) error {
	if len(m.history) <= size {
		return nil
	}
	m.history = slices.Delete(m.history, 0, len(m.history)-size)
	if m.fleet != nil {
		return m.persist(store.AlertWrite{PruneKeep: size}, true)
	}
	if m.st != nil {
		return m.st.PruneAlerts(size)
	}
	return nil
}

// Apply swaps the configuration: thresholds, timing and channels take
// effect from the next evaluation or delivery. cfg is a configuration
// config has validated (the rules live there only); the error is always nil.
func (m *Manager) Apply(cfg *config.Config) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.Store(cfg)
	if err := m.trimHistory(cfg.Alerts.HistorySize); err != nil {
		m.storeFailed("prune", err)
	}
	m.log.Info("alerts_config_applied",
		zap.Float64("resolve_margin", cfg.Alerts.ResolveMargin),
		zap.Float64("min_duration", float64(cfg.Alerts.MinDuration)),
		zap.Int("history_size", cfg.Alerts.HistorySize),
		zap.Strings("channels", m.enabledChannels(cfg)))
	return nil
}

// Evaluate runs every rule over in at time now, fires, escalates,
// de-escalates and resolves alerts, persists the transitions and hands
// them to the channels (without waiting for delivery).
func (m *Manager) Evaluate(now time.Time, in Input) {
	cfg := m.cfg.Load()
	m.mu.Lock()
	defer m.mu.Unlock()
	var evs []Event
	for i := range figureRules {
		r := &figureRules[i]
		v, ok := in.Figures[r.figure]
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			m.unknown(r.name)
			continue
		}
		l := r.levels(cfg)
		tr := m.track(r.name, r.name, "")
		cur := ""
		if tr.alert != nil {
			cur = tr.alert.Severity
		}
		lvl := l.level(v, cur, cfg.Alerts.ResolveMargin)
		evs = m.step(evs, now, cfg, tr, lvl, l.warnOn, v, l.threshold, r.figure, func(first float64) string { return r.message(v, first) }, r.recommendation)
	}
	for _, probe := range sortedKeys(in.ProbeStatus) {
		key := RuleProbeDown + ":" + probe
		lvl := ""
		switch in.ProbeStatus[probe] {
		case "down":
			lvl = store.SeverityCritical
		case "ok", "warning", "critical", "disabled":
		default:
			m.unknown(key)
			continue
		}
		rec, ok := probeRecommendations[probe]
		if !ok {
			rec = defaultProbeRecommendation
		}
		v := 0.0
		if lvl != "" {
			v = 1
		}
		tr := m.track(key, RuleProbeDown, probe)
		evs = m.step(evs, now, cfg, tr, lvl, false, v, one, "probe_down", func(float64) string { return probeMessage(probe) }, rec)
	}
	for _, task := range sortedKeys(in.Tasks) {
		key := RuleTaskFailing + ":" + task
		status := in.Tasks[task]
		lvl := ""
		switch status {
		case "failing", "stuck":
			lvl = store.SeverityCritical
		case "ok":
		default:
			m.unknown(key)
			continue
		}
		v := 0.0
		if lvl != "" {
			v = 1
		}
		tr := m.track(key, RuleTaskFailing, task)
		evs = m.step(evs, now, cfg, tr, lvl, false, v, one, "task_failing", func(float64) string { return taskMessage(task, status) }, recTasks)
	}
	if len(evs) == 0 {
		return
	}
	// Persist the transitions in one transaction (with a shared store:
	// queued, with the fleet's raises and resolutions), then notify.
	var aw store.AlertWrite
	for _, ev := range evs {
		aw.Records = append(aw.Records, ev.Alert)
		if ev.Alert.Active() {
			aw.Raise = append(aw.Raise, raiseRecord(ev.Alert))
		} else {
			aw.Resolve = append(aw.Resolve, ev.Alert)
		}
	}
	if err := m.persist(aw, false); err != nil {
		m.storeFailed("save", err)
	}
	if err := m.trimHistory(cfg.Alerts.HistorySize); err != nil {
		m.storeFailed("prune", err)
	}
	for _, ev := range evs {
		// Served and pushed under the fleet's id when known (see view).
		if tr, ok := m.tracks[ev.Alert.Key]; ok && tr.alert != nil && tr.alert.ID == ev.Alert.ID {
			ev.Alert.ID = m.view(tr).ID
		}
		m.emit(cfg, ev)
	}
	m.updateGauges()
}

// track returns the state of key, creating it.
func (m *Manager) track(key, rule, subject string) *track {
	tr, ok := m.tracks[key]
	if !ok {
		tr = &track{key: key, rule: rule, subject: subject}
		m.tracks[key] = tr
	}
	return tr
}

// unknown: the input says nothing about key. An active alert stays as it
// is; a pending condition starts over (it was not seen to hold).
func (m *Manager) unknown(key string) {
	if tr, ok := m.tracks[key]; ok && tr.alert == nil {
		delete(m.tracks, key)
	}
}

// step advances one key given this evaluation's level and appends the
// resulting events. hasWarning: the rule has a warning level to fire at
// while a critical condition has not yet held for min_duration.
func (m *Manager) step(evs []Event, now time.Time, cfg *config.Config, tr *track, lvl string, hasWarning bool, v float64, thr func(sev string) float64,
	metric string, message func(first float64) string, rec string) []Event {
	minDur := cfg.Alerts.MinDuration.Duration()
	if lvl == "" {
		tr.pendingSince, tr.critSince = time.Time{}, time.Time{}
		if tr.alert == nil {
			delete(m.tracks, tr.key)
			return evs
		}
		a := tr.alert
		t := now
		a.State, a.ResolvedAt, a.Value = store.StateResolved, &t, v
		delete(m.byID, a.ID)
		delete(m.tracks, tr.key)
		m.history = append(m.history, a.Clone())
		return append(evs, Event{Type: EventResolved, Time: now, Alert: a.Clone()})
	}
	if tr.pendingSince.IsZero() {
		tr.pendingSince = now
	}
	if lvl == store.SeverityCritical {
		if tr.critSince.IsZero() {
			tr.critSince = now
		}
	} else {
		tr.critSince = time.Time{}
	}
	critHeld := !tr.critSince.IsZero() && now.Sub(tr.critSince) >= minDur

	if tr.alert == nil {
		if now.Sub(tr.pendingSince) < minDur {
			return evs
		}
		sev := store.SeverityWarning
		if lvl == store.SeverityCritical {
			switch {
			case critHeld:
				sev = store.SeverityCritical
			case !hasWarning:
				return evs // a critical-only rule that has not held long enough
			}
		}
		tr.first = v
		a := &Alert{
			ID: m.idFor(tr), Key: tr.key, Rule: tr.rule, Subject: tr.subject,
			Severity: sev, PeakSeverity: sev, State: store.StateFiring,
			Metric: metric, Value: v, Threshold: thr(sev), Message: message(math.NaN()), Recommendation: rec,
			FirstSeen: tr.pendingSince, LastSeen: now, RunbookURL: RunbookURL(cfg, tr.rule),
		}
		tr.alert = a
		m.byID[a.ID] = tr
		return append(evs, Event{Type: EventFiring, Time: now, Alert: a.Clone()})
	}

	a := tr.alert
	a.Value, a.LastSeen, a.Message, a.Recommendation = v, now, message(tr.first), rec
	a.RunbookURL = RunbookURL(cfg, tr.rule)
	prev := a.Severity
	switch {
	case lvl == store.SeverityCritical && prev != store.SeverityCritical && critHeld:
		a.Severity, a.PeakSeverity, a.Threshold = store.SeverityCritical, store.SeverityCritical, thr(store.SeverityCritical)
		return append(evs, Event{Type: EventEscalated, Time: now, Alert: a.Clone(), PreviousSeverity: prev})
	case lvl == store.SeverityWarning && prev == store.SeverityCritical:
		a.Severity, a.Threshold = store.SeverityWarning, thr(store.SeverityWarning)
		return append(evs, Event{Type: EventDeescalated, Time: now, Alert: a.Clone(), PreviousSeverity: prev})
	}
	return evs
}

// one is the threshold of the status rules (1 = down/failing).
func one(string) float64 { return 1 }

func sortedKeys(mp map[string]string) []string {
	ks := make([]string, 0, len(mp))
	for k := range mp {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// newID is 16 hex characters from crypto/rand.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (m *Manager) storeFailed(op string, err error) {
	m.met.storeErrors.Inc()
	m.log.Error("alert_store_failed", zap.String("op", op), zap.Error(err))
}

// Active returns the firing and acknowledged alerts, critical first, then
// newest first.
func (m *Manager) Active() []Alert {
	m.mu.Lock()
	out := make([]Alert, 0, len(m.byID))
	for _, tr := range m.byID {
		out = append(out, m.view(tr))
	}
	m.mu.Unlock()
	store.SortNewestFirst(out)
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Severity == store.SeverityCritical && out[j].Severity != store.SeverityCritical
	})
	return out
}

// List returns active alerts and the recent history matching f, newest
// first (by first_seen). An invalid f (see Filter.Validate) matches nothing.
func (m *Manager) List(f Filter) []Alert {
	if f.Validate() != nil {
		return []Alert{}
	}
	m.mu.Lock()
	out := make([]Alert, 0, len(m.byID)+len(m.history))
	for _, tr := range m.byID {
		if f.match(tr.alert) {
			out = append(out, m.view(tr))
		}
	}
	for i := range m.history {
		if f.match(&m.history[i]) {
			out = append(out, m.history[i].Clone())
		}
	}
	m.mu.Unlock()
	store.SortNewestFirst(out)
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

// Acknowledge marks the active alerts ids acknowledged by actor with note
// (cut to MaxNoteLen), and returns them. It is idempotent: an alert
// already acknowledged keeps its first acknowledgement. If any id is
// unknown (ErrUnknownAlert) or resolved (ErrResolved), or the store cannot
// record the change, nothing changes for any id. The acknowledgement is
// persisted with the alert; the audit log entry is the caller's (the admin
// API records every attempt with the caller's identity and address).
func (m *Manager) Acknowledge(ids []string, note, actor string) ([]Alert, error) {
	ids = dedup(ids)
	if len(ids) == 0 {
		return nil, ErrNoAlertIDs
	}
	note = store.Truncate(note, MaxNoteLen)
	if actor == "" {
		actor = "unknown"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fleet != nil {
		return m.acknowledgeFleet(ids, note, actor)
	}
	if err := m.checkAckable(ids, func(id string) bool { _, ok := m.byID[id]; return ok }); err != nil {
		return nil, err
	}
	now := m.now()
	var changed []Alert
	for _, id := range ids {
		a := m.byID[id].alert
		if a.State == store.StateAcknowledged {
			continue
		}
		c := a.Clone()
		t := now
		c.State, c.AcknowledgedAt, c.AcknowledgedBy, c.AckNote = store.StateAcknowledged, &t, actor, note
		changed = append(changed, c)
	}
	if len(changed) > 0 && m.st != nil {
		if err := m.st.SaveAlerts(changed...); err != nil {
			m.storeFailed("save", err)
			return nil, fmt.Errorf("recording acknowledgement: %w", err)
		}
	}
	cfg := m.cfg.Load()
	for _, c := range changed {
		*m.byID[c.ID].alert = c
		m.emit(cfg, Event{Type: EventAcknowledged, Time: now, Alert: c.Clone()})
	}
	out := make([]Alert, 0, len(ids))
	for _, id := range ids {
		out = append(out, m.byID[id].alert.Clone())
	}
	return out, nil
}

func (m *Manager) inHistory(id string) bool {
	for i := range m.history {
		if m.history[i].ID == id {
			return true
		}
	}
	return false
}

func dedup(ids []string) []string {
	out := make([]string, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		id = strings.TrimSpace(id)
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, id)
	}
	return out
}

// updateGauges sets pulsegate_alerts_active. Callers hold m.mu.
func (m *Manager) updateGauges() {
	var warn, crit int
	for _, tr := range m.byID {
		if tr.alert.Severity == store.SeverityCritical {
			crit++
		} else {
			warn++
		}
	}
	m.met.active.WithLabelValues(store.SeverityWarning).Set(float64(warn))
	m.met.active.WithLabelValues(store.SeverityCritical).Set(float64(crit))
}

// Run starts the delivery workers of the channels and returns after they
// stop, once ctx is done. Events still queued then are dropped.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("alerts: Run is already running")
	}
	defer m.running.Store(false)
	var wg sync.WaitGroup
	for _, c := range m.channels {
		wg.Go(func() { m.worker(ctx, c) })
	}
	if m.fleet != nil {
		wg.Go(func() { m.runFleet(ctx) })
	}
	wg.Wait()
	m.client.CloseIdleConnections()
	return nil
}

// checkAckable is nil when every id is active (active says which are);
// otherwise the error names the ids that are unknown (ErrUnknownAlert) or
// already resolved (ErrResolved). Callers hold m.mu.
func (m *Manager) checkAckable(ids []string, active func(id string) bool) error {
	var unknown, resolved []string
	for _, id := range ids {
		switch {
		case active(id):
		case m.inHistory(id):
			resolved = append(resolved, id)
		default:
			unknown = append(unknown, id)
		}
	}
	switch {
	case len(unknown) > 0:
		return fmt.Errorf("acknowledging %s: %w", strings.Join(unknown, ", "), ErrUnknownAlert)
	case len(resolved) > 0:
		return fmt.Errorf("acknowledging %s: %w", strings.Join(resolved, ", "), ErrResolved)
	}
	return nil
}
