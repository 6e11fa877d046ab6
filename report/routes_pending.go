//go:build !r1

package report

// Until contract R1 lands: no route source.
type RouteSource interface{ pendingR1() }

type Routes struct {
	Slowest     []RouteLine `json:"slowest"`
	MostFailing []RouteLine `json:"most_failing"`
	Worse       []RouteLine `json:"worse"`
	Test        string      `json:"test"`
	Why         string      `json:"why,omitempty"`
}
type RouteLine struct {
	Route                                 string
	Requests                              uint64
	P95Seconds, ErrorRate                 *float64
	PreviousP95Seconds, PreviousErrorRate *float64
	Versions                              []string
}

func (RouteLine) finding() Finding { return Finding{} }
func (RouteLine) worseWhy() string { return "" }

type allAgg struct {
	requests, errors uint64
	p50, p95, p99    float64
}

func allRoutes(rs RouteSource, w Window) (allAgg, error) { return allAgg{}, nil }
func buildRoutes(rs RouteSource, r *Report, problems *[]string) Routes {
	return Routes{Slowest: []RouteLine{}, MostFailing: []RouteLine{}, Worse: []RouteLine{}, Why: "pending"}
}
