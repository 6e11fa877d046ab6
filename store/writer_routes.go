package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"
)

// routeQueue holds the route rows and history points waiting for the
// store, keyed by the stored row's key: a later rewrite of a row (the
// archive rewrites the current minute's and hour's rows at every flush)
// replaces the waiting one, so the queue holds at most one entry per
// stored row. w.mu guards it.
type routeQueue struct {
	fleet, instance string
	rows            map[routeRowKey]queuedRoute
	points          map[pointKey]queuedPoint
	seq             uint64 // stamps each entry; a flush removes only what it wrote
	dropped         uint64
	loggedDrop      bool
}

type routeRowKey struct {
	step           time.Duration
	route, version string
	start          int64
}

type pointKey struct {
	step  time.Duration
	start int64
}

type queuedRoute struct {
	row RouteRow
	seq uint64
}

type queuedPoint struct {
	p   HistoryPoint
	seq uint64
}

func newRouteQueue() routeQueue {
	return routeQueue{rows: map[routeRowKey]queuedRoute{}, points: map[pointKey]queuedPoint{}}
}

func (q *routeQueue) len() int { return len(q.rows) + len(q.points) }

// Routes queues the rows one archive flush wrote (b.Fleet and
// b.Instance: this sidecar's; a later batch under other names replaces
// them for everything waiting). It never blocks on the store; a waiting
// row with the same key is replaced. Past MaxRouteRows the rows queued
// longest ago are dropped, counted, and the first drop logged. The sink
// must store route rows (RouteSink).
func (w *Writer) Routes(b RouteBatch) error {
	if len(b.Routes) == 0 && len(b.Points) == 0 {
		return nil
	}
	if _, ok := w.sink.(RouteSink); !ok {
		return errors.New("queueing route rows: the shared store link cannot store route rows")
	}
	if b.Fleet == "" || b.Instance == "" {
		return errors.New("queueing route rows: fleet and instance are required")
	}
	w.mu.Lock()
	q := &w.routes
	q.fleet, q.instance = b.Fleet, b.Instance
	for i := range b.Routes {
		r := b.Routes[i]
		q.seq++
		r.Instance = b.Instance
		r.enc, r.Buckets = encodeBuckets(r.Buckets), nil // about 150 bytes instead of up to 7 KB
		q.rows[routeRowKey{r.Step, r.Route, r.Version, r.Start.UnixMicro()}] = queuedRoute{r, q.seq}
	}
	for _, p := range b.Points {
		q.seq++
		p.Data = append([]byte(nil), p.Data...)
		q.points[pointKey{p.Step, p.Start.UnixMicro()}] = queuedPoint{p, q.seq}
	}
	dropped := q.trim(w.opt.MaxRouteRows)
	first := dropped > 0 && !q.loggedDrop
	if first {
		q.loggedDrop = true
	}
	n := q.len()
	w.mu.Unlock()
	w.metricQueue.WithLabelValues("route").Set(float64(n))
	if dropped > 0 {
		w.metricDrop.WithLabelValues("route").Add(float64(dropped))
	}
	if first {
		w.log.Warn("store_route_rows_dropped", zap.Int("queued", w.opt.MaxRouteRows), zap.Int("dropped", dropped),
			zap.String("why", "the shared store has been unreachable too long; the oldest route rows are dropped (the local history keeps them)"))
	}
	w.signal()
	return nil
}

// trim drops the entries queued longest ago (the lowest seq: a row
// rewritten since, like the current hour's, counts from its rewrite) past
// limit; it returns how many.
func (q *routeQueue) trim(limit int) int {
	over := q.len() - limit
	if over <= 0 {
		return 0
	}
	type ent struct {
		seq   uint64
		route *routeRowKey
		point *pointKey
	}
	all := make([]ent, 0, q.len())
	for k, e := range q.rows {
		all = append(all, ent{seq: e.seq, route: &k})
	}
	for k, e := range q.points {
		all = append(all, ent{seq: e.seq, point: &k})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	for _, e := range all[:over] {
		if e.route != nil {
			delete(q.rows, *e.route)
		} else {
			delete(q.points, *e.point)
		}
	}
	q.dropped += uint64(over)
	return over
}

// routeBatchSize is the most rows one flush's transaction writes.
const routeBatchSize = 500

// flushRoutes writes the waiting route rows and points in batches of
// routeBatchSize (points first); an entry rewritten while its batch was
// being written stays queued (the newer row is written next).
func (w *Writer) flushRoutes(ctx context.Context) error {
	sink, ok := w.sink.(RouteSink)
	if !ok {
		return nil
	}
	for {
		w.mu.Lock()
		q := &w.routes
		if q.len() == 0 {
			w.mu.Unlock()
			return nil
		}
		b := RouteBatch{Fleet: q.fleet, Instance: q.instance}
		rseq := map[routeRowKey]uint64{}
		pseq := map[pointKey]uint64{}
		for k, e := range q.points {
			if len(pseq) >= routeBatchSize {
				break
			}
			b.Points = append(b.Points, e.p)
			pseq[k] = e.seq
		}
		for k, e := range q.rows {
			if len(rseq)+len(pseq) >= routeBatchSize {
				break
			}
			b.Routes = append(b.Routes, e.row)
			rseq[k] = e.seq
		}
		w.mu.Unlock()
		if err := sink.WriteRouteBatch(ctx, b); err != nil {
			return err
		}
		w.mu.Lock()
		for k, s := range rseq {
			if e, ok := q.rows[k]; ok && e.seq == s {
				delete(q.rows, k)
			}
		}
		for k, s := range pseq {
			if e, ok := q.points[k]; ok && e.seq == s {
				delete(q.points, k)
			}
		}
		n := q.len()
		w.mu.Unlock()
		w.metricQueue.WithLabelValues("route").Set(float64(n))
		w.metricDone.WithLabelValues("route").Add(float64(len(b.Routes) + len(b.Points)))
	}
}

// ErrBackfillBusy is returned (wrapped) by Writer.Backfill while live
// rows wait or are being written: the backfill yields and tries again.
var ErrBackfillBusy = errors.New("the shared store's writer is busy with live rows")

// ErrStoreDegraded is returned (wrapped, with the reason) by
// Writer.Backfill while the writer's last write failed: it retries its
// live rows first.
var ErrStoreDegraded = errors.New("the shared store is degraded")

// Backfill writes one batch of rows the archive held before the live copy
// began (the history backfill), between live flushes: it runs only when
// no live flush is under way and nothing waits in the queue (else
// ErrBackfillBusy), and only while the store is healthy (else an error
// with the writer's reason). read is called with the writer's flush lock
// held, so no live row is written between the read and the write; rows
// whose key waits in the live queue by then are left out (the queued row
// is the archive's newer or equal content and is written next). The batch
// is one transaction of upserts keyed like the live rows, so a batch
// written twice is stored once. It never adds to the live queue: it can
// neither fill it nor cause a live row to be dropped. It returns how many
// rows were written.
func (w *Writer) Backfill(ctx context.Context, read func() (RouteBatch, error)) (int, error) {
	sink, ok := w.sink.(RouteSink)
	if !ok {
		return 0, errors.New("backfilling route rows: the shared store link cannot store route rows")
	}
	if !w.flushMu.TryLock() {
		return 0, ErrBackfillBusy
	}
	defer w.flushMu.Unlock()
	w.mu.Lock()
	busy := len(w.writes) > 0 || len(w.heartbeats) > 0 || w.routes.len() > 0
	h := w.health
	w.mu.Unlock()
	if h.State != HealthOK {
		return 0, fmt.Errorf("%w: %s", ErrStoreDegraded, h.Reason)
	}
	if busy {
		return 0, ErrBackfillBusy
	}
	b, err := read()
	if err != nil {
		return 0, err
	}
	if b.Fleet == "" || b.Instance == "" {
		return 0, errors.New("backfilling route rows: fleet and instance are required")
	}
	w.mu.Lock()
	q := &w.routes
	routes := b.Routes[:0:0]
	for _, r := range b.Routes {
		if _, queued := q.rows[routeRowKey{r.Step, r.Route, r.Version, r.Start.UnixMicro()}]; !queued {
			routes = append(routes, r)
		}
	}
	points := b.Points[:0:0]
	for _, p := range b.Points {
		if _, queued := q.points[pointKey{p.Step, p.Start.UnixMicro()}]; !queued {
			points = append(points, p)
		}
	}
	w.mu.Unlock()
	b.Routes, b.Points = routes, points
	if len(b.Routes) == 0 && len(b.Points) == 0 {
		return 0, nil
	}
	if err := sink.WriteRouteBatch(ctx, b); err != nil {
		return 0, err
	}
	return len(b.Routes) + len(b.Points), nil
}
