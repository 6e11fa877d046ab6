package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	hbQ := s.upsert(tableHeartbeats, []string{"fleet", "ts_us", "instance", "status", "config_version", "requests", "errors", "doc"},
		[]string{"fleet", "ts_us", "instance"})
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
			if _, err := tx.ExecContext(ctx, hbQ, hb.Fleet, us, hb.Instance, hb.Status, hb.ConfigVersion,
				int64(hb.Rollup.Answered()), int64(hb.Rollup.Failed()), string(doc)); err != nil {
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
// sorted by name, stale ones flagged.
func (s *SQL) Instances(ctx context.Context, fleet string, now time.Time) ([]InstanceStatus, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT doc FROM pulsegate_instances WHERE fleet = ? ORDER BY instance`), fleet)
	if err != nil {
		return nil, s.classify("reading", tableInstances, err)
	}
	defer rows.Close()
	out := []InstanceStatus{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, s.classify("reading", tableInstances, err)
		}
		var hb Heartbeat
		if err := json.Unmarshal([]byte(doc), &hb); err != nil {
			return nil, fmt.Errorf("decoding heartbeat from %s: %w", tableInstances, err)
		}
		out = append(out, statusOf(hb, now))
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", tableInstances, err)
	}
	return out, nil
}

// MergedRollup merges the rollups of fleet's heartbeats in (from, to].
func (s *SQL) MergedRollup(ctx context.Context, fleet string, from, to time.Time) (MergedRollup, error) {
	m := newMerged(from, to)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT doc FROM pulsegate_heartbeats WHERE fleet = ? AND ts_us > ? AND ts_us <= ?`),
		fleet, from.UnixMicro(), to.UnixMicro())
	if err != nil {
		return m, s.classify("reading", tableHeartbeats, err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return m, s.classify("reading", tableHeartbeats, err)
		}
		var hb Heartbeat
		if err := json.Unmarshal([]byte(doc), &hb); err != nil {
			return m, fmt.Errorf("decoding heartbeat from %s: %w", tableHeartbeats, err)
		}
		seen[hb.Instance] = true
		m.add(hb)
	}
	if err := rows.Err(); err != nil {
		return m, s.classify("reading", tableHeartbeats, err)
	}
	m.finish(seen)
	return m, nil
}

// PruneFleet deletes fleet's heartbeats older than now-keepHeartbeats and
// the instances silent since now-keepStale.
func (s *SQL) PruneFleet(ctx context.Context, fleet string, now time.Time, keepStale, keepHeartbeats time.Duration) (PruneResult, error) {
	var r PruneResult
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_heartbeats WHERE fleet = ? AND ts_us < ?`), fleet, now.Add(-keepHeartbeats).UnixMicro())
	if err != nil {
		return r, s.classify("deleting from", tableHeartbeats, err)
	}
	r.Heartbeats, _ = res.RowsAffected()
	res, err = s.db.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_instances WHERE fleet = ? AND last_seen_us < ?`), fleet, now.Add(-keepStale).UnixMicro())
	if err != nil {
		return r, s.classify("deleting from", tableInstances, err)
	}
	r.Instances, _ = res.RowsAffected()
	return r, nil
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
	args := []any{a.ID, fleet, a.Key}
	if s.dialect == dialectMySQL {
		args = append(args, a.Key)
	}
	args = append(args, StateFiring, a.FirstSeen.UnixMicro(), string(rec))
	if _, err := s.db.ExecContext(ctx, ins, args...); err != nil {
		return FleetAlert{}, s.classify("inserting into", tableFleetAlerts, err)
	}
	var id string
	if err := s.db.QueryRowContext(ctx, s.rebind(`SELECT id FROM pulsegate_fleet_alerts WHERE fleet = ? AND active_key = ?`), fleet, a.Key).Scan(&id); err != nil {
		return FleetAlert{}, s.classify("reading", tableFleetAlerts, err)
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
