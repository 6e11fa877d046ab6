package history

import (
	"math"
	"time"

	"github.com/pulsegate/pulsegate/latency"
	"github.com/pulsegate/pulsegate/releases"
)

// routeSeries names the route view's series, in JSON order.
var routeSeries = []string{"p50_response_time", "p95_response_time", "p99_response_time", "throughput_rps", "error_rate", "requests"}

// RouteView is one route's history over a range: the route endpoint's
// JSON (GET /admin/responsiveness/api/history/route), events aside.
type RouteView struct {
	Route string `json:"route"`
	// Range is the requested range name ("" for from/to).
	Range string `json:"range"`
	// From and To bound the range (unix seconds, aligned to the tier's step).
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Tier is the stored rollup read ("1m" or "1h"); StepSeconds the
	// length of one returned step (the tier's, merged so that at most
	// MaxPoints are returned).
	Tier        string `json:"tier"`
	StepSeconds int64  `json:"step_seconds"`
	// Timestamps are each step's start (unix seconds); steps without
	// requests are left out.
	Timestamps []int64 `json:"timestamps"`
	// Series: p50/p95/p99 in seconds from the step's merged latency
	// buckets (null when no request was timed), throughput_rps (answered
	// requests per second), error_rate (failed for clients ÷ answered),
	// requests (answered).
	Series map[string][]*float64 `json:"series"`
	// Versions is the app version that served most of each step's
	// requests (null = unknown).
	Versions []*string `json:"versions"`
	// Releases are the versions seen in the range, the serving one last.
	Releases []Release `json:"releases"`
	// Comparison is the last release against the one before on this
	// route (ReleaseOptions; null with fewer than two known versions).
	Comparison *releases.Comparison `json:"comparison"`
}

// RouteView answers route's history for req: the rows RouteRollups would
// return, merged into steps of the tier's step (or a multiple, so that at
// most MaxPoints are returned), with the releases and the comparison of
// the last two. Rows are added up as they are read, never all held.
func (r Reader) RouteView(route string, req Request) (RouteView, error) {
	tier := Tier1m
	rs := r.routeStore()
	if rs != nil {
		tier = r.routeTier(req.From)
	}
	step := tierSteps[tier]
	fromS := ceilDiv(req.From.Unix(), step) * step
	toS := ceilDiv(req.To.Unix(), step) * step
	per := int64(1)
	if n := (toS - fromS) / step; n > MaxPoints {
		per = (n + MaxPoints - 1) / MaxPoints
	}
	stepSec := step * per
	v := RouteView{Route: route, Range: req.Name, From: fromS, To: toS, Tier: tierNames[tier], StepSeconds: stepSec,
		Timestamps: []int64{}, Series: make(map[string][]*float64, len(routeSeries)), Versions: []*string{}, Releases: []Release{}}
	cols := make([][]*float64, len(routeSeries))
	for k := range cols {
		cols[k] = []*float64{}
	}
	defer func() {
		for k, name := range routeSeries {
			v.Series[name] = cols[k]
		}
	}()
	if rs == nil {
		return v, nil
	}
	cur := RouteRollup{Buckets: make([]uint64, latency.Buckets)}
	curStep := int64(math.MinInt64)
	perVersion := map[string]uint64{}
	emit := func() {
		if cur.Requests == 0 {
			return
		}
		v.Timestamps = append(v.Timestamps, curStep)
		var p50, p95, p99 *float64
		if cur.Timed() > 0 {
			p50, p95, p99 = ptr(round6(cur.Quantile(0.50))), ptr(round6(cur.Quantile(0.95))), ptr(round6(cur.Quantile(0.99)))
		}
		vals := []*float64{p50, p95, p99, ptr(round6(float64(cur.Requests) / float64(stepSec))),
			ptr(round6(float64(cur.Errors) / float64(cur.Requests))), ptr(float64(cur.Requests))}
		for k := range cols {
			cols[k] = append(cols[k], vals[k])
		}
		best, bestN := "", uint64(0)
		for ver, n := range perVersion {
			if n > bestN || n == bestN && ver > best {
				best, bestN = ver, n
			}
		}
		if best == "" {
			v.Versions = append(v.Versions, nil)
		} else {
			v.Versions = append(v.Versions, ptr(best))
		}
	}
	accs := map[string]*versionAcc{}
	err := rs.ScanRoute(tier, route, time.Unix(fromS, 0), time.Unix(toS, 0), func(row *RouteRollup) {
		start, version, delta := row.Start.Unix(), row.Version, deltaOf(row)
		d := &delta
		accumulate(accs, start, step, version, d)
		if b := fromS + floorDiv(start-fromS, stepSec)*stepSec; b != curStep {
			emit()
			curStep = b
			cur.Requests, cur.Errors = 0, 0
			clear(cur.Buckets)
			clear(perVersion)
		}
		cur.Requests += d.requests
		cur.Errors += d.errors
		for i, n := range d.buckets {
			cur.Buckets[i] += n
		}
		perVersion[version] += d.requests
	})
	if err != nil {
		return v, err
	}
	emit()
	v.Releases = orderReleases(accs)
	rr, err := compareAccs(route, accs, ReleaseOptions())
	if err != nil {
		return v, err
	}
	if rr != nil {
		v.Comparison = rr.Comparison
	}
	return v, nil
}

func ptr[T any](x T) *T { return &x }
