package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"
)

// WriteHeartbeats stores heartbeats in one transaction: one row each in
// pulsegate_heartbeats (a repeated fleet+instance+time replaces its row, so
// a replayed batch is not counted twice) and each instance's latest row in
// pulsegate_instances.
func (s *SQL) WriteHeartbeats(ctx context.Context, hbs []Heartbeat) error {
	if len(hbs) == 0 {
		return nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	hbQ := s.heartbeatUpsert()
	// The latest row moves forward only: a replayed older heartbeat leaves it.
	var instQ string
	if s.dialect == dialectPostgres {
		instQ = `INSERT INTO pulsegate_instances (fleet, instance, first_seen_us, last_seen_us, status, config_version, doc)
 VALUES ($1, $2, $3, $3, $4, $5, $6) ON CONFLICT (fleet, instance) DO UPDATE SET
 last_seen_us = EXCLUDED.last_seen_us, status = EXCLUDED.status, config_version = EXCLUDED.config_version, doc = EXCLUDED.doc
 WHERE pulsegate_instances.last_seen_us <= EXCLUDED.last_seen_us`
	} else {
		instQ = `INSERT INTO pulsegate_instances (fleet, instance, first_seen_us, last_seen_us, status, config_version, doc)
 VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE
 status = IF(VALUES(last_seen_us) >= last_seen_us, VALUES(status), status),
 config_version = IF(VALUES(last_seen_us) >= last_seen_us, VALUES(config_version), config_version),
 doc = IF(VALUES(last_seen_us) >= last_seen_us, VALUES(doc), doc),
 last_seen_us = GREATEST(last_seen_us, VALUES(last_seen_us))`
	}
	// Sorted by key, so concurrent writers take row locks in one order.
	sorted := append([]Heartbeat(nil), hbs...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Instance != sorted[j].Instance {
			return sorted[i].Instance < sorted[j].Instance
		}
		return sorted[i].Time.Before(sorted[j].Time)
	})
	table := tableHeartbeats
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, hb := range sorted {
			if hb.Fleet == "" {
				hb.Fleet = s.fleet
			}
			if hb.Instance == "" {
				hb.Instance = s.instance
			}
			doc, err := json.Marshal(hb)
			if err != nil {
				return fmt.Errorf("encoding heartbeat of %s: %w", hb.Instance, err)
			}
			us := hb.Time.UnixMicro()
			table = tableHeartbeats
			args := append([]any{hb.Fleet, us, hb.Instance, hb.Status, hb.ConfigVersion,
				int64(hb.Rollup.Answered()), int64(hb.Rollup.Failed()), hb.Interval.Microseconds(), string(doc)}, capacityArgs(hb.Rollup.Capacity)...)
			if _, err := tx.ExecContext(ctx, hbQ, args...); err != nil {
				return err
			}
			table = tableInstances
			if s.dialect == dialectPostgres {
				_, err = tx.ExecContext(ctx, instQ, hb.Fleet, hb.Instance, us, hb.Status, hb.ConfigVersion, string(doc))
			} else {
				_, err = tx.ExecContext(ctx, instQ, hb.Fleet, hb.Instance, us, us, hb.Status, hb.ConfigVersion, string(doc))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.classify("inserting into", table, err)
	}
	return nil
}

// Instances returns every instance of fleet from its latest heartbeat,
// sorted by name, stale ones flagged. The heartbeats share their maps with
// the store's cache of recent rows: read them, never modify them.
func (s *SQL) Instances(ctx context.Context, fleet string, now time.Time) ([]InstanceStatus, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	hbs, err := s.latestHeartbeats(ctx, fleet, now)
	if err != nil {
		return nil, err
	}
	out := make([]InstanceStatus, 0, len(hbs))
	for _, r := range hbs {
		out = append(out, r.status(now))
	}
	return out, nil
}

// FleetNow is the fleet view's one query: every instance's latest
// heartbeat, and the merge of the fresh instances' latest rollups (the
// fleet's last interval: counts summed, buckets merged). Stale instances
// are listed but left out of the merge.
func (s *SQL) FleetNow(ctx context.Context, fleet string, now time.Time) ([]InstanceStatus, MergedRollup, error) {
	insts, err := s.Instances(ctx, fleet, now)
	if err != nil {
		return nil, MergedRollup{}, err
	}
	m := newMerged(now, now)
	fresh := map[string]bool{}
	for _, in := range insts {
		if in.Stale {
			continue
		}
		hb := in.Heartbeat
		if start := hb.Time.Add(-time.Duration(hb.Rollup.Seconds * float64(time.Second))); m.From.After(start) {
			m.From = start
		}
		fresh[in.Instance] = true
		m.add(hb)
	}
	m.finish(fresh)
	return insts, m, nil
}

// MergedRollup merges the rollups of fleet's heartbeats in (from, to].
func (s *SQL) MergedRollup(ctx context.Context, fleet string, from, to time.Time) (MergedRollup, error) {
	m := newMerged(from, to)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	seen := map[string]bool{}
	lat := newDenseMerge()
	err := s.rangeHeartbeats(ctx, fleet, from, to, func(r *cachedRow) {
		seen[r.hb.Instance] = true
		// The counts through add, the buckets into the dense array.
		hb := *r.hb
		hb.Rollup.Latency = nil
		m.add(hb)
		lat.add(r)
	})
	if err != nil {
		return m, err
	}
	m.Latency = lat.hist()
	m.finish(seen)
	return m, nil
}

func (s *SQL) heartbeatUpsert() string {
	return s.upsert(tableHeartbeats, append([]string{"fleet", "ts_us", "instance", "status", "config_version", "requests", "errors", "span_us", "doc"}, capacityColumns...),
		[]string{"fleet", "ts_us", "instance"})
}

// compactChunk and compactChunks bound one PruneFleet's compaction work;
// the next call continues where it stopped.
const (
	compactChunk  = 2000
	compactChunks = 50
)

// PruneFleet keeps fleet's tables bounded (r: zero fields take
// DefaultRetention's): heartbeat rows older than KeepFine are merged into
// one row per instance and Window (counts summed, buckets merged, so the
// trend graphs keep their percentiles), rows older than KeepHeartbeats are
// deleted, instances silent for KeepStale are deleted, and the instances'
// route rows and history points past KeepMinutes (1 min) and KeepHours
// (1 h) are deleted. One sidecar
// prunes at a time (a try-lock: the others skip the round).
func (s *SQL) PruneFleet(ctx context.Context, fleet string, now time.Time, r Retention) (PruneResult, error) {
	var res PruneResult
	if r.KeepStale <= 0 {
		r.KeepStale = DefaultRetention.KeepStale
	}
	if r.KeepFine <= 0 {
		r.KeepFine = DefaultRetention.KeepFine
	}
	if r.Window <= 0 {
		r.Window = DefaultRetention.Window
	}
	if r.KeepHeartbeats <= 0 {
		r.KeepHeartbeats = DefaultRetention.KeepHeartbeats
	}
	if r.KeepMinutes <= 0 {
		r.KeepMinutes = DefaultRetention.KeepMinutes
	}
	r.KeepMinutes = max(r.KeepMinutes, r.KeepHeartbeats)
	if r.KeepHours <= 0 {
		r.KeepHours = DefaultRetention.KeepHours
	}
	ctx, cancel := context.WithTimeout(ctx, 6*s.opTimeout)
	defer cancel()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return res, s.classify("connecting to", "", err)
	}
	defer conn.Close()
	got, unlock, err := s.tryLock(ctx, conn, "pulsegate_prune:"+fleet)
	if err != nil || !got {
		return res, err
	}
	defer unlock()

	window := r.Window.Microseconds()
	before := now.Add(-r.KeepFine).UnixMicro() / window * window
	touched, err := s.compactingMinutes(ctx, conn, fleet, before, window)
	if err != nil {
		return res, err
	}
	for range compactChunks {
		n, merged, err := s.compact(ctx, conn, fleet, before, window)
		res.Compacted += merged
		if err != nil {
			return res, err
		}
		if n < compactChunk {
			break
		}
	}
	q, err := conn.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_heartbeats WHERE fleet = ? AND ts_us < ?`), fleet, now.Add(-r.KeepHeartbeats).UnixMicro())
	if err != nil {
		return res, s.classify("deleting from", tableHeartbeats, err)
	}
	res.Heartbeats, _ = q.RowsAffected()
	q, err = conn.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_instances WHERE fleet = ? AND last_seen_us < ?`), fleet, now.Add(-r.KeepStale).UnixMicro())
	if err != nil {
		return res, s.classify("deleting from", tableInstances, err)
	}
	res.Instances, _ = q.RowsAffected()
	if res.RouteRows, err = s.pruneRoutes(ctx, conn, fleet, now, r.KeepMinutes, r.KeepHours); err != nil {
		return res, err
	}
	written, err := s.rollupFleetMinutes(ctx, conn, fleet, now, r, touched)
	if err != nil {
		return res, err
	}
	if err := s.rollupFleetHours(ctx, conn, fleet, now, r, written); err != nil {
		return res, err
	}
	return res, nil
}

// compact merges up to compactChunk fine rows stamped at or before
// `before` (a window boundary) into one row per instance and window (the
// window (end-window, end] is stamped end), in one transaction. A window
// already merged (its rows split over chunks or rounds) gains the rest.
func (s *SQL) compact(ctx context.Context, conn *sql.Conn, fleet string, before, window int64) (selected int, merged int64, err error) {
	type key struct {
		instance string
		end      int64
	}
	err = func() error {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		rows, err := tx.QueryContext(ctx, s.rebind(`SELECT ts_us, instance, doc FROM pulsegate_heartbeats
 WHERE fleet = ? AND span_us < ? AND ts_us <= ? ORDER BY ts_us, instance LIMIT ?`), fleet, window, before, compactChunk)
		if err != nil {
			return err
		}
		groups := map[key][]Heartbeat{}
		fineTS := map[key][]int64{}
		var order []key
		for rows.Next() {
			var ts int64
			var inst, doc string
			if err := rows.Scan(&ts, &inst, &doc); err != nil {
				rows.Close()
				return err
			}
			var hb Heartbeat
			if err := json.Unmarshal([]byte(doc), &hb); err != nil {
				rows.Close()
				return fmt.Errorf("decoding heartbeat: %w", err)
			}
			selected++
			k := key{inst, (ts + window - 1) / window * window}
			if _, ok := groups[k]; !ok {
				order = append(order, k)
			}
			groups[k] = append(groups[k], hb)
			fineTS[k] = append(fineTS[k], ts)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		up := s.heartbeatUpsert()
		for _, k := range order {
			// A merged row of this window from an earlier chunk (never one of
			// this chunk's own fine rows: those are span_us < window).
			var acc Heartbeat
			have := false
			var doc string
			err := tx.QueryRowContext(ctx, s.rebind(`SELECT doc FROM pulsegate_heartbeats WHERE fleet = ? AND ts_us = ? AND instance = ? AND span_us >= ?`),
				fleet, k.end, k.instance, window).Scan(&doc)
			switch {
			case err == nil:
				if err := json.Unmarshal([]byte(doc), &acc); err != nil {
					return fmt.Errorf("decoding heartbeat: %w", err)
				}
				have = true
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
			for _, hb := range groups[k] {
				if !have {
					acc, have = hb, true
					continue
				}
				mergeInto(&acc, hb)
			}
			acc.Time = time.UnixMicro(k.end).UTC()
			ts := fineTS[k]
			ph := strings.TrimSuffix(strings.Repeat("?, ", len(ts)), ", ")
			args := []any{fleet, k.instance}
			for _, t := range ts {
				args = append(args, t)
			}
			if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_heartbeats WHERE fleet = ? AND instance = ? AND ts_us IN (`+ph+`)`), args...); err != nil {
				return err
			}
			b, err := json.Marshal(acc)
			if err != nil {
				return err
			}
			args = append([]any{fleet, k.end, k.instance, acc.Status, acc.ConfigVersion,
				int64(acc.Rollup.Answered()), int64(acc.Rollup.Failed()), window, string(b)}, capacityArgs(acc.Rollup.Capacity)...)
			if _, err := tx.ExecContext(ctx, up, args...); err != nil {
				return err
			}
			merged += int64(len(ts))
		}
		return tx.Commit()
	}()
	if err != nil {
		return selected, 0, s.classify("compacting", tableHeartbeats, err)
	}
	return selected, merged, nil
}

// tryLock takes the named lock on conn without waiting; got is false when
// another sidecar holds it.
func (s *SQL) tryLock(ctx context.Context, conn *sql.Conn, name string) (got bool, unlock func(), err error) {
	release := func(q string, arg any) func() {
		return func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_, _ = conn.ExecContext(rctx, q, arg)
		}
	}
	if s.dialect == dialectMySQL {
		name = s.database + ":" + name
		if len(name) > 64 {
			name = name[:64]
		}
		var v sql.NullInt64
		if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, 0)`, name).Scan(&v); err != nil {
			return false, nil, s.classify("taking the prune lock on", tableHeartbeats, err)
		}
		if v.Int64 != 1 {
			return false, nil, nil
		}
		return true, release(`SELECT RELEASE_LOCK(?)`, name), nil
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	key := int64(h.Sum64() >> 1)
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		return false, nil, s.classify("taking the prune lock on", tableHeartbeats, err)
	}
	if !ok {
		return false, nil, nil
	}
	return true, release(`SELECT pg_advisory_unlock($1)`, key), nil
}

// FleetConfig returns fleet's stored live configuration; Version 0 and a
// null Doc when none was ever stored.
func (s *SQL) FleetConfig(ctx context.Context, fleet string) (ConfigVersion, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cv := ConfigVersion{Fleet: fleet}
	var doc sql.NullString
	var us int64
	err := s.db.QueryRowContext(ctx, s.rebind(`SELECT version, doc, updated_us, instance, actor FROM pulsegate_fleet_config WHERE fleet = ?`), fleet).
		Scan(&cv.Version, &doc, &us, &cv.Instance, &cv.Actor)
	if errors.Is(err, sql.ErrNoRows) {
		return cv, nil
	}
	if err != nil {
		return cv, s.classify("reading", tableFleetConfig, err)
	}
	if doc.Valid {
		cv.Doc = json.RawMessage(doc.String)
	}
	cv.Updated = time.UnixMicro(us).UTC()
	return cv, nil
}

// SetFleetConfig stores doc (the live changes; nil removes them) as
// version expect+1 if the stored version is still expect: a compare-and-set
// in one statement, so of two sidecars posting on the same version one wins
// and the other gets ErrVersionConflict.
func (s *SQL) SetFleetConfig(ctx context.Context, fleet string, expect int64, doc json.RawMessage, instance, actor string, at time.Time) (ConfigVersion, error) {
	if doc != nil && !json.Valid(doc) {
		return ConfigVersion{}, errors.New("setting fleet configuration: document is not valid JSON")
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var docArg any
	if doc != nil {
		docArg = string(doc)
	}
	actor = Truncate(actor, 255)
	var n int64
	if expect == 0 {
		var q string
		if s.dialect == dialectPostgres {
			q = `INSERT INTO pulsegate_fleet_config (fleet, version, doc, updated_us, instance, actor) VALUES ($1, 1, $2, $3, $4, $5) ON CONFLICT (fleet) DO NOTHING`
		} else {
			q = `INSERT IGNORE INTO pulsegate_fleet_config (fleet, version, doc, updated_us, instance, actor) VALUES (?, 1, ?, ?, ?, ?)`
		}
		res, err := s.db.ExecContext(ctx, q, fleet, docArg, at.UnixMicro(), instance, actor)
		if err != nil {
			return ConfigVersion{}, s.classify("inserting into", tableFleetConfig, err)
		}
		n, _ = res.RowsAffected()
	} else {
		res, err := s.db.ExecContext(ctx, s.rebind(`UPDATE pulsegate_fleet_config SET version = version + 1, doc = ?, updated_us = ?, instance = ?, actor = ?
 WHERE fleet = ? AND version = ?`), docArg, at.UnixMicro(), instance, actor, fleet, expect)
		if err != nil {
			return ConfigVersion{}, s.classify("updating", tableFleetConfig, err)
		}
		n, _ = res.RowsAffected()
	}
	if n != 1 {
		cur, err := s.FleetConfig(ctx, fleet)
		if err != nil {
			return ConfigVersion{}, err
		}
		return cur, fmt.Errorf("%w: expected version %d, the fleet runs version %d", ErrVersionConflict, expect, cur.Version)
	}
	return ConfigVersion{Fleet: fleet, Version: expect + 1, Doc: doc, Updated: time.UnixMicro(at.UnixMicro()).UTC(), Instance: instance, Actor: actor}, nil
}

func newFleetAlertID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RaiseFleetAlert adds or updates instance's view of the fleet's active
// alert with a's key. When none is active, one is created (id a.ID, or a
// new one when empty); two sidecars raising the same key at once end with
// one row (a unique key on the active key), and both get its id.
func (s *SQL) RaiseFleetAlert(ctx context.Context, fleet, instance string, a AlertRecord) (FleetAlert, error) {
	if a.Key == "" {
		return FleetAlert{}, errors.New("raising fleet alert: key is required")
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if a.ID == "" {
		a.ID = newFleetAlertID()
	}
	a.State = StateFiring
	a.ResolvedAt = nil
	rec, err := json.Marshal(a)
	if err != nil {
		return FleetAlert{}, fmt.Errorf("encoding fleet alert: %w", err)
	}
	var ins string
	if s.dialect == dialectPostgres {
		ins = `INSERT INTO pulsegate_fleet_alerts (id, fleet, alert_key, active_key, state, first_seen_us, record) VALUES ($1, $2, $3, $3, $4, $5, $6)
 ON CONFLICT DO NOTHING`
	} else {
		ins = `INSERT IGNORE INTO pulsegate_fleet_alerts (id, fleet, alert_key, active_key, state, first_seen_us, record) VALUES (?, ?, ?, ?, ?, ?, ?)`
	}
	var id string
	// The insert does nothing when the key is already active (another
	// sidecar's row wins) or, rarely, when the id is an older resolved
	// occurrence's: then it is tried once more with a fresh id.
	for attempt := 0; ; attempt++ {
		args := []any{a.ID, fleet, a.Key}
		if s.dialect == dialectMySQL {
			args = append(args, a.Key)
		}
		args = append(args, StateFiring, a.FirstSeen.UnixMicro(), string(rec))
		if _, err := s.db.ExecContext(ctx, ins, args...); err != nil {
			return FleetAlert{}, s.classify("inserting into", tableFleetAlerts, err)
		}
		err := s.db.QueryRowContext(ctx, s.rebind(`SELECT id FROM pulsegate_fleet_alerts WHERE fleet = ? AND active_key = ?`), fleet, a.Key).Scan(&id)
		if err == nil {
			break
		}
		if !errors.Is(err, sql.ErrNoRows) || attempt > 0 {
			return FleetAlert{}, s.classify("reading", tableFleetAlerts, err)
		}
		a.ID = newFleetAlertID()
		if rec, err = json.Marshal(a); err != nil {
			return FleetAlert{}, fmt.Errorf("encoding fleet alert: %w", err)
		}
	}
	q := s.upsert(tableFleetAlertInst, []string{"alert_id", "instance", "state", "severity", "value", "last_seen_us"}, []string{"alert_id", "instance"})
	if _, err := s.db.ExecContext(ctx, q, id, instance, StateFiring, a.Severity, a.Value, a.LastSeen.UnixMicro()); err != nil {
		return FleetAlert{}, s.classify("inserting into", tableFleetAlertInst, err)
	}
	return s.fleetAlert(ctx, fleet, id)
}

// ResolveFleetAlert marks instance's view of the active alert with key
// resolved; when no instance still sees it, the fleet alert resolves (its
// acknowledgement ends with it). Without an active alert it returns
// ErrNotFound.
func (s *SQL) ResolveFleetAlert(ctx context.Context, fleet, instance, key string, at time.Time) (FleetAlert, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var id string
	err := s.db.QueryRowContext(ctx, s.rebind(`SELECT id FROM pulsegate_fleet_alerts WHERE fleet = ? AND active_key = ?`), fleet, key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return FleetAlert{}, fmt.Errorf("resolving fleet alert %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return FleetAlert{}, s.classify("reading", tableFleetAlerts, err)
	}
	if _, err := s.db.ExecContext(ctx, s.rebind(`UPDATE pulsegate_fleet_alert_instances SET state = ?, last_seen_us = ? WHERE alert_id = ? AND instance = ?`),
		StateResolved, at.UnixMicro(), id, instance); err != nil {
		return FleetAlert{}, s.classify("updating", tableFleetAlertInst, err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var firing int
		if err := tx.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM pulsegate_fleet_alert_instances WHERE alert_id = ? AND state = ?`), id, StateFiring).Scan(&firing); err != nil {
			return err
		}
		if firing > 0 {
			return nil
		}
		a, err := s.readAlertRecord(ctx, tx, id)
		if err != nil {
			return err
		}
		a.State = StateResolved
		a.ResolvedAt = &at
		rec, err := json.Marshal(a)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.rebind(`UPDATE pulsegate_fleet_alerts SET active_key = NULL, state = ?, record = ? WHERE id = ? AND active_key IS NOT NULL`),
			StateResolved, string(rec), id)
		return err
	})
	if err != nil {
		return FleetAlert{}, s.classify("updating", tableFleetAlerts, err)
	}
	return s.fleetAlert(ctx, fleet, id)
}

// AcknowledgeFleetAlert acknowledges the active fleet alert id for every
// instance. An unknown or resolved alert is ErrNotFound.
func (s *SQL) AcknowledgeFleetAlert(ctx context.Context, fleet, id string, ack Acknowledgement) (FleetAlert, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		q := `SELECT record FROM pulsegate_fleet_alerts WHERE id = ? AND fleet = ? AND active_key IS NOT NULL FOR UPDATE`
		var raw string
		if err := tx.QueryRowContext(ctx, s.rebind(q), id, fleet).Scan(&raw); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("acknowledging fleet alert %s: %w", id, ErrNotFound)
			}
			return err
		}
		var a AlertRecord
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return fmt.Errorf("decoding fleet alert %s: %w", id, err)
		}
		t := ack.Time
		a.State, a.AcknowledgedAt, a.AcknowledgedBy, a.AckNote = StateAcknowledged, &t, Truncate(ack.By, MaxTextLen), Truncate(ack.Note, MaxTextLen)
		rec, err := json.Marshal(a)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.rebind(`UPDATE pulsegate_fleet_alerts SET state = ?, record = ? WHERE id = ?`), StateAcknowledged, string(rec), id)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return FleetAlert{}, err
	}
	if err != nil {
		return FleetAlert{}, s.classify("updating", tableFleetAlerts, err)
	}
	return s.fleetAlert(ctx, fleet, id)
}

func (s *SQL) readAlertRecord(ctx context.Context, q queryer, id string) (AlertRecord, error) {
	var raw string
	var a AlertRecord
	if err := q.QueryRowContext(ctx, s.rebind(`SELECT record FROM pulsegate_fleet_alerts WHERE id = ?`), id).Scan(&raw); err != nil {
		return a, err
	}
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		return a, fmt.Errorf("decoding fleet alert %s: %w", id, err)
	}
	return a, nil
}

// fleetAlert reads one fleet alert with its instances.
func (s *SQL) fleetAlert(ctx context.Context, fleet, id string) (FleetAlert, error) {
	as, err := s.fleetAlerts(ctx, fleet, `id = ?`, id)
	if err != nil {
		return FleetAlert{}, err
	}
	if len(as) == 0 {
		return FleetAlert{}, fmt.Errorf("fleet alert %s: %w", id, ErrNotFound)
	}
	return as[0], nil
}

// FleetAlerts returns fleet's alerts with their instances, newest first.
func (s *SQL) FleetAlerts(ctx context.Context, fleet string, activeOnly bool) ([]FleetAlert, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if activeOnly {
		return s.fleetAlerts(ctx, fleet, `active_key IS NOT NULL`)
	}
	return s.fleetAlerts(ctx, fleet, `1=1`)
}

func (s *SQL) fleetAlerts(ctx context.Context, fleet, where string, args ...any) ([]FleetAlert, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT id, record FROM pulsegate_fleet_alerts WHERE fleet = ? AND `+where+` ORDER BY first_seen_us DESC, id DESC`),
		append([]any{fleet}, args...)...)
	if err != nil {
		return nil, s.classify("reading", tableFleetAlerts, err)
	}
	var out []FleetAlert
	byID := map[string]int{}
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			rows.Close()
			return nil, s.classify("reading", tableFleetAlerts, err)
		}
		var a AlertRecord
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			rows.Close()
			return nil, fmt.Errorf("decoding fleet alert %s: %w", id, err)
		}
		a.ID = id
		byID[id] = len(out)
		out = append(out, FleetAlert{AlertRecord: a, Fleet: fleet, Instances: []AlertInstance{}})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", tableFleetAlerts, err)
	}
	if len(out) == 0 {
		return out, nil
	}
	ids := make([]any, 0, len(out))
	for _, a := range out {
		ids = append(ids, a.ID)
	}
	for len(ids) > 0 {
		n := min(len(ids), 200)
		ph := strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
		irows, err := s.db.QueryContext(ctx, s.rebind(`SELECT alert_id, instance, state, severity, value, last_seen_us FROM pulsegate_fleet_alert_instances
 WHERE alert_id IN (`+ph+`) ORDER BY instance`), ids[:n]...)
		if err != nil {
			return nil, s.classify("reading", tableFleetAlertInst, err)
		}
		for irows.Next() {
			var id string
			var ai AlertInstance
			var us int64
			if err := irows.Scan(&id, &ai.Instance, &ai.State, &ai.Severity, &ai.Value, &us); err != nil {
				irows.Close()
				return nil, s.classify("reading", tableFleetAlertInst, err)
			}
			ai.LastSeen = time.UnixMicro(us).UTC()
			if i, ok := byID[id]; ok {
				out[i].Instances = append(out[i].Instances, ai)
			}
		}
		irows.Close()
		if err := irows.Err(); err != nil {
			return nil, s.classify("reading", tableFleetAlertInst, err)
		}
		ids = ids[n:]
	}
	return out, nil
}
