package alerts

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/events"
	"github.com/pulsegate/pulsegate/store"
)

// Channel names, as in the metrics' channel label.
const (
	ChannelLog          = "log"
	ChannelStream       = "stream"
	ChannelEmail        = "email"
	ChannelWebhook      = "webhook"
	ChannelAlertmanager = "alertmanager"
)

// QueueSize bounds each channel's queue; a full queue drops new events
// (pulsegate_alert_notifications_dropped_total{channel}).
const QueueSize = 256

// notifier is one delivery channel.
type notifier interface {
	// enabled reports whether cfg configures the channel.
	enabled(cfg *config.Config) bool
	// wants filters the events the channel delivers.
	wants(cfg *config.Config, ev Event) bool
	// send delivers one event within ctx's deadline.
	send(ctx context.Context, cfg *config.Config, ev Event) error
}

// channel is a notifier with its queue.
type channel struct {
	name  string
	n     notifier
	queue chan Event
	// retry: failed sends are retried with backoff (not for the log).
	retry bool
	// resend is called every resendInterval while Run runs (Alertmanager).
	resend func(ctx context.Context, c *channel)
}

func (m *Manager) newChannels() []*channel {
	am := &alertmanagerNotifier{m: m}
	return []*channel{
		{name: ChannelLog, n: &logNotifier{log: m.log}, queue: make(chan Event, QueueSize)},
		{name: ChannelEmail, n: &emailNotifier{m: m}, queue: make(chan Event, QueueSize), retry: true},
		{name: ChannelWebhook, n: &webhookNotifier{m: m}, queue: make(chan Event, QueueSize), retry: true},
		{name: ChannelAlertmanager, n: am, queue: make(chan Event, QueueSize), retry: true, resend: am.resendActive},
	}
}

func (m *Manager) enabledChannels(cfg *config.Config) []string {
	names := []string{ChannelStream}
	for _, c := range m.channels {
		if c.n.enabled(cfg) {
			names = append(names, c.name)
		}
	}
	return names
}

// emit hands ev to the live stream and every enabled channel without
// blocking. Callers hold m.mu, which keeps events in order.
func (m *Manager) emit(cfg *config.Config, ev Event) {
	m.met.events.WithLabelValues(ev.Type).Inc()
	if m.stream != nil {
		m.stream.Publish(events.Event{Type: ev.Type, Data: ev})
	}
	for _, c := range m.channels {
		if !c.n.enabled(cfg) || !c.n.wants(cfg, ev) {
			continue
		}
		select {
		case c.queue <- ev:
		default:
			m.met.dropped.WithLabelValues(c.name).Inc()
		}
	}
}

// worker delivers c's queue until ctx is done.
func (m *Manager) worker(ctx context.Context, c *channel) {
	var tick <-chan time.Time
	if c.resend != nil {
		t := time.NewTicker(m.resendInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-c.queue:
			cfg := m.cfg.Load()
			if !c.n.enabled(cfg) {
				continue // switched off since the event was queued
			}
			m.deliver(ctx, c, ev.Alert.ID, func(ctx context.Context) error { return c.n.send(ctx, cfg, ev) })
		case <-tick:
			c.resend(ctx, c)
		}
	}
}

// deliver runs send with the configured timeout, retrying failures with
// exponential backoff and jitter, and counts the outcome once.
func (m *Manager) deliver(ctx context.Context, c *channel, alertID string, send func(ctx context.Context) error) {
	cfg := m.cfg.Load()
	attempts := 1
	if c.retry {
		attempts += cfg.Alerts.Retries
	}
	var err error
	for i := range attempts {
		if i > 0 {
			d := m.backoff(i)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				m.met.notifications.WithLabelValues(c.name, outcomeFailure).Inc()
				m.log.Warn("alert_notification_failed", zap.String("channel", c.name), zap.String("id", alertID),
					zap.Int("attempts", i), zap.String("error", "shutting down: "+errMsg(err)))
				return
			case <-t.C:
			}
		}
		actx, cancel := context.WithTimeout(ctx, cfg.Alerts.Timeout.Duration())
		err = send(actx)
		cancel()
		if err == nil {
			m.met.notifications.WithLabelValues(c.name, outcomeSuccess).Inc()
			return
		}
		if i+1 < attempts {
			m.log.Debug("alert_notification_retry", zap.String("channel", c.name), zap.String("id", alertID),
				zap.Int("attempt", i+1), zap.String("error", errMsg(err)))
		}
	}
	m.met.notifications.WithLabelValues(c.name, outcomeFailure).Inc()
	m.log.Warn("alert_notification_failed", zap.String("channel", c.name), zap.String("id", alertID),
		zap.Int("attempts", attempts), zap.String("error", errMsg(err)))
}

// backoff is base·2^(n−1), capped, with ±20 % jitter.
func (m *Manager) backoff(n int) time.Duration {
	d := m.backoffBase << (n - 1)
	if d <= 0 || d > m.backoffMax {
		d = m.backoffMax
	}
	j := time.Duration(float64(d) * 0.2 * (2*rand.Float64() - 1))
	return d + j
}

func errMsg(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// redactedEndpoint names an endpoint in errors and logs by scheme and host
// only: webhook URLs often carry a secret in their path or query.
func redactedEndpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return config.Redacted
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// postError rewrites an http.Client error so it does not quote the URL.
func postError(what, endpoint string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("posting to %s %s: %w", what, redactedEndpoint(endpoint), err)
}

// Stream receives every alert event for live listeners (the dashboard's
// SSE feed): events.Hub, the one broadcaster of alerts and ticks. Publish
// must never block.
type Stream interface {
	Publish(events.Event)
}

// PublishTo sends every alert event to s (as events.Event{Type: the
// event's type, Data: the Event}). Call it before Evaluate runs.
func (m *Manager) PublishTo(s Stream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stream = s
}

// severityRank orders severities for min_severity filters.
func severityRank(s string) int {
	switch s {
	case store.SeverityCritical:
		return 2
	case store.SeverityWarning:
		return 1
	}
	return 0
}
