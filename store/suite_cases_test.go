package store

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSuite runs the Backend's behaviour against every implementation.
func TestSuite(t *testing.T) {
	cases := []struct {
		name string
		f    func(t *testing.T, b backend)
	}{
		{"AlertsSurviveReopen", suiteAlertsSurviveReopen},
		{"PruneAlertsKeepsActiveAndNewestResolved", suitePruneAlertsKeepsActiveAndNewestResolved},
		{"AuditOrderPagingAndRetention", suiteAuditOrderPagingAndRetention},
		{"AuditBoundsText", suiteAuditBoundsText},
		{"SaveAlertsAllOrNone", suiteSaveAlertsAllOrNone},
		{"AcknowledgementUpdatesInPlace", suiteAcknowledgementUpdatesInPlace},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, b := range backends(t) {
				t.Run(b.name, func(t *testing.T) { c.f(t, b) })
			}
		})
	}
}

func suiteAlertsSurviveReopen(t *testing.T, b backend) {
	s := b.open(t)
	firing := AlertRecord{ID: "a1", Key: "memory_usage", Rule: "memory_usage", Severity: SeverityWarning, State: StateFiring,
		Metric: "memory_usage", Value: 0.85, Threshold: 0.8, Message: "Memory usage at 85%", FirstSeen: t0, LastSeen: t0}
	acked := AlertRecord{ID: "a2", Key: "cpu_usage", Rule: "cpu_usage", Severity: SeverityCritical, State: StateAcknowledged,
		FirstSeen: t0.Add(time.Minute), LastSeen: t0.Add(time.Minute),
		AcknowledgedAt: tp(t0.Add(2 * time.Minute)), AcknowledgedBy: "token:3f2a9c", AckNote: "looking\r\ninto it"}
	if err := s.SaveAlerts(firing, acked); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = b.open(t)
	got, err := s.LoadAlerts()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("LoadAlerts: %d records; want 2", len(got))
	}
	if got[0].ID != "a2" || got[1].ID != "a1" {
		t.Errorf("order = %s,%s; want newest first a2,a1", got[0].ID, got[1].ID)
	}
	if got[0].AcknowledgedAt == nil || !got[0].AcknowledgedAt.Equal(t0.Add(2*time.Minute)) ||
		got[0].AcknowledgedBy != "token:3f2a9c" || got[0].AckNote != "looking\r\ninto it" {
		t.Errorf("acknowledgement not preserved: %+v", got[0])
	}
	if got[1].Message != "Memory usage at 85%" || got[1].Value != 0.85 || got[1].State != StateFiring {
		t.Errorf("firing alert not preserved: %+v", got[1])
	}
	acks, err := s.Acknowledgements()
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != 1 || acks[0].AlertID != "a2" || acks[0].By != "token:3f2a9c" {
		t.Errorf("Acknowledgements() = %+v", acks)
	}
}

func suitePruneAlertsKeepsActiveAndNewestResolved(t *testing.T, b backend) {
	s := b.open(t)
	var recs []AlertRecord
	for i := range 10 {
		recs = append(recs, AlertRecord{ID: fmt.Sprintf("r%02d", i), State: StateResolved,
			FirstSeen: t0, ResolvedAt: tp(t0.Add(time.Duration(i) * time.Minute))})
	}
	recs = append(recs, AlertRecord{ID: "active1", State: StateFiring, FirstSeen: t0.Add(-time.Hour)},
		AlertRecord{ID: "active2", State: StateAcknowledged, FirstSeen: t0.Add(-2 * time.Hour), AcknowledgedAt: tp(t0)})
	recs[0].AcknowledgedAt = tp(t0) // an old acknowledged-then-resolved alert: its ack goes too
	if err := s.SaveAlerts(recs...); err != nil {
		t.Fatal(err)
	}
	if err := s.PruneAlerts(3); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadAlerts()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, a := range got {
		ids[a.ID] = true
	}
	want := []string{"r09", "r08", "r07", "active1", "active2"}
	if len(got) != len(want) {
		t.Errorf("after PruneAlerts(3): %d records; want %d (%v)", len(got), len(want), ids)
	}
	for _, id := range want {
		if !ids[id] {
			t.Errorf("after PruneAlerts(3): %s missing", id)
		}
	}
	acks, _ := s.Acknowledgements()
	if len(acks) != 1 || acks[0].AlertID != "active2" {
		t.Errorf("acknowledgements after prune = %+v; want only active2's", acks)
	}
	if err := s.PruneAlerts(-1); err == nil {
		t.Error("PruneAlerts(-1) = nil; want an error")
	}
}

func suiteAuditOrderPagingAndRetention(t *testing.T, b backend) {
	s := b.open(t, WithAuditRetention(5), WithClock(func() time.Time { return t0.Add(time.Hour) }))
	for i := range 8 {
		e := AuditEntry{Time: t0.Add(time.Duration(i) * time.Second), Actor: "token:3f2a9c", Source: "admin_api",
			Action: ActionConfigUpdate, Outcome: OutcomeOK, Changes: []Change{{Key: "responsiveness.slow_request_threshold", Old: "5", New: fmt.Sprint(i)}}}
		if err := s.AppendAudit(e); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Audit(0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("Audit after 8 appends with retention 5: %d entries; want 5", len(all))
	}
	for i, e := range all {
		if want := t0.Add(time.Duration(7-i) * time.Second); !e.Time.Equal(want) {
			t.Errorf("entry %d time = %v; want %v (newest first, oldest dropped)", i, e.Time, want)
		}
	}
	page, err := s.Audit(2, t0.Add(6*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || !page[0].Time.Equal(t0.Add(5*time.Second)) || !page[1].Time.Equal(t0.Add(4*time.Second)) {
		t.Errorf("Audit(2, t0+6s) = %+v; want entries at t0+5s, t0+4s", page)
	}
	if page[0].Changes[0].New != "5" {
		t.Errorf("changes not preserved: %+v", page[0].Changes)
	}

	// Zero time is stamped with the clock; the count survives a reopen so
	// retention keeps holding.
	if err := s.AppendAudit(AuditEntry{Action: ActionAlertAcknowledge, Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = b.open(t, WithAuditRetention(5))
	if err := s.AppendAudit(AuditEntry{Time: t0.Add(2 * time.Hour), Action: ActionConfigRejected, Outcome: OutcomeRejected, Error: "x"}); err != nil {
		t.Fatal(err)
	}
	all, _ = s.Audit(100, time.Time{})
	if len(all) != 5 {
		t.Errorf("after reopen: %d entries; want 5", len(all))
	}
	if all[0].Action != ActionConfigRejected || all[1].Action != ActionAlertAcknowledge || !all[1].Time.Equal(t0.Add(time.Hour)) {
		t.Errorf("newest entries = %+v, %+v", all[0], all[1])
	}
	if err := s.AppendAudit(AuditEntry{}); err == nil || !strings.Contains(err.Error(), "action") {
		t.Errorf("AppendAudit without action: err = %v; want one naming the action", err)
	}
}

func suiteAuditBoundsText(t *testing.T, b backend) {
	s := b.open(t)
	long := strings.Repeat("é", MaxTextLen) // 2 bytes each
	if err := s.AppendAudit(AuditEntry{Action: ActionConfigRejected, Error: long}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Audit(1, time.Time{})
	if n := len(got[0].Error); n > MaxTextLen {
		t.Errorf("stored error is %d bytes; want <= %d", n, MaxTextLen)
	}
	if !strings.HasSuffix(got[0].Error, "…") || !strings.HasPrefix(got[0].Error, "éé") {
		t.Errorf("cut text should end with the marker on a rune boundary, got suffix %q", got[0].Error[len(got[0].Error)-8:])
	}
}

func suiteSaveAlertsAllOrNone(t *testing.T, b backend) {
	s := b.open(t)
	err := s.SaveAlerts(AlertRecord{ID: "ok1", State: StateFiring, FirstSeen: t0}, AlertRecord{State: StateFiring})
	if err == nil || !strings.Contains(err.Error(), "no id") {
		t.Fatalf("SaveAlerts with an id-less record: err = %v; want one saying so", err)
	}
	got, err := s.LoadAlerts()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("after a failed batch: %d records stored; want none (all or none)", len(got))
	}
}

func suiteAcknowledgementUpdatesInPlace(t *testing.T, b backend) {
	s := b.open(t)
	a := AlertRecord{ID: "a1", Key: "k", State: StateFiring, FirstSeen: t0, LastSeen: t0}
	if err := s.SaveAlert(a); err != nil {
		t.Fatal(err)
	}
	a.State, a.AcknowledgedAt, a.AcknowledgedBy, a.AckNote = StateAcknowledged, tp(t0.Add(time.Minute)), "alice", "first"
	if err := s.SaveAlert(a); err != nil {
		t.Fatal(err)
	}
	a.AcknowledgedAt, a.AcknowledgedBy, a.AckNote = tp(t0.Add(2*time.Minute)), "bob", "second"
	a.LastSeen = t0.Add(3 * time.Minute)
	if err := s.SaveAlert(a); err != nil {
		t.Fatal(err)
	}
	got, _ := s.LoadAlerts()
	acks, _ := s.Acknowledgements()
	if len(got) != 1 || got[0].AcknowledgedBy != "bob" || !got[0].LastSeen.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("alerts = %+v; want one, acknowledged by bob, last seen t0+3m", got)
	}
	if len(acks) != 1 || acks[0].Note != "second" || !acks[0].Time.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("acknowledgements = %+v; want bob's only", acks)
	}
}
