package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
)

// AlertmanagerAlert is one element of the body of Alertmanager's
// POST /api/v2/alerts (the postableAlert of its OpenAPI spec).
type AlertmanagerAlert struct {
	// Labels identify the alert: alertname, severity, instance, service, rule (and subject).
	Labels map[string]string `json:"labels"`
	// Annotations carry summary (the message), description (the recommendation) and the figures.
	Annotations map[string]string `json:"annotations"`
	// StartsAt is the alert's first_seen (RFC 3339).
	StartsAt string `json:"startsAt"`
	// EndsAt is resolved_at for a resolved alert, else four resend intervals ahead.
	EndsAt string `json:"endsAt,omitempty"`
	// GeneratorURL points at the alert list on the admin listener.
	GeneratorURL string `json:"generatorURL,omitempty"`
}

// alertmanagerNotifier posts transitions to Alertmanager's v2 API and, as
// Alertmanager expects, re-sends every active alert each resend interval
// (1 min) with endsAt four intervals ahead, so alerts of a pulsegate that
// died resolve by themselves.
type alertmanagerNotifier struct{ m *Manager }

func (*alertmanagerNotifier) enabled(cfg *config.Config) bool {
	return cfg.Alerts.AlertmanagerURL.IsSet()
}
func (*alertmanagerNotifier) wants(*config.Config, Event) bool { return true }

func (n *alertmanagerNotifier) send(ctx context.Context, cfg *config.Config, ev Event) error {
	now := n.m.now()
	var out []AlertmanagerAlert
	if ev.PreviousSeverity != "" {
		// The severity label is part of the alert's identity: end the old one.
		old := ev.Alert
		old.Severity = ev.PreviousSeverity
		out = append(out, n.convert(cfg, old, ev.Time))
	}
	a := ev.Alert
	ends := now.Add(4 * n.m.resendInterval)
	if a.State == store.StateResolved && a.ResolvedAt != nil {
		ends = *a.ResolvedAt
	}
	out = append(out, n.convert(cfg, a, ends))
	return n.post(ctx, cfg, out)
}

// resendActive re-sends every active alert in one POST.
func (n *alertmanagerNotifier) resendActive(ctx context.Context, c *channel) {
	cfg := n.m.cfg.Load()
	if !n.enabled(cfg) {
		return
	}
	active := n.m.Active()
	if len(active) == 0 {
		return
	}
	ends := n.m.now().Add(4 * n.m.resendInterval)
	out := make([]AlertmanagerAlert, 0, len(active))
	for _, a := range active {
		out = append(out, n.convert(cfg, a, ends))
	}
	n.m.deliver(ctx, c, "resend", func(ctx context.Context) error { return n.post(ctx, cfg, out) })
}

func (n *alertmanagerNotifier) post(ctx context.Context, cfg *config.Config, out []AlertmanagerAlert) error {
	body, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encoding alertmanager alerts: %w", err)
	}
	endpoint := strings.TrimRight(cfg.Alerts.AlertmanagerURL.Reveal(), "/") + "/api/v2/alerts"
	return n.m.postJSON(ctx, "alertmanager", endpoint, body)
}

func (n *alertmanagerNotifier) convert(cfg *config.Config, a Alert, ends time.Time) AlertmanagerAlert {
	labels := map[string]string{
		"alertname": AlertmanagerName(a.Rule),
		"severity":  a.Severity,
		"instance":  n.m.host,
		"service":   "pulsegate",
		"rule":      a.Rule,
	}
	if a.Subject != "" {
		labels["subject"] = a.Subject
	}
	ann := map[string]string{
		"summary":     a.Message,
		"description": a.Recommendation,
		"alert_id":    a.ID,
		"metric":      a.Metric,
		"value":       fmt.Sprint(a.Value),
		"threshold":   fmt.Sprint(a.Threshold),
	}
	if u := RunbookURL(cfg, a.Rule); u != "" {
		ann["runbook_url"] = u
	}
	if a.AcknowledgedAt != nil {
		ann["acknowledged_by"] = a.AcknowledgedBy
		ann["acknowledged_at"] = a.AcknowledgedAt.UTC().Format(time.RFC3339)
		if a.AckNote != "" {
			ann["ack_note"] = a.AckNote
		}
	}
	return AlertmanagerAlert{
		Labels:       labels,
		Annotations:  ann,
		StartsAt:     a.FirstSeen.UTC().Format(time.RFC3339Nano),
		EndsAt:       ends.UTC().Format(time.RFC3339Nano),
		GeneratorURL: n.generatorURL(cfg),
	}
}

// generatorURL points at the alert list on the admin listener.
func (n *alertmanagerNotifier) generatorURL(cfg *config.Config) string {
	host, port, err := net.SplitHostPort(cfg.Admin.Addr)
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = n.m.host
	}
	return "http://" + net.JoinHostPort(host, port) + "/admin/api/alerts/responsiveness"
}

// AlertmanagerName is the alertname label of a rule: "Pulsegate" followed
// by the rule in CamelCase, e.g. memory_usage → PulsegateMemoryUsage.
func AlertmanagerName(rule string) string {
	var b strings.Builder
	b.WriteString("Pulsegate")
	for _, part := range strings.Split(rule, "_") {
		if part == "" {
			continue
		}
		switch part {
		case "db", "cpu", "ttl":
			b.WriteString(strings.ToUpper(part))
		default:
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}
