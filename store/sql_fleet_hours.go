package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"sort"
	"time"
)

// The fleet's hour rows (pulsegate_fleet_hours): one row per fleet and
// hour holding the merge of the hour's minute rows, so the fleet series
// reaches back the history's 1 h retention (history.retention_1h, 400 days
// by default) after the minute rows (history.retention_1m) are gone. The
// prune pass writes them after the minute rows (rollupFleetHours);
// FleetSeries reads them when its step is a whole number of hours.

const (
	// fleetHour is an hour row's span.
	fleetHour = time.Hour
	// hourBudget bounds the hours one prune pass recomputes (each reads
	// up to 60 minute rows); the rest wait for the next pass.
	hourBudget = 48
	// hourChunk is the hours of one read-and-upsert transaction.
	hourChunk = 6
)

func hourFloor(us int64) int64 {
	return seriesFloorDiv(us, fleetHour.Microseconds()) * fleetHour.Microseconds()
}
func hourCeil(us int64) int64 { return -hourFloor(-us) }

// addMinute merges a minute row (minutes must come oldest first) into m,
// as merging the minute's heartbeat rows would.
func (m *fleetMinuteRow) addMinute(o *fleetMinuteRow) {
	m.rows += o.rows
	for k, v := range o.doc.Requests {
		m.doc.Requests[k] += v
	}
	for k, v := range o.doc.Errors {
		m.doc.Errors[k] += v
	}
	for k, v := range o.doc.Timing {
		m.doc.Timing[k] += v
	}
	m.doc.Latency.Merge(o.doc.Latency)
	foldFleet(&m.doc.Capacity, o.doc.Capacity)
	if seriesRank(o.doc.Status) > seriesRank(m.doc.Status) {
		m.doc.Status = o.doc.Status
	}
	for _, iv := range o.doc.Intervals {
		if n := len(m.doc.Intervals); n == 0 || iv > m.doc.Intervals[n-1] {
			m.doc.Intervals = append(m.doc.Intervals, iv)
		}
	}
	for _, name := range o.order {
		oi := o.insts[name]
		in := m.insts[name]
		if in == nil {
			in = &minuteInst{}
			m.insts[name] = in
			m.order = append(m.order, name)
		}
		in.answered += oi.answered
		in.seconds += oi.seconds
		if oi.cpu != nil {
			in.cpu = oi.cpu
		}
		if oi.mem != nil {
			in.mem = oi.mem
		}
	}
}

// rollupFleetHours writes the hour rows of fleet's complete hours that
// still have minute rows: an hour without a row, whose row's counts no
// longer equal the sums of its minute rows, or holding a minute written by
// this pass (written, from rollupFleetMinutes: a minute can change without
// changing a count) is recomputed from its minute rows and upserted,
// oldest first, up to hourBudget hours. Hours older than KeepHours are
// deleted. The oldest hour whose minute rows were partly deleted
// (retention) is never recomputed: its row was written while they were
// whole. It runs under PruneFleet's lock, after rollupFleetMinutes.
func (s *SQL) rollupFleetHours(ctx context.Context, conn *sql.Conn, fleet string, now time.Time, r Retention, written []int64) error {
	const hourUS = 3600000000 // fleetHour in µs, as in the queries
	if _, err := conn.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_fleet_hours WHERE fleet = ? AND hour_us < ?`),
		fleet, hourCeil(now.Add(-r.KeepHours).UnixMicro())); err != nil {
		return s.classify("deleting from", tableFleetHours, err)
	}
	lo, hi, err := s.fleetMinutesSpan(ctx, fleet)
	if err != nil || lo == hi {
		return err
	}
	// Minute rows start at the fleet's first minute or at the retention
	// boundary: only in the first case is their first hour whole.
	start := hourCeil(lo)
	if lo > minuteCeil(now.Add(-max(r.KeepMinutes, r.KeepHeartbeats)).UnixMicro()) {
		start = hourFloor(lo)
	}
	end := hourFloor(hi)
	if end <= start {
		return nil
	}
	div := "minute_us / 3600000000"
	sum := func(c string) string { return "SUM(" + c + ")::BIGINT" }
	if s.dialect == dialectMySQL {
		div = "minute_us DIV 3600000000"
		sum = func(c string) string { return "CAST(SUM(" + c + ") AS SIGNED)" }
	}
	have := map[int64]minuteFP{}
	if err := s.scanFP(ctx, conn, have, 1, `SELECT `+div+`, `+sum("rows_merged")+`, `+sum("requests")+`, `+sum("errors")+` FROM pulsegate_fleet_minutes
 WHERE fleet = ? AND minute_us >= ? AND minute_us < ? GROUP BY 1`, fleet, start, end); err != nil {
		return s.classify("reading", tableFleetMinutes, err)
	}
	rolled := map[int64]minuteFP{}
	if err := s.scanFP(ctx, conn, rolled, hourUS, `SELECT hour_us, rows_merged, requests, errors FROM pulsegate_fleet_hours
 WHERE fleet = ? AND hour_us >= ? AND hour_us < ?`, fleet, start, end); err != nil {
		return s.classify("reading", tableFleetHours, err)
	}
	dirty := map[int64]bool{}
	for k, fp := range have {
		if got, ok := rolled[k]; !ok || got != fp {
			dirty[k*hourUS] = true
		}
	}
	for _, m := range written {
		if h := hourFloor(m); h >= start && h < end {
			dirty[h] = true
		}
	}
	hs := make([]int64, 0, len(dirty))
	for h := range dirty {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i] < hs[j] })
	hs = hs[:min(len(hs), hourBudget)]
	for len(hs) > 0 {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 2*s.opTimeout {
			break
		}
		n := min(len(hs), hourChunk)
		if err := s.rollupHours(ctx, conn, fleet, hs[:n]); err != nil {
			return err
		}
		hs = hs[n:]
	}
	return nil
}

// rollupHours recomputes the hours hs (ascending) from their minute rows
// and upserts their rows, in one transaction.
func (s *SQL) rollupHours(ctx context.Context, conn *sql.Conn, fleet string, hs []int64) error {
	hourUS := fleetHour.Microseconds()
	err := func() error {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		up := s.upsert(tableFleetHours, append([]string{"fleet", "hour_us", "rows_merged", "requests", "errors", "doc", "insts"}, capacityColumns...), []string{"fleet", "hour_us"})
		for _, h := range hs {
			mins, err := s.readMergedRows(ctx, tx, tableFleetMinutes, fleet, h, h+hourUS)
			if err != nil {
				return err
			}
			row := newMinuteRow(time.UnixMicro(h).UTC())
			for _, m := range mins {
				row.addMinute(m)
			}
			doc, err := json.Marshal(row.doc)
			if err != nil {
				return err
			}
			fp := row.fingerprint()
			args := append([]any{fleet, h, fp.rows, fp.requests, fp.errors, string(doc), row.encodeInsts()}, capacityArgs(row.doc.Capacity)...)
			if _, err := tx.ExecContext(ctx, up, args...); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		return s.classify("rolling up into", tableFleetHours, err)
	}
	return nil
}

// fleetHoursSpan is the hours fleet's hour rows cover, [lo, hi)
// microseconds (lo == hi when none).
func (s *SQL) fleetHoursSpan(ctx context.Context, fleet string) (lo, hi int64, err error) {
	var a, b sql.NullInt64
	if err := s.db.QueryRowContext(ctx, s.rebind(`SELECT MIN(hour_us), MAX(hour_us) FROM pulsegate_fleet_hours WHERE fleet = ?`), fleet).Scan(&a, &b); err != nil {
		return 0, 0, s.classify("reading", tableFleetHours, err)
	}
	if !a.Valid {
		return 0, 0, nil
	}
	return a.Int64, b.Int64 + fleetHour.Microseconds(), nil
}
