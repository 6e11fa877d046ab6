package store

import (
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap/zapcore"
)

// Alert states and severities as stored and served.
const (
	StateFiring       = "firing"
	StateAcknowledged = "acknowledged"
	StateResolved     = "resolved"

	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// AlertRecord is one alert occurrence: the JSON shape stored in the alerts
// bucket and served by the admin API. A record is a value: callers get
// copies and never share the pointers inside.
type AlertRecord struct {
	// ID is stable for the life of the occurrence, across restarts.
	ID string `json:"id"`
	// Key is the dedup key: rule, or rule:subject (e.g. "probe_down:database_manager").
	Key string `json:"key"`
	// Rule names the rule that fired (e.g. "memory_usage").
	Rule string `json:"rule"`
	// Subject is the probe or task the alert is about, empty for figure rules.
	Subject string `json:"subject,omitempty"`
	// Severity is the current level: warning or critical.
	Severity string `json:"severity"`
	// PeakSeverity is the highest level this occurrence reached.
	PeakSeverity string `json:"peak_severity"`
	// State is firing, acknowledged or resolved.
	State string `json:"state"`
	// Metric is the figure the rule reads (e.g. "memory_usage").
	Metric string `json:"metric"`
	// Value is the latest observation of Metric (on a resolved alert, the
	// observation that resolved it).
	Value float64 `json:"value"`
	// Threshold is the threshold of the current severity.
	Threshold float64 `json:"threshold"`
	// Message is a human line with numbers, e.g. "Memory usage at 85%".
	Message string `json:"message"`
	// Recommendation is the troubleshooting advice for this rule.
	Recommendation string `json:"recommendation"`
	// RunbookURL is the rule's runbook (alerts.runbook_base_url/<rule>.md),
	// set by the alert manager; empty when no base URL is configured.
	RunbookURL string `json:"runbook_url,omitempty"`
	// FirstSeen is when the condition was first observed.
	FirstSeen time.Time `json:"first_seen"`
	// LastSeen is the latest evaluation that saw the condition.
	LastSeen time.Time `json:"last_seen"`
	// ResolvedAt is set once the condition cleared.
	ResolvedAt *time.Time `json:"resolved_at"`
	// AcknowledgedAt is when the alert was acknowledged (null if not).
	AcknowledgedAt *time.Time `json:"acknowledged_at"`
	// AcknowledgedBy is the acknowledging caller's identity (never a credential).
	AcknowledgedBy string `json:"acknowledged_by"`
	// AckNote is the note given with the acknowledgement, stored as written.
	AckNote string `json:"ack_note"`
}

// Active reports whether the alert is firing or acknowledged.
func (a AlertRecord) Active() bool { return a.State == StateFiring || a.State == StateAcknowledged }

// Clone returns a deep copy (the time pointers are not shared).
func (a AlertRecord) Clone() AlertRecord {
	if a.ResolvedAt != nil {
		t := *a.ResolvedAt
		a.ResolvedAt = &t
	}
	if a.AcknowledgedAt != nil {
		t := *a.AcknowledgedAt
		a.AcknowledgedAt = &t
	}
	return a
}

// Acknowledgement is who acknowledged which alert, when, and why. It is
// kept in its own bucket (by alert id) beside the alert record.
type Acknowledgement struct {
	// AlertID is the acknowledged alert.
	AlertID string `json:"alert_id"`
	// Time is when it was acknowledged.
	Time time.Time `json:"time"`
	// By is the caller's identity, e.g. "token:3f2a9c".
	By string `json:"by"`
	// Note is the caller's note.
	Note string `json:"note"`
}

// Change is one configuration key's old and new value (secrets redacted by
// the caller).
type Change struct {
	// Key is the configuration key, e.g. "responsiveness.slow_request_threshold".
	Key string `json:"key"`
	// Old and New are the values before and after, rendered as text.
	Old string `json:"old"`
	New string `json:"new"`
}

// Audit actions written by pulsegate. Callers may use others of the same
// "noun.verb" shape.
const (
	ActionConfigUpdate     = "config.update"
	ActionConfigRejected   = "config.rejected"
	ActionAlertAcknowledge = "alert.acknowledge"
)

// Audit outcomes.
const (
	OutcomeOK       = "ok"
	OutcomeRejected = "rejected"
	OutcomeFailed   = "failed"
)

// AuditEntry is one line of the append-only audit log.
type AuditEntry struct {
	// Time is when it happened; zero means "now" on append.
	Time time.Time `json:"time"`
	// Actor identifies the caller without revealing a credential, e.g.
	// "token:3f2a9c" (a hash prefix) or "peer:127.0.0.1".
	Actor string `json:"actor"`
	// Source is where the action came from, e.g. "admin_api" or a peer address.
	Source string `json:"source"`
	// Action is e.g. "config.update", "config.rejected", "alert.acknowledge".
	Action string `json:"action"`
	// Outcome is "ok", "rejected" or "failed".
	Outcome string `json:"outcome"`
	// Target names what was acted on (alert ids, a config version), optional.
	Target string `json:"target,omitempty"`
	// Changes lists old → new values, secrets already redacted.
	Changes []Change `json:"changes,omitempty"`
	// Error is why the action was refused or failed.
	Error string `json:"error,omitempty"`
	// Instance is the sidecar that took the action (set by the shared
	// store when empty; empty with the embedded store).
	Instance string `json:"instance,omitempty"`
}

// MaxTextLen bounds every free-text field of an audit entry or an
// acknowledgement note (in bytes); longer text is cut with a "…" marker.
const MaxTextLen = 4096

// EscapeText makes user-supplied text safe for a one-line log: CR, LF, tab
// and other control characters become visible escapes (\r, \n, \t, \x1b),
// so a note cannot forge extra log lines.
func EscapeText(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f || s[i] == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029':
			const hex = "0123456789abcdef"
			if r < 0x100 {
				b.WriteString(`\x`)
				b.WriteByte(hex[r>>4])
				b.WriteByte(hex[r&0xf])
			} else {
				b.WriteString(`\u`)
				for shift := 12; shift >= 0; shift -= 4 {
					b.WriteByte(hex[(r>>shift)&0xf])
				}
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut
// with "…".
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// bounded returns e with every text field cut to MaxTextLen.
func (e AuditEntry) bounded() AuditEntry {
	e.Actor = Truncate(e.Actor, MaxTextLen)
	e.Source = Truncate(e.Source, MaxTextLen)
	e.Action = Truncate(e.Action, MaxTextLen)
	e.Outcome = Truncate(e.Outcome, MaxTextLen)
	e.Target = Truncate(e.Target, MaxTextLen)
	e.Error = Truncate(e.Error, MaxTextLen)
	e.Instance = Truncate(e.Instance, MaxTextLen)
	if len(e.Changes) > 0 {
		cs := make([]Change, len(e.Changes))
		for i, c := range e.Changes {
			cs[i] = Change{Key: Truncate(c.Key, MaxTextLen), Old: Truncate(c.Old, MaxTextLen), New: Truncate(c.New, MaxTextLen)}
		}
		e.Changes = cs
	}
	return e
}

// MarshalLogObject renders the entry for zap with every text field escaped
// (EscapeText), so `zap.Object("audit", e)` is one safe line whatever
// the encoder.
func (e AuditEntry) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddTime("time", e.Time)
	enc.AddString("actor", EscapeText(e.Actor))
	enc.AddString("source", EscapeText(e.Source))
	enc.AddString("action", EscapeText(e.Action))
	enc.AddString("outcome", EscapeText(e.Outcome))
	if e.Target != "" {
		enc.AddString("target", EscapeText(e.Target))
	}
	if len(e.Changes) > 0 {
		if err := enc.AddArray("changes", changes(e.Changes)); err != nil {
			return err
		}
	}
	if e.Error != "" {
		enc.AddString("error", EscapeText(e.Error))
	}
	if e.Instance != "" {
		enc.AddString("instance", EscapeText(e.Instance))
	}
	return nil
}

type changes []Change

func (cs changes) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, c := range cs {
		if err := enc.AppendObject(c); err != nil {
			return err
		}
	}
	return nil
}

// MarshalLogObject renders the change for zap with its text escaped.
func (c Change) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("key", EscapeText(c.Key))
	enc.AddString("old", EscapeText(c.Old))
	enc.AddString("new", EscapeText(c.New))
	return nil
}
