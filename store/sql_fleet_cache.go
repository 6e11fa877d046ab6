package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pulsegate/pulsegate/latency"
)

// The fleet view reads every instance's latest heartbeat and the last
// minute of heartbeats on every dashboard refresh of every sidecar: with
// 200 instances at a 10 s interval that is 1 400 documents of ~2 kB each,
// 3 MB moved and decoded per answer, almost all of them the same as the
// answer before. A heartbeat row never changes once written (a replay
// rewrites the same heartbeat; compaction writes merged rows under new
// keys), so the SQL store keeps the recent rows it decoded and a query
// fetches documents only for the rows it has not seen: the keys of every
// row in range come back each time (the database stays the one truth for
// which rows exist), the documents only past a watermark a little behind
// the newest row cached, and any older row still missing is fetched by key
// in a second query.

const (
	// rowCacheSpan is how far back from the newest time asked for rows
	// are kept (the fleet view reads the last minute; the span leaves room
	// for slower refreshes and stale instances' last rows).
	rowCacheSpan = 10 * time.Minute
	// rowCacheMax bounds the cached rows (~2 kB decoded each): 200
	// instances at a 1 s interval for 10 minutes would be 120 000.
	rowCacheMax = 50000
	// rowCacheLag: documents are fetched for rows newer than the newest
	// cached row minus this lag, since rows are committed up to a flush
	// interval (1 s) after their heartbeat's time.
	rowCacheLag = 2 * time.Second
)

// rowKey names one row's content: its primary key, and for
// pulsegate_heartbeats its span and counts, which change when compaction
// folds more rows into a merged row (a row of pulsegate_instances has span
// -1: it is always one heartbeat, replaced under a new time).
type rowKey struct {
	fleet, instance        string
	ts                     int64 // UnixMicro of the heartbeat's time
	span, requests, errors int64
}

// cachedRow is one decoded row: the heartbeat, and its latency buckets as
// a list sorted by bucket (merging 1 200 of them into a dense array costs
// a tenth of merging their maps).
type cachedRow struct {
	hb      *Heartbeat
	buckets []bucketCount
	p99     float64 // hb's latency p99, computed once (an instance row's status needs it on every read)
}

type bucketCount struct {
	bucket int
	count  uint64
}

func newCachedRow(hb *Heartbeat) *cachedRow {
	r := &cachedRow{hb: hb, buckets: make([]bucketCount, 0, len(hb.Rollup.Latency))}
	for b, n := range hb.Rollup.Latency {
		if n > 0 && b >= 0 && b < latency.Buckets {
			r.buckets = append(r.buckets, bucketCount{b, n})
		}
	}
	sort.Slice(r.buckets, func(i, j int) bool { return r.buckets[i].bucket < r.buckets[j].bucket })
	r.p99 = hb.Rollup.Latency.Quantile(0.99)
	return r
}

// status is statusOf(*r.hb, now) without recomputing the p99.
func (r *cachedRow) status(now time.Time) InstanceStatus {
	h := *r.hb
	h.Rollup.Latency = nil
	st := statusOf(h, now)
	st.Heartbeat, st.P99ResponseTime = *r.hb, r.p99
	return st
}

// denseMerge accumulates latency buckets of many rows.
type denseMerge []uint64

func newDenseMerge() denseMerge { return make(denseMerge, latency.Buckets) }

func (d denseMerge) add(r *cachedRow) {
	for _, b := range r.buckets {
		d[b.bucket] += b.count
	}
}

// hist is the merged buckets as a sparse Hist.
func (d denseMerge) hist() Hist {
	h := Hist{}
	for b, n := range d {
		if n > 0 {
			h[b] = n
		}
	}
	return h
}

// rowCache holds decoded rows by key. Heartbeats handed out share their
// maps with the cache: callers read them only.
type rowCache struct {
	mu     sync.Mutex
	rows   map[rowKey]*cachedRow
	newest map[string]int64 // per fleet: the newest ts cached
	high   int64            // the newest time any query asked for (UnixMicro)
}

func newRowCache() *rowCache {
	return &rowCache{rows: map[rowKey]*cachedRow{}, newest: map[string]int64{}}
}

// advance moves the high-water mark to to and evicts rows older than the span.
func (c *rowCache) advance(to int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if to <= c.high {
		return
	}
	c.high = to
	cut := to - rowCacheSpan.Microseconds()
	for k := range c.rows {
		if k.ts < cut {
			delete(c.rows, k)
		}
	}
	for f, ts := range c.newest {
		if ts < cut {
			delete(c.newest, f)
		}
	}
}

// docAfter: rows of fleet stamped after it are read with their document.
func (c *rowCache) docAfter(fleet string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.newest[fleet]
	if !ok {
		return -1 << 62 // nothing cached: every document
	}
	return n - rowCacheLag.Microseconds()
}

func (c *rowCache) get(k rowKey) *cachedRow {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rows[k]
}

func (c *rowCache) put(k rowKey, r *cachedRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k.ts < c.high-rowCacheSpan.Microseconds() || len(c.rows) >= rowCacheMax {
		return
	}
	c.rows[k] = r
	if k.ts > c.newest[k.fleet] {
		c.newest[k.fleet] = k.ts
	}
}

func (s *SQL) rowCache() *rowCache {
	s.rowsOnce.Do(func() { s.rows = newRowCache() })
	return s.rows
}

func decodeHeartbeat(doc, table string) (*cachedRow, error) {
	var hb Heartbeat
	if err := json.Unmarshal([]byte(doc), &hb); err != nil {
		return nil, fmt.Errorf("decoding heartbeat from %s: %w", table, err)
	}
	return newCachedRow(&hb), nil
}

// latestHeartbeats returns every instance's latest heartbeat of fleet
// (pulsegate_instances), sorted by instance.
func (s *SQL) latestHeartbeats(ctx context.Context, fleet string, now time.Time) ([]*cachedRow, error) {
	c := s.rowCache()
	c.advance(now.UnixMicro())
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT instance, last_seen_us, CASE WHEN last_seen_us > ? THEN doc END
 FROM pulsegate_instances WHERE fleet = ? ORDER BY instance`), c.docAfter(fleet), fleet)
	if err != nil {
		return nil, s.classify("reading", tableInstances, err)
	}
	var out []*cachedRow
	missing := map[string]int{} // instance → index in out
	for rows.Next() {
		var inst string
		var ts int64
		var doc sql.NullString
		if err := rows.Scan(&inst, &ts, &doc); err != nil {
			rows.Close()
			return nil, s.classify("reading", tableInstances, err)
		}
		k := rowKey{fleet: fleet, instance: inst, ts: ts, span: -1}
		hb := c.get(k)
		if hb == nil && doc.Valid {
			if hb, err = decodeHeartbeat(doc.String, tableInstances); err != nil {
				rows.Close()
				return nil, err
			}
			c.put(k, hb)
		}
		if hb == nil {
			missing[inst] = len(out)
		}
		out = append(out, hb)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", tableInstances, err)
	}
	if len(missing) == 0 {
		return out, nil
	}
	// Rows older than the watermark not cached (a stale instance's, or a
	// replayed heartbeat's): by instance.
	args := []any{fleet}
	for inst := range missing {
		args = append(args, inst)
	}
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(missing)), ", ")
	rows, err = s.db.QueryContext(ctx, s.rebind(`SELECT instance, last_seen_us, doc FROM pulsegate_instances WHERE fleet = ? AND instance IN (`+ph+`)`), args...)
	if err != nil {
		return nil, s.classify("reading", tableInstances, err)
	}
	defer rows.Close()
	for rows.Next() {
		var inst, doc string
		var ts int64
		if err := rows.Scan(&inst, &ts, &doc); err != nil {
			return nil, s.classify("reading", tableInstances, err)
		}
		hb, err := decodeHeartbeat(doc, tableInstances)
		if err != nil {
			return nil, err
		}
		c.put(rowKey{fleet: fleet, instance: inst, ts: ts, span: -1}, hb)
		out[missing[inst]] = hb
		delete(missing, inst)
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", tableInstances, err)
	}
	// An instance pruned between the two queries is left out.
	kept := out[:0]
	for _, hb := range out {
		if hb != nil {
			kept = append(kept, hb)
		}
	}
	return kept, nil
}

// rangeHeartbeats calls fn for each heartbeat of fleet stamped in (from, to].
func (s *SQL) rangeHeartbeats(ctx context.Context, fleet string, from, to time.Time, fn func(*cachedRow)) error {
	c := s.rowCache()
	c.advance(to.UnixMicro())
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT ts_us, instance, span_us, requests, errors, CASE WHEN ts_us > ? THEN doc END
 FROM pulsegate_heartbeats WHERE fleet = ? AND ts_us > ? AND ts_us <= ?`), c.docAfter(fleet), fleet, from.UnixMicro(), to.UnixMicro())
	if err != nil {
		return s.classify("reading", tableHeartbeats, err)
	}
	var missing map[rowKey]bool
	var lo, hi int64
	for rows.Next() {
		k := rowKey{fleet: fleet}
		var doc sql.NullString
		if err := rows.Scan(&k.ts, &k.instance, &k.span, &k.requests, &k.errors, &doc); err != nil {
			rows.Close()
			return s.classify("reading", tableHeartbeats, err)
		}
		ts := k.ts
		hb := c.get(k)
		if hb == nil && doc.Valid {
			if hb, err = decodeHeartbeat(doc.String, tableHeartbeats); err != nil {
				rows.Close()
				return err
			}
			c.put(k, hb)
		}
		if hb == nil {
			if missing == nil {
				missing, lo, hi = map[rowKey]bool{}, ts, ts
			}
			missing[k] = true
			lo, hi = min(lo, ts), max(hi, ts)
			continue
		}
		fn(hb)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.classify("reading", tableHeartbeats, err)
	}
	if len(missing) == 0 {
		return nil
	}
	// Older rows not cached (a late or replayed batch, or a window longer
	// than the cache's span): their documents, by time range.
	rows, err = s.db.QueryContext(ctx, s.rebind(`SELECT ts_us, instance, span_us, requests, errors, doc FROM pulsegate_heartbeats
 WHERE fleet = ? AND ts_us >= ? AND ts_us <= ?`), fleet, lo, hi)
	if err != nil {
		return s.classify("reading", tableHeartbeats, err)
	}
	defer rows.Close()
	for rows.Next() {
		k := rowKey{fleet: fleet}
		var doc string
		if err := rows.Scan(&k.ts, &k.instance, &k.span, &k.requests, &k.errors, &doc); err != nil {
			return s.classify("reading", tableHeartbeats, err)
		}
		if !missing[k] {
			continue
		}
		hb, err := decodeHeartbeat(doc, tableHeartbeats)
		if err != nil {
			return err
		}
		c.put(k, hb)
		delete(missing, k)
		fn(hb)
	}
	return s.classify("reading", tableHeartbeats, rows.Err())
}
