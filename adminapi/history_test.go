package adminapi

import (
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/store"
)

// TestHistoryEventsFromTheStore: with the real bbolt store, config
// changes are read back through several audit pages, other audit actions
// and entries outside the range are left out, alert transitions are
// placed at their own times, everything oldest first.
func TestHistoryEventsFromTheStore(t *testing.T) {
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var entries []store.AuditEntry
	for i := range 700 { // two pages of 500
		e := store.AuditEntry{Time: t0.Add(time.Duration(i) * time.Minute), Actor: "token:aa11bb", Source: "admin_api",
			Action: store.ActionConfigUpdate, Outcome: store.OutcomeOK,
			Changes: []store.Change{{Key: "thresholds.queue_warning", Old: "50", New: "60"}}}
		if i%7 == 0 {
			e.Action, e.Outcome, e.Changes = store.ActionConfigRejected, store.OutcomeRejected, nil
		}
		entries = append(entries, e)
	}
	for _, e := range entries {
		if err := st.AppendAudit(e); err != nil {
			t.Fatal(err)
		}
	}
	fired, acked := t0.Add(30*time.Minute+time.Second), t0.Add(40*time.Minute+time.Second)
	if err := st.SaveAlert(store.AlertRecord{ID: "a1", Key: "queue_depth", Rule: "queue_depth", Severity: "warning",
		PeakSeverity: "warning", State: store.StateAcknowledged, FirstSeen: fired, LastSeen: acked,
		AcknowledgedAt: &acked, AcknowledgedBy: "token:cc22dd", AckNote: "deploy in progress"}); err != nil {
		t.Fatal(err)
	}

	from, to := t0.Add(20*time.Minute), t0.Add(650*time.Minute)
	evs, truncated, err := historyEvents(st, from, to)
	if err != nil || truncated {
		t.Fatalf("events: %v (truncated %v)", err, truncated)
	}
	var changes, alerts int
	for i, e := range evs {
		if i > 0 && e.Time.Before(evs[i-1].Time) {
			t.Fatalf("event %d out of order: %v after %v", i, e.Time, evs[i-1].Time)
		}
		if e.Time.Before(from) || !e.Time.Before(to) {
			t.Errorf("event outside the range: %+v", e)
		}
		switch e.Kind {
		case EventConfigChange:
			changes++
			if e.By != "token:aa11bb" || len(e.Changes) != 1 || e.Changes[0].New != "60" {
				t.Errorf("config change: %+v", e)
			}
		case EventAlertFired:
			alerts++
		case EventAlertAcknowledged:
			alerts++
			if e.By != "token:cc22dd" || e.Note != "deploy in progress" || e.Level != "warning" || e.Rule != "queue_depth" {
				t.Errorf("acknowledgement: %+v", e)
			}
		default:
			t.Errorf("unexpected event %+v", e)
		}
	}
	// Minutes 20..649: 630 entries, of which those with i%7 == 0 (90) are refusals.
	if changes != 540 || alerts != 2 {
		t.Errorf("%d config changes and %d alert events, want 540 and 2", changes, alerts)
	}
}
