package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/pulsegate/pulsegate/config"
)

// WebhookPayload is the JSON body POSTed to alerts.webhook_url, one per event.
type WebhookPayload struct {
	// Type is the event: alert.firing, alert.escalated, alert.deescalated,
	// alert.acknowledged or alert.resolved.
	Type string `json:"type"`
	// Time is when the transition happened.
	Time string `json:"time"`
	// Service is always "pulsegate"; Instance is the host name (the pod name in Kubernetes).
	Service  string `json:"service"`
	Instance string `json:"instance"`
	// PreviousSeverity is set on escalation and de-escalation.
	PreviousSeverity string `json:"previous_severity,omitempty"`
	// Alert is the alert as the admin API shows it.
	Alert Alert `json:"alert"`
}

// webhookNotifier POSTs every event as JSON; any 2xx is success.
type webhookNotifier struct{ m *Manager }

func (*webhookNotifier) enabled(cfg *config.Config) bool  { return cfg.Alerts.WebhookURL.IsSet() }
func (*webhookNotifier) wants(*config.Config, Event) bool { return true }

func (w *webhookNotifier) send(ctx context.Context, cfg *config.Config, ev Event) error {
	body, err := json.Marshal(WebhookPayload{
		Type: ev.Type, Time: ev.Time.UTC().Format(timeFormat), Service: "pulsegate", Instance: w.m.host,
		PreviousSeverity: ev.PreviousSeverity, Alert: ev.Alert,
	})
	if err != nil {
		return fmt.Errorf("encoding webhook payload: %w", err)
	}
	return w.m.postJSON(ctx, "webhook", cfg.Alerts.WebhookURL.Reveal(), body)
}

// postJSON POSTs body and treats any 2xx as success. Errors name the
// endpoint by scheme and host only.
func (m *Manager) postJSON(ctx context.Context, what, endpoint string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building %s request for %s: invalid URL", what, redactedEndpoint(endpoint))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pulsegate")
	resp, err := m.client.Do(req)
	if err != nil {
		return postError(what, endpoint, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("posting to %s %s: answered %s: %q", what, redactedEndpoint(endpoint), resp.Status, bytes.TrimSpace(snippet))
	}
	return nil
}

// timeFormat is RFC 3339 with milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"
