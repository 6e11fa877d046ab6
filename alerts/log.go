package alerts

import (
	"context"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
)

// logNotifier writes one zap line per transition: alert_firing and
// alert_escalated at warn (warning) or error (critical) level — the
// product's [WARNING]/[ERROR] lines — alert_deescalated at warn,
// alert_acknowledged and alert_resolved at info.
type logNotifier struct{ log *zap.Logger }

func (*logNotifier) enabled(*config.Config) bool      { return true }
func (*logNotifier) wants(*config.Config, Event) bool { return true }

func (l *logNotifier) send(_ context.Context, _ *config.Config, ev Event) error {
	a := ev.Alert
	var msg string
	lvl := zapcore.InfoLevel
	switch ev.Type {
	case EventFiring, EventEscalated:
		msg, lvl = "alert_firing", zapcore.WarnLevel
		if ev.Type == EventEscalated {
			msg = "alert_escalated"
		}
		if a.Severity == store.SeverityCritical {
			lvl = zapcore.ErrorLevel
		}
	case EventDeescalated:
		msg, lvl = "alert_deescalated", zapcore.WarnLevel
	case EventAcknowledged:
		msg = "alert_acknowledged"
	case EventResolved:
		msg = "alert_resolved"
	default:
		msg = "alert_event"
	}
	ce := l.log.Check(lvl, msg)
	if ce == nil {
		return nil
	}
	fields := []zap.Field{
		zap.String("id", a.ID),
		zap.String("key", store.EscapeText(a.Key)),
		zap.String("rule", a.Rule),
		zap.String("severity", a.Severity),
		zap.String("state", a.State),
		zap.String("metric", a.Metric),
		zap.Float64("value", a.Value),
		zap.Float64("threshold", a.Threshold),
		zap.String("message", store.EscapeText(a.Message)),
		zap.String("recommendation", a.Recommendation),
	}
	if a.RunbookURL != "" {
		fields = append(fields, zap.String("runbook_url", a.RunbookURL))
	}
	if ev.PreviousSeverity != "" {
		fields = append(fields, zap.String("previous_severity", ev.PreviousSeverity))
	}
	switch ev.Type {
	case EventAcknowledged:
		fields = append(fields, zap.String("acknowledged_by", store.EscapeText(a.AcknowledgedBy)),
			zap.String("note", store.EscapeText(a.AckNote)))
	case EventResolved:
		fields = append(fields, zap.Time("first_seen", a.FirstSeen))
		if a.ResolvedAt != nil {
			fields = append(fields, zap.Duration("duration", a.ResolvedAt.Sub(a.FirstSeen)))
		}
	}
	ce.Write(fields...)
	return nil
}
