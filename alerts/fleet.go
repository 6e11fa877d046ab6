package alerts

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/store"
)

// FleetQueue is where a Manager with a shared store hands its writes:
// *store.Writer. Alerts never blocks on the store; it fails (wrapping
// store.ErrQueueFull) only when the bounded buffer is full.
type FleetQueue interface {
	Alerts(store.AlertWrite) error
	Health() store.Health
}

// FleetSource reads the fleet's alerts and instances from the shared
// store (*store.SQL), and lets a sidecar resolve a stale instance's view.
type FleetSource interface {
	FleetAlerts(ctx context.Context, fleet string, activeOnly bool) ([]store.FleetAlert, error)
	Instances(ctx context.Context, fleet string, now time.Time) ([]store.InstanceStatus, error)
	ResolveFleetAlert(ctx context.Context, fleet, instance, key string, at time.Time) (store.FleetAlert, error)
}

// FleetOptions link a Manager to the fleet's shared store (UseFleet).
type FleetOptions struct {
	// Fleet and Instance name this sidecar (RESPONSIVENESS_FLEET and
	// RESPONSIVENESS_INSTANCE); Instance is also the Alertmanager
	// "instance" label.
	Fleet, Instance string
	// Queue takes every transition and acknowledgement (never waiting).
	Queue FleetQueue
	// Source returns the shared store to read, nil while it is not open.
	Source func() FleetSource
	// LocalHistory: the Manager's own store is a local stand-in (the
	// embedded store, when the shared one was down at start); transitions
	// are written to it as well, synchronously.
	LocalHistory bool
}

// UseFleet links m to the fleet's shared store. Call it before Run. From
// then on transitions and acknowledgements are queued for the shared
// store (this instance's history and the fleet's alerts), never written
// in the tick or the request; Run also polls the fleet's alerts every
// monitoring interval (SyncFleet).
func (m *Manager) UseFleet(o FleetOptions) error {
	if o.Queue == nil || o.Source == nil || o.Fleet == "" || o.Instance == "" {
		return errors.New("alerts: UseFleet needs a fleet, an instance, a queue and a source")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fleet = &o
	m.host = o.Instance
	m.fleetActive, m.fleetKey = map[string]store.FleetAlert{}, map[string]string{}
	return nil
}

// raiseRecord is what an instance raises on the fleet: the alert without
// its acknowledgement (acknowledgements travel as FleetAck), and with
// LastSeen at its first_seen, which the store keeps as the instance's
// "since".
func raiseRecord(a Alert) Alert {
	r := a.Clone()
	r.State, r.AcknowledgedAt, r.AcknowledgedBy, r.AckNote, r.ResolvedAt = store.StateFiring, nil, "", "", nil
	r.LastSeen = r.FirstSeen
	return r
}

// persist records alert changes. Without a shared store: the records in
// the store, synchronously. With one: queued (and written to the local
// stand-in as well when there is one). Callers hold m.mu (or own m).
// queueFirst: an acknowledgement, refused whole when the queue is full.
func (m *Manager) persist(aw store.AlertWrite, queueFirst bool) error {
	if m.fleet == nil {
		if m.st == nil || len(aw.Records) == 0 {
			return nil
		}
		return m.st.SaveAlerts(aw.Records...)
	}
	local := func() error {
		if !m.fleet.LocalHistory || m.st == nil {
			return nil
		}
		if aw.PruneKeep > 0 {
			if err := m.st.PruneAlerts(aw.PruneKeep); err != nil {
				return err
			}
		}
		if len(aw.Records) == 0 {
			return nil
		}
		return m.st.SaveAlerts(aw.Records...)
	}
	aw.Fleet, aw.Instance = m.fleet.Fleet, m.fleet.Instance
	if queueFirst {
		if err := m.fleet.Queue.Alerts(aw); err != nil {
			return err
		}
		return local()
	}
	lerr := local()
	return errors.Join(lerr, m.fleet.Queue.Alerts(aw))
}

// idFor is the id of a new occurrence of tr's key: the fleet's active
// alert's id when the fleet already has one (so every sidecar shows the
// same id), else a new one. Callers hold m.mu.
func (m *Manager) idFor(tr *track) string {
	tr.fleetID = ""
	if m.fleet != nil {
		if id, ok := m.fleetKey[tr.key]; ok {
			if _, taken := m.byID[id]; !taken && !m.inHistory(id) {
				return id
			}
			tr.fleetID = id
		}
	}
	return newID()
}

// fleetIDOf is the fleet alert id of tr's alert, "" when not known yet.
func (tr *track) fleetIDOf(m *Manager) string {
	if tr.fleetID != "" {
		return tr.fleetID
	}
	if id, ok := m.fleetKey[tr.key]; ok {
		return id
	}
	return ""
}

// view is tr's active alert as served and pushed: with a shared store,
// under its fleet alert's id once known (the same id on every sidecar,
// also when two sidecars fired it in the same interval before either saw
// the other's). The store keeps this instance's rows under the local id,
// and Acknowledge takes either. Callers hold m.mu.
func (m *Manager) view(tr *track) Alert {
	c := tr.alert.Clone()
	if m.fleet != nil && tr.fleetID != "" {
		c.ID = tr.fleetID
	}
	return c
}

// localTrack finds an active local alert by its id or its fleet alert's id.
func (m *Manager) localTrack(id string) *track {
	if tr, ok := m.byID[id]; ok {
		return tr
	}
	for _, tr := range m.byID {
		if tr.fleetID == id {
			return tr
		}
	}
	return nil
}

// acknowledgeFleet is Acknowledge with a shared store: ids may be local
// alerts (by their id or their fleet alert's id) or fleet alerts active
// on other instances only. The local state changes at once; the
// acknowledgements are queued for the shared store, and every other
// sidecar adopts them at its next poll. When the queue is full nothing
// changes and the error wraps store.ErrQueueFull. Callers hold m.mu.
func (m *Manager) acknowledgeFleet(ids []string, note, actor string) ([]Alert, error) {
	local := map[string]*track{}
	err := m.checkAckable(ids, func(id string) bool {
		if tr := m.localTrack(id); tr != nil {
			local[id] = tr
			return true
		}
		_, ok := m.fleetActive[id]
		return ok
	})
	if err != nil {
		return nil, err
	}
	now := m.now()
	ack := func(fid, key string) store.FleetAck {
		return store.FleetAck{ID: fid, Key: key, Ack: store.Acknowledgement{AlertID: fid, Time: now, By: actor, Note: note}}
	}
	var aw store.AlertWrite
	var changed []Alert
	remote := map[string]Alert{}
	done := map[*track]bool{} // an alert named by both its ids is acknowledged once
	for _, id := range ids {
		if tr := local[id]; tr != nil {
			a := tr.alert
			if a.State == store.StateAcknowledged || done[tr] {
				continue
			}
			done[tr] = true
			c := a.Clone()
			t := now
			c.State, c.AcknowledgedAt, c.AcknowledgedBy, c.AckNote = store.StateAcknowledged, &t, actor, note
			changed = append(changed, c)
			aw.Records = append(aw.Records, c)
			aw.Acks = append(aw.Acks, ack(tr.fleetIDOf(m), tr.key))
			continue
		}
		fa := m.fleetActive[id]
		c := fa.AlertRecord.Clone()
		if c.State != store.StateAcknowledged {
			t := now
			c.State, c.AcknowledgedAt, c.AcknowledgedBy, c.AckNote = store.StateAcknowledged, &t, actor, note
			aw.Acks = append(aw.Acks, ack(id, fa.Key))
		}
		remote[id] = c
	}
	if err := m.persist(aw, true); err != nil {
		m.storeFailed("acknowledge", err)
		return nil, fmt.Errorf("recording acknowledgement: %w", err)
	}
	cfg := m.cfg.Load()
	for _, c := range changed {
		tr := m.byID[c.ID]
		*tr.alert = c
		m.emit(cfg, Event{Type: EventAcknowledged, Time: now, Alert: m.view(tr)})
	}
	out := make([]Alert, 0, len(ids))
	for _, id := range ids {
		if tr := local[id]; tr != nil {
			out = append(out, m.view(tr))
			continue
		}
		c := remote[id]
		fa := m.fleetActive[id]
		fa.AlertRecord = c.Clone()
		m.fleetActive[id] = fa
		out = append(out, c)
	}
	return out, nil
}

// SyncFleet is one poll of the fleet's alerts (Run does it every
// monitoring interval): instances that went stale stop holding alerts,
// local alerts learn their fleet id, a fleet acknowledgement made on any
// sidecar acknowledges the local alert (and reaches the channels, e.g.
// the Alertmanager push's annotations), and what the fleet misses of this
// instance's active alerts and acknowledgements is queued again.
func (m *Manager) SyncFleet(ctx context.Context) error {
	f := m.fleet
	if f == nil {
		return nil
	}
	src := f.Source()
	if src == nil {
		return errors.New("the shared store has not been opened")
	}
	fas, err := src.FleetAlerts(ctx, f.Fleet, true)
	if err != nil {
		return err
	}
	// The instances (the heavier fleet query) are read only when another
	// instance holds an active alert: to tell whether it went stale.
	others := false
	for _, fa := range fas {
		for _, ai := range fa.Instances {
			others = others || (ai.State == store.StateFiring && ai.Instance != f.Instance)
		}
	}
	if others {
		insts, err := src.Instances(ctx, f.Fleet, m.now())
		if err != nil {
			return err
		}
		fas = m.releaseStale(ctx, src, fas, insts)
	}
	m.adopt(fas, true)
	return nil
}

// SeeFleet updates m's view of the fleet's active alerts from a read made
// elsewhere (the fleet answer of the admin API), so an id just served can
// be acknowledged here, and adopts their acknowledgements.
func (m *Manager) SeeFleet(fas []store.FleetAlert) {
	if m.fleet == nil {
		return
	}
	active := make([]store.FleetAlert, 0, len(fas))
	for _, fa := range fas {
		if fa.Active() {
			active = append(active, fa)
		}
	}
	m.adopt(active, false)
}

// releaseStale resolves the views of instances that went stale (silent
// for store.StaleIntervals monitoring intervals: e.g. killed) at their
// last heartbeat: a stale instance no longer holds a fleet alert active,
// so an alert only it held resolves. It returns the alerts still active.
func (m *Manager) releaseStale(ctx context.Context, src FleetSource, fas []store.FleetAlert, insts []store.InstanceStatus) []store.FleetAlert {
	stale := map[string]time.Time{}
	for _, in := range insts {
		if in.Stale && in.Instance != m.fleet.Instance {
			stale[in.Instance] = in.LastSeen
		}
	}
	if len(stale) == 0 {
		return fas
	}
	out := fas[:0:0]
	for _, fa := range fas {
		for _, ai := range fa.Instances {
			last, ok := stale[ai.Instance]
			if !ok || ai.State != store.StateFiring {
				continue
			}
			got, err := src.ResolveFleetAlert(ctx, m.fleet.Fleet, ai.Instance, fa.Key, last)
			if err != nil {
				if !errors.Is(err, store.ErrNotFound) {
					m.log.Warn("alert_fleet_stale_release_failed", zap.String("alert_id", fa.ID), zap.String("stale_instance", ai.Instance), zap.String("error", err.Error()))
				}
				continue
			}
			m.log.Info("alert_fleet_instance_stale", zap.String("alert_id", fa.ID), zap.String("key", fa.Key),
				zap.String("stale_instance", ai.Instance), zap.Time("last_seen", last), zap.String("fleet_state", got.State))
			fa = got
		}
		if fa.Active() {
			out = append(out, fa)
		}
	}
	return out
}

// adopt takes fas (the fleet's active alerts) as m's view of the fleet.
// reconcile: also queue again what the fleet misses of this instance
// (an active alert it does not list as firing here, an acknowledgement
// made here), when nothing is waiting in the queue.
func (m *Manager) adopt(fas []store.FleetAlert, reconcile bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fleetActive = make(map[string]store.FleetAlert, len(fas))
	m.fleetKey = make(map[string]string, len(fas))
	for _, fa := range fas {
		m.fleetActive[fa.ID] = fa
		m.fleetKey[fa.Key] = fa.ID
	}
	reconcile = reconcile && m.fleet.Queue.Health().QueuedWrites == 0
	trs := make([]*track, 0, len(m.byID))
	for _, tr := range m.byID {
		trs = append(trs, tr)
	}
	sort.Slice(trs, func(i, j int) bool { return trs[i].key < trs[j].key })
	var aw store.AlertWrite
	var evs []Event
	now := m.now()
	for _, tr := range trs {
		a := tr.alert
		id, ok := m.fleetKey[tr.key]
		if !ok || !firingOn(m.fleetActive[id], m.fleet.Instance) {
			if reconcile {
				aw.Raise = append(aw.Raise, raiseRecord(*a))
				if a.State == store.StateAcknowledged && a.AcknowledgedAt != nil {
					aw.Acks = append(aw.Acks, store.FleetAck{Key: tr.key,
						Ack: store.Acknowledgement{Time: *a.AcknowledgedAt, By: a.AcknowledgedBy, Note: a.AckNote}})
				}
			}
			continue
		}
		tr.fleetID = ""
		if id != a.ID {
			tr.fleetID = id
		}
		fa := m.fleetActive[id]
		switch {
		case fa.State == store.StateAcknowledged && a.State == store.StateFiring && fa.AcknowledgedAt != nil:
			t := *fa.AcknowledgedAt
			a.State, a.AcknowledgedAt, a.AcknowledgedBy, a.AckNote = store.StateAcknowledged, &t, fa.AcknowledgedBy, fa.AckNote
			aw.Records = append(aw.Records, a.Clone())
			evs = append(evs, Event{Type: EventAcknowledged, Time: now, Alert: m.view(tr)})
			m.log.Info("alert_acknowledged_in_fleet", zap.String("alert_id", a.ID), zap.String("fleet_alert_id", id),
				zap.String("key", a.Key), zap.String("by", store.EscapeText(a.AcknowledgedBy)))
		case reconcile && a.State == store.StateAcknowledged && fa.State != store.StateAcknowledged && a.AcknowledgedAt != nil:
			aw.Acks = append(aw.Acks, store.FleetAck{ID: id, Key: tr.key,
				Ack: store.Acknowledgement{AlertID: id, Time: *a.AcknowledgedAt, By: a.AcknowledgedBy, Note: a.AckNote}})
		}
	}
	if err := m.persist(aw, false); err != nil {
		m.storeFailed("save", err)
	}
	cfg := m.cfg.Load()
	for _, ev := range evs {
		m.emit(cfg, ev)
	}
}

func firingOn(fa store.FleetAlert, instance string) bool {
	for _, ai := range fa.Instances {
		if ai.Instance == instance && ai.State == store.StateFiring {
			return true
		}
	}
	return false
}

// runFleet polls the fleet every monitoring interval until ctx ends. A
// failure is logged once when it starts and once when it ends.
func (m *Manager) runFleet(ctx context.Context) {
	failing := false
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		interval := m.cfg.Load().Responsiveness.MonitoringInterval.Duration()
		if interval <= 0 {
			interval = 30 * time.Second
		}
		pctx, cancel := context.WithTimeout(ctx, interval)
		err := m.SyncFleet(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			failing = true
			m.log.Warn("alert_fleet_sync_failed", zap.String("error", err.Error()))
		case err == nil && failing:
			failing = false
			m.log.Info("alert_fleet_sync_recovered")
		}
		t.Reset(interval)
	}
}
