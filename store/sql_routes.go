package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/pulsegate/pulsegate/latency"
)

// Per-instance route rollups and long history in the shared store
// (schema version 4). Each sidecar's history archive hands the rows one
// flush wrote (its 1 min and 1 h route rows and points, whole) to the
// Writer, which upserts them here: pulsegate_route_rollups holds one row
// per (fleet, step, route, start, instance, version), merged across the
// instances in Go when the fleet's view is read (counts summed, latency
// buckets added, so a fleet p95 is the p95 of the merged buckets);
// pulsegate_instance_history holds each instance's points as the archive
// encodes them, so a pod that is gone keeps its history. Both are pruned
// by PruneFleet at history.retention_1m and retention_1h.

// Steps of the rows: the archive's 1 min and 1 h tiers.
const (
	StepMinute = time.Minute
	StepHour   = time.Hour
)

// MaxRouteLen and MaxVersionLen bound a stored route template and app
// version (the table's columns); longer ones are cut.
const (
	MaxRouteLen   = 255
	MaxVersionLen = 64
)

// RouteRow is one instance's requests on one route under one app version
// in one step (the history archive's route row, whole).
type RouteRow struct {
	Instance string // "" in a fleet read (every instance merged)
	Route    string
	Version  string // "" unknown
	Step     time.Duration
	Start    time.Time
	// Requests answered, Errors failed for clients, AppErrors the app's own.
	Requests, Errors, AppErrors uint64
	// SumUS is the timed requests' total time (µs); Buckets their latency
	// histogram (latency package geometry, trimmed after the last non-empty bucket).
	SumUS   uint64
	Buckets []uint64
	enc     []byte // Buckets encoded (encodeBuckets), set by the Writer's queue instead of Buckets
}

// HistoryPoint is one instance's long-history point (the archive's 1 min
// or 1 h row); Data is the history package's encoding of it.
type HistoryPoint struct {
	Step  time.Duration
	Start time.Time
	Data  []byte
}

// RouteBatch is what one archive flush wrote: rows of one instance.
type RouteBatch struct {
	Fleet, Instance string
	Routes          []RouteRow
	Points          []HistoryPoint
}

// encoded is the row's buckets column.
func (r *RouteRow) encoded() []byte {
	if r.enc != nil {
		return r.enc
	}
	return encodeBuckets(r.Buckets)
}

func stepSeconds(step time.Duration) (int, error) {
	switch step {
	case StepMinute, StepHour:
		return int(step / time.Second), nil
	}
	return 0, fmt.Errorf("route rows: step %s: want 1m or 1h", step)
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func i64(v uint64) int64 { return int64(min(v, 1<<63-1)) }

// WriteRouteBatch upserts b's rows in one transaction: each row replaces
// the stored row with its key, so writing the same batch twice stores it once.
func (s *SQL) WriteRouteBatch(ctx context.Context, b RouteBatch) error {
	if len(b.Routes) == 0 && len(b.Points) == 0 {
		return nil
	}
	if b.Fleet == "" || b.Instance == "" {
		return errors.New("route rows: fleet and instance are required")
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	routeUp := s.upsert(tableRouteRollups, []string{"fleet", "step_s", "route", "start_us", "instance", "version",
		"requests", "errors", "app_errors", "sum_us", "buckets"}, []string{"fleet", "step_s", "route", "start_us", "instance", "version"})
	pointUp := s.upsert(tableInstHistory, []string{"fleet", "instance", "step_s", "start_us", "point"},
		[]string{"fleet", "instance", "step_s", "start_us"})
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if len(b.Routes) > 0 {
			st, err := tx.PrepareContext(ctx, routeUp)
			if err != nil {
				return s.classify("writing to", tableRouteRollups, err)
			}
			defer st.Close()
			for _, r := range b.Routes {
				sec, err := stepSeconds(r.Step)
				if err != nil {
					return err
				}
				if _, err := st.ExecContext(ctx, b.Fleet, sec, cut(r.Route, MaxRouteLen), r.Start.UnixMicro(), b.Instance,
					cut(r.Version, MaxVersionLen), i64(r.Requests), i64(r.Errors), i64(r.AppErrors), i64(r.SumUS),
					r.encoded()); err != nil {
					return s.classify("writing to", tableRouteRollups, err)
				}
			}
		}
		if len(b.Points) > 0 {
			st, err := tx.PrepareContext(ctx, pointUp)
			if err != nil {
				return s.classify("writing to", tableInstHistory, err)
			}
			defer st.Close()
			for _, p := range b.Points {
				sec, err := stepSeconds(p.Step)
				if err != nil {
					return err
				}
				if _, err := st.ExecContext(ctx, b.Fleet, b.Instance, sec, p.Start.UnixMicro(), p.Data); err != nil {
					return s.classify("writing to", tableInstHistory, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing route rows: %w", err)
	}
	return nil
}

// ScanRouteRows calls fn with route's rows of step starting in [from,
// to), oldest first: instance's own rows, or with instance "" every
// instance's rows merged per (start, version) (counts summed, buckets
// added). The row passed to fn is only valid during the call. Damaged
// bucket columns are left out (their counts kept).
func (s *SQL) ScanRouteRows(ctx context.Context, fleet, instance string, step time.Duration, route string, from, to time.Time, fn func(r *RouteRow)) error {
	sec, err := stepSeconds(step)
	if err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	q := `SELECT start_us, version, requests, errors, app_errors, sum_us, buckets FROM pulsegate_route_rollups
 WHERE fleet = ? AND step_s = ? AND route = ? AND start_us >= ? AND start_us < ?`
	args := []any{fleet, sec, cut(route, MaxRouteLen), from.UnixMicro(), to.UnixMicro()}
	if instance != "" {
		q += ` AND instance = ?`
		args = append(args, instance)
	}
	q += ` ORDER BY start_us, version`
	rows, err := s.db.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return s.classify("reading", tableRouteRollups, err)
	}
	defer rows.Close()
	cur := RouteRow{Instance: instance, Route: route, Step: step, Buckets: make([]uint64, 0, latency.Buckets)}
	have := false
	var curUS int64
	buf := make([]uint64, 0, latency.Buckets)
	for rows.Next() {
		var startUS, req, errs, appErrs, sumUS int64
		var ver string
		var enc []byte
		if err := rows.Scan(&startUS, &ver, &req, &errs, &appErrs, &sumUS, &enc); err != nil {
			return s.classify("reading", tableRouteRollups, err)
		}
		if have && (startUS != curUS || ver != cur.Version) {
			fn(&cur)
			have = false
		}
		if !have {
			cur.Start, cur.Version = time.UnixMicro(startUS).UTC(), ver
			cur.Requests, cur.Errors, cur.AppErrors, cur.SumUS = 0, 0, 0, 0
			cur.Buckets = cur.Buckets[:0]
			curUS, have = startUS, true
		}
		cur.Requests += uint64(req)
		cur.Errors += uint64(errs)
		cur.AppErrors += uint64(appErrs)
		cur.SumUS += uint64(sumUS)
		if b, err := latency.ReadRuns(enc, buf); err == nil {
			buf = b
			if len(b) > len(cur.Buckets) {
				cur.Buckets = append(cur.Buckets, make([]uint64, len(b)-len(cur.Buckets))...)
			}
			for i, v := range b {
				cur.Buckets[i] += v
			}
		}
	}
	if err := rows.Err(); err != nil {
		return s.classify("reading", tableRouteRollups, err)
	}
	if have {
		fn(&cur)
	}
	return nil
}

// RouteVolumes sums each route's requests of step in [from, to), of one
// instance or ("") the whole fleet.
func (s *SQL) RouteVolumes(ctx context.Context, fleet, instance string, step time.Duration, from, to time.Time) (map[string]uint64, error) {
	sec, err := stepSeconds(step)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	q := `SELECT route, SUM(requests) FROM pulsegate_route_rollups WHERE fleet = ? AND step_s = ? AND start_us >= ? AND start_us < ?`
	args := []any{fleet, sec, from.UnixMicro(), to.UnixMicro()}
	if instance != "" {
		q += ` AND instance = ?`
		args = append(args, instance)
	}
	q += ` GROUP BY route`
	rows, err := s.db.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, s.classify("reading", tableRouteRollups, err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var route string
		var n float64 // SUM is DECIMAL (MySQL) or NUMERIC (PostgreSQL)
		if err := rows.Scan(&route, &n); err != nil {
			return nil, s.classify("reading", tableRouteRollups, err)
		}
		out[route] = uint64(n)
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", tableRouteRollups, err)
	}
	return out, nil
}

// HistoryPoints reads instance's long-history points of step starting in
// [from, to), oldest first. An instance without any stored point is
// ErrNotFound (wrapped), naming it.
func (s *SQL) HistoryPoints(ctx context.Context, fleet, instance string, step time.Duration, from, to time.Time) ([]HistoryPoint, error) {
	sec, err := stepSeconds(step)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var one int
	err = s.db.QueryRowContext(ctx, s.rebind(`SELECT 1 FROM pulsegate_instance_history WHERE fleet = ? AND instance = ? LIMIT 1`), fleet, instance).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("instance %q has no history in fleet %q: %w", EscapeText(instance), EscapeText(fleet), ErrNotFound)
	}
	if err != nil {
		return nil, s.classify("reading", tableInstHistory, err)
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT start_us, point FROM pulsegate_instance_history
 WHERE fleet = ? AND instance = ? AND step_s = ? AND start_us >= ? AND start_us < ? ORDER BY start_us`),
		fleet, instance, sec, from.UnixMicro(), to.UnixMicro())
	if err != nil {
		return nil, s.classify("reading", tableInstHistory, err)
	}
	defer rows.Close()
	var out []HistoryPoint
	for rows.Next() {
		var us int64
		var data []byte
		if err := rows.Scan(&us, &data); err != nil {
			return nil, s.classify("reading", tableInstHistory, err)
		}
		out = append(out, HistoryPoint{Step: step, Start: time.UnixMicro(us).UTC(), Data: data})
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", tableInstHistory, err)
	}
	return out, nil
}

// pruneRoutes deletes fleet's route rows and history points past their
// retention: 1 min rows older than keepMinutes, 1 h rows older than keepHours.
func (s *SQL) pruneRoutes(ctx context.Context, conn *sql.Conn, fleet string, now time.Time, keepMinutes, keepHours time.Duration) (int64, error) {
	var n int64
	for _, t := range []string{tableRouteRollups, tableInstHistory} {
		for _, p := range []struct {
			step time.Duration
			keep time.Duration
		}{{StepMinute, keepMinutes}, {StepHour, keepHours}} {
			q, err := conn.ExecContext(ctx, s.rebind(`DELETE FROM `+t+` WHERE fleet = ? AND step_s = ? AND start_us < ?`),
				fleet, int(p.step/time.Second), now.Add(-p.keep).UnixMicro())
			if err != nil {
				return n, s.classify("deleting from", t, err)
			}
			d, _ := q.RowsAffected()
			n += d
		}
	}
	return n, nil
}

// encodeBuckets is the bucket column's form: latency's run encoding.
func encodeBuckets(bs []uint64) []byte {
	return latency.AppendRuns(make([]byte, 0, 8+len(bs)/2), bs)
}

// OldestHistoryPoint is the start of instance's oldest long-history point
// of step in fleet; ok is false when it has none (the primary key's
// prefix answers it without a scan).
func (s *SQL) OldestHistoryPoint(ctx context.Context, fleet, instance string, step time.Duration) (start time.Time, ok bool, err error) {
	sec, err := stepSeconds(step)
	if err != nil {
		return time.Time{}, false, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var us sql.NullInt64
	if err := s.db.QueryRowContext(ctx, s.rebind(`SELECT MIN(start_us) FROM pulsegate_instance_history WHERE fleet = ? AND instance = ? AND step_s = ?`),
		fleet, instance, sec).Scan(&us); err != nil {
		return time.Time{}, false, s.classify("reading", tableInstHistory, err)
	}
	if !us.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMicro(us.Int64).UTC(), true, nil
}
