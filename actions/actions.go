// Package actions is pulsegate's automated response: what a sidecar can do
// on its own when thresholds trip, the product's "automated cleanup
// triggers". Each action has a cooldown, honours dry-run, writes one audit
// line (event "action") and reports itself as a background task:
//
//   - cleanup: POST the app's cleanup URL on memory warning/critical and
//     every cleanup interval;
//   - recycle_connections: close idle upstream connections when the error
//     rate is critical or upstream connection churn spikes;
//   - session_ttl_repair (opt-in): give session keys without a TTL the
//     configured TTL, a bounded number per tick; it never deletes data;
//   - readiness on overload (opt-in): Overloaded() turns true during
//     sustained overload so Kubernetes routes around the pod.
package actions

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
)

// TaskReporter records background-task health (implemented by probes.Tasks).
type TaskReporter interface {
	Begin(name string, deadline time.Duration) (end func(err error))
}

// Deps are the hooks other packages provide.
type Deps struct {
	// CloseIdleUpstream drops idle upstream keep-alive connections (the
	// proxy's CloseIdleConnections). Nil disables recycle_connections.
	CloseIdleUpstream func()
}

// Action names (the "action" key of the audit line and metric label).
const (
	ActionCleanup   = "cleanup"
	ActionRecycle   = "recycle_connections"
	ActionTTLRepair = "session_ttl_repair"
	ActionReadiness = "readiness_on_overload"
)

var actionNames = [...]string{ActionCleanup, ActionRecycle, ActionTTLRepair, ActionReadiness}

// Outcomes of one run.
const (
	OutcomeOK     = "ok"
	OutcomeError  = "error"
	OutcomeDryRun = "dry_run"
)

// ChurnFigure is the optional figure (new upstream connections per second)
// whose spike triggers recycle_connections; main passes it when the proxy
// measures it.
const ChurnFigure = "upstream_dials_per_sec"

// churnFloor is the least dial rate that can count as a spike, and
// churnFactor how far above its own moving baseline it must be.
const (
	churnFloor  = 10.0
	churnFactor = 3.0
	churnAlpha  = 0.2
)

// ActionStatus is one action's JSON-ready state.
type ActionStatus struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	// Why explains a disabled action (which key to set).
	Why    string `json:"why,omitempty"`
	DryRun bool   `json:"dry_run"`
	// Count is how many times it ran (dry runs included); Failures how many failed.
	Count    uint64 `json:"count"`
	Failures uint64 `json:"failures"`
	// LastRun, LastTrigger, LastOutcome, LastDetail and LastError describe the most recent run.
	LastRun     *time.Time `json:"last_run"`
	LastTrigger string     `json:"last_trigger,omitempty"`
	LastOutcome string     `json:"last_outcome,omitempty"`
	LastDetail  string     `json:"last_detail,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	// NextAllowed is when the cooldown lets it run again (null = now).
	NextAllowed *time.Time `json:"next_allowed"`
}

// record is an action's mutable history (under Actions.mu).
type record struct {
	count, failures uint64
	lastRun         time.Time
	trigger         string
	outcome, detail string
	err             string
}

// Actions runs the automated responses. Build it with New; Observe and
// Apply may be called from any goroutine while Run runs.
type Actions struct {
	log   *zap.Logger
	tasks TaskReporter
	deps  Deps
	now   func() time.Time
	http  *http.Client

	cfg     atomic.Pointer[config.Config]
	applied chan struct{} // wakes Run's loops after Apply
	trigger chan cleanupTrigger

	mu        sync.Mutex
	records   map[string]*record
	pending   *pendingCleanup // a successful cleanup awaiting the next memory reading
	lastMem   float64
	hasMem    bool
	churnBase float64
	churnSeen bool

	// readiness coupling
	overloaded    atomic.Bool
	condSince     time.Time // when the overload condition last became true (zero = false)
	clearSince    time.Time // when it last became false
	overloadCause string

	ttl *ttlRepairer

	runs     *prometheus.CounterVec
	repaired prometheus.Counter
}

type cleanupTrigger struct {
	reason string  // memory_warning, memory_critical, interval
	memory float64 // fraction, NaN when unknown
}

type pendingCleanup struct {
	before float64
	at     time.Time
}

// New builds Actions for cfg, a configuration config has validated (Load,
// Patch): the rules live there only. tasks may be nil.
func New(cfg *config.Config, log *zap.Logger, reg prometheus.Registerer, tasks TaskReporter, deps Deps) (*Actions, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if reg == nil {
		return nil, errors.New("building actions: registerer is nil")
	}
	a := &Actions{
		log:     log,
		tasks:   tasks,
		deps:    deps,
		now:     time.Now,
		http:    &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		applied: make(chan struct{}, 1),
		trigger: make(chan cleanupTrigger, 1),
		records: make(map[string]*record, len(actionNames)),
	}
	for _, n := range actionNames {
		a.records[n] = &record{}
	}
	a.cfg.Store(cfg)
	a.ttl = &ttlRepairer{a: a, wakeCh: make(chan struct{}, 1)}
	a.runs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pulsegate", Subsystem: "action", Name: "runs_total",
		Help: "Automated action runs by action and outcome (ok, error, dry_run).",
	}, []string{"action", "outcome"})
	a.repaired = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "pulsegate", Subsystem: "action", Name: "session_ttl_repaired_total",
		Help: "Session keys given a TTL by session_ttl_repair.",
	})
	for _, n := range actionNames[:3] {
		for _, o := range []string{OutcomeOK, OutcomeError, OutcomeDryRun} {
			a.runs.WithLabelValues(n, o)
		}
	}
	overloaded := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "pulsegate", Subsystem: "action", Name: "overloaded",
		Help: "1 while readiness is failed because of sustained overload (readiness_on_overload).",
	}, func() float64 {
		if a.Overloaded() {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{a.runs, a.repaired, overloaded} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("building actions: registering metrics: %w", err)
		}
	}
	return a, nil
}

// Apply switches to cfg, a configuration config has validated.
func (a *Actions) Apply(cfg *config.Config) {
	a.cfg.Store(cfg)
	select {
	case a.applied <- struct{}{}:
	default:
	}
}

// Run drives the periodic cleanup and the session TTL repair until ctx
// ends, then closes the Redis connection it opened. It returns nil when ctx
// ends.
func (a *Actions) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.ttl.loop(ctx)
	}()
	a.cleanupLoop(ctx)
	wg.Wait()
	return nil
}

// cooldownLeft returns how long until action may run again at now.
func (a *Actions) cooldownLeftLocked(action string, now time.Time) time.Duration {
	rec := a.records[action]
	if rec.lastRun.IsZero() {
		return 0
	}
	cd := a.cfg.Load().Actions.Cooldown.Duration()
	return rec.lastRun.Add(cd).Sub(now)
}

// claim reserves a run of action at now unless it is cooling down.
func (a *Actions) claim(action, trigger string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if left := a.cooldownLeftLocked(action, now); left > 0 {
		a.log.Debug("action_cooldown", zap.String("action", action), zap.String("trigger", trigger), zap.Duration("left", left))
		return false
	}
	rec := a.records[action]
	rec.lastRun = now
	rec.trigger = trigger
	return true
}

// done records the outcome of a claimed run and writes the audit line.
func (a *Actions) done(action, trigger string, dryRun bool, detail string, err error, took time.Duration) {
	outcome := OutcomeOK
	switch {
	case err != nil:
		outcome = OutcomeError
	case dryRun:
		outcome = OutcomeDryRun
	}
	a.mu.Lock()
	rec := a.records[action]
	rec.count++
	rec.outcome, rec.detail, rec.err = outcome, detail, ""
	if err != nil {
		rec.failures++
		rec.err = err.Error()
	}
	a.mu.Unlock()
	a.runs.WithLabelValues(action, outcome).Inc()
	fields := []zap.Field{
		zap.String("action", action),
		zap.String("trigger", trigger),
		zap.String("outcome", outcome),
		zap.Bool("dry_run", dryRun),
		zap.Duration("took", took),
	}
	if detail != "" {
		fields = append(fields, zap.String("detail", detail))
	}
	if err != nil {
		a.log.Warn("action", append(fields, zap.Error(err))...)
		return
	}
	a.log.Info("action", fields...)
}

func (a *Actions) begin(name string, deadline time.Duration) func(error) {
	if a.tasks == nil {
		return func(error) {}
	}
	return a.tasks.Begin(name, deadline)
}

// Snapshot returns every action's state.
func (a *Actions) Snapshot() []ActionStatus {
	cfg := a.cfg.Load()
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]ActionStatus, 0, len(actionNames))
	for _, n := range actionNames {
		rec := a.records[n]
		st := ActionStatus{
			Name:        n,
			DryRun:      cfg.Actions.DryRun,
			Count:       rec.count,
			Failures:    rec.failures,
			LastTrigger: rec.trigger,
			LastOutcome: rec.outcome,
			LastDetail:  rec.detail,
			LastError:   rec.err,
		}
		st.Enabled, st.Why = a.enabled(cfg, n)
		if !rec.lastRun.IsZero() {
			t := rec.lastRun
			st.LastRun = &t
			if left := a.cooldownLeftLocked(n, now); left > 0 && n != ActionReadiness {
				next := now.Add(left)
				st.NextAllowed = &next
			}
		}
		out = append(out, st)
	}
	return out
}

// enabled says whether action can run under cfg, and if not, why.
func (a *Actions) enabled(cfg *config.Config, action string) (bool, string) {
	switch action {
	case ActionCleanup:
		if cfg.Actions.CleanupURL == "" {
			return false, "actions.cleanup_url is not set"
		}
	case ActionRecycle:
		if !cfg.Actions.RecycleConnections {
			return false, "actions.recycle_connections is false"
		}
		if a.deps.CloseIdleUpstream == nil {
			return false, "the proxy provided no way to close idle upstream connections"
		}
	case ActionTTLRepair:
		if !cfg.Actions.SessionTTLRepair {
			return false, "actions.session_ttl_repair is false (opt-in)"
		}
		if !cfg.Redis.URL.IsSet() {
			return false, "redis.url is not set"
		}
	case ActionReadiness:
		if !cfg.Actions.ReadinessOnOverload {
			return false, "actions.readiness_on_overload is false (opt-in)"
		}
	}
	return true, ""
}
