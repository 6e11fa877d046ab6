package history

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"
)

func TestParseRequest(t *testing.T) {
	now := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		query     string
		wantParam string // "" = valid
		wantSpan  time.Duration
		wantTier  int
	}{
		{"", "", 15 * time.Minute, Tier10s},
		{"range=24h", "", 24 * time.Hour, Tier10s},
		{"range=7d", "", 7 * 24 * time.Hour, Tier1m},
		{"range=30d", "", 30 * 24 * time.Hour, Tier1h},
		{"range=365d", "", 365 * 24 * time.Hour, Tier1h},
		{"from=2026-03-09T06:00:00Z", "", 6 * time.Hour, Tier10s},
		{"from=2026-02-20T00:00:00Z&to=2026-03-02T00:00:00Z", "", 10 * 24 * time.Hour, Tier1m},
		{"range=2w", "range", 0, 0},
		{"range=1h&from=2026-03-09T06:00:00Z", "range", 0, 0},
		{"to=2026-03-09T06:00:00Z", "from", 0, 0},
		{"from=yesterday", "from", 0, 0},
		{"from=2026-03-09T06:00:00Z&to=soon", "to", 0, 0},
		{"from=2026-03-09T06:00:00Z&to=2026-03-09T05:00:00Z", "from", 0, 0},
		{"from=2024-01-01T00:00:00Z", "from", 0, 0},
	} {
		q, _ := url.ParseQuery(tc.query)
		req, err := ParseRequest(q, now)
		var pe *ParamError
		if tc.wantParam != "" {
			if !errors.As(err, &pe) || pe.Param != tc.wantParam {
				t.Errorf("%q: want an error naming %s, got %v", tc.query, tc.wantParam, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.query, err)
			continue
		}
		if span := req.To.Sub(req.From); span != tc.wantSpan || Tier(span) != tc.wantTier {
			t.Errorf("%q: span %v tier %d, want %v tier %d", tc.query, span, Tier(span), tc.wantSpan, tc.wantTier)
		}
	}
}

// TestRunFlushesOnStop: the flush loop writes what the ring holds when
// its context ends, and returns.
func TestRunFlushesOnStop(t *testing.T) {
	a := openArchive(t, t.TempDir(), DefaultRetention)
	defer a.Close()
	h := mustHistory(t, 10*time.Second, time.Hour)
	for i := range 6 {
		h.Record(trafficTick(t0.Add(time.Duration(i)*10*time.Second), 3, 0, 0.1, 0.5))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx, h, time.Hour, func() time.Time { return t0.Add(time.Minute) }) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rows, _ := a.rows(Tier10s, t0.Unix(), t0.Add(time.Hour).Unix())
	m, _ := a.rows(Tier1m, t0.Unix(), t0.Add(time.Hour).Unix())
	if len(rows) != 6 || len(m) != 1 || m[0].n != 6 {
		t.Fatalf("after stop: %d 10s points, %d 1m points (%+v); want 6 and one of 6", len(rows), len(m), m)
	}
}

// TestQueryRangeFromRing: a from/to within the ring's day is answered
// from the ring's 10 s points.
func TestQueryRangeFromRing(t *testing.T) {
	h := mustHistory(t, 10*time.Second, 24*time.Hour)
	for i := range 360 {
		h.Record(trafficTick(t0.Add(time.Duration(i)*10*time.Second), 3, 0, 0.1, float64(i)/1000))
	}
	v, err := Reader{Ring: h}.View(Request{From: t0.Add(10 * time.Minute), To: t0.Add(20 * time.Minute)}, t0.Add(time.Hour))
	if err != nil || v.Tier != "10s" || len(v.Time) != 60 || v.Time[0] != t0.Add(10*time.Minute).Unix() {
		t.Fatalf("from/to over the ring: tier %q, %d points from %v, %v", v.Tier, len(v.Time), v.Time, err)
	}
	if cpu := *v.Series["cpu_usage"][0]; cpu != 0.06 {
		t.Errorf("first cpu %v, want 0.06", cpu)
	}
	// Without an archive, ranges beyond the ring answer empty, not an error.
	w, err := Reader{Ring: h}.View(Request{Name: "30d", From: t0.Add(-30 * 24 * time.Hour), To: t0}, t0)
	if err != nil || w.Tier != "1h" || len(w.Time) != 0 || w.Series["cpu_usage"] == nil {
		t.Fatalf("30d without archive: %+v, %v", w, err)
	}
}
