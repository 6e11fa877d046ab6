package proxy

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Windows the API reports, in seconds of history.
var windowPeriods = []struct {
	name   string
	period time.Duration
}{{"1m", time.Minute}, {"5m", 5 * time.Minute}, {"15m", 15 * time.Minute}}

const (
	globalSlotWidth = 10 * time.Second
	globalSlots     = 15*6 + 1 // 15 min of 10 s slots, plus the one turning over
	routeSlotWidth  = time.Minute
	routeSlots      = 5 + 1
	routeWindow     = 5 * time.Minute
)

// route is one templated route's statistics. It must not be copied.
type route struct {
	name string
	win  *window
	// obs caches the duration histogram's children by method and class,
	// created on first use, so the hot path never hashes label values.
	obs [numMethods][numClasses]atomic.Pointer[prometheus.Observer]
	// cum holds the totals since start per app version (appVersion.id),
	// made on first use (routecounters.go).
	cum [maxVersions]atomic.Pointer[routeCum]
}

// Stats aggregates every finished request: rolling windows, per-route
// windows with a cap on distinct routes, and a ring of recent slow
// requests. All methods are safe for concurrent use; Record is lock-free
// except when a window slot turns over or a new route appears.
type Stats struct {
	start    time.Time
	global   *window
	inFlight atomic.Int64

	routesMu  sync.Mutex                        // serialises route creation
	routes    atomic.Pointer[map[string]*route] // copy-on-write
	maxRoutes atomic.Int64
	overflow  atomic.Uint64
	other     *route

	totalByClass [numClasses]atomic.Uint64
	totalErrors  [numErrClasses]atomic.Uint64
	total        cumulative // exact totals for Counters (heartbeats)
	versions     versions   // the app's versions (routecounters.go)

	slowMu   sync.Mutex
	slowRing []SlowRequest
	slowNext int
	slowLen  int
}

func newStats(start time.Time, maxRoutes, slowRing int) *Stats {
	s := &Stats{
		start:    start,
		global:   newWindow(globalSlotWidth, globalSlots),
		other:    &route{name: OtherRoute, win: newWindow(routeSlotWidth, routeSlots)},
		slowRing: make([]SlowRequest, slowRing),
	}
	s.maxRoutes.Store(int64(maxRoutes))
	s.versions.init(nil)
	m := map[string]*route{}
	s.routes.Store(&m)
	return s
}

// InFlight is the number of requests currently inside the proxy (queued or
// forwarded): the product's "active_threads".
func (s *Stats) InFlight() int64 { return s.inFlight.Load() }

// routeFor returns the route for a templated name, creating it under the
// cap. name may alias a scratch buffer: it is copied when stored.
func (s *Stats) routeFor(name []byte) *route {
	m := *s.routes.Load()
	if r, ok := m[string(name)]; ok {
		return r
	}
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	m = *s.routes.Load()
	if r, ok := m[string(name)]; ok {
		return r
	}
	if int64(len(m)) >= s.maxRoutes.Load() {
		s.overflow.Add(1)
		return s.other
	}
	r := &route{name: string(name), win: newWindow(routeSlotWidth, routeSlots)}
	next := make(map[string]*route, len(m)+1)
	for k, v := range m {
		next[k] = v
	}
	next[r.name] = r
	s.routes.Store(&next)
	return r
}

// SlowRequest is one entry of the recent slow requests ring.
type SlowRequest struct {
	Time                time.Time `json:"time"`
	Method              string    `json:"method"`
	Route               string    `json:"route"`
	Path                string    `json:"path"`
	Status              int       `json:"status"`
	Duration            float64   `json:"duration"`
	QueueWait           float64   `json:"queue_wait"`
	UpstreamTTFB        float64   `json:"upstream_ttfb"`
	Transfer            float64   `json:"transfer"`
	InFlightAtAdmission int64     `json:"in_flight_at_admission"`
}

func (s *Stats) addSlow(e SlowRequest) {
	if len(s.slowRing) == 0 {
		return
	}
	s.slowMu.Lock()
	s.slowRing[s.slowNext] = e
	s.slowNext = (s.slowNext + 1) % len(s.slowRing)
	if s.slowLen < len(s.slowRing) {
		s.slowLen++
	}
	s.slowMu.Unlock()
}

// RecentSlow returns the recent slow requests, newest first.
func (s *Stats) RecentSlow() []SlowRequest {
	s.slowMu.Lock()
	defer s.slowMu.Unlock()
	out := make([]SlowRequest, 0, s.slowLen)
	for i := 1; i <= s.slowLen; i++ {
		out = append(out, s.slowRing[(s.slowNext-i+len(s.slowRing))%len(s.slowRing)])
	}
	return out
}

// WindowStats is one rolling window's figures. Times are seconds.
// Latency figures cover requests forwarded to the app and answered
// (not rejected, not abandoned by the client, not streams); they are
// null when there were none.
type WindowStats struct {
	Window        string  `json:"window"`
	Seconds       float64 `json:"seconds"`
	Requests      uint64  `json:"requests"`
	ThroughputRPS float64 `json:"throughput_rps"`
	// Errors are the requests that failed for their client: the app's
	// 5xx, pulsegate's 502/504 (app unreachable, timed out, broke off) and
	// pulsegate's own 429/503 rejections. ErrorRate is their share of the
	// answered requests (client-closed ones are not answered).
	Errors    uint64  `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	// AppErrors are the failures the app caused (Errors without the
	// rejections); AppErrorRate is their share of the requests forwarded
	// to the app and answered.
	AppErrors    uint64  `json:"app_errors"`
	AppErrorRate float64 `json:"app_error_rate"`
	// Rejections are the requests backpressure answered itself (429/503);
	// RejectionRate is their share of the answered requests.
	Rejections      uint64            `json:"rejections"`
	RejectionRate   float64           `json:"rejection_rate"`
	AvgResponseTime *float64          `json:"avg_response_time"`
	P50             *float64          `json:"p50"`
	P95             *float64          `json:"p95"`
	P99             *float64          `json:"p99"`
	Apdex           *float64          `json:"apdex"`
	SlowRequests    uint64            `json:"slow_requests"`
	StatusClasses   map[string]uint64 `json:"status_classes"`
	TimingSplit     *TimingSplit      `json:"timing_split"`
	BytesPerSecond  float64           `json:"bytes_per_second"`
}

// TimingSplit is where the average request spent its time, in seconds.
type TimingSplit struct {
	QueueWait    float64 `json:"queue_wait"`
	UpstreamTTFB float64 `json:"upstream_ttfb"`
	Transfer     float64 `json:"transfer"`
}

// RouteStats is one route's figures over the last 5 minutes.
type RouteStats struct {
	Route         string  `json:"route"`
	Requests      uint64  `json:"requests"`
	ThroughputRPS float64 `json:"throughput_rps"`
	// ErrorRate, AppErrorRate and Rejections mean what they mean in WindowStats.
	ErrorRate       float64  `json:"error_rate"`
	AppErrorRate    float64  `json:"app_error_rate"`
	Rejections      uint64   `json:"rejections"`
	AvgResponseTime *float64 `json:"avg_response_time"`
	P95             *float64 `json:"p95"`
	P99             *float64 `json:"p99"`
}

func f64(v float64) *float64 { return &v }

func (a *agg) stats(name string) WindowStats {
	w := WindowStats{
		Window:         name,
		Seconds:        a.seconds,
		Requests:       a.count,
		ThroughputRPS:  float64(a.count) / a.seconds,
		AppErrors:      a.errors,
		Rejections:     a.classes[classRejected],
		SlowRequests:   a.slow,
		StatusClasses:  make(map[string]uint64, numClasses),
		BytesPerSecond: float64(a.bytes) / a.seconds,
	}
	w.Errors = w.AppErrors + w.Rejections
	if answered := a.count - a.classes[classClientClosed]; answered > 0 {
		w.ErrorRate = float64(w.Errors) / float64(answered)
		w.RejectionRate = float64(w.Rejections) / float64(answered)
	}
	if forwarded := a.count - a.classes[classClientClosed] - a.classes[classRejected]; forwarded > 0 {
		w.AppErrorRate = float64(a.errors) / float64(forwarded)
	}
	for i, n := range classNames {
		w.StatusClasses[n] = a.classes[i]
	}
	if a.timed > 0 {
		t := float64(a.timed)
		w.AvgResponseTime = f64(float64(a.sumUS) / 1e6 / t)
		w.P50 = f64(a.h.quantile(0.50))
		w.P95 = f64(a.h.quantile(0.95))
		w.P99 = f64(a.h.quantile(0.99))
		w.TimingSplit = &TimingSplit{
			QueueWait:    float64(a.queueUS) / 1e6 / t,
			UpstreamTTFB: float64(a.ttfbUS) / 1e6 / t,
			Transfer:     float64(a.xferUS) / 1e6 / t,
		}
	}
	// Apdex counts every answered request: errors and rejections are frustrated.
	if answered := a.count - a.classes[classClientClosed]; answered > 0 {
		w.Apdex = f64((float64(a.satisfied) + float64(a.tolerat)/2) / float64(answered))
	}
	return w
}

// Window returns one window's figures ("1m", "5m" or "15m").
func (s *Stats) Window(now time.Time, name string) WindowStats {
	for _, p := range windowPeriods {
		if p.name == name {
			return s.global.sum(now, p.period, s.start).stats(p.name)
		}
	}
	return s.global.sum(now, time.Minute, s.start).stats("1m")
}

// Snapshot is everything the performance API shows about requests.
type Snapshot struct {
	Time          time.Time              `json:"time"`
	Uptime        float64                `json:"uptime_seconds"`
	InFlight      int64                  `json:"in_flight"`
	Windows       map[string]WindowStats `json:"windows"`
	Routes        RouteTops              `json:"routes"`
	RoutesTracked int                    `json:"routes_tracked"`
	RouteCap      int64                  `json:"route_cap"`
	RouteOverflow uint64                 `json:"route_overflow_requests"`
	SlowRequests  []SlowRequest          `json:"recent_slow_requests"`
	Totals        Totals                 `json:"totals"`
}

// RouteTops are the top routes of the last 5 minutes.
type RouteTops struct {
	ByP95       []RouteStats `json:"by_p95"`
	ByErrorRate []RouteStats `json:"by_error_rate"`
	ByVolume    []RouteStats `json:"by_volume"`
}

// Totals counts every request since start, by status class and error class.
type Totals struct {
	Requests      uint64            `json:"requests"`
	StatusClasses map[string]uint64 `json:"status_classes"`
	ErrorClasses  map[string]uint64 `json:"error_classes"`
}

// Snapshot computes the figures at now. It reads atomics only: cheap
// enough for every API call and dashboard tick.
func (s *Stats) Snapshot(now time.Time, topN int) Snapshot {
	snap := Snapshot{
		Time:     now,
		Uptime:   now.Sub(s.start).Seconds(),
		InFlight: s.inFlight.Load(),
		Windows:  make(map[string]WindowStats, len(windowPeriods)),
		RouteCap: s.maxRoutes.Load(),
		Totals: Totals{
			StatusClasses: make(map[string]uint64, numClasses),
			ErrorClasses:  make(map[string]uint64, numErrClasses),
		},
		RouteOverflow: s.overflow.Load(),
		SlowRequests:  s.RecentSlow(),
	}
	for _, p := range windowPeriods {
		snap.Windows[p.name] = s.global.sum(now, p.period, s.start).stats(p.name)
	}
	for i, n := range classNames {
		v := s.totalByClass[i].Load()
		snap.Totals.StatusClasses[n] = v
		snap.Totals.Requests += v
	}
	for i, n := range errClassNames {
		if i == errNone {
			continue
		}
		snap.Totals.ErrorClasses[n] = s.totalErrors[i].Load()
	}
	routes := *s.routes.Load()
	snap.RoutesTracked = len(routes)
	all := make([]RouteStats, 0, len(routes)+1)
	add := func(r *route) {
		a := r.win.sum(now, routeWindow, s.start)
		if a.count == 0 {
			return
		}
		w := a.stats("5m")
		all = append(all, RouteStats{Route: r.name, Requests: w.Requests, ThroughputRPS: w.ThroughputRPS,
			ErrorRate: w.ErrorRate, AppErrorRate: w.AppErrorRate, Rejections: w.Rejections,
			AvgResponseTime: w.AvgResponseTime, P95: w.P95, P99: w.P99})
	}
	for _, r := range routes {
		add(r)
	}
	add(s.other)
	snap.Routes = RouteTops{
		ByP95: top(all, topN, func(a, b RouteStats) bool { return deref(a.P95) > deref(b.P95) }),
		ByErrorRate: top(all, topN, func(a, b RouteStats) bool {
			if a.ErrorRate != b.ErrorRate {
				return a.ErrorRate > b.ErrorRate
			}
			return a.Requests > b.Requests
		}),
		ByVolume: top(all, topN, func(a, b RouteStats) bool { return a.Requests > b.Requests }),
	}
	return snap
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

func top(all []RouteStats, n int, less func(a, b RouteStats) bool) []RouteStats {
	c := append([]RouteStats(nil), all...)
	sort.SliceStable(c, func(i, j int) bool {
		if less(c[i], c[j]) {
			return true
		}
		if less(c[j], c[i]) {
			return false
		}
		return c[i].Route < c[j].Route
	})
	if len(c) > n {
		c = c[:n]
	}
	return c
}

// RateCollectors export the 1-minute error rates as gauges, read from the
// windows at scrape time (the counters behind them are
// pulsegate_requests_total and pulsegate_errors_total):
// pulsegate_error_rate_ratio (every failure a client felt, rejections
// included), pulsegate_app_error_rate_ratio (what the app caused) and
// pulsegate_rejection_rate_ratio (backpressure's own 429/503). now may be
// nil (time.Now).
func (s *Stats) RateCollectors(now func() time.Time) []prometheus.Collector {
	if now == nil {
		now = time.Now
	}
	gauge := func(name, help string, v func(WindowStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"window": "1m"}},
			func() float64 { return v(s.Window(now(), "1m")) })
	}
	return []prometheus.Collector{
		gauge("pulsegate_error_rate_ratio", "Share of answered requests that failed for their client (app 5xx, pulsegate 502/504, backpressure 429/503).",
			func(w WindowStats) float64 { return w.ErrorRate }),
		gauge("pulsegate_app_error_rate_ratio", "Share of requests forwarded to the app that failed because of the app (5xx, 502/504).",
			func(w WindowStats) float64 { return w.AppErrorRate }),
		gauge("pulsegate_rejection_rate_ratio", "Share of answered requests that backpressure rejected itself (429/503).",
			func(w WindowStats) float64 { return w.RejectionRate }),
	}
}
