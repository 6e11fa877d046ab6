package report

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/releases"
)

// RouteSource is where the per-route figures come from: the history's
// per-route rollups and releases (history.Reader, contract R1).
type RouteSource interface {
	RouteRollups(route string, from, to time.Time) ([]history.RouteRollup, error)
	RouteNames(from, to time.Time) ([]string, error)
	Releases(from, to time.Time) ([]history.RouteRelease, error)
}

// MaxRoutes bounds the routes a report reads (the busiest); TopRoutes the
// rows of the slowest and most failing lists.
const (
	MaxRoutes = 20
	TopRoutes = 5
)

// Routes are the period's slowest, most failing and worsened routes.
type Routes struct {
	// Slowest by p95, most failing by error rate (at least
	// releases.DefaultOptions().MinRequests requests in the period).
	Slowest     []RouteLine `json:"slowest"`
	MostFailing []RouteLine `json:"most_failing"`
	// Worse are the routes whose last release, or this period against
	// the previous one, is worse beyond the noise (releases.Compare).
	Worse []RouteLine `json:"worse"`
	// Test is the method that decides "worse"; Why says why there are no
	// routes (e.g. no per-route history).
	Test string `json:"test"`
	Why  string `json:"why,omitempty"`
}

// RouteLine is one route over the period and the previous one.
type RouteLine struct {
	Route    string `json:"route"`
	Requests uint64 `json:"requests"`
	// P95Seconds and ErrorRate over the period, from merged buckets and counts.
	P95Seconds *float64 `json:"p95_seconds"`
	ErrorRate  *float64 `json:"error_rate"`
	// The same over the previous period.
	PreviousRequests   uint64   `json:"previous_requests"`
	PreviousP95Seconds *float64 `json:"previous_p95_seconds"`
	PreviousErrorRate  *float64 `json:"previous_error_rate"`
	// Versions are the app versions that answered the route in the period, oldest first.
	Versions []string `json:"versions"`
	// PeriodComparison is this period against the previous one (null when
	// the previous period has no requests).
	PeriodComparison *releases.Comparison `json:"period_comparison"`
	// Release is the route's last release against the one before it.
	Release *ReleaseChange `json:"release"`
}

// ReleaseChange is one route's last release against the one before.
type ReleaseChange struct {
	Before     history.Release      `json:"before"`
	After      history.Release      `json:"after"`
	Comparison *releases.Comparison `json:"comparison"`
}

func (l RouteLine) releaseRegressed() bool {
	return l.Release != nil && l.Release.Comparison != nil && l.Release.Comparison.Regressed
}

func (l RouteLine) periodRegressed() bool {
	return l.PeriodComparison != nil && l.PeriodComparison.Regressed
}

// worseWhy says in a few words why the route is in Worse ("" when it is not).
func (l RouteLine) worseWhy() string {
	switch {
	case l.releaseRegressed():
		return "since " + l.Release.After.Version + " " + what(l.Release.Comparison)
	case l.periodRegressed():
		return "vs previous period " + what(l.PeriodComparison)
	}
	return ""
}

func what(c *releases.Comparison) string {
	var parts []string
	if c.P95.Regressed {
		parts = append(parts, fmt.Sprintf("p95 %s → %s", secs(&c.P95.Before), secs(&c.P95.After)))
	}
	if c.ErrorRate.Regressed {
		parts = append(parts, fmt.Sprintf("errors %s → %s", pct(&c.ErrorRate.Before), pct(&c.ErrorRate.After)))
	}
	return strings.Join(parts, ", ")
}

func (l RouteLine) finding() Finding {
	if l.releaseRegressed() {
		c := l.Release.Comparison
		return Finding{Kind: FindingReleaseRegression, Subject: l.Route, Release: l.Release.After.Version,
			Message: fmt.Sprintf("%s got worse with release %s (after %s): %s; %d requests before, %d after", l.Route, l.Release.After.Version,
				l.Release.Before.Version, what(c), c.BeforeRequests, c.AfterRequests)}
	}
	c := l.PeriodComparison
	rel := ""
	if len(l.Versions) > 0 {
		rel = l.Versions[len(l.Versions)-1]
	}
	return Finding{Kind: FindingRouteRegression, Subject: l.Route, Release: rel,
		Message: fmt.Sprintf("%s got worse than in the previous period: %s; %d requests before, %d now", l.Route, what(c), c.BeforeRequests, c.AfterRequests)}
}

// allAgg is the app's merged rollup of a span.
type allAgg struct {
	requests, errors uint64
	p50, p95, p99    float64
}

// allRoutes merges the app's rollups (history.AllRoutes) of w.
func allRoutes(rs RouteSource, w Window) (allAgg, error) {
	m, _, err := merged(rs, history.AllRoutes, w)
	if err != nil {
		return allAgg{}, err
	}
	a := allAgg{requests: m.Requests, errors: m.Errors, p50: math.NaN(), p95: math.NaN(), p99: math.NaN()}
	if m.Timed() > 0 {
		a.p50, a.p95, a.p99 = m.Quantile(0.5), m.Quantile(0.95), m.Quantile(0.99)
	}
	return a, nil
}

// merged reads route's rollups of w a day at a time (a day of 1-minute
// rows with whole histograms is about 10 MB; a week at once would be
// seven times that) and merges them; it also returns the versions that
// answered, oldest first.
func merged(rs RouteSource, route string, w Window) (history.RouteRollup, []string, error) {
	acc := history.MergeRollups(nil)
	versions := []string{}
	for _, d := range days(w) {
		rows, err := rs.RouteRollups(route, d.From, d.To)
		if err != nil {
			return acc, versions, err
		}
		for _, row := range rows {
			if row.Requests > 0 && row.Version != "" && !slices.Contains(versions, row.Version) {
				versions = append(versions, row.Version)
			}
		}
		acc = history.MergeRollups(append(rows, acc))
	}
	return acc, versions, nil
}

func buildRoutes(rs RouteSource, r *Report, problems *[]string) Routes {
	out := Routes{Slowest: []RouteLine{}, MostFailing: []RouteLine{}, Worse: []RouteLine{}, Test: releases.TestDescription}
	if rs == nil {
		out.Why = "no per-route history is kept (set data_dir)"
		return out
	}
	fail := func(err error) Routes {
		*problems = append(*problems, "route rollups: "+err.Error())
		out.Why = "the per-route history could not be read"
		return out
	}
	names, err := rs.RouteNames(r.Period.From, r.Period.To)
	if err != nil {
		return fail(err)
	}
	var routes []string
	for _, n := range names {
		if n != history.AllRoutes && len(routes) < MaxRoutes {
			routes = append(routes, n)
		}
	}
	rels, err := rs.Releases(r.Period.From, r.Period.To)
	if err != nil {
		return fail(err)
	}
	byRoute := map[string]history.RouteRelease{}
	for _, rr := range rels {
		byRoute[rr.Route] = rr
	}
	opts := releases.DefaultOptions()
	// Bonferroni over the routes: the chance of any false "worse" in one
	// report stays at most Alpha.
	opts.Alpha /= float64(max(1, len(routes)))
	var lines []RouteLine
	for _, route := range routes {
		c, versions, err := merged(rs, route, r.Period)
		if err != nil {
			return fail(err)
		}
		p, _, err := merged(rs, route, r.Previous)
		if err != nil {
			return fail(err)
		}
		l := RouteLine{Route: route, Requests: c.Requests, PreviousRequests: p.Requests, Versions: versions}
		if c.Requests > 0 {
			l.ErrorRate = num(float64(c.Errors) / float64(c.Requests))
		}
		if c.Timed() > 0 {
			l.P95Seconds = num(c.Quantile(0.95))
		}
		if p.Requests > 0 {
			l.PreviousErrorRate = num(float64(p.Errors) / float64(p.Requests))
		}
		if p.Timed() > 0 {
			l.PreviousP95Seconds = num(p.Quantile(0.95))
		}
		if p.Requests > 0 && c.Requests > 0 {
			cmp, err := releases.Compare(
				releases.Sample{Release: "previous period", Buckets: p.Buckets, Requests: p.Requests, Errors: p.Errors},
				releases.Sample{Release: "this period", Buckets: c.Buckets, Requests: c.Requests, Errors: c.Errors}, opts)
			if err == nil {
				l.PeriodComparison = &cmp
			}
		}
		if rr, ok := byRoute[route]; ok {
			l.Release = &ReleaseChange{Before: rr.Before, After: rr.After, Comparison: rr.Comparison}
		}
		lines = append(lines, l)
	}
	min := releases.DefaultOptions().MinRequests
	var enough []RouteLine
	for _, l := range lines {
		if l.Requests >= min {
			enough = append(enough, l)
		}
		if l.releaseRegressed() || l.periodRegressed() {
			out.Worse = append(out.Worse, l)
		}
	}
	top := func(less func(a, b RouteLine) bool, keep func(RouteLine) bool) []RouteLine {
		s := append([]RouteLine(nil), enough...)
		sort.SliceStable(s, func(i, j int) bool { return less(s[i], s[j]) })
		res := []RouteLine{}
		for _, l := range s {
			if len(res) < TopRoutes && keep(l) {
				res = append(res, l)
			}
		}
		return res
	}
	val := func(p *float64) float64 {
		if p == nil {
			return -1
		}
		return *p
	}
	out.Slowest = top(func(a, b RouteLine) bool { return val(a.P95Seconds) > val(b.P95Seconds) }, func(l RouteLine) bool { return l.P95Seconds != nil })
	out.MostFailing = top(func(a, b RouteLine) bool { return val(a.ErrorRate) > val(b.ErrorRate) }, func(l RouteLine) bool { return val(l.ErrorRate) > 0 })
	if len(routes) == 0 {
		out.Why = "no per-route rollups in the period"
	}
	return out
}
