package history

import (
	"time"
)

// RouteSeries names the route view's series, in JSON order.
var RouteSeries = []string{"p50_response_time", "p95_response_time", "p99_response_time", "throughput_rps", "error_rate", "requests"}

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
}

// RouteView answers route's history for req: rows from RouteRollups,
// merged into steps of the tier's step (or a multiple, at most MaxPoints).
// It also returns the rows, for the release comparison.
func (r Reader) RouteView(route string, req Request) (RouteView, []RouteRollup, error) {
	tier := Tier1m
	if r.Archive != nil {
		tier = r.Archive.routeTier(req.From, r.now())
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
		Timestamps: []int64{}, Series: make(map[string][]*float64, len(RouteSeries)), Versions: []*string{}, Releases: []Release{}}
	var rows []RouteRollup
	var err error
	if r.Archive != nil {
		rows, err = r.Archive.routeRows(tier, route, time.Unix(fromS, 0), time.Unix(toS, 0))
		if err != nil {
			return v, nil, err
		}
	}
	cols := make([][]*float64, len(RouteSeries))
	for i := 0; i < len(rows); {
		bucket := fromS + floorDiv(rows[i].Start.Unix()-fromS, stepSec)*stepSec
		j := i
		perVersion := map[string]uint64{}
		for j < len(rows) && rows[j].Start.Unix() < bucket+stepSec {
			perVersion[rows[j].Version] += rows[j].Requests
			j++
		}
		m := MergeRollups(rows[i:j])
		i = j
		if m.Requests == 0 {
			continue
		}
		v.Timestamps = append(v.Timestamps, bucket)
		var p50, p95, p99 *float64
		if m.Timed() > 0 {
			p50, p95, p99 = ptr(round6(m.Quantile(0.50))), ptr(round6(m.Quantile(0.95))), ptr(round6(m.Quantile(0.99)))
		}
		vals := []*float64{p50, p95, p99, ptr(round6(float64(m.Requests) / float64(stepSec))),
			ptr(round6(float64(m.Errors) / float64(m.Requests))), ptr(float64(m.Requests))}
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
	for k, name := range RouteSeries {
		if cols[k] == nil {
			cols[k] = []*float64{}
		}
		v.Series[name] = cols[k]
	}
	v.Releases, _ = ReleasesOf(rows)
	return v, rows, nil
}

func ptr[T any](x T) *T { return &x }
