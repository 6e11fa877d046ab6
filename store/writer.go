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

// write is one waiting audit entry or acknowledgement, kept in order.
type write struct {
	audit *AuditEntry
	ack   *ackWrite
}

type ackWrite struct {
	fleet, id string
	ack       Acknowledgement
}

func (w write) kind() string {
	if w.audit != nil {
		return "audit"
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
			Help: "Rows waiting for the shared store, by kind (heartbeat, audit, acknowledgement)."}, []string{"kind"}),
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
	for _, k := range []string{"heartbeat", "audit", "acknowledgement"} {
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

func (w *Writer) enqueue(wr write) {
	w.mu.Lock()
	if len(w.writes) >= w.opt.MaxWrites {
		w.droppedW++
		w.mu.Unlock()
		w.metricDrop.WithLabelValues(wr.kind()).Inc()
		// Past the bound an entry is lost, never silently: it is logged whole.
		if wr.audit != nil {
			w.log.Error("store_write_dropped", zap.String("kind", "audit"), zap.Int("queued", w.opt.MaxWrites), zap.Object("audit", *wr.audit))
		} else {
			w.log.Error("store_write_dropped", zap.String("kind", "acknowledgement"), zap.Int("queued", w.opt.MaxWrites),
				zap.String("alert_id", EscapeText(wr.ack.id)), zap.String("by", EscapeText(wr.ack.ack.By)), zap.Time("at", wr.ack.ack.Time))
		}
		return
	}
	w.writes = append(w.writes, wr)
	w.metricQueue.WithLabelValues(wr.kind()).Inc()
	w.mu.Unlock()
	w.signal()
}

// Health is the store's state as last seen, with the queue's figures.
func (w *Writer) Health() Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.health
	h.QueuedHeartbeats, h.QueuedWrites = len(w.heartbeats), len(w.writes)
	h.DroppedHeartbeats, h.DroppedWrites = w.droppedHB, w.droppedW
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
			if h := w.Health(); h.QueuedHeartbeats > 0 || h.QueuedWrites > 0 {
				w.log.Warn("store_writer_stopped_with_rows", zap.Int("heartbeats", h.QueuedHeartbeats), zap.Int("writes", h.QueuedWrites))
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
		w.log.Info("store_pruned", zap.Int64("compacted", r.Compacted), zap.Int64("heartbeats", r.Heartbeats), zap.Int64("instances", r.Instances))
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
	w.recovered()
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
