package history

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"
)

// FileName is the archive's bbolt file inside data_dir. It is separate
// from the store's pulsegate.db so that a damaged history never costs the
// alert history or the audit log, and the reverse.
const FileName = "history.db"

// Tiers of the archive, finest first. The 10 s tier is the ring's own
// points; each coarser tier is computed from the tier below it.
const (
	Tier10s = iota
	Tier1m
	Tier1h
	numTiers
)

var tierNames = [numTiers]string{"10s", "1m", "1h"}
var tierSteps = [numTiers]int64{10, 60, 3600}
var tierBuckets = [numTiers][]byte{[]byte("points_10s"), []byte("points_1m"), []byte("points_1h")}

// TierName is a tier's name as the history answers carry it ("10s", "1m", "1h").
func TierName(tier int) string { return tierNames[tier] }

// TierStep is a tier's step.
func TierStep(tier int) time.Duration { return time.Duration(tierSteps[tier]) * time.Second }

// Retention is how long each tier is kept (history.retention_10s, _1m, _1h).
type Retention [numTiers]time.Duration

// DefaultRetention: 24 h of 10 s points, 14 days of 1 min, 400 days of 1 h.
var DefaultRetention = Retention{24 * time.Hour, 14 * 24 * time.Hour, 400 * 24 * time.Hour}

// How each series is aggregated from one tier to the next.
const (
	aggMax      = iota // the worst value in the period (gauges, percentiles)
	aggMean            // the mean over the period's points (rates)
	aggWeighted        // the mean weighted by requests (rps × points)
)

var seriesAgg = [numSeries]int{
	sMemory: aggMax, sCPU: aggMax, sDisk: aggMax, sDBPool: aggMax, sDBLatency: aggMax,
	sRedisLatency: aggMax, sRedisMemory: aggMax, sQueue: aggMax, sInFlight: aggMax,
	sP50: aggMax, sP95: aggMax, sP99: aggMax,
	sRPS: aggMean, sSlow: aggMean,
	sRejections: aggMean, sRejRateLimit: aggMean, sRejQueue: aggMean, sRejShed: aggMean,
	sAvg: aggWeighted, sErrorRate: aggWeighted, sApdex: aggWeighted,
}

// row is one stored point: a 10 s point of the ring, or a rollup of n of them.
type row struct {
	start  int64 // unix seconds, a multiple of the tier's step
	n      uint32
	ticks  uint32
	health uint8
	v      [numSeries]float32
	ver    string // the app version of the newest point ("" unknown)
}

// Encoding: version, health, n, ticks, series count, then the series as
// float32 bits (NaN = not measured), then optionally the app version (a
// length byte and the bytes). The count lets a newer pulsegate append
// series without breaking older rows; older ones ignore the trailing
// version.
const rowVersion = 1

func (r row) encode() []byte {
	ver := r.ver[:min(len(r.ver), maxVersionLen)]
	b := make([]byte, 11+4*numSeries, 11+4*numSeries+1+len(ver))
	b[0], b[1] = rowVersion, r.health
	binary.BigEndian.PutUint32(b[2:], r.n)
	binary.BigEndian.PutUint32(b[6:], r.ticks)
	b[10] = numSeries
	for i, x := range r.v {
		binary.BigEndian.PutUint32(b[11+4*i:], math.Float32bits(x))
	}
	if ver != "" {
		b = append(b, byte(len(ver)))
		b = append(b, ver...)
	}
	return b
}

func decodeRow(k, b []byte) (row, error) {
	if len(k) != 8 || len(b) < 11 || b[0] != rowVersion || len(b) < 11+4*int(b[10]) {
		return row{}, fmt.Errorf("malformed history row %x", k)
	}
	r := row{start: int64(binary.BigEndian.Uint64(k)), health: min(b[1], healthCritical),
		n: binary.BigEndian.Uint32(b[2:]), ticks: binary.BigEndian.Uint32(b[6:])}
	for i := range r.v {
		r.v[i] = float32(math.NaN())
		if i < int(b[10]) {
			r.v[i] = math.Float32frombits(binary.BigEndian.Uint32(b[11+4*i:]))
		}
	}
	if rest := b[11+4*int(b[10]):]; len(rest) > 0 && len(rest) >= 1+int(rest[0]) {
		r.ver = string(rest[1 : 1+int(rest[0])])
	}
	return r, nil
}

func key(start int64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(max(start, 0)))
	return k
}

// aggregate merges rows into one row starting at start: counts summed,
// health the worst, each series by its seriesAgg.
func aggregate(start int64, rows []row) row {
	out := row{start: start}
	var sum, wsum [numSeries]float64
	var cnt [numSeries]float64
	var fallback [numSeries]float64 // point-weighted sums, for periods without requests
	for i := range out.v {
		out.v[i] = float32(math.NaN())
	}
	for _, r := range rows {
		if r.ver != "" {
			out.ver = r.ver // rows are in time order: the newest version
		}
		out.n += r.n
		out.ticks += r.ticks
		out.health = max(out.health, r.health)
		n := float64(r.n)
		rps := float64(r.v[sRPS])
		for i, x := range r.v {
			if x != x {
				continue
			}
			switch seriesAgg[i] {
			case aggMax:
				out.v[i] = worst(i, out.v[i], x)
			case aggMean:
				sum[i] += float64(x) * n
				cnt[i] += n
			case aggWeighted:
				fallback[i] += float64(x) * n
				cnt[i] += n
				if rps == rps && rps > 0 {
					w := rps * n
					sum[i] += float64(x) * w
					wsum[i] += w
				}
			}
		}
	}
	for i := range out.v {
		switch {
		case seriesAgg[i] == aggMean && cnt[i] > 0:
			out.v[i] = float32(sum[i] / cnt[i])
		case seriesAgg[i] == aggWeighted && wsum[i] > 0:
			out.v[i] = float32(sum[i] / wsum[i])
		case seriesAgg[i] == aggWeighted && cnt[i] > 0:
			out.v[i] = float32(fallback[i] / cnt[i])
		}
	}
	return out
}

// Archive is the persisted, downsampled history: <data_dir>/history.db,
// one bbolt bucket per tier, keyed by the point's start. Flush writes the
// ring's new points and recomputes the touched 1 min and 1 h rollups in
// one transaction, then prunes each tier by its retention. Its methods
// are safe for concurrent use.
type Archive struct {
	db        *bbolt.DB
	path      string
	log       *zap.Logger
	retention func() Retention

	mu      sync.Mutex // serialises Flush; guards the fields below
	flushed int64      // start of the newest 10 s point written (rewritten next flush)
	failing bool       // a write failed and was logged; the next success logs recovery
	routes  *routeSource
	onFlush func(Flushed)
}

// StoredPoint is one point of the 1 min or 1 h tier as the archive stores
// it (Data: its encoding); the shared store keeps a copy of each
// instance's, which QueryStored reads back.
type StoredPoint struct {
	Tier  int // Tier1m or Tier1h
	Start time.Time
	Data  []byte
}

// Flushed is what one Flush wrote to the 1 min and 1 h tiers, each row
// whole as now stored: the route rows it added to and the points it
// recomputed. Rewriting a row with it is idempotent.
type Flushed struct {
	Routes []RouteRollup
	Points []StoredPoint
}

// OnFlush makes every later successful Flush call f with what it wrote
// (not called when nothing was); f must not block (it runs under the
// archive's flush lock): the shared store's Writer queues the rows.
func (a *Archive) OnFlush(f func(Flushed)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.onFlush = f
}

// OpenArchive opens (creating if needed) dir/history.db. A corrupt file
// is moved aside to history.db.corrupt-<unix seconds> (logged, kept for
// inspection) and an empty archive is started. retention is read at every
// flush, so a live configuration change applies; nil = DefaultRetention.
// An error means no archive: the caller runs on the in-memory ring alone.
func OpenArchive(dir string, log *zap.Logger, retention func() Retention) (*Archive, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if retention == nil {
		retention = func() Retention { return DefaultRetention }
	}
	if dir == "" {
		return nil, errors.New("opening history: data_dir is empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening history: creating data_dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	db, err := openChecked(path)
	var corrupt *corruptError
	if errors.As(err, &corrupt) {
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("%w (moving it aside failed: %v)", err, rerr)
		}
		log.Error("history_corrupt", zap.String("path", path), zap.String("moved_to", aside), zap.Error(err))
		db, err = openChecked(path)
	}
	if err != nil {
		return nil, err
	}
	a := &Archive{db: db, path: path, log: log, retention: retention}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range tierBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		for _, b := range routeBuckets {
			if b == nil {
				continue
			}
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if k, _ := tx.Bucket(tierBuckets[Tier10s]).Cursor().Last(); k != nil {
			a.flushed = int64(binary.BigEndian.Uint64(k))
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialising history %s: %w", path, err)
	}
	return a, nil
}

type corruptError struct{ err error }

func (e *corruptError) Error() string { return e.err.Error() }
func (e *corruptError) Unwrap() error { return e.err }

// openChecked opens path and runs bbolt's page check; a damaged file is a
// *corruptError (bbolt panics on some malformed files instead of failing).
func openChecked(path string) (db *bbolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			}
			db, err = nil, &corruptError{fmt.Errorf("history %s is corrupt: %v", path, r)}
		}
	}()
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	var pathErr *fs.PathError
	switch {
	case err == nil:
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("opening history %s: locked by another process: %w", path, err)
	case errors.As(err, &pathErr):
		return nil, fmt.Errorf("opening history %s: %w", path, err) // permissions, a full disk: not the file's fault
	default: // invalid, checksum, version, too small, truncated...
		return nil, &corruptError{fmt.Errorf("history %s is corrupt: %w", path, err)}
	}
	var problems []error
	_ = db.View(func(tx *bbolt.Tx) error {
		for e := range tx.Check() {
			if len(problems) < 5 {
				problems = append(problems, e)
			}
		}
		return nil
	})
	if len(problems) > 0 {
		_ = db.Close()
		return nil, &corruptError{fmt.Errorf("history %s is corrupt: %w", path, errors.Join(problems...))}
	}
	return db, nil
}

// Path is the archive file's path.
func (a *Archive) Path() string { return a.path }

// Close releases the file.
func (a *Archive) Close() error { return a.db.Close() }

// Size is the archive file's size in bytes.
func (a *Archive) Size() int64 {
	var n int64
	_ = a.db.View(func(tx *bbolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// Load puts the archive's 10 s points of the ring's span before now back
// into the ring, so the trend graphs continue across a restart.
func (a *Archive) Load(h *History, now time.Time) error {
	if h.res != 10*time.Second {
		return fmt.Errorf("loading history: the ring's step is %s, the archive's 10s", h.res)
	}
	rows, err := a.rows(Tier10s, now.Add(-time.Duration(len(h.ring))*h.res).Unix(), now.Unix()+1)
	if err != nil {
		return err
	}
	ps := make([]point, len(rows))
	for i, r := range rows {
		ps[i] = point{step: r.start / 10, ticks: uint16(min(r.ticks, math.MaxUint16)), health: r.health, v: r.v, ver: r.ver}
	}
	h.restore(ps)
	return nil
}

// Flush writes the ring's points since the last flush (the newest one
// again, as it may have gained ticks), recomputes the 1 min and 1 h
// rollups they touch and prunes every tier, in one transaction. The
// first failure is logged once (history_write_failed), and the first
// success after it (history_write_recovered); the proxy never stops.
func (a *Archive) Flush(h *History, now time.Time) error {
	if h.res != 10*time.Second {
		return fmt.Errorf("flushing history: the ring's step is %s, the archive's 10s", h.res)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ps := h.points(a.flushed / 10)
	ret := a.retention()
	newest := a.flushed
	var deltas map[string]map[string]*routeDelta
	var deltaAt time.Time
	var routes routeSource
	if a.routes != nil {
		routes = *a.routes // restored when the write fails, so the next flush counts these requests
		deltas, deltaAt = a.routes.sample(now)
	}
	var out *Flushed
	if a.onFlush != nil {
		out = &Flushed{}
	}
	err := a.db.Update(func(tx *bbolt.Tx) error {
		if out != nil {
			*out = Flushed{} // a retried transaction starts over
		}
		if len(deltas) > 0 {
			if err := writeRoutes(tx, deltas, deltaAt, out); err != nil {
				return err
			}
		}
		if err := pruneRoutes(tx, ret, now); err != nil {
			return err
		}
		b10, err := bucket(tx, Tier10s)
		if err != nil {
			return err
		}
		b10.FillPercent = 0.95 // keys are appended in order
		minutes := map[int64]bool{}
		for _, p := range ps {
			r := row{start: p.step * 10, n: 1, ticks: uint32(p.ticks), health: p.health, v: p.v, ver: p.ver}
			if err := b10.Put(key(r.start), r.encode()); err != nil {
				return err
			}
			minutes[floorDiv(r.start, 60)*60] = true
			newest = max(newest, r.start)
		}
		hours := map[int64]bool{}
		for m := range minutes {
			if err := rollup(tx, Tier1m, m, out); err != nil {
				return err
			}
			hours[floorDiv(m, 3600)*3600] = true
		}
		for hr := range hours {
			if err := rollup(tx, Tier1h, hr, out); err != nil {
				return err
			}
		}
		for t := range numTiers {
			b, err := bucket(tx, t)
			if err != nil {
				return err
			}
			if err := prune(b, now.Add(-ret[t]).Unix()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if a.routes != nil {
			*a.routes = routes
		}
		if !a.failing {
			a.failing = true
			a.log.Error("history_write_failed", zap.String("path", a.path), zap.Error(err))
		}
		return fmt.Errorf("writing history %s: %w", a.path, err)
	}
	if a.failing {
		a.failing = false
		a.log.Info("history_write_recovered", zap.String("path", a.path))
	}
	a.flushed = newest
	if out != nil && (len(out.Routes) > 0 || len(out.Points) > 0) {
		a.onFlush(*out)
	}
	return nil
}

// bucket is a tier's bucket, or an error when it is gone.
func bucket(tx *bbolt.Tx, tier int) (*bbolt.Bucket, error) {
	b := tx.Bucket(tierBuckets[tier])
	if b == nil {
		return nil, fmt.Errorf("bucket %s is missing", tierBuckets[tier])
	}
	return b, nil
}

// rollup recomputes the tier's point starting at start from the tier
// below, adding it to out when out is not nil.
func rollup(tx *bbolt.Tx, tier int, start int64, out *Flushed) error {
	src, err := bucket(tx, tier-1)
	if err != nil {
		return err
	}
	dst, err := bucket(tx, tier)
	if err != nil {
		return err
	}
	var rows []row
	c := src.Cursor()
	end := key(start + tierSteps[tier])
	for k, v := c.Seek(key(start)); k != nil && string(k) < string(end); k, v = c.Next() {
		r, err := decodeRow(k, v)
		if err != nil {
			continue // a damaged row is left out of the rollup
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil
	}
	dst.FillPercent = 0.95
	enc := aggregate(start, rows).encode()
	if out != nil {
		out.Points = append(out.Points, StoredPoint{Tier: tier, Start: time.Unix(start, 0).UTC(), Data: enc})
	}
	return dst.Put(key(start), enc)
}

// prune deletes the bucket's points that start before cutoff.
func prune(b *bbolt.Bucket, cutoff int64) error {
	c := b.Cursor()
	ck := key(cutoff)
	for k, _ := c.First(); k != nil && string(k) < string(ck); k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// rows reads a tier's points starting in [from, to), oldest first.
func (a *Archive) rows(tier int, from, to int64) ([]row, error) {
	var out []row
	err := a.db.View(func(tx *bbolt.Tx) error {
		b, err := bucket(tx, tier)
		if err != nil {
			return err
		}
		c := b.Cursor()
		end := key(to)
		for k, v := c.Seek(key(from)); k != nil && string(k) < string(end); k, v = c.Next() {
			r, err := decodeRow(k, v)
			if err != nil {
				continue
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading history %s: %w", a.path, err)
	}
	return out, nil
}

// Query answers [from, to) from a tier, merged (as aggregate merges the
// tier's rollups) into steps so that at most MaxPoints are returned.
func (a *Archive) Query(name string, tier int, from, to time.Time) (View, error) {
	return queryTier(name, tier, from, to, func(from, to int64) ([]row, error) { return a.rows(tier, from, to) })
}

// QueryStored answers req from stored points (the shared store's copy of
// an instance's archive) as the archive answers from its own tiers: the
// tier Tier picks for the span, at least the 1 min tier (10 s points are
// not copied). read returns the tier's points starting in [from, to);
// points that do not decode are left out.
func QueryStored(req Request, read func(tier int, from, to time.Time) ([]StoredPoint, error)) (View, error) {
	tier := max(Tier(req.To.Sub(req.From)), Tier1m)
	return queryTier(req.Name, tier, req.From, req.To, func(from, to int64) ([]row, error) {
		ps, err := read(tier, time.Unix(from, 0), time.Unix(to, 0))
		if err != nil {
			return nil, err
		}
		rows := make([]row, 0, len(ps))
		for _, p := range ps {
			if r, err := decodeRow(key(p.Start.Unix()), p.Data); err == nil {
				rows = append(rows, r)
			}
		}
		return rows, nil
	})
}

// queryTier answers [from, to) of tier from the rows read returns
// (oldest first, starting in [from, to) in unix seconds), merged into
// steps so that at most MaxPoints are returned.
func queryTier(name string, tier int, from, to time.Time, read func(from, to int64) ([]row, error)) (View, error) {
	step := tierSteps[tier]
	fromS := ceilDiv(from.Unix(), step) * step
	toS := ceilDiv(to.Unix(), step) * step
	per := int64(1)
	if n := (toS - fromS) / step; n > MaxPoints {
		per = (n + MaxPoints - 1) / MaxPoints
	}
	stepSec := step * per
	out := View{Range: name, Tier: tierNames[tier], StepSeconds: stepSec, ResolutionSeconds: step,
		From: fromS, To: toS, Series: make(map[string][]*float64, numSeries)}
	rows, err := read(fromS, toS)
	if err != nil {
		return out, err
	}
	var merged []row
	for i := 0; i < len(rows); {
		bucket := fromS + floorDiv(rows[i].start-fromS, stepSec)*stepSec
		j := i
		for j < len(rows) && rows[j].start < bucket+stepSec {
			j++
		}
		if per == 1 {
			merged = append(merged, rows[i])
		} else {
			merged = append(merged, aggregate(bucket, rows[i:j]))
		}
		i = j
	}
	fillView(&out, len(merged), func(j int) (int64, uint8, *string, *[numSeries]float32) {
		r := &merged[j]
		return r.start, r.health, &r.ver, &r.v
	})
	return out, nil
}

// Run flushes h every interval until ctx ends, then once more. Write
// errors are logged by Flush and never end the loop.
func (a *Archive) Run(ctx context.Context, h *History, interval time.Duration, now func() time.Time) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = a.Flush(h, now())
			return nil
		case <-t.C:
			_ = a.Flush(h, now())
		}
	}
}
