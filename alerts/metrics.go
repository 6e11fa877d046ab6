package alerts

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulsegate/pulsegate/store"
)

const (
	outcomeSuccess = "success"
	outcomeFailure = "failure"
)

// metrics are the package's Prometheus series; every label value comes from
// a fixed set.
type metrics struct {
	notifications *prometheus.CounterVec // channel, outcome
	dropped       *prometheus.CounterVec // channel
	active        *prometheus.GaugeVec   // severity
	events        *prometheus.CounterVec // type
	storeErrors   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulsegate_alert_notifications_total",
			Help: "Alert notifications by channel and outcome (success, failure after all retries).",
		}, []string{"channel", "outcome"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulsegate_alert_notifications_dropped_total",
			Help: "Alert events dropped because a channel's queue (or a stream subscriber's buffer) was full.",
		}, []string{"channel"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pulsegate_alerts_active",
			Help: "Active (firing or acknowledged) alerts by severity.",
		}, []string{"severity"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulsegate_alert_events_total",
			Help: "Alert transitions by type (alert.firing, alert.escalated, alert.deescalated, alert.acknowledged, alert.resolved).",
		}, []string{"type"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulsegate_alert_store_errors_total",
			Help: "Failed writes of alerts or acknowledgements to the embedded store.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.notifications, m.dropped, m.active, m.events, m.storeErrors} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	for _, ch := range []string{ChannelLog, ChannelEmail, ChannelWebhook, ChannelAlertmanager} {
		m.notifications.WithLabelValues(ch, outcomeSuccess)
		m.notifications.WithLabelValues(ch, outcomeFailure)
		m.dropped.WithLabelValues(ch)
	}
	m.dropped.WithLabelValues(ChannelStream)
	for _, t := range []string{EventFiring, EventEscalated, EventDeescalated, EventAcknowledged, EventResolved} {
		m.events.WithLabelValues(t)
	}
	m.active.WithLabelValues(store.SeverityWarning)
	m.active.WithLabelValues(store.SeverityCritical)
	return m, nil
}
