package history

import (
	"sort"
	"time"

	"github.com/pulsegate/pulsegate/latency"
	"github.com/pulsegate/pulsegate/releases"
)

// Release is one app version as seen on a route in a range.
type Release struct {
	Version string `json:"version"`
	// FirstSeen is the start of its first row, LastSeen the end of its last.
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Requests is the number of answered requests it served in the range.
	Requests uint64 `json:"requests"`
}

// RouteRelease is one route's last release against the one before it.
type RouteRelease struct {
	Route  string  `json:"route"`
	Before Release `json:"before"`
	After  Release `json:"after"`
	// Comparison is releases.Compare's verdict (Compared false, with Why,
	// when a release has too few requests).
	Comparison *releases.Comparison `json:"comparison"`
}

// ReleaseOptions are the options Releases compares with: the package's
// defaults, whose Alpha is then shared by Bonferroni among the routes
// compared in one answer (each at Alpha ÷ routes), so one answer falsely
// flags any route with probability at most Alpha.
func ReleaseOptions() releases.Options { return releases.DefaultOptions() }

// ReleasesOf groups rows by version ("" unknown is left out) and orders
// the releases by the end of their last row, then by their first row: the
// last is the release serving now (a rollback makes the earlier version
// the last again).
func ReleasesOf(rows []RouteRollup) ([]Release, map[string][]RouteRollup) {
	by := map[string][]RouteRollup{}
	rel := map[string]*Release{}
	for _, r := range rows {
		if r.Version == "" {
			continue
		}
		by[r.Version] = append(by[r.Version], r)
		e := rel[r.Version]
		if e == nil {
			e = &Release{Version: r.Version, FirstSeen: r.Start, LastSeen: r.Start.Add(r.Step)}
			rel[r.Version] = e
		}
		if r.Start.Before(e.FirstSeen) {
			e.FirstSeen = r.Start
		}
		if end := r.Start.Add(r.Step); end.After(e.LastSeen) {
			e.LastSeen = end
		}
		e.Requests += r.Requests
	}
	out := make([]Release, 0, len(rel))
	for _, e := range rel {
		out = append(out, *e)
	}
	sortReleases(out)
	return out, by
}

func sortReleases(out []Release) {
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.LastSeen.Equal(b.LastSeen) {
			return a.LastSeen.Before(b.LastSeen)
		}
		if !a.FirstSeen.Equal(b.FirstSeen) {
			return a.FirstSeen.Before(b.FirstSeen)
		}
		return a.Version < b.Version
	})
}

// sampleOf merges a release's rows into a releases.Sample.
func sampleOf(version string, rows []RouteRollup) releases.Sample {
	m := MergeRollups(rows)
	return releases.Sample{Release: version, Buckets: m.Buckets, Requests: m.Requests, Errors: m.Errors}
}

// CompareReleases compares the last release in rows against the one
// before with o; nil when rows hold fewer than two known versions.
func CompareReleases(route string, rows []RouteRollup, o releases.Options) (*RouteRelease, error) {
	rels, by := ReleasesOf(rows)
	if len(rels) < 2 {
		return nil, nil
	}
	before, after := rels[len(rels)-2], rels[len(rels)-1]
	c, err := releases.Compare(sampleOf(before.Version, by[before.Version]), sampleOf(after.Version, by[after.Version]), o)
	if err != nil {
		return nil, err
	}
	return &RouteRelease{Route: route, Before: before, After: after, Comparison: &c}, nil
}

// Releases compares, for the whole app (AllRoutes, first) and every route
// with rollups in [from, to) that saw at least two versions, the last
// release against the one before (releases.Compare on the merged rows of
// each, ReleaseOptions with Alpha shared among the routes compared), in
// the order of RouteNames. Routes with one version are left out.
func (r Reader) Releases(from, to time.Time) ([]RouteRelease, error) {
	names, err := r.RouteNames(from, to)
	if err != nil || len(names) == 0 {
		return []RouteRelease{}, err
	}
	names = append([]string{AllRoutes}, names...)
	type cand struct {
		route string
		accs  map[string]*versionAcc
	}
	var cands []cand
	for _, n := range names {
		accs, err := r.routeReleases(n, from, to)
		if err != nil {
			return nil, err
		}
		if len(accs) >= 2 {
			cands = append(cands, cand{n, accs})
		}
	}
	o := ReleaseOptions()
	if len(cands) > 1 {
		o.Alpha /= float64(len(cands))
	}
	out := make([]RouteRelease, 0, len(cands))
	for _, c := range cands {
		rr, err := compareAccs(c.route, c.accs, o)
		if err != nil {
			return nil, err
		}
		if rr != nil {
			out = append(out, *rr)
		}
	}
	return out, nil
}

// versionAcc adds up one version's rows of one route as they are read.
type versionAcc struct {
	rel Release
	d   routeDelta // buckets dense, len latency.Buckets
}

// accumulate adds a row (starting at start, step long) to its version's
// accumulator in accs ("" unknown versions are left out).
func accumulate(accs map[string]*versionAcc, start int64, step int64, version string, d *routeDelta) {
	if version == "" {
		return
	}
	a := accs[version]
	from, to := time.Unix(start, 0).UTC(), time.Unix(start+step, 0).UTC()
	if a == nil {
		a = &versionAcc{rel: Release{Version: version, FirstSeen: from, LastSeen: to}, d: routeDelta{buckets: make([]uint64, latency.Buckets)}}
		accs[version] = a
	}
	if from.Before(a.rel.FirstSeen) {
		a.rel.FirstSeen = from
	}
	if to.After(a.rel.LastSeen) {
		a.rel.LastSeen = to
	}
	a.rel.Requests += d.requests
	a.d.add(d)
}

// orderReleases lists the accumulated releases as ReleasesOf orders them.
func orderReleases(accs map[string]*versionAcc) []Release {
	out := make([]Release, 0, len(accs))
	for _, a := range accs {
		out = append(out, a.rel)
	}
	sortReleases(out)
	return out
}

// compareAccs compares the last accumulated release with the one before;
// nil with fewer than two.
func compareAccs(route string, accs map[string]*versionAcc, o releases.Options) (*RouteRelease, error) {
	rels := orderReleases(accs)
	if len(rels) < 2 {
		return nil, nil
	}
	before, after := rels[len(rels)-2], rels[len(rels)-1]
	sample := func(r Release) releases.Sample {
		d := accs[r.Version].d
		return releases.Sample{Release: r.Version, Buckets: d.buckets, Requests: d.requests, Errors: d.errors}
	}
	c, err := releases.Compare(sample(before), sample(after), o)
	if err != nil {
		return nil, err
	}
	return &RouteRelease{Route: route, Before: before, After: after, Comparison: &c}, nil
}

// routeReleases reads route's rows in [from, to) into per-version accumulators.
func (r Reader) routeReleases(route string, from, to time.Time) (map[string]*versionAcc, error) {
	accs := map[string]*versionAcc{}
	tier := r.routeTier(from)
	err := r.routeStore().ScanRoute(tier, route, from, to, func(row *RouteRollup) {
		d := deltaOf(row)
		accumulate(accs, row.Start.Unix(), tierSteps[tier], row.Version, &d)
	})
	return accs, err
}
