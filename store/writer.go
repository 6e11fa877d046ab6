package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Sink is where a Writer's rows go: *SQL.
type Sink interface {
	WriteHeartbeats(ctx context.Context, hbs []Heartbeat) error
	AppendAuditContext(ctx context.Context, e AuditEntry) error
	AcknowledgeFleetAlert(ctx context.Context, fleet, id string, ack Acknowledgement) (FleetAlert, error)
	PruneFleet(ctx context.Context, fleet string, now time.Time, r Retention) (PruneResult, error)
}

var _ Sink = (*SQL)(nil)

// Store health states, as the verdict's store component reports them.
const (
	HealthOK       = "ok"
	HealthDegraded = "degraded"
)

// Health is the shared store's state as the writer last saw it.
type Health struct {
	// State is ok or degraded.
	State string `json:"state"`
	// Reason says why it is degraded (empty when ok); never a secret.
	Reason string `json:"reason,omitempty"`
	// Since is when the state last changed.
	Since time.Time `json:"since"`
	// QueuedHeartbeats and QueuedWrites wait for the store; DroppedHeartbeats
	// counts heartbeats dropped (oldest first) because the buffer was full.
	QueuedHeartbeats  int    `json:"queued_heartbeats"`
	QueuedWrites      int    `json:"queued_writes"`
	DroppedHeartbeats uint64 `json:"dropped_heartbeats"`
	DroppedWrites     uint64 `json:"dropped_writes"`
	// QueuedRouteRows are route rows and history points waiting (rewrites
	// of one row coalesced); DroppedRouteRows those dropped, oldest first,
	// because the buffer was full.
	QueuedRouteRows  int    `json:"queued_route_rows"`
	DroppedRouteRows uint64 `json:"dropped_route_rows"`
}

// WriterOptions bound a Writer. Zero values take the defaults.
type WriterOptions struct {
	// MaxHeartbeats is the heartbeat buffer (default 360: an hour of one
	// sidecar at a 10 s interval); when full the oldest is dropped.
	MaxHeartbeats int
	// MaxWrites bounds waiting audit entries and acknowledgements (default
	// 100 000). They are never dropped silently: past the bound each one
	// dropped is logged whole at error level and counted.
	MaxWrites int
	// BatchSize is the most heartbeats written in one transaction (default 100).
	BatchSize int
	// MaxRouteRows bounds the route rows and history points waiting
	// (default 50 000: over a day of one sidecar's 1 min rows at 30
	// routes); past it the oldest rows are dropped and counted.
	MaxRouteRows int
	// FlushInterval is the longest a queued row waits while the store is up (default 1 s).
	FlushInterval time.Duration
	// RetryMin and RetryMax bound the backoff while the store is down (1 s, 30 s).
	RetryMin, RetryMax time.Duration
	// FinalFlush bounds the last flush on shutdown (default 2 s).
	FinalFlush time.Duration
	// PruneEvery is how often Run prunes Fleet's tables with Retention
	// (0: never; every sidecar may prune, one at a time does).
	PruneEvery time.Duration
	Fleet      string
	Retention  Retention
	Now        func() time.Time
}

func (o *WriterOptions) defaults() {
	if o.MaxHeartbeats <= 0 {
		o.MaxHeartbeats = 360
	}
	if o.MaxWrites <= 0 {
		o.MaxWrites = 100000
	}
	if o.MaxRouteRows <= 0 {
		o.MaxRouteRows = 50000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(30*time.Second, o.RetryMin)
	}
	if o.FinalFlush <= 0 {
		o.FinalFlush = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// AlertSink is what a Writer needs for alert writes (Writer.Alerts): *SQL.
type AlertSink interface {
	SaveAlerts(as ...AlertRecord) error
	PruneAlerts(keep int) error
	RaiseFleetAlert(ctx context.Context, fleet, instance string, a AlertRecord) (FleetAlert, error)
	ResolveFleetAlert(ctx context.Context, fleet, instance, key string, at time.Time) (FleetAlert, error)
	AcknowledgeFleetAlert(ctx context.Context, fleet, id string, ack Acknowledgement) (FleetAlert, error)
	FleetAlerts(ctx context.Context, fleet string, activeOnly bool) ([]FleetAlert, error)
}

var _ AlertSink = (*SQL)(nil)

// RouteSink is what a Writer needs for route rows (Writer.Routes): *SQL.
type RouteSink interface {
	WriteRouteBatch(ctx context.Context, b RouteBatch) error
}

var _ RouteSink = (*SQL)(nil)

// ErrQueueFull is returned (wrapped) by Writer.Alerts when the bounded
// buffer of waiting writes is full: the caller must say so (an
// acknowledgement is refused rather than lost).
var ErrQueueFull = errors.New("the shared store's write queue is full")

// AlertWrite is one batch of one instance's alert changes for the shared
// store, written in this order and replayed whole after a failure (every
// step is idempotent): Records into the instance's alert history, Raise
// and Resolve on the fleet's alerts, the fleet acknowledgements, then the
// history pruned to PruneKeep resolved alerts (0: not pruned).
type AlertWrite struct {
	Fleet, Instance string
	// Records are saved to this instance's alert history (SaveAlerts).
	Records []AlertRecord
	// Raise are the alerts this instance sees: each raises (or updates its
	// view of) the fleet's active alert with the record's key.
	Raise []AlertRecord
	// Resolve are the alerts this instance no longer sees (Key, ResolvedAt).
	Resolve []AlertRecord
	// Acks acknowledge fleet alerts for every instance.
	Acks      []FleetAck
	PruneKeep int
}

// FleetAck acknowledges one fleet alert: by ID, or when ID is empty (not
// known yet when it was queued) the active alert with Key.
type FleetAck struct {
	ID, Key string
	Ack     Acknowledgement
}

func (a AlertWrite) empty() bool {
	return len(a.Records) == 0 && len(a.Raise) == 0 && len(a.Resolve) == 0 && len(a.Acks) == 0 && a.PruneKeep == 0
}

// write is one waiting audit entry, acknowledgement or alert batch, kept in order.
type write struct {
	audit  *AuditEntry
	ack    *ackWrite
	alerts *AlertWrite
}

type ackWrite struct {
	fleet, id string
	ack       Acknowledgement
}

func (w write) kind() string {
	switch {
	case w.audit != nil:
		return "audit"
	case w.alerts != nil && len(w.alerts.Acks) == 0:
		return "alert"
	}
	return "acknowledgement"
}

// Writer queues heartbeats, audit entries and acknowledgements for the
// shared store and writes them from its own goroutine (Run), in batches.
// Its enqueue methods never block on the store: the request path and the
// monitor tick hand rows over and go on. While the store is down the
// writer keeps the rows (heartbeats bounded, oldest dropped first and
// counted; audit entries and acknowledgements kept and replayed in order),
// retries with backoff, and reports a degraded Health with the reason.
type Writer struct {
	sink Sink
	log  *zap.Logger
	opt  WriterOptions

	flushMu sync.Mutex // one flush at a time

	mu          sync.Mutex
	heartbeats  []Heartbeat
	writes      []write
	health      Health
	droppedHB   uint64
	droppedW    uint64
	routes      routeQueue
	wake        chan struct{}
	metricQueue *prometheus.GaugeVec
	metricDrop  *prometheus.CounterVec
	metricDone  *prometheus.CounterVec
	metricFail  prometheus.Counter
	metricUp    prometheus.Gauge
	metricFlush prometheus.Histogram
}

// NewWriter returns a writer to sink; its metrics are registered on reg
// (nil: not registered). Start it with Run.
func NewWriter(sink Sink, log *zap.Logger, reg prometheus.Registerer, opt WriterOptions) (*Writer, error) {
	if sink == nil {
		return nil, errors.New("store writer: nil sink")
	}
	if log == nil {
		log = zap.NewNop()
	}
	opt.defaults()
	w := &Writer{
		sink: sink, log: log, opt: opt, wake: make(chan struct{}, 1),
		health: Health{State: HealthOK, Since: opt.Now()},
		metricQueue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pulsegate_store_queued",
			Help: "Rows waiting for the shared store, by kind (heartbeat, audit, acknowledgement, alert, route)."}, []string{"kind"}),
		metricDrop: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulsegate_store_dropped_total",
			Help: "Rows dropped because the shared store's buffer was full, by kind (oldest heartbeats first)."}, []string{"kind"}),
		metricDone: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulsegate_store_writes_total",
			Help: "Rows written to the shared store, by kind."}, []string{"kind"}),
		metricFail: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulsegate_store_write_failures_total",
			Help: "Failed flushes to the shared store (rows kept and retried)."}),
		metricUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pulsegate_store_up",
			Help: "1 when the last write to the shared store succeeded, 0 when it failed (store degraded)."}),
		metricFlush: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pulsegate_store_flush_duration_seconds",
			Help: "Time of one flush to the shared store.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	w.metricUp.Set(1)
	w.routes = newRouteQueue()
	for _, k := range []string{"heartbeat", "audit", "acknowledgement", "alert", "route"} {
		w.metricQueue.WithLabelValues(k)
		w.metricDrop.WithLabelValues(k)
		w.metricDone.WithLabelValues(k)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{w.metricQueue, w.metricDrop, w.metricDone, w.metricFail, w.metricUp, w.metricFlush} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("store writer: registering metrics: %w", err)
			}
		}
	}
	return w, nil
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Heartbeat queues one heartbeat. When the buffer is full the oldest
// queued heartbeat is dropped (and counted). Never blocks on the store.
func (w *Writer) Heartbeat(hb Heartbeat) {
	w.mu.Lock()
	w.heartbeats = append(w.heartbeats, hb)
	if over := len(w.heartbeats) - w.opt.MaxHeartbeats; over > 0 {
		w.heartbeats = append(w.heartbeats[:0], w.heartbeats[over:]...)
		w.droppedHB += uint64(over)
		w.metricDrop.WithLabelValues("heartbeat").Add(float64(over))
	}
	w.metricQueue.WithLabelValues("heartbeat").Set(float64(len(w.heartbeats)))
	w.mu.Unlock()
	w.signal()
}

// Audit queues one audit entry (stamped now when its time is zero). An
// entry without an action is refused here, so nothing that the store would
// always refuse can hold up the queue behind it.
func (w *Writer) Audit(e AuditEntry) error {
	if e.Action == "" {
		return errors.New("queueing audit entry: action is required")
	}
	if e.Time.IsZero() {
		e.Time = w.opt.Now()
	}
	w.enqueue(write{audit: &e})
	return nil
}

// Acknowledge queues one acknowledgement of fleet alert id.
func (w *Writer) Acknowledge(fleet, id string, ack Acknowledgement) {
	w.enqueue(write{ack: &ackWrite{fleet: fleet, id: id, ack: ack}})
}

// Alerts queues one batch of this instance's alert changes (see
// AlertWrite). It never blocks on the store. When the buffer is full the
// batch is not queued: one holding acknowledgements is refused with
// ErrQueueFull (the caller reports it and changes nothing); transitions
// alone are logged whole at error level, counted as dropped, and the
// error returned as well. The sink must store alerts (AlertSink).
func (w *Writer) Alerts(aw AlertWrite) error {
	if aw.empty() {
		return nil
	}
	if _, ok := w.sink.(AlertSink); !ok {
		return errors.New("queueing alert changes: the shared store link cannot store alerts")
	}
	wr := write{alerts: &aw}
	if len(aw.Acks) > 0 {
		w.mu.Lock()
		full := len(w.writes) >= w.opt.MaxWrites
		w.mu.Unlock()
		if full {
			w.metricDrop.WithLabelValues(wr.kind()).Inc()
			w.log.Error("store_acknowledgement_refused", zap.Int("queued", w.opt.MaxWrites), zap.Int("acknowledgements", len(aw.Acks)))
			return fmt.Errorf("queueing %d acknowledgement(s) (%d writes waiting): %w", len(aw.Acks), w.opt.MaxWrites, ErrQueueFull)
		}
	}
	if !w.enqueue(wr) {
		return fmt.Errorf("queueing alert changes (%d writes waiting): %w", w.opt.MaxWrites, ErrQueueFull)
	}
	return nil
}

func (w *Writer) enqueue(wr write) bool {
	w.mu.Lock()
	if len(w.writes) >= w.opt.MaxWrites {
		w.droppedW++
		w.mu.Unlock()
		w.metricDrop.WithLabelValues(wr.kind()).Inc()
		// Past the bound an entry is lost, never silently: it is logged whole.
		if wr.audit != nil {
			w.log.Error("store_write_dropped", zap.String("kind", "audit"), zap.Int("queued", w.opt.MaxWrites), zap.Object("audit", *wr.audit))
		} else if wr.alerts != nil {
			keys := make([]string, 0, len(wr.alerts.Records)+len(wr.alerts.Resolve))
			for _, r := range wr.alerts.Records {
				keys = append(keys, r.ID+" "+r.Key+" "+r.State)
			}
			for _, r := range wr.alerts.Resolve {
				keys = append(keys, r.Key+" resolved")
			}
			w.log.Error("store_write_dropped", zap.String("kind", wr.kind()), zap.Int("queued", w.opt.MaxWrites), zap.Strings("alerts", keys))
		} else {
			w.log.Error("store_write_dropped", zap.String("kind", "acknowledgement"), zap.Int("queued", w.opt.MaxWrites),
				zap.String("alert_id", EscapeText(wr.ack.id)), zap.String("by", EscapeText(wr.ack.ack.By)), zap.Time("at", wr.ack.ack.Time))
		}
		return false
	}
	w.writes = append(w.writes, wr)
	w.metricQueue.WithLabelValues(wr.kind()).Inc()
	w.mu.Unlock()
	w.signal()
	return true
}

// Health is the store's state as last seen, with the queue's figures.
func (w *Writer) Health() Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.health
	h.QueuedHeartbeats, h.QueuedWrites = len(w.heartbeats), len(w.writes)
	h.DroppedHeartbeats, h.DroppedWrites = w.droppedHB, w.droppedW
	h.QueuedRouteRows, h.DroppedRouteRows = w.routes.len(), w.routes.dropped
	return h
}

// Run writes queued rows until ctx ends, then makes one last bounded
// flush and returns nil. Rows still queued then are reported in the log.
func (w *Writer) Run(ctx context.Context) error {
	tick := time.NewTimer(w.opt.FlushInterval)
	defer tick.Stop()
	var prune <-chan time.Time
	if w.opt.PruneEvery > 0 && w.opt.Fleet != "" {
		pt := time.NewTicker(w.opt.PruneEvery)
		defer pt.Stop()
		prune = pt.C
	}
	retry := time.Duration(0)
	for {
		select {
		case <-prune:
			if retry == 0 {
				w.prune(ctx)
			}
			continue
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opt.FinalFlush)
			_ = w.Flush(fctx)
			cancel()
			if h := w.Health(); h.QueuedHeartbeats > 0 || h.QueuedWrites > 0 || h.QueuedRouteRows > 0 {
				w.log.Warn("store_writer_stopped_with_rows", zap.Int("heartbeats", h.QueuedHeartbeats), zap.Int("writes", h.QueuedWrites),
					zap.Int("route_rows", h.QueuedRouteRows))
			}
			return nil
		case <-w.wake:
			if retry > 0 {
				continue // backing off: the timer decides the next attempt
			}
		case <-tick.C:
		}
		if err := w.Flush(ctx); err != nil {
			retry = min(max(retry*2, w.opt.RetryMin), w.opt.RetryMax)
			tick.Reset(retry)
			continue
		}
		retry = 0
		tick.Reset(w.opt.FlushInterval)
	}
}

// prune runs one pruning round; a failure is logged (the next flush
// reports the store's state).
func (w *Writer) prune(ctx context.Context) {
	r, err := w.sink.PruneFleet(ctx, w.opt.Fleet, w.opt.Now(), w.opt.Retention)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("store_prune_failed", zap.String("error", err.Error()))
		}
		return
	}
	if r != (PruneResult{}) {
		w.log.Info("store_pruned", zap.Int64("compacted", r.Compacted), zap.Int64("heartbeats", r.Heartbeats), zap.Int64("instances", r.Instances), zap.Int64("route_rows", r.RouteRows))
	}
}

// Flush writes what is queued: audit entries and acknowledgements first,
// in order, then heartbeats in batches. On the first failure it stops,
// keeps the rest (the failed row included) for the next attempt, marks
// the store degraded and returns the error.
func (w *Writer) Flush(ctx context.Context) error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	start := time.Now()
	defer func() { w.metricFlush.Observe(time.Since(start).Seconds()) }()
	for {
		w.mu.Lock()
		if len(w.writes) == 0 {
			w.mu.Unlock()
			break
		}
		wr := w.writes[0]
		w.mu.Unlock()
		var err error
		if wr.audit != nil {
			err = w.sink.AppendAuditContext(ctx, *wr.audit)
		} else if wr.alerts != nil {
			err = w.writeAlerts(ctx, *wr.alerts)
		} else {
			_, err = w.sink.AcknowledgeFleetAlert(ctx, wr.ack.fleet, wr.ack.id, wr.ack.ack)
			if errors.Is(err, ErrNotFound) {
				// The alert resolved everywhere meanwhile: nothing left to acknowledge.
				w.log.Info("store_acknowledgement_obsolete", zap.String("alert_id", EscapeText(wr.ack.id)))
				err = nil
			}
		}
		if err != nil {
			return w.failed(ctx, err)
		}
		w.mu.Lock()
		w.writes = w.writes[1:]
		w.mu.Unlock()
		w.metricQueue.WithLabelValues(wr.kind()).Dec()
		w.metricDone.WithLabelValues(wr.kind()).Inc()
	}
	for {
		w.mu.Lock()
		n := min(len(w.heartbeats), w.opt.BatchSize)
		batch := append([]Heartbeat(nil), w.heartbeats[:n]...)
		w.mu.Unlock()
		if n == 0 {
			break
		}
		if err := w.sink.WriteHeartbeats(ctx, batch); err != nil {
			return w.failed(ctx, err)
		}
		w.mu.Lock()
		// Drops while writing removed the oldest rows, ours first.
		gone := 0
		for gone < n && gone < len(w.heartbeats) && sameHeartbeat(w.heartbeats[gone], batch[gone]) {
			gone++
		}
		if gone < n {
			// Some of the batch were dropped meanwhile; find where the rest starts.
			gone = 0
			for gone < len(w.heartbeats) && containsHeartbeat(batch, w.heartbeats[gone]) {
				gone++
			}
		}
		w.heartbeats = append(w.heartbeats[:0], w.heartbeats[gone:]...)
		w.metricQueue.WithLabelValues("heartbeat").Set(float64(len(w.heartbeats)))
		w.mu.Unlock()
		w.metricDone.WithLabelValues("heartbeat").Add(float64(n))
	}
	if err := w.flushRoutes(ctx); err != nil {
		return w.failed(ctx, err)
	}
	w.recovered()
	return nil
}

// writeAlerts writes one alert batch; every step is idempotent, so a
// batch that failed halfway is replayed whole.
func (w *Writer) writeAlerts(ctx context.Context, aw AlertWrite) error {
	sink := w.sink.(AlertSink) // checked by Alerts
	if len(aw.Records) > 0 {
		if err := sink.SaveAlerts(aw.Records...); err != nil {
			return err
		}
	}
	for _, a := range aw.Raise {
		if _, err := sink.RaiseFleetAlert(ctx, aw.Fleet, aw.Instance, a); err != nil {
			return err
		}
	}
	for _, a := range aw.Resolve {
		at := a.LastSeen
		if a.ResolvedAt != nil {
			at = *a.ResolvedAt
		}
		if _, err := sink.ResolveFleetAlert(ctx, aw.Fleet, aw.Instance, a.Key, at); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	for _, ack := range aw.Acks {
		id := ack.ID
		if id == "" {
			active, err := sink.FleetAlerts(ctx, aw.Fleet, true)
			if err != nil {
				return err
			}
			for _, fa := range active {
				if fa.Key == ack.Key {
					id = fa.ID
				}
			}
		}
		if id != "" {
			_, err := sink.AcknowledgeFleetAlert(ctx, aw.Fleet, id, ack.Ack)
			if err == nil {
				continue
			}
			if !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		// The alert resolved everywhere meanwhile: nothing left to acknowledge.
		w.log.Info("store_acknowledgement_obsolete", zap.String("alert_id", EscapeText(ack.ID)), zap.String("key", EscapeText(ack.Key)))
	}
	if aw.PruneKeep > 0 {
		if err := sink.PruneAlerts(aw.PruneKeep); err != nil {
			return err
		}
	}
	return nil
}

func sameHeartbeat(a, b Heartbeat) bool {
	return a.Fleet == b.Fleet && a.Instance == b.Instance && a.Time.Equal(b.Time)
}

func containsHeartbeat(hs []Heartbeat, h Heartbeat) bool {
	for _, x := range hs {
		if sameHeartbeat(x, h) {
			return true
		}
	}
	return false
}

func (w *Writer) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		// Shutting down (or the caller gave up): not the store's fault.
		return err
	}
	w.metricFail.Inc()
	w.metricUp.Set(0)
	w.mu.Lock()
	reason := "store unreachable: " + err.Error()
	changed := w.health.State != HealthDegraded
	if changed {
		w.health = Health{State: HealthDegraded, Reason: reason, Since: w.opt.Now()}
	} else {
		w.health.Reason = reason
	}
	qh, qw := len(w.heartbeats), len(w.writes)
	w.mu.Unlock()
	if changed {
		w.log.Warn("store_degraded", zap.String("reason", reason), zap.Int("queued_heartbeats", qh), zap.Int("queued_writes", qw))
	}
	return err
}

func (w *Writer) recovered() {
	w.metricUp.Set(1)
	w.mu.Lock()
	changed := w.health.State != HealthOK
	var down time.Duration
	if changed {
		down = w.opt.Now().Sub(w.health.Since)
		w.health = Health{State: HealthOK, Since: w.opt.Now()}
	}
	dropped := w.droppedHB
	w.mu.Unlock()
	if changed {
		w.log.Info("store_recovered", zap.Duration("degraded_for", down), zap.Uint64("dropped_heartbeats", dropped))
	}
}
