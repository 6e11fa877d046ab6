package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/store"
)

// The history backfill: once the shared store is reached, the 1 min and
// 1 h points and route rows this sidecar's history.db wrote before
// store.dsn was set (older than the oldest point the store holds for
// this fleet and instance, within history.retention_1m and _1h) are
// copied to the store in the background, newest first, one time window
// (at most backfillBatch rows, one transaction of upserts keyed like the
// live rows) at a time, between the writer's live flushes
// (store.Writer.Backfill). Newest first makes the store's oldest point
// the backfill's progress: a restart, a crash or a store outage midway
// resumes from there, and a sidecar whose store already reaches back as
// far as its archive copies nothing.

const (
	// backfillBatch is the most rows one backfill transaction writes (as a live flush's batch).
	backfillBatch = 500
	// backfillStartDelay lets the sidecar settle (probes, first heartbeats) before the backfill starts.
	backfillStartDelay = 10 * time.Second
	// backfillBusyPause is the wait before trying again while live rows are being written.
	backfillBusyPause = 100 * time.Millisecond
	// backfillFirstWindow is the first window's length in steps; it halves
	// while a window holds more than backfillBatch rows and doubles while
	// windows hold less than a quarter of that.
	backfillFirstWindow = 64
)

// Backfill states, as the performance JSON's store.history_backfill.state shows them.
const (
	backfillWaiting   = "waiting"    // for the shared store (reason says why)
	backfillRunning   = "running"    // copying
	backfillDone      = "done"       // copied everything it found
	backfillNotNeeded = "not_needed" // the store already holds everything the archive has
	backfillStopped   = "stopped"    // the sidecar stopped midway; the next start resumes
)

// backfillStatus is the backfill's progress (performance JSON, store.history_backfill).
type backfillStatus struct {
	State      string     `json:"state"`
	Reason     string     `json:"reason,omitempty"`
	RowsTotal  int        `json:"rows_total"`
	RowsCopied int        `json:"rows_copied"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Seconds    float64    `json:"seconds"`
}

// historyBackfill runs once per process (run, one of the app's loops).
type historyBackfill struct {
	log       *zap.Logger
	archive   *history.Archive
	writer    *store.Writer
	batch     func(history.Flushed) store.RouteBatch
	oldest    func(ctx context.Context, step time.Duration) (time.Time, bool, error)
	retention func() history.Retention
	now       func() time.Time
	// startDelay, retryMin and retryMax: see backfillStartDelay; the
	// backoff while the store is down (1 s to 60 s).
	startDelay, retryMin, retryMax time.Duration
	limit                          int

	rows    prometheus.Counter
	pending prometheus.Gauge

	mu     sync.Mutex
	st     backfillStatus
	began  time.Time // when the copy started (zero before)
	isDown bool      // the store failed: logged, not written to since
}

func newHistoryBackfill(a *app, reg prometheus.Registerer) (*historyBackfill, error) {
	b := &historyBackfill{
		log: a.log.Named("history_backfill"), archive: a.archive, writer: a.writer, batch: a.routeBatch,
		oldest: func(ctx context.Context, step time.Duration) (time.Time, bool, error) {
			s, err := a.link.open(ctx) // opens the store if nothing else has yet
			if err != nil {
				return time.Time{}, false, err
			}
			return s.OldestHistoryPoint(ctx, a.fleetName, a.instance, step)
		},
		retention: a.historyRetention, now: time.Now,
		startDelay: backfillStartDelay, retryMin: time.Second, retryMax: time.Minute, limit: backfillBatch,
		rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulsegate_history_backfill_rows_total",
			Help: "Rows of the local history (1 min and 1 h points and route rows) copied to the shared store by the one-time backfill."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pulsegate_history_backfill_pending_rows",
			Help: "Rows of the local history the backfill has still to copy to the shared store (0 when done)."}),
		st: backfillStatus{State: backfillWaiting, Reason: "starting"},
	}
	for _, c := range []prometheus.Collector{b.rows, b.pending} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// status is a copy of the progress.
func (b *historyBackfill) status() backfillStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.st
	if st.State == backfillRunning {
		st.Seconds = b.now().Sub(b.began).Seconds()
	}
	return st
}

func (b *historyBackfill) set(f func(st *backfillStatus)) {
	b.mu.Lock()
	f(&b.st)
	b.mu.Unlock()
}

// errWindowTooLarge: the window holds more than a batch; it is halved.
var errWindowTooLarge = errors.New("window holds more rows than one batch")

// sleepCtx sleeps d or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// run copies until done, retrying while the store is down, and returns
// when done or when ctx ends (the next start resumes).
func (b *historyBackfill) run(ctx context.Context) error {
	wait, retry := b.startDelay, time.Duration(0)
	for sleepCtx(ctx, wait) {
		err := b.attempt(ctx)
		if err == nil || ctx.Err() != nil {
			break
		}
		b.down(err)
		retry = min(max(retry*2, b.retryMin), b.retryMax)
		wait = retry
	}
	if st := b.status(); ctx.Err() != nil && st.State == backfillRunning {
		b.set(func(st *backfillStatus) { st.State, st.Seconds = backfillStopped, b.now().Sub(b.began).Seconds() })
		b.log.Info("history_backfill_stopped", zap.Int("rows", st.RowsCopied), zap.Int("remaining", max(st.RowsTotal-st.RowsCopied, 0)),
			zap.Float64("seconds", b.now().Sub(b.began).Seconds()))
	}
	return nil
}

// down notes that the store failed: logged once until a batch is written again.
func (b *historyBackfill) down(err error) {
	b.mu.Lock()
	first := !b.isDown
	b.isDown = true
	if b.st.State != backfillRunning {
		b.st.State = backfillWaiting
	}
	b.st.Reason = err.Error()
	copied := b.st.RowsCopied
	b.mu.Unlock()
	if first {
		b.log.Warn("history_backfill_waiting", zap.String("reason", err.Error()), zap.Int("rows", copied))
	}
}

// up notes that a batch was written (or nothing was left): after an
// outage, a copy that had made progress logs that it resumes.
func (b *historyBackfill) up() {
	b.mu.Lock()
	was := b.isDown
	b.isDown = false
	b.st.Reason = ""
	st := b.st
	b.mu.Unlock()
	if was && st.RowsCopied > 0 {
		b.log.Info("history_backfill_resumed", zap.Int("rows", st.RowsCopied), zap.Int("remaining", max(st.RowsTotal-st.RowsCopied, 0)))
	}
}

// tierJob is one tier's share of the copy: rows starting in [from, to).
type tierJob struct {
	tier     int
	from, to time.Time
}

// plan reads the store's oldest points and returns what to copy, with
// the number of rows.
func (b *historyBackfill) plan(ctx context.Context) ([]tierJob, int, error) {
	now, ret := b.now(), b.retention()
	var jobs []tierJob
	total := 0
	for _, tier := range []int{history.Tier1h, history.Tier1m} { // the hours first: the long ranges answer soonest
		step := history.TierStep(tier)
		oldest, ok, err := b.oldest(ctx, tierStep(tier))
		if err != nil {
			return nil, 0, err
		}
		from := now.Add(-ret[tier])
		bound := now
		if ok {
			bound = oldest
		}
		older, _, err := b.archive.CountRange(tier, from, bound)
		if err != nil {
			return nil, 0, err
		}
		if older == 0 {
			continue
		}
		// The store's oldest step itself too: its route rows may hold
		// requests from before the live copy began (rewriting it is harmless).
		to := bound.Add(time.Second)
		if !ok {
			to = now.Add(step)
		}
		p, r, err := b.archive.CountRange(tier, from, to)
		if err != nil {
			return nil, 0, err
		}
		jobs = append(jobs, tierJob{tier: tier, from: from, to: to})
		total += p + r
	}
	return jobs, total, nil
}

// attempt plans and copies; an error means the store (or the archive)
// failed and the copy is tried again later from the store's progress.
func (b *historyBackfill) attempt(ctx context.Context) error {
	jobs, total, err := b.plan(ctx)
	if err != nil {
		return err
	}
	st := b.status()
	if len(jobs) == 0 {
		b.up()
		if st.StartedAt == nil {
			b.set(func(st *backfillStatus) { *st = backfillStatus{State: backfillNotNeeded} })
			return nil
		}
		b.finish()
		return nil
	}
	if st.StartedAt == nil {
		now := b.now()
		b.set(func(st *backfillStatus) {
			b.began = now
			*st = backfillStatus{State: backfillRunning, RowsTotal: total, StartedAt: &now}
		})
		fields := []zap.Field{zap.Int("rows", total)}
		for _, j := range jobs {
			name := history.TierName(j.tier)
			fields = append(fields, zap.Time("from_"+name, j.from), zap.Time("to_"+name, j.to))
		}
		b.log.Info("history_backfill_started", fields...)
	} else {
		// Again after the store was down: what is left, as the store's progress says.
		b.set(func(st *backfillStatus) { st.RowsTotal = st.RowsCopied + total })
	}
	b.pending.Set(float64(total))
	for _, j := range jobs {
		if err := b.copyTier(ctx, j); err != nil {
			return err
		}
	}
	b.finish()
	return nil
}

func (b *historyBackfill) finish() {
	b.pending.Set(0)
	now := b.now()
	var st backfillStatus
	b.set(func(s *backfillStatus) {
		s.State, s.Reason, s.FinishedAt, s.Seconds = backfillDone, "", &now, now.Sub(b.began).Seconds()
		s.RowsTotal = s.RowsCopied
		st = *s
	})
	b.log.Info("history_backfill_done", zap.Int("rows", st.RowsCopied), zap.Float64("seconds", st.Seconds))
}

// copyTier copies j's rows newest first, one window per transaction.
func (b *historyBackfill) copyTier(ctx context.Context, j tierJob) error {
	step := history.TierStep(j.tier)
	window := backfillFirstWindow * step
	retry := time.Duration(0)
	for hi := j.to; hi.After(j.from); {
		lo := hi.Add(-window)
		if lo.Before(j.from) {
			lo = j.from
		}
		started := time.Now()
		n, err := b.writer.Backfill(ctx, func() (store.RouteBatch, error) {
			f, err := b.archive.ReadRange(j.tier, lo, hi)
			if err != nil {
				return store.RouteBatch{}, err
			}
			if len(f.Points)+len(f.Routes) > b.limit && window > step {
				return store.RouteBatch{}, errWindowTooLarge
			}
			return b.batch(f), nil
		})
		switch {
		case errors.Is(err, errWindowTooLarge):
			window = max(window/2, step)
			continue
		case errors.Is(err, store.ErrBackfillBusy):
			if !sleepCtx(ctx, backfillBusyPause) {
				return ctx.Err()
			}
			continue
		case errors.Is(err, store.ErrStoreDegraded):
			// The writer is retrying its live rows: wait for it.
			b.down(err)
			retry = min(max(retry*2, b.retryMin), b.retryMax)
			if !sleepCtx(ctx, retry) {
				return ctx.Err()
			}
			continue
		case err != nil:
			return err
		}
		retry = 0
		if n > 0 {
			b.up()
		}
		hi = lo
		if n > 0 {
			b.rows.Add(float64(n))
			b.pending.Sub(float64(n))
			b.set(func(st *backfillStatus) { st.RowsCopied += n })
			// Yield: the store gets as much time for live rows as the batch took.
			if !sleepCtx(ctx, time.Since(started)) {
				return ctx.Err()
			}
		}
		if n < b.limit/4 {
			window *= 2
		}
	}
	return nil
}

// storeSection is the performance JSON's "store" object (shared store
// only): the writer's health and queues, and the history backfill's progress.
func (a *app) storeSection() map[string]any {
	out := map[string]any{"health": a.writer.Health()}
	if a.backfill != nil {
		out["history_backfill"] = a.backfill.status()
	}
	return out
}
