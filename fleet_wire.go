package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/adminapi"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/health"
	"github.com/pulsegate/pulsegate/store"
)

// storeOpenTimeout bounds opening the shared store at start: a store that
// does not answer by then is opened later, in the background.
const storeOpenTimeout = 15 * time.Second

// storeLink is the sidecar's link to the shared store (store.dsn set). It
// is the Writer's sink: while the store could not be opened (down at
// start), every write tries to open it first and fails with the reason,
// so the Writer keeps the rows, backs off and reports the store degraded;
// once open, the link delegates to the SQL store.
type storeLink struct {
	log             *zap.Logger
	dsn             string
	fleet, instance string

	openMu sync.Mutex // one opening attempt at a time
	sql    atomic.Pointer[store.SQL]
	closed atomic.Bool
}

var _ store.Sink = (*storeLink)(nil)

// open returns the SQL store, opening it if it is not open yet.
func (l *storeLink) open(ctx context.Context) (*store.SQL, error) {
	if s := l.sql.Load(); s != nil {
		return s, nil
	}
	l.openMu.Lock()
	defer l.openMu.Unlock()
	return l.openLocked(ctx)
}

// openNoWait is open for callers that answer someone (a config POST): while
// another opening attempt is under way it fails at once instead of waiting
// for that attempt.
func (l *storeLink) openNoWait(ctx context.Context) (*store.SQL, error) {
	if s := l.sql.Load(); s != nil {
		return s, nil
	}
	if !l.openMu.TryLock() {
		return nil, errors.New("store unreachable: still connecting")
	}
	defer l.openMu.Unlock()
	return l.openLocked(ctx)
}

// openLocked opens the store; l.openMu is held.
func (l *storeLink) openLocked(ctx context.Context) (*store.SQL, error) {
	if s := l.sql.Load(); s != nil {
		return s, nil
	}
	if l.closed.Load() {
		return nil, errors.New("store closed")
	}
	octx, cancel := context.WithTimeout(ctx, storeOpenTimeout)
	defer cancel()
	s, err := store.OpenSQL(octx, l.dsn, l.log, store.WithInstance(l.fleet, l.instance), store.WithAuditRetention(10000))
	if err != nil {
		return nil, fmt.Errorf("store unreachable: %w", err)
	}
	l.sql.Store(s)
	l.log.Info("store_connected", zap.String("store", s.Target()))
	return s, nil
}

// Fleet is the shared store's fleet tables, nil while it is not open.
func (l *storeLink) Fleet() store.Fleet {
	if s := l.sql.Load(); s != nil {
		return s
	}
	return nil
}

func (l *storeLink) WriteHeartbeats(ctx context.Context, hbs []store.Heartbeat) error {
	s, err := l.open(ctx)
	if err != nil {
		return err
	}
	return s.WriteHeartbeats(ctx, hbs)
}

func (l *storeLink) AppendAuditContext(ctx context.Context, e store.AuditEntry) error {
	s, err := l.open(ctx)
	if err != nil {
		return err
	}
	return s.AppendAuditContext(ctx, e)
}

func (l *storeLink) AcknowledgeFleetAlert(ctx context.Context, fleet, id string, ack store.Acknowledgement) (store.FleetAlert, error) {
	s, err := l.open(ctx)
	if err != nil {
		return store.FleetAlert{}, err
	}
	return s.AcknowledgeFleetAlert(ctx, fleet, id, ack)
}

func (l *storeLink) PruneFleet(ctx context.Context, fleet string, now time.Time, r store.Retention) (store.PruneResult, error) {
	s, err := l.open(ctx)
	if err != nil {
		return store.PruneResult{}, err
	}
	return s.PruneFleet(ctx, fleet, now, r)
}

// FleetConfig reads the fleet's stored configuration (the ConfigWatcher's
// source), opening the store first if needed.
func (l *storeLink) FleetConfig(ctx context.Context, fleet string) (store.ConfigVersion, error) {
	s, err := l.openNoWait(ctx)
	if err != nil {
		return store.ConfigVersion{}, err
	}
	return s.FleetConfig(ctx, fleet)
}

// SetFleetConfig stores the fleet's next configuration version (compare-and-set).
func (l *storeLink) SetFleetConfig(ctx context.Context, fleet string, expect int64, doc json.RawMessage, instance, actor string, at time.Time) (store.ConfigVersion, error) {
	s, err := l.openNoWait(ctx)
	if err != nil {
		return store.ConfigVersion{}, err
	}
	return s.SetFleetConfig(ctx, fleet, expect, doc, instance, actor, at)
}

// Close closes the SQL store if it was opened (the backend is closed by its owner).
func (l *storeLink) Close() error {
	l.openMu.Lock()
	defer l.openMu.Unlock()
	l.closed.Store(true)
	if s := l.sql.Swap(nil); s != nil {
		return s.Close()
	}
	return nil
}

// auditVia routes the admin API's audit entries through the Writer (never
// waiting on the shared store; kept and replayed while it is down). Reads
// come from the backend. With local set (the shared store was down at
// start and the embedded store stands in), entries are also kept locally
// so this sidecar's audit endpoint shows them at once.
type auditVia struct {
	store.Backend
	w     *store.Writer
	local bool
}

func (a auditVia) AppendAudit(e store.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if a.local {
		if err := a.Backend.AppendAudit(e); err != nil {
			return err
		}
	}
	return a.w.Audit(e)
}

// openStore opens the store the configuration selects. With store.dsn
// set, the SQL store is the backend and a Writer is made for heartbeats
// and audit entries; when the shared store cannot be opened at start, the
// embedded store in data_dir stands in for the alert history and audit
// reads, the sidecar starts and serves, the Writer keeps trying (reporting
// the store degraded with the reason), and the fleet view answers once
// the store is reached.
func (a *app) openStore(cfg *config.Config, log *zap.Logger) error {
	a.fleetName, a.instance = cfg.Fleet, cfg.InstanceName()
	if !cfg.Store.DSN.IsSet() {
		o, err := store.OpenFromConfig(context.Background(), cfg, log, store.WithAuditRetention(10000))
		if err != nil {
			return err
		}
		a.st, a.audit = o.Backend, o.Backend
		return nil
	}
	a.link = &storeLink{log: log, dsn: cfg.Store.DSN.Reveal(), fleet: a.fleetName, instance: a.instance}
	ctx, cancel := context.WithTimeout(context.Background(), storeOpenTimeout)
	s, err := a.link.open(ctx)
	cancel()
	local := false
	if err != nil {
		log.Error("store_unavailable_at_start", zap.String("error", err.Error()),
			zap.String("fallback", "embedded store in data_dir for alert history; heartbeats and audit entries wait for the shared store"))
		emb, eerr := store.Open(cfg.DataDir, log, store.WithAuditRetention(10000))
		if eerr != nil {
			return fmt.Errorf("data_dir (RESPONSIVENESS_DATA_DIR): %w", eerr)
		}
		a.st, local = emb, true
	} else {
		a.st = s
	}
	w, err := store.NewWriter(a.link, log.Named("writer"), a.reg, store.WriterOptions{
		PruneEvery: 5 * time.Minute, Fleet: a.fleetName,
		Retention: fleetRetention(cfg.History),
	})
	if err != nil {
		return err
	}
	a.writer = w
	a.audit = auditVia{Backend: a.st, w: w, local: local}
	return nil
}

// fleetView is the admin API's view of the fleet through the shared store.
type fleetView struct{ a *app }

func (f fleetView) Name() string { return f.a.fleetName }

func (f fleetView) Now(ctx context.Context, now time.Time, window time.Duration) ([]store.InstanceStatus, store.MergedRollup, error) {
	fl := f.a.link.Fleet()
	if fl == nil {
		reason := "not reached yet"
		if h := f.a.writer.Health(); h.Reason != "" {
			reason = h.Reason
		}
		return nil, store.MergedRollup{}, errors.New("the shared store has not been opened: " + reason)
	}
	insts, err := fl.Instances(ctx, f.a.fleetName, now)
	if err != nil {
		return nil, store.MergedRollup{}, err
	}
	m, err := fl.MergedRollup(ctx, f.a.fleetName, now.Add(-window), now)
	return insts, m, err
}

// fleetAPI is the admin API's fleet view: nil without a shared store.
func (a *app) fleetAPI() adminapi.FleetView {
	if a.link == nil {
		return nil
	}
	return fleetView{a}
}

// storeComponent is the verdict's component for the shared store.
const storeComponent = "store"

// withStore adds the shared store's component to v (a copy): healthy, or
// warning with the Writer's reason and what waits for the store. Without
// a shared store v is returned as is.
func (a *app) withStore(v health.Verdict) health.Verdict {
	if a.writer == nil {
		return v
	}
	h := a.writer.Health()
	comps := maps.Clone(v.Components)
	if comps == nil {
		comps = map[string]health.Level{}
	}
	v.Components = comps
	if h.State == store.HealthOK {
		comps[storeComponent] = health.Healthy
		return v
	}
	comps[storeComponent] = health.Warning
	if v.Status == health.Healthy {
		v.Status = health.Warning
	}
	reason := fmt.Sprintf("%s %s: %s (%d heartbeats and %d audit entries or acknowledgements waiting, %d heartbeats dropped)",
		storeComponent, health.Warning, h.Reason, h.QueuedHeartbeats, h.QueuedWrites, h.DroppedHeartbeats)
	v.Reasons = append(slices.Clone(v.Reasons), reason)
	return v
}

// verdict is the API's health verdict: the monitor's, with the store.
func (a *app) verdict() health.Verdict { return a.withStore(a.monitor.Verdict()) }

// fleetRetention is the shared store's retention: DefaultRetention with
// the fleet's minute and hour rows kept as long as the history's 1 min and
// 1 h tiers (history.retention_1m, history.retention_1h).
func fleetRetention(h config.History) store.Retention {
	r := store.DefaultRetention
	if d := h.Retention1m.Duration(); d > 0 {
		r.KeepMinutes = d
	}
	if d := h.Retention1h.Duration(); d > 0 {
		r.KeepHours = d
	}
	return r
}
