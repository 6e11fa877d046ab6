package report

import (
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/store"
)

// TestAlertStatsClipToThePeriod: an alert that began before the period
// counts only its time inside it (but its full time to acknowledge and
// resolve); one still firing counts until now; one over before the period
// is left out.
func TestAlertStatsClipToThePeriod(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	w := Window{t0, t0.Add(24 * time.Hour)}
	at := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
	as := []store.AlertRecord{
		{ID: "a", Rule: "queue_depth", Metric: "queue_depth", State: store.StateResolved, FirstSeen: t0.Add(-time.Hour),
			AcknowledgedAt: at(-50 * time.Minute), ResolvedAt: at(30 * time.Minute)},
		{ID: "b", Rule: "queue_depth", Metric: "queue_depth", State: store.StateFiring, FirstSeen: t0.Add(23 * time.Hour), LastSeen: t0.Add(24 * time.Hour)},
		{ID: "c", Rule: "queue_depth", Metric: "queue_depth", State: store.StateResolved, FirstSeen: t0.Add(-3 * time.Hour), ResolvedAt: at(-2 * time.Hour)},
	}
	a := buildAlerts(as, nil, nil, w, t0.Add(24*time.Hour))
	if a.Total != 2 || len(a.Rules) != 1 {
		t.Fatalf("alerts: %+v", a)
	}
	s := a.Rules[0]
	if s.Count != 2 || s.Active != 1 || s.FiringSeconds != 1800+3600 || s.Acknowledged != 1 || s.Ignored != 1 || s.Cycles != 1 ||
		*s.MedianTimeToAcknowledgeSeconds != 600 || *s.MedianTimeToResolveSeconds != 5400 || s.Flapping {
		t.Errorf("stats: %+v", s)
	}
}

// TestFlappingNeedsFourOccurrencesOfOneSubjectWithinAnHour: three within
// the hour, four spread over more than an hour, or four split over two
// subjects do not flap; four of one subject within the hour do.
func TestFlappingNeedsFourOccurrencesOfOneSubjectWithinAnHour(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	w := Window{t0, t0.Add(24 * time.Hour)}
	occ := func(subject string, starts ...time.Duration) []store.AlertRecord {
		var out []store.AlertRecord
		for i, d := range starts {
			r := t0.Add(d + 2*time.Minute)
			out = append(out, store.AlertRecord{ID: subject + string(rune('a'+i)), Rule: "probe_down", Subject: subject,
				State: store.StateResolved, FirstSeen: t0.Add(d), ResolvedAt: &r})
		}
		return out
	}
	m := time.Minute
	for _, tc := range []struct {
		name string
		as   []store.AlertRecord
		want bool
	}{
		{"three in an hour", occ("db", 0, 10*m, 20*m), false},
		{"four over 61 minutes", occ("db", 0, 20*m, 40*m, 61*m), false},
		{"two subjects", append(occ("db", 0, 10*m), occ("redis", 20*m, 30*m)...), false},
		{"four in 59 minutes", occ("db", 0, 20*m, 40*m, 59*m), true},
	} {
		a := buildAlerts(tc.as, nil, nil, w, t0.Add(24*time.Hour))
		if got := a.Rules[0].Flapping; got != tc.want {
			t.Errorf("%s: flapping %v, want %v (%+v)", tc.name, got, tc.want, a.Rules[0])
		}
	}
}
