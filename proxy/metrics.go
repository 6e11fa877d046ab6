package proxy

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// methods with their own label value; anything else is "OTHER", so a
// client inventing methods cannot grow the series count.
const (
	mGet = iota
	mHead
	mPost
	mPut
	mPatch
	mDelete
	mOptions
	mOther
	numMethods
)

var methodNames = [numMethods]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}

func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return mGet
	case http.MethodHead:
		return mHead
	case http.MethodPost:
		return mPost
	case http.MethodPut:
		return mPut
	case http.MethodPatch:
		return mPatch
	case http.MethodDelete:
		return mDelete
	case http.MethodOptions:
		return mOptions
	}
	return mOther
}

// durationBuckets start at 1 ms, as the issue asks, and reach past the
// default request timeout.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// metrics are the proxy's Prometheus series; children that do not depend
// on the route are bound once here.
type metrics struct {
	duration *prometheus.HistogramVec
	requests [numClasses]prometheus.Counter
	errors   [numErrClasses]prometheus.Counter
	slow     prometheus.Counter
	overflow prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, p *Proxy) (*metrics, error) {
	s := p.stats
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pulsegate_request_duration_seconds",
			Help:    "Time from a request's arrival in pulsegate to the end of its response (queue wait included), by method, templated route and status class.",
			Buckets: durationBuckets,
		}, []string{"method", "route", "code_class"}),
		slow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulsegate_slow_requests_total",
			Help: "Requests that took at least RESPONSIVENESS_SLOW_REQUEST_THRESHOLD seconds.",
		}),
		overflow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulsegate_route_overflow_requests_total",
			Help: "Requests counted under route=\"other\" because the distinct-route cap was reached.",
		}),
	}
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pulsegate_requests_total",
		Help: "Finished requests by status class (1xx..5xx, client_closed, rejected).",
	}, []string{"code_class"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pulsegate_request_errors_total",
		Help: "Failed requests by error class: app_error (app answered 5xx), upstream_refused, upstream_reset, upstream_timeout, upstream_error, client_closed, rejected.",
	}, []string{"class"})
	for i, n := range classNames {
		m.requests[i] = reqs.WithLabelValues(n)
	}
	for i, n := range errClassNames {
		if i != errNone {
			m.errors[i] = errs.WithLabelValues(n)
		}
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pulsegate_requests_in_flight",
		Help: "Requests inside pulsegate right now (queued or forwarded to the app).",
	}, func() float64 { return float64(s.InFlight()) })
	routes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pulsegate_routes_tracked",
		Help: "Distinct templated routes with their own statistics (capped by proxy.max_routes).",
	}, func() float64 { return float64(len(*s.routes.Load())) })
	dials := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "pulsegate_upstream_dials_total",
		Help: "Connections opened to the app. Near zero per second once the keep-alive pool is warm; a rising rate is connection churn.",
	}, func() float64 { return float64(p.dials.Load()) })
	for _, c := range []prometheus.Collector{m.duration, reqs, errs, m.slow, m.overflow, inFlight, routes, dials} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observer returns the duration histogram child for (route, method, class),
// creating and caching it on first use.
func (m *metrics) observer(r *route, method, class int) prometheus.Observer {
	if o := r.obs[method][class].Load(); o != nil {
		return *o
	}
	o := m.duration.WithLabelValues(methodNames[method], r.name, classNames[class])
	r.obs[method][class].Store(&o)
	return o
}
