package backpressure

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names (all prefixed pulsegate_backpressure_).
const (
	metricNamespace = "pulsegate"
	metricSubsystem = "backpressure"
)

// queueWaitBuckets cover 1 ms to the longest sensible queue timeout.
var queueWaitBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// registerMetrics registers every backpressure metric on reg. Gauges and
// counters read the Chain's own atomics at scrape time, so the request path
// touches Prometheus only for the queue-wait histogram.
func (c *Chain) registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return errors.New("registerer is nil")
	}
	opts := func(name, help string, labels prometheus.Labels) prometheus.Opts {
		return prometheus.Opts{Namespace: metricNamespace, Subsystem: metricSubsystem, Name: name, Help: help, ConstLabels: labels}
	}
	var cs []prometheus.Collector
	for i := range nReasons {
		rs := reason(i)
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts(opts("rejections_total",
				"Requests rejected by backpressure, by reason (queue_full, queue_timeout, rate, rate_client, overload:<signal>).",
				prometheus.Labels{"reason": rs.String()})),
				func() float64 { return float64(c.rejections[rs].Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts(opts("dry_run_rejections_total",
				"Requests dry-run mode would have rejected, by reason.",
				prometheus.Labels{"reason": rs.String()})),
				func() float64 { return float64(c.dryRun[rs].Load()) }),
		)
	}
	for i, m := range modes {
		idx := int32(i)
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("mode",
			"1 for the current backpressure mode (off, enforcing, shedding, dry-run), 0 for the others.",
			prometheus.Labels{"mode": m})),
			func() float64 {
				if c.mode.Load() == idx {
					return 1
				}
				return 0
			}))
	}
	for i, sig := range signals {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("pressure_level",
			"Last pressure level reported per signal: 0 ok, 1 warning, 2 critical.",
			prometheus.Labels{"signal": sig})),
			func() float64 { return float64(c.gov.current()[i]) }))
	}
	cs = append(cs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("in_flight",
			"Requests holding a concurrency slot (forwarded to the app).", nil)),
			func() float64 { return float64(c.lim.inFlight.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("queue_depth",
			"Requests waiting for a concurrency slot (the Request Queue figure).", nil)),
			func() float64 { return float64(c.lim.waiting.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("limit",
			"Effective concurrency limit (fixed, adaptive or the lower of both); 0 = none.", nil)),
			func() float64 {
				if c.cfg.Load().dryRun {
					return float64(c.dryLimit.Load())
				}
				return float64(c.lim.limit.Load())
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("shed_fraction",
			"Fraction of new normal-priority requests being shed now.", nil)),
			func() float64 {
				if sh := c.shed.Load(); sh != nil {
					return sh.normalFraction
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("drain_per_second",
			"Measured concurrency slot releases per second (EWMA), used for Retry-After.", nil)),
			c.drain.perSecond),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("queue_abandoned_total",
			"Clients that disconnected while queued (never forwarded).", nil)),
			func() float64 { return float64(c.abandoned.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("rate_limit_clients",
			"Peers remembered by the per-client rate limiter.", nil)),
			func() float64 { return float64(c.client.size()) }),
	)
	c.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metricNamespace, Subsystem: metricSubsystem, Name: "queue_wait_seconds",
		Help:    "Time requests spent waiting for a concurrency slot (observed for every request passing an active limit; 0 when admitted at once).",
		Buckets: queueWaitBuckets,
	})
	cs = append(cs, c.queueWait)
	var errs []error
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
