package store

import (
	"context"
	"database/sql"
	"reflect"
	"testing"
	"time"
)

// TestFleetCapacityFigures: heartbeats carry backpressure's figures
// (schema version 5) next to rows without them (written before). The
// heartbeat row's columns hold them, NULL for the old row; the fleet
// series — from the heartbeat rows, then from the minute and hour rows
// the prune pass writes — sums the rejections, sums the instances' peaks
// and limits within a minute (web-1's highest peak, its latest limit) and
// takes the highest minute over a longer step; a minute of old rows only
// has no figures (nil, NULL columns).
func TestFleetCapacityFigures(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		s := seriesStore(t, sv)
		ctx := context.Background()
		h := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
		m := h.Add(51 * time.Minute) // minutes m, m+1, m+2 (a 3-minute step)
		row := func(inst string, at time.Duration, c *CapacityFigures) Heartbeat {
			return hb(s.fleet, inst, m.Add(at), "ok", Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": 5}, Capacity: c})
		}
		rows := []Heartbeat{
			row("web-1", 10*time.Second, &CapacityFigures{Rejections: 5, RejectedRateLimit: 3, RejectedQueue: 2, PeakInFlight: 10, ConcurrencyLimit: 24}),
			row("web-2", 15*time.Second, &CapacityFigures{Rejections: 4, RejectedQueue: 4, PeakInFlight: 9, PeakQueued: 3, ConcurrencyLimit: 30}),
			row("web-1", 20*time.Second, &CapacityFigures{Rejections: 1, RejectedShed: 1, PeakInFlight: 14, ConcurrencyLimit: 20}),
			row("web-3", 30*time.Second, nil),
			row("web-1", 70*time.Second, &CapacityFigures{PeakInFlight: 2, ConcurrencyLimit: 20}),
			row("web-2", 80*time.Second, nil),
			row("web-3", 130*time.Second, nil),
			row("web-3", 14*time.Minute, nil), // the minute rows reach past the hour
		}
		if err := s.WriteHeartbeats(ctx, rows); err != nil {
			t.Fatal(err)
		}
		first := &CapacityFigures{Rejections: 10, RejectedRateLimit: 3, RejectedQueue: 6, RejectedShed: 1, PeakInFlight: 23, PeakQueued: 3, ConcurrencyLimit: 50}
		second := &CapacityFigures{PeakInFlight: 2, ConcurrencyLimit: 20}
		check := func(what string, from time.Time, step time.Duration, want []*CapacityFigures) {
			t.Helper()
			fs, err := s.FleetSeries(ctx, s.fleet, from, m.Add(3*time.Minute), step)
			if err != nil {
				t.Fatal(err)
			}
			var got []*CapacityFigures
			for _, st := range fs.Steps {
				got = append(got, st.Capacity)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s, %s steps: capacity", what, step)
				for i := range max(len(got), len(want)) {
					var g, w *CapacityFigures
					if i < len(got) {
						g = got[i]
					}
					if i < len(want) {
						w = want[i]
					}
					t.Errorf("  step %d: %+v, want %+v", i, g, w)
				}
			}
		}
		check("heartbeat rows", m, time.Minute, []*CapacityFigures{first, second, nil})
		check("heartbeat rows", m, 3*time.Minute, []*CapacityFigures{{Rejections: 10, RejectedRateLimit: 3, RejectedQueue: 6, RejectedShed: 1,
			PeakInFlight: 23, PeakQueued: 3, ConcurrencyLimit: 50}})

		cols := func(table, where string, args ...any) []sql.NullInt64 {
			t.Helper()
			out := make([]sql.NullInt64, len(capacityColumns))
			ptrs := make([]any, len(out))
			for i := range out {
				ptrs[i] = &out[i]
			}
			q := "SELECT " + capacityColumnsList() + " FROM " + table + " WHERE fleet = ? AND " + where
			if err := s.db.QueryRow(s.rebind(q), append([]any{s.fleet}, args...)...).Scan(ptrs...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			return out
		}
		want := func(what string, got []sql.NullInt64, c *CapacityFigures) {
			t.Helper()
			for i, v := range capacityArgs(c) {
				if w, ok := v.(int64); ok != got[i].Valid || ok && got[i].Int64 != w {
					t.Errorf("%s: column %s = %v, want %v", what, capacityColumns[i], got[i], v)
				}
			}
		}
		want("web-2's heartbeat row", cols(tableHeartbeats, "instance = ? AND ts_us = ?", "web-2", m.Add(15*time.Second).UnixMicro()), rows[1].Rollup.Capacity)
		want("web-3's old heartbeat row", cols(tableHeartbeats, "instance = ? AND ts_us = ?", "web-3", m.Add(30*time.Second).UnixMicro()), nil)

		if _, err := s.PruneFleet(ctx, s.fleet, h.Add(90*time.Minute), DefaultRetention); err != nil { // nothing compacted yet
			t.Fatal(err)
		}
		want("minute row 1", cols(tableFleetMinutes, "minute_us = ?", m.UnixMicro()), first)
		want("minute row 2", cols(tableFleetMinutes, "minute_us = ?", m.Add(time.Minute).UnixMicro()), second)
		want("minute row 3 (old rows only)", cols(tableFleetMinutes, "minute_us = ?", m.Add(2*time.Minute).UnixMicro()), nil)
		want("hour row", cols(tableFleetHours, "hour_us = ?", h.UnixMicro()), first)
		check("minute rows", m, time.Minute, []*CapacityFigures{first, second, nil})
		check("hour rows", h, time.Hour, []*CapacityFigures{first})
	})
}

func capacityColumnsList() string {
	out := ""
	for i, c := range capacityColumns {
		if i > 0 {
			out += ", "
		}
		out += c
	}
	return out
}
