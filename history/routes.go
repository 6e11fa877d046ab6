package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"go.etcd.io/bbolt"

	"github.com/pulsegate/pulsegate/latency"
)

// Per-route rollups: at every flush the archive reads the proxy's
// cumulative per-(route, version) counters, takes the difference to the
// previous reading and adds it to the 1 min and 1 h rows of the minute
// the interval's middle falls in. Rows carry whole latency histograms (the
// latency package's geometry), so a week's p95 is the p95 of the merged
// buckets, not a worst-of of per-step percentiles.
//
// Storage: buckets routes_1m and routes_1h, one nested bucket per route
// name (AllRoutes for the whole app), keyed by the row's start (8 bytes,
// big endian) followed by the version. A flush keeps the busiest
// RouteLimit routes of its interval and folds the rest into OtherRoute.

// AllRoutes is the route name of the whole app's rollup (every request, all routes).
const AllRoutes = "*"

// OtherRoute holds the routes past the per-step limit (and the proxy's
// own overflow past proxy.max_routes, which it names the same).
const OtherRoute = "other"

// DefaultRouteLimit is how many routes a flush keeps rows for (the
// busiest of its interval); the rest are folded into OtherRoute.
const DefaultRouteLimit = 50

// maxVersionLen bounds a stored version (longer ones are cut).
const maxVersionLen = 64

var routeBuckets = [numTiers][]byte{Tier1m: []byte("routes_1m"), Tier1h: []byte("routes_1h")}

// RouteCounter is one (route, version)'s cumulative counters since the
// proxy started: what the archive samples at every flush.
type RouteCounter struct {
	Route   string
	Version string
	// Requests counts answered requests (clients that went away are not
	// counted); Errors those that failed for their client (app 5xx,
	// pulsegate's 502/504 and backpressure's 429/503: error_rate's
	// numerator); AppErrors those the app caused (app_error_rate's).
	Requests, Errors, AppErrors uint64
	// Buckets is the latency histogram of the timed requests (latency
	// geometry; may be shorter than latency.Buckets), SumUS their total time.
	Buckets []uint64
	SumUS   uint64
}

// RouteRollup is one route's requests under one app version in one step.
type RouteRollup struct {
	Route      string        // the proxy's route template, or AllRoutes
	Version    string        // app version that answered ("" unknown)
	Start      time.Time     // the step's start
	Step       time.Duration // 1m or 1h (MergeRollups: the span merged)
	Requests   uint64        // answered requests
	Errors     uint64        // failed for clients (numerator of error_rate)
	AppErrors  uint64        // the app's own failures (numerator of app_error_rate)
	Buckets    []uint64      // latency histogram, latency package geometry; trimmed after the last non-empty bucket (len ≤ latency.Buckets)
	SumSeconds float64       // total time of the timed requests
}

// Timed is the number of requests in the latency histogram.
func (r RouteRollup) Timed() uint64 {
	var n uint64
	for _, v := range r.Buckets {
		n += v
	}
	return n
}

// Quantile returns the q-quantile (0 < q ≤ 1) of the rollup's latency
// histogram in seconds (the bucket's midpoint, within ±1.6 %), ranked as
// the proxy ranks it (nearest rank); 0 when no request was timed.
func (r RouteRollup) Quantile(q float64) float64 {
	total := r.Timed()
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = max(1, min(rank, total))
	var seen uint64
	for i, v := range r.Buckets {
		seen += v
		if seen >= rank {
			return latency.Value(i)
		}
	}
	return latency.Value(len(r.Buckets) - 1)
}

// MergeRollups adds rollups into one (Buckets dense, len latency.Buckets):
// counts and buckets summed; Start is
// the earliest start and Step reaches the latest row's end; Route and
// Version are kept when every row shares them, else "".
func MergeRollups(rs []RouteRollup) RouteRollup {
	out := RouteRollup{Buckets: make([]uint64, latency.Buckets)}
	if len(rs) == 0 {
		return out
	}
	out.Route, out.Version = rs[0].Route, rs[0].Version
	var end time.Time
	for i, r := range rs {
		if r.Route != out.Route {
			out.Route = ""
		}
		if r.Version != out.Version {
			out.Version = ""
		}
		if i == 0 || r.Start.Before(out.Start) {
			out.Start = r.Start
		}
		if e := r.Start.Add(r.Step); e.After(end) {
			end = e
		}
		out.Requests += r.Requests
		out.Errors += r.Errors
		out.AppErrors += r.AppErrors
		out.SumSeconds += r.SumSeconds
		for j, v := range r.Buckets {
			if j < len(out.Buckets) {
				out.Buckets[j] += v
			}
		}
	}
	out.Step = end.Sub(out.Start)
	return out
}

// routeDelta is what one flush adds to one (route, version) row.
type routeDelta struct {
	requests, errors, appErrors, sumUS uint64
	buckets                            []uint64
}

func (d *routeDelta) add(o *routeDelta) {
	d.requests += o.requests
	d.errors += o.errors
	d.appErrors += o.appErrors
	d.sumUS += o.sumUS
	if len(o.buckets) > len(d.buckets) {
		d.buckets = append(d.buckets, make([]uint64, len(o.buckets)-len(d.buckets))...)
	}
	for i, v := range o.buckets {
		d.buckets[i] += v
	}
}

// Row encoding: version byte, then uvarints requests, errors, app errors,
// sum (µs), then the buckets in latency's run encoding (latency.AppendRuns).
const routeRowVersion = 2

func (d *routeDelta) encode() []byte {
	b := make([]byte, 0, 24+2*len(d.buckets)/3)
	b = append(b, routeRowVersion)
	b = binary.AppendUvarint(b, d.requests)
	b = binary.AppendUvarint(b, d.errors)
	b = binary.AppendUvarint(b, d.appErrors)
	b = binary.AppendUvarint(b, d.sumUS)
	return latency.AppendRuns(b, d.buckets)
}

var errBadRouteRow = errors.New("malformed route rollup row")

func decodeRouteDelta(b []byte, withBuckets bool) (routeDelta, error) {
	var d routeDelta
	err := decodeRouteDeltaInto(b, withBuckets, &d)
	return d, err
}

// decodeRouteDeltaInto decodes into d, reusing d.buckets' array when it
// is large enough (the readers decode a week of rows into one buffer).
func decodeRouteDeltaInto(b []byte, withBuckets bool, d *routeDelta) error {
	buf := d.buckets
	*d = routeDelta{buckets: buf[:0]}
	if len(b) < 1 || b[0] != routeRowVersion {
		return errBadRouteRow
	}
	b = b[1:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	var ok [4]bool
	d.requests, ok[0] = next()
	d.errors, ok[1] = next()
	d.appErrors, ok[2] = next()
	d.sumUS, ok[3] = next()
	if ok != [4]bool{true, true, true, true} {
		return errBadRouteRow
	}
	if !withBuckets {
		if _, n := binary.Uvarint(b); n <= 0 { // the runs' count
			return errBadRouteRow
		}
		return nil
	}
	bs, err := latency.ReadRuns(b, buf)
	if err != nil {
		return errBadRouteRow
	}
	d.buckets = bs
	return nil
}

func routeKey(start int64, version string) []byte {
	k := make([]byte, 8, 8+len(version))
	binary.BigEndian.PutUint64(k, uint64(max(start, 0)))
	return append(k, version...)
}

// routeSource is the archive's reader of the proxy's route counters.
type routeSource struct {
	read  func() []RouteCounter
	limit func() int
	prev  map[[2]string]RouteCounter
	at    time.Time // when prev was read
}

// SetRouteSource makes every later Flush add the per-route rollups of the
// counters read returns (cumulative since the proxy started), keeping the
// busiest limit routes per flush (≤ 0: DefaultRouteLimit). The first
// flush counts everything since the proxy started.
func (a *Archive) SetRouteSource(read func() []RouteCounter, limit int) {
	a.SetRouteSourceLive(read, func() int { return limit })
}

// SetRouteSourceLive is SetRouteSource with the limit read at every flush
// (history.max_routes is live); nil = DefaultRouteLimit.
func (a *Archive) SetRouteSourceLive(read func() []RouteCounter, limit func() int) {
	if limit == nil {
		limit = func() int { return DefaultRouteLimit }
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.routes = &routeSource{read: read, limit: limit, prev: map[[2]string]RouteCounter{}}
}

// sample reads the counters and returns the deltas since the previous
// reading, bounded to the busiest routes plus OtherRoute, with the
// AllRoutes rows, and the time the interval's middle falls at. A counter
// that went backwards (the proxy restarted its counters) counts from zero.
func (s *routeSource) sample(now time.Time) (map[string]map[string]*routeDelta, time.Time) {
	cur := s.read()
	next := make(map[[2]string]RouteCounter, len(cur))
	byRoute := map[string]map[string]*routeDelta{}
	volume := map[string]uint64{}
	all := map[string]*routeDelta{}
	for _, c := range cur {
		if len(c.Version) > maxVersionLen {
			c.Version = c.Version[:maxVersionLen]
		}
		k := [2]string{c.Route, c.Version}
		p, seen := s.prev[k]
		if old, dup := next[k]; dup { // a cut version collided: add up
			c = addCounter(old, c)
		}
		next[k] = c
		if !seen || c.Requests < p.Requests || c.SumUS < p.SumUS {
			p = RouteCounter{}
		}
		d := &routeDelta{requests: c.Requests - p.Requests, errors: c.Errors - min(p.Errors, c.Errors),
			appErrors: c.AppErrors - min(p.AppErrors, c.AppErrors), sumUS: c.SumUS - p.SumUS,
			buckets: make([]uint64, len(c.Buckets))}
		for i, v := range c.Buckets {
			if i < len(p.Buckets) && p.Buckets[i] <= v {
				v -= p.Buckets[i]
			}
			d.buckets[i] = v
		}
		if d.requests == 0 {
			continue
		}
		if byRoute[c.Route] == nil {
			byRoute[c.Route] = map[string]*routeDelta{}
		}
		if e := byRoute[c.Route][c.Version]; e != nil {
			e.add(d)
		} else {
			byRoute[c.Route][c.Version] = d
		}
		volume[c.Route] += d.requests
		if all[c.Version] == nil {
			all[c.Version] = &routeDelta{}
		}
		all[c.Version].add(d)
	}
	s.prev = next
	at := now.Add(-30 * time.Second) // the first reading: as if a minute's worth
	if !s.at.IsZero() && s.at.Before(now) {
		at = s.at.Add(now.Sub(s.at) / 2)
	}
	s.at = now
	if len(all) == 0 {
		return nil, at
	}
	names := make([]string, 0, len(byRoute))
	for n := range byRoute {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if volume[names[i]] != volume[names[j]] {
			return volume[names[i]] > volume[names[j]]
		}
		return names[i] < names[j]
	})
	out := map[string]map[string]*routeDelta{AllRoutes: all}
	limit := s.limit()
	if limit <= 0 {
		limit = DefaultRouteLimit
	}
	kept := 0
	for _, n := range names {
		if n == OtherRoute || n == AllRoutes {
			continue
		}
		if kept < limit {
			out[n] = byRoute[n]
			kept++
			continue
		}
		if out[OtherRoute] == nil {
			out[OtherRoute] = map[string]*routeDelta{}
		}
		for v, d := range byRoute[n] {
			if e := out[OtherRoute][v]; e != nil {
				e.add(d)
			} else {
				out[OtherRoute][v] = d
			}
		}
	}
	for v, d := range byRoute[OtherRoute] {
		if out[OtherRoute] == nil {
			out[OtherRoute] = map[string]*routeDelta{}
		}
		if e := out[OtherRoute][v]; e != nil {
			e.add(d)
		} else {
			out[OtherRoute][v] = d
		}
	}
	if byRoute[AllRoutes] != nil { // a route literally named "*": fold it into other
		if out[OtherRoute] == nil {
			out[OtherRoute] = map[string]*routeDelta{}
		}
		for v, d := range byRoute[AllRoutes] {
			if e := out[OtherRoute][v]; e != nil {
				e.add(d)
			} else {
				out[OtherRoute][v] = d
			}
		}
	}
	return out, at
}

func addCounter(a, b RouteCounter) RouteCounter {
	a.Requests += b.Requests
	a.Errors += b.Errors
	a.AppErrors += b.AppErrors
	a.SumUS += b.SumUS
	bk := make([]uint64, max(len(a.Buckets), len(b.Buckets)))
	copy(bk, a.Buckets)
	for i, v := range b.Buckets {
		bk[i] += v
	}
	a.Buckets = bk
	return a
}

// writeRoutes adds the deltas to the 1 min and 1 h rows holding at, in
// tx, adding each row written, whole, to out when out is not nil.
func writeRoutes(tx *bbolt.Tx, deltas map[string]map[string]*routeDelta, at time.Time, out *Flushed) error {
	for _, tier := range []int{Tier1m, Tier1h} {
		top, err := tx.CreateBucketIfNotExists(routeBuckets[tier])
		if err != nil {
			return err
		}
		start := floorDiv(at.Unix(), tierSteps[tier]) * tierSteps[tier]
		for route, vs := range deltas {
			b, err := top.CreateBucketIfNotExists([]byte(route))
			if err != nil {
				return fmt.Errorf("route bucket %q: %w", route, err)
			}
			b.FillPercent = 0.95 // rows are appended in time order
			for v, d := range vs {
				k := routeKey(start, v)
				row := *d
				if old := b.Get(k); old != nil {
					if prev, err := decodeRouteDelta(old, true); err == nil {
						prev.add(d)
						row = prev
					}
				}
				if err := b.Put(k, row.encode()); err != nil {
					return err
				}
				if out != nil {
					out.Routes = append(out.Routes, RouteRollup{Route: route, Version: v, Start: time.Unix(start, 0).UTC(),
						Step: TierStep(tier), Requests: row.requests, Errors: row.errors, AppErrors: row.appErrors,
						Buckets: slices.Clone(row.buckets), SumSeconds: float64(row.sumUS) / 1e6})
				}
			}
		}
	}
	return nil
}

// pruneRoutes deletes the route rows older than each tier's retention,
// and the route buckets left empty.
func pruneRoutes(tx *bbolt.Tx, ret Retention, now time.Time) error {
	for _, tier := range []int{Tier1m, Tier1h} {
		top := tx.Bucket(routeBuckets[tier])
		if top == nil {
			continue
		}
		cutoff := key(now.Add(-ret[tier]).Unix())
		var empty [][]byte
		err := top.ForEachBucket(func(name []byte) error {
			b := top.Bucket(name)
			c := b.Cursor()
			for k, _ := c.First(); k != nil && string(k[:min(8, len(k))]) < string(cutoff); k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
			if k, _ := c.First(); k == nil {
				empty = append(empty, append([]byte(nil), name...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, n := range empty {
			if err := top.DeleteBucket(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// RouteStore is where a Reader's route methods read per-route rollups:
// the archive (this instance's), or the shared store's rows of the fleet
// (every instance merged) or of one instance. ScanRoute's row, and its
// Buckets, are only valid during the call.
type RouteStore interface {
	// RouteTier is the tier (Tier1m or Tier1h) rows starting at from are
	// read from: 1 min while its retention reaches back to from.
	RouteTier(from, now time.Time) int
	// ScanRoute calls fn with route's rows of tier starting in [from,
	// to), oldest first, one per (start, version); damaged rows are left out.
	ScanRoute(tier int, route string, from, to time.Time, fn func(r *RouteRollup)) error
	// RouteVolumes sums each route's requests of tier in [from, to).
	RouteVolumes(tier int, from, to time.Time) (map[string]uint64, error)
}

var _ RouteStore = (*Archive)(nil)

// RouteTier picks the tier for route rows starting at from: the 1 min
// tier when its retention reaches back to from, else the 1 h tier.
func (a *Archive) RouteTier(from, now time.Time) int {
	return TierFor(from, now, a.retention())
}

// TierFor is the route tier for rows starting at from under retention
// ret: Tier1m when ret's 1 min retention reaches back to from, else Tier1h.
func TierFor(from, now time.Time, ret Retention) int {
	if !from.Before(now.Add(-ret[Tier1m])) {
		return Tier1m
	}
	return Tier1h
}

// ScanRoute is RouteStore's scan of the archive's rows.
func (a *Archive) ScanRoute(tier int, route string, from, to time.Time, fn func(r *RouteRollup)) error {
	rr := RouteRollup{Route: route, Step: TierStep(tier)}
	return a.scanRoute(tier, route, from, to, func(start int64, version string, d *routeDelta) {
		rr.Version, rr.Start = version, time.Unix(start, 0).UTC()
		rr.Requests, rr.Errors, rr.AppErrors = d.requests, d.errors, d.appErrors
		rr.Buckets, rr.SumSeconds = d.buckets, float64(d.sumUS)/1e6
		fn(&rr)
	})
}

// RouteVolumes is RouteStore's volumes of the archive's rows.
func (a *Archive) RouteVolumes(tier int, from, to time.Time) (map[string]uint64, error) {
	return a.routeVolumes(tier, from, to)
}

// deltaOf views a rollup as the accumulators' delta (buckets shared).
func deltaOf(r *RouteRollup) routeDelta {
	return routeDelta{requests: r.Requests, errors: r.Errors, appErrors: r.AppErrors,
		sumUS: uint64(r.SumSeconds*1e6 + 0.5), buckets: r.Buckets}
}

// scanRoute calls fn with each of route's rows of tier starting in
// [from, to), oldest first, decoded (buckets trimmed); damaged rows are
// left out. d is only valid during the call.
func (a *Archive) scanRoute(tier int, route string, from, to time.Time, fn func(start int64, version string, d *routeDelta)) error {
	err := a.db.View(func(tx *bbolt.Tx) error {
		top := tx.Bucket(routeBuckets[tier])
		if top == nil {
			return nil
		}
		b := top.Bucket([]byte(route))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		end := key(to.Unix())
		d := routeDelta{buckets: make([]uint64, 0, latency.Buckets)}
		for k, v := c.Seek(key(from.Unix())); k != nil && string(k[:min(8, len(k))]) < string(end); k, v = c.Next() {
			if len(k) < 8 {
				continue
			}
			if err := decodeRouteDeltaInto(v, true, &d); err != nil {
				continue // a damaged row is left out
			}
			fn(int64(binary.BigEndian.Uint64(k)), string(k[8:]), &d)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading route history %s: %w", a.path, err)
	}
	return nil
}

// routeRows reads route's rows of tier starting in [from, to), oldest first.
func routeRows(rs RouteStore, tier int, route string, from, to time.Time) ([]RouteRollup, error) {
	var out []RouteRollup
	err := rs.ScanRoute(tier, route, from, to, func(r *RouteRollup) {
		c := *r
		c.Buckets = slices.Clone(r.Buckets)
		out = append(out, c)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// routeVolumes sums each route's requests of tier in [from, to).
func (a *Archive) routeVolumes(tier int, from, to time.Time) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := a.db.View(func(tx *bbolt.Tx) error {
		top := tx.Bucket(routeBuckets[tier])
		if top == nil {
			return nil
		}
		end := key(to.Unix())
		return top.ForEachBucket(func(name []byte) error {
			c := top.Bucket(name).Cursor()
			var n uint64
			found := false
			for k, v := c.Seek(key(from.Unix())); k != nil && string(k[:min(8, len(k))]) < string(end); k, v = c.Next() {
				d, err := decodeRouteDelta(v, false)
				if err != nil {
					continue
				}
				n += d.requests
				found = true
			}
			if found {
				out[string(name)] = n
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading route history %s: %w", a.path, err)
	}
	return out, nil
}

func (r Reader) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// RouteRollups returns route's rollups (AllRoutes for the whole app) in
// [from, to), from the 1 min tier when it covers from, else the 1 h tier,
// oldest first; one row per (step, version). Without an archive (or
// Routes) it returns none.
func (r Reader) RouteRollups(route string, from, to time.Time) ([]RouteRollup, error) {
	rs := r.routeStore()
	if rs == nil {
		return nil, nil
	}
	return routeRows(rs, r.routeTier(from), route, from, to)
}

// RouteNames returns the routes with rollups in [from, to), busiest
// first (ties by name), read from the tier RouteRollups reads. AllRoutes
// is not listed (it has rows whenever any route has); OtherRoute is,
// when it has rows.
func (r Reader) RouteNames(from, to time.Time) ([]string, error) {
	rs := r.routeStore()
	if rs == nil {
		return nil, nil
	}
	vol, err := rs.RouteVolumes(r.routeTier(from), from, to)
	if err != nil {
		return nil, err
	}
	delete(vol, AllRoutes)
	names := make([]string, 0, len(vol))
	for n := range vol {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if vol[names[i]] != vol[names[j]] {
			return vol[names[i]] > vol[names[j]]
		}
		return names[i] < names[j]
	})
	return names, nil
}
