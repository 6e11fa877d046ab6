package alerts

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"strings"
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
)

// emailNotifier mails firing and escalated alerts at or above
// alerts.email.min_severity, and their resolution, over SMTP: STARTTLS when
// the server offers it, PLAIN auth when a username is set (net/smtp refuses
// PLAIN over an unencrypted connection except to localhost).
type emailNotifier struct{ m *Manager }

func (*emailNotifier) enabled(cfg *config.Config) bool { return cfg.Alerts.Email.SMTPAddr != "" }

func (*emailNotifier) wants(cfg *config.Config, ev Event) bool {
	minSev := cfg.Alerts.Email.MinSeverity
	if minSev == "" {
		minSev = store.SeverityCritical
	}
	switch ev.Type {
	case EventFiring, EventEscalated:
		return severityRank(ev.Alert.Severity) >= severityRank(minSev)
	case EventResolved:
		return severityRank(ev.Alert.PeakSeverity) >= severityRank(minSev)
	}
	return false
}

func (e *emailNotifier) send(ctx context.Context, cfg *config.Config, ev Event) error {
	ec := cfg.Alerts.Email
	host, _, err := net.SplitHostPort(ec.SMTPAddr)
	if err != nil {
		return fmt.Errorf("sending email: alerts.email.smtp_addr: %w", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ec.SMTPAddr)
	if err != nil {
		return fmt.Errorf("sending email: connecting to %s: %w", ec.SMTPAddr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("sending email via %s: greeting: %w", ec.SMTPAddr, err)
	}
	defer c.Close()
	step := func(what string, err error) error {
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return fmt.Errorf("sending email via %s: %s: %w", ec.SMTPAddr, what, err)
	}
	if err := step("EHLO", c.Hello(helloName(e.m.host))); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if e.m.tlsConfig != nil {
			tc = e.m.tlsConfig.Clone()
			tc.ServerName = host
		}
		if err := step("STARTTLS", c.StartTLS(tc)); err != nil {
			return err
		}
	}
	if ec.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return step("AUTH", errors.New("server does not offer AUTH but alerts.email.username is set"))
		}
		// The password goes only into the AUTH exchange; errors from it carry the server's reply, never the password.
		if err := step("AUTH PLAIN", c.Auth(smtp.PlainAuth("", ec.Username, ec.Password.Reveal(), host))); err != nil {
			return err
		}
	}
	if err := step("MAIL FROM", c.Mail(ec.From)); err != nil {
		return err
	}
	for _, to := range ec.To {
		if err := step("RCPT TO", c.Rcpt(to)); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err := step("DATA", err); err != nil {
		return err
	}
	if _, err := w.Write(e.message(cfg, ev)); err != nil {
		return step("DATA", err)
	}
	if err := step("DATA", w.Close()); err != nil {
		return err
	}
	return step("QUIT", c.Quit())
}

func helloName(host string) string {
	if host == "" || strings.ContainsAny(host, " \r\n") {
		return "localhost"
	}
	return host
}

// message renders the mail: a subject with the severity and the alert's
// message, and a plain-text body with the message, the recommendation and
// the alert's figures.
func (e *emailNotifier) message(cfg *config.Config, ev Event) []byte {
	a := ev.Alert
	what := "FIRING"
	switch ev.Type {
	case EventEscalated:
		what = "ESCALATED"
	case EventResolved:
		what = "RESOLVED"
	}
	subject := fmt.Sprintf("[pulsegate %s] %s %s: %s", e.m.host, strings.ToUpper(a.Severity), what, a.Message)
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, headerSafe(v)) }
	hdr("From", cfg.Alerts.Email.From)
	hdr("To", strings.Join(cfg.Alerts.Email.To, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", headerSafe(subject)))
	hdr("Date", ev.Time.Format(time.RFC1123Z))
	hdr("Message-ID", fmt.Sprintf("<%s.%d@pulsegate>", a.ID, ev.Time.UnixNano()))
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	line := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(s, "\r", ""), "\n", "\r\n"))
		b.WriteString("\r\n")
	}
	line("%s", a.Message)
	line("")
	if ev.Type == EventResolved {
		line("This alert has resolved.")
		line("")
	}
	line("Recommendation: %s", a.Recommendation)
	if a.RunbookURL != "" {
		line("Runbook: %s", a.RunbookURL)
	}
	line("")
	line("Alert:      %s", a.ID)
	line("Rule:       %s", a.Rule)
	if a.Subject != "" {
		line("Subject:    %s", a.Subject)
	}
	line("Severity:   %s", a.Severity)
	line("State:      %s", a.State)
	line("Metric:     %s = %v (threshold %v)", a.Metric, a.Value, a.Threshold)
	line("First seen: %s", a.FirstSeen.UTC().Format(time.RFC3339))
	if a.ResolvedAt != nil {
		line("Resolved:   %s", a.ResolvedAt.UTC().Format(time.RFC3339))
	}
	line("Instance:   %s", e.m.host)
	return b.Bytes()
}

// headerSafe removes line breaks so no value can start a new header.
func headerSafe(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
