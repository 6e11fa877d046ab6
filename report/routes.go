package report

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/releases"
)

// RouteSource is where the per-route figures come from: the history's
// per-route rollups (history.Reader, contract R1). The release
// comparison is computed here from the same rollups, read a day at a
// time, rather than with Reader.Releases, which holds every row of the
// period in memory.
type RouteSource interface {
	RouteRollups(route string, from, to time.Time) ([]history.RouteRollup, error)
	RouteNames(from, to time.Time) ([]string, error)
}

// HourlyRoutes is r reading the per-route rollups from the 1 h tier
// whatever the span. Reader.RouteRollups picks the 1 min tier when its
// retention covers from; a report merges days anyway, and 1 min rows
// cost 60 times the reading (each row decodes a whole histogram: a week
// of one route's 1 min rows is about 70 MB to allocate and merge, its 1 h
// rows about 1.2 MB).
func HourlyRoutes(r history.Reader) RouteSource {
	r.HourlyRoutes = true
	return r
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

// routeSpan is one route's rollups of a span, merged: all versions
// together, and per version with when it answered.
type routeSpan struct {
	all       history.RouteRollup
	byVersion map[string]history.RouteRollup
	releases  []history.Release // ordered as history.ReleasesOf orders them
}

// versions are the versions that answered, ordered by when they last did.
func (s routeSpan) versions() []string {
	out := []string{}
	for _, r := range s.releases {
		out = append(out, r.Version)
	}
	return out
}

// merged reads route's rollups of w a day at a time (a day of 1-minute
// rows with whole histograms is about 10 MB; a week at once would be
// seven times that) and merges them.
func merged(rs RouteSource, route string, w Window) (routeSpan, error) {
	out := routeSpan{all: history.MergeRollups(nil), byVersion: map[string]history.RouteRollup{}}
	span := map[string]history.RouteRollup{} // per version: Start = first seen, Step reaches last seen
	for _, d := range days(w) {
		rows, err := rs.RouteRollups(route, d.From, d.To)
		if err != nil {
			return out, err
		}
		byV := map[string][]history.RouteRollup{}
		for _, row := range rows {
			byV[row.Version] = append(byV[row.Version], row)
		}
		for v, vr := range byV {
			m := history.MergeRollups(vr)
			if old, ok := out.byVersion[v]; ok {
				m = history.MergeRollups([]history.RouteRollup{old, m})
			}
			out.byVersion[v] = m
			if v != "" {
				sp := m
				sp.Buckets = nil
				span[v] = sp
			}
		}
		out.all = history.MergeRollups(append(rows, out.all))
	}
	var rows []history.RouteRollup
	for _, sp := range span {
		rows = append(rows, sp)
	}
	out.releases, _ = history.ReleasesOf(rows)
	return out, nil
}

// compareReleases compares the route's last release with the one before,
// as history.CompareReleases does, from merged rollups.
func compareReleases(s routeSpan, o releases.Options) *ReleaseChange {
	if len(s.releases) < 2 {
		return nil
	}
	before, after := s.releases[len(s.releases)-2], s.releases[len(s.releases)-1]
	sample := func(v string) releases.Sample {
		m := s.byVersion[v]
		return releases.Sample{Release: v, Buckets: m.Buckets, Requests: m.Requests, Errors: m.Errors}
	}
	c, err := releases.Compare(sample(before.Version), sample(after.Version), o)
	if err != nil {
		return nil
	}
	return &ReleaseChange{Before: before, After: after, Comparison: &c}
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
	opts := history.ReleaseOptions()
	// Bonferroni over the routes and the two comparisons of each (release,
	// period): the chance of any false "worse" in one report stays at
	// most Alpha.
	opts.Alpha /= float64(2 * max(1, len(routes)))
	var lines []RouteLine
	for _, route := range routes {
		cs, err := merged(rs, route, r.Period)
		if err != nil {
			return fail(err)
		}
		ps, err := merged(rs, route, r.Previous)
		if err != nil {
			return fail(err)
		}
		c, p := cs.all, ps.all
		l := RouteLine{Route: route, Requests: c.Requests, PreviousRequests: p.Requests, Versions: cs.versions(),
			Release: compareReleases(cs, opts)}
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
