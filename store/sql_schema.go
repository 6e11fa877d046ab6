package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// The shared store's tables. Every name starts with pulsegate_ so the
// tables sit beside the app's own without a clash.
const (
	tableSchema         = "pulsegate_schema_version"
	tableAlerts         = "pulsegate_alerts"
	tableAcks           = "pulsegate_acknowledgements"
	tableAudit          = "pulsegate_audit"
	tableHeartbeats     = "pulsegate_heartbeats"
	tableInstances      = "pulsegate_instances"
	tableFleetConfig    = "pulsegate_fleet_config"
	tableFleetAlerts    = "pulsegate_fleet_alerts"
	tableFleetAlertInst = "pulsegate_fleet_alert_instances"
	tableFleetMinutes   = "pulsegate_fleet_minutes"
	tableFleetHours     = "pulsegate_fleet_hours"
	tableRouteRollups   = "pulsegate_route_rollups"
	tableInstHistory    = "pulsegate_instance_history"
)

// dataTables are the tables the running store reads and writes (schema
// version excepted), in creation order.
var dataTables = []string{tableAlerts, tableAcks, tableAudit, tableHeartbeats, tableInstances,
	tableFleetConfig, tableFleetAlerts, tableFleetAlertInst, tableFleetMinutes, tableFleetHours, tableRouteRollups, tableInstHistory}

// migration is one schema version: the statements that create it, per
// dialect, each creating one table (named for the privilege error).
type migration struct {
	version int
	mysql   []ddl
	pg      []ddl
}

type ddl struct {
	table string
	stmt  string
}

const mysqlTableOpts = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

// migrations, oldest first. Times are BIGINT microseconds since the epoch
// UTC (no time zone or precision differences between the servers). A
// statement may be re-run after a crash halfway: IF NOT EXISTS everywhere.
var migrations = []migration{{
	version: 1,
	mysql: []ddl{
		{tableAlerts, `CREATE TABLE IF NOT EXISTS pulsegate_alerts (
  fleet VARCHAR(128) NOT NULL, instance VARCHAR(128) NOT NULL, id VARCHAR(64) NOT NULL,
  state VARCHAR(16) NOT NULL, first_seen_us BIGINT NOT NULL, resolved_us BIGINT NULL,
  record LONGTEXT NOT NULL, PRIMARY KEY (fleet, instance, id))` + mysqlTableOpts},
		{tableAcks, `CREATE TABLE IF NOT EXISTS pulsegate_acknowledgements (
  fleet VARCHAR(128) NOT NULL, instance VARCHAR(128) NOT NULL, alert_id VARCHAR(64) NOT NULL,
  ack_us BIGINT NOT NULL, record LONGTEXT NOT NULL, PRIMARY KEY (fleet, instance, alert_id))` + mysqlTableOpts},
		{tableAudit, `CREATE TABLE IF NOT EXISTS pulsegate_audit (
  seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, fleet VARCHAR(128) NOT NULL, instance VARCHAR(128) NOT NULL,
  time_us BIGINT NOT NULL, action VARCHAR(64) NOT NULL, entry LONGTEXT NOT NULL,
  INDEX pulsegate_audit_time (fleet, time_us, seq))` + mysqlTableOpts},
		{tableHeartbeats, `CREATE TABLE IF NOT EXISTS pulsegate_heartbeats (
  fleet VARCHAR(128) NOT NULL, ts_us BIGINT NOT NULL, instance VARCHAR(128) NOT NULL,
  status VARCHAR(16) NOT NULL, config_version BIGINT NOT NULL, requests BIGINT NOT NULL, errors BIGINT NOT NULL, span_us BIGINT NOT NULL,
  doc LONGTEXT NOT NULL, PRIMARY KEY (fleet, ts_us, instance))` + mysqlTableOpts},
		{tableInstances, `CREATE TABLE IF NOT EXISTS pulsegate_instances (
  fleet VARCHAR(128) NOT NULL, instance VARCHAR(128) NOT NULL, first_seen_us BIGINT NOT NULL,
  last_seen_us BIGINT NOT NULL, status VARCHAR(16) NOT NULL, config_version BIGINT NOT NULL,
  doc LONGTEXT NOT NULL, PRIMARY KEY (fleet, instance))` + mysqlTableOpts},
		{tableFleetConfig, `CREATE TABLE IF NOT EXISTS pulsegate_fleet_config (
  fleet VARCHAR(128) NOT NULL PRIMARY KEY, version BIGINT NOT NULL, doc LONGTEXT NULL,
  updated_us BIGINT NOT NULL, instance VARCHAR(128) NOT NULL, actor VARCHAR(255) NOT NULL)` + mysqlTableOpts},
		{tableFleetAlerts, `CREATE TABLE IF NOT EXISTS pulsegate_fleet_alerts (
  id VARCHAR(64) NOT NULL PRIMARY KEY, fleet VARCHAR(128) NOT NULL, alert_key VARCHAR(255) NOT NULL,
  active_key VARCHAR(255) NULL, state VARCHAR(16) NOT NULL, first_seen_us BIGINT NOT NULL,
  record LONGTEXT NOT NULL, UNIQUE KEY pulsegate_fleet_alerts_active (fleet, active_key),
  INDEX pulsegate_fleet_alerts_seen (fleet, first_seen_us))` + mysqlTableOpts},
		{tableFleetAlertInst, `CREATE TABLE IF NOT EXISTS pulsegate_fleet_alert_instances (
  alert_id VARCHAR(64) NOT NULL, instance VARCHAR(128) NOT NULL, state VARCHAR(16) NOT NULL,
  severity VARCHAR(16) NOT NULL, value DOUBLE NOT NULL, last_seen_us BIGINT NOT NULL,
  PRIMARY KEY (alert_id, instance))` + mysqlTableOpts},
	},
	pg: []ddl{
		{tableAlerts, `CREATE TABLE IF NOT EXISTS pulsegate_alerts (
  fleet VARCHAR(128) NOT NULL, instance VARCHAR(128) NOT NULL, id VARCHAR(64) NOT NULL,
  state VARCHAR(16) NOT NULL, first_seen_us BIGINT NOT NULL, resolved_us BIGINT NULL,
  record TEXT NOT NULL, PRIMARY KEY (fleet, instance, id))`},
		{tableAcks, `CREATE TABLE IF NOT EXISTS pulsegate_acknowledgements (
  fleet VARCHAR(128) NOT NULL, instance VARCHAR(128) NOT NULL, alert_id VARCHAR(64) NOT NULL,
  ack_us BIGINT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (fleet, instance, alert_id))`},
		{tableAudit, `CREATE TABLE IF NOT EXISTS pulsegate_audit (
  seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, fleet VARCHAR(128) NOT NULL, instance VARCHAR(128) NOT NULL,
  time_us BIGINT NOT NULL, action VARCHAR(64) NOT NULL, entry TEXT NOT NULL)`},
		{tableAudit, `CREATE INDEX IF NOT EXISTS pulsegate_audit_time ON pulsegate_audit (fleet, time_us, seq)`},
		{tableHeartbeats, `CREATE TABLE IF NOT EXISTS pulsegate_heartbeats (
  fleet VARCHAR(128) NOT NULL, ts_us BIGINT NOT NULL, instance VARCHAR(128) NOT NULL,
  status VARCHAR(16) NOT NULL, config_version BIGINT NOT NULL, requests BIGINT NOT NULL, errors BIGINT NOT NULL, span_us BIGINT NOT NULL,
  doc TEXT NOT NULL, PRIMARY KEY (fleet, ts_us, instance))`},
		{tableInstances, `CREATE TABLE IF NOT EXISTS pulsegate_instances (
  fleet VARCHAR(128) NOT NULL, instance VARCHAR(128) NOT NULL, first_seen_us BIGINT NOT NULL,
  last_seen_us BIGINT NOT NULL, status VARCHAR(16) NOT NULL, config_version BIGINT NOT NULL,
  doc TEXT NOT NULL, PRIMARY KEY (fleet, instance))`},
		{tableFleetConfig, `CREATE TABLE IF NOT EXISTS pulsegate_fleet_config (
  fleet VARCHAR(128) NOT NULL PRIMARY KEY, version BIGINT NOT NULL, doc TEXT NULL,
  updated_us BIGINT NOT NULL, instance VARCHAR(128) NOT NULL, actor VARCHAR(255) NOT NULL)`},
		{tableFleetAlerts, `CREATE TABLE IF NOT EXISTS pulsegate_fleet_alerts (
  id VARCHAR(64) NOT NULL PRIMARY KEY, fleet VARCHAR(128) NOT NULL, alert_key VARCHAR(255) NOT NULL,
  active_key VARCHAR(255) NULL, state VARCHAR(16) NOT NULL, first_seen_us BIGINT NOT NULL,
  record TEXT NOT NULL, CONSTRAINT pulsegate_fleet_alerts_active UNIQUE (fleet, active_key))`},
		{tableFleetAlerts, `CREATE INDEX IF NOT EXISTS pulsegate_fleet_alerts_seen ON pulsegate_fleet_alerts (fleet, first_seen_us)`},
		{tableFleetAlertInst, `CREATE TABLE IF NOT EXISTS pulsegate_fleet_alert_instances (
  alert_id VARCHAR(64) NOT NULL, instance VARCHAR(128) NOT NULL, state VARCHAR(16) NOT NULL,
  severity VARCHAR(16) NOT NULL, value DOUBLE PRECISION NOT NULL, last_seen_us BIGINT NOT NULL,
  PRIMARY KEY (alert_id, instance))`},
	},
}, {
	// Version 2: the fleet's per-minute rollup rows (the fleet trend
	// series' older part, see sql_fleet_minutes.go). rows, requests and
	// errors repeat the merged heartbeat rows' count and sums, so the prune
	// pass finds the minutes whose heartbeat rows changed without reading
	// their documents.
	version: 2,
	mysql: []ddl{
		{tableFleetMinutes, `CREATE TABLE IF NOT EXISTS pulsegate_fleet_minutes (
  fleet VARCHAR(128) NOT NULL, minute_us BIGINT NOT NULL, rows_merged BIGINT NOT NULL, requests BIGINT NOT NULL,
  errors BIGINT NOT NULL, doc LONGTEXT NOT NULL, insts LONGTEXT NOT NULL, PRIMARY KEY (fleet, minute_us))` + mysqlTableOpts},
	},
	pg: []ddl{
		{tableFleetMinutes, `CREATE TABLE IF NOT EXISTS pulsegate_fleet_minutes (
  fleet VARCHAR(128) NOT NULL, minute_us BIGINT NOT NULL, rows_merged BIGINT NOT NULL, requests BIGINT NOT NULL,
  errors BIGINT NOT NULL, doc TEXT NOT NULL, insts TEXT NOT NULL, PRIMARY KEY (fleet, minute_us))`},
	},
}, {
	// Version 3: the fleet's per-hour rollup rows (the fleet trend series
	// beyond the minute rows' retention, see rollupFleetHours), merged from
	// the minute rows; rows, requests and errors repeat the sums of the
	// hour's minute rows, so the prune pass finds the hours to recompute.
	version: 3,
	mysql: []ddl{
		{tableFleetHours, `CREATE TABLE IF NOT EXISTS pulsegate_fleet_hours (
  fleet VARCHAR(128) NOT NULL, hour_us BIGINT NOT NULL, rows_merged BIGINT NOT NULL, requests BIGINT NOT NULL,
  errors BIGINT NOT NULL, doc LONGTEXT NOT NULL, insts LONGTEXT NOT NULL, PRIMARY KEY (fleet, hour_us))` + mysqlTableOpts},
	},
	pg: []ddl{
		{tableFleetHours, `CREATE TABLE IF NOT EXISTS pulsegate_fleet_hours (
  fleet VARCHAR(128) NOT NULL, hour_us BIGINT NOT NULL, rows_merged BIGINT NOT NULL, requests BIGINT NOT NULL,
  errors BIGINT NOT NULL, doc TEXT NOT NULL, insts TEXT NOT NULL, PRIMARY KEY (fleet, hour_us))`},
	},
}, {
	// Version 4: each instance's per-route rollups (the history archive's
	// 1 min and 1 h route rows, step_s 60 or 3600) and its long history
	// (the archive's 1 min and 1 h points, encoded by the history
	// package), see sql_routes.go. Every sidecar writes only its own rows
	// (instance in the key) and rewrites a row whole, so a replay is an
	// idempotent upsert. The start index serves the volumes and the prune.
	version: 4,
	mysql: []ddl{
		{tableRouteRollups, `CREATE TABLE IF NOT EXISTS pulsegate_route_rollups (
  fleet VARCHAR(128) NOT NULL, step_s INT NOT NULL, route VARCHAR(255) NOT NULL, start_us BIGINT NOT NULL,
  instance VARCHAR(128) NOT NULL, version VARCHAR(64) NOT NULL, requests BIGINT NOT NULL, errors BIGINT NOT NULL,
  app_errors BIGINT NOT NULL, sum_us BIGINT NOT NULL, buckets BLOB NOT NULL,
  PRIMARY KEY (fleet, step_s, route, start_us, instance, version),
  INDEX pulsegate_route_rollups_start (fleet, step_s, start_us))` + mysqlTableOpts},
		{tableInstHistory, `CREATE TABLE IF NOT EXISTS pulsegate_instance_history (
  fleet VARCHAR(128) NOT NULL, instance VARCHAR(128) NOT NULL, step_s INT NOT NULL, start_us BIGINT NOT NULL,
  point BLOB NOT NULL, PRIMARY KEY (fleet, instance, step_s, start_us),
  INDEX pulsegate_instance_history_start (fleet, step_s, start_us))` + mysqlTableOpts},
	},
	pg: []ddl{
		{tableRouteRollups, `CREATE TABLE IF NOT EXISTS pulsegate_route_rollups (
  fleet VARCHAR(128) NOT NULL, step_s INT NOT NULL, route VARCHAR(255) NOT NULL, start_us BIGINT NOT NULL,
  instance VARCHAR(128) NOT NULL, version VARCHAR(64) NOT NULL, requests BIGINT NOT NULL, errors BIGINT NOT NULL,
  app_errors BIGINT NOT NULL, sum_us BIGINT NOT NULL, buckets BYTEA NOT NULL,
  PRIMARY KEY (fleet, step_s, route, start_us, instance, version))`},
		{tableRouteRollups, `CREATE INDEX IF NOT EXISTS pulsegate_route_rollups_start ON pulsegate_route_rollups (fleet, step_s, start_us)`},
		{tableInstHistory, `CREATE TABLE IF NOT EXISTS pulsegate_instance_history (
  fleet VARCHAR(128) NOT NULL, instance VARCHAR(128) NOT NULL, step_s INT NOT NULL, start_us BIGINT NOT NULL,
  point BYTEA NOT NULL, PRIMARY KEY (fleet, instance, step_s, start_us))`},
		{tableInstHistory, `CREATE INDEX IF NOT EXISTS pulsegate_instance_history_start ON pulsegate_instance_history (fleet, step_s, start_us)`},
	},
}, {
	// Version 5: backpressure's figures on the heartbeat, minute and hour
	// rows (capacityColumns: rejections in all and by cause, peak in
	// flight and queued, the concurrency limit), repeating the doc's
	// CapacityFigures for queries. Rows written before read NULL, and
	// their docs have no capacity: not measured. One ALTER per table, so
	// on MySQL a re-run after a crash finds all of a table's columns or
	// none (duplicateColumn skips it); PostgreSQL has ADD COLUMN IF NOT EXISTS.
	version: 5,
	mysql:   addCapacityColumns(dialectMySQL),
	pg:      addCapacityColumns(dialectPostgres),
}}

// addCapacityColumns are version 5's statements.
func addCapacityColumns(d dialect) []ddl {
	var out []ddl
	for _, t := range []string{tableHeartbeats, tableFleetMinutes, tableFleetHours} {
		adds := make([]string, len(capacityColumns))
		for i, c := range capacityColumns {
			if d == dialectPostgres {
				adds[i] = "ADD COLUMN IF NOT EXISTS " + c + " BIGINT NULL"
			} else {
				adds[i] = "ADD COLUMN " + c + " BIGINT NULL"
			}
		}
		out = append(out, ddl{t, "ALTER TABLE " + t + " " + strings.Join(adds, ", ")})
	}
	return out
}

// duplicateColumn is MySQL's "Duplicate column name" (1060): a version 5
// ALTER that already ran.
func duplicateColumn(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1060
}

// SchemaVersion is the newest schema this pulsegate creates.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

func (m migration) stmts(d dialect) []ddl {
	if d == dialectPostgres {
		return m.pg
	}
	return m.mysql
}

// migrate brings the schema to SchemaVersion. The fast path reads the
// version without a lock; otherwise one sidecar at a time migrates, under
// the database's own lock (MySQL GET_LOCK, PostgreSQL pg_advisory_lock),
// re-reading the version once it holds the lock, so many sidecars starting
// at once create each table once.
func (s *SQL) migrate(ctx context.Context) error {
	if v, err := s.schemaVersion(ctx, s.db); err == nil && v == SchemaVersion() {
		return nil
	} else if err == nil && v > SchemaVersion() {
		return fmt.Errorf("schema version %d in %s is newer than this pulsegate understands (%d): upgrade this sidecar", v, tableSchema, SchemaVersion())
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.classify("connecting", "", err)
	}
	defer conn.Close()
	unlock, err := s.lock(ctx, conn)
	if err != nil {
		return err
	}
	defer unlock()

	create := `CREATE TABLE IF NOT EXISTS pulsegate_schema_version (version INT NOT NULL PRIMARY KEY, applied_us BIGINT NOT NULL, instance VARCHAR(128) NOT NULL)`
	if s.dialect == dialectMySQL {
		create += mysqlTableOpts
	}
	if _, err := conn.ExecContext(ctx, create); err != nil {
		return s.classify("creating", tableSchema, err)
	}
	cur, err := s.schemaVersion(ctx, conn)
	if err != nil {
		return err
	}
	if cur > SchemaVersion() {
		return fmt.Errorf("schema version %d in %s is newer than this pulsegate understands (%d): upgrade this sidecar", cur, tableSchema, SchemaVersion())
	}
	for _, m := range migrations {
		if m.version <= cur {
			continue
		}
		for _, st := range m.stmts(s.dialect) {
			if _, err := conn.ExecContext(ctx, st.stmt); err != nil && !duplicateColumn(err) {
				return s.classify("creating", st.table, err)
			}
		}
		if _, err := conn.ExecContext(ctx, s.rebind(`INSERT INTO pulsegate_schema_version (version, applied_us, instance) VALUES (?, ?, ?)`),
			m.version, s.now().UnixMicro(), s.instance); err != nil {
			return s.classify("inserting into", tableSchema, err)
		}
		s.log.Info("store_migrated", s.logTarget(), zapInt("schema_version", m.version))
	}
	return nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// schemaVersion reads the applied version (0 when the table is empty).
func (s *SQL) schemaVersion(ctx context.Context, q queryer) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MAX(version) FROM pulsegate_schema_version`).Scan(&v); err != nil {
		return 0, s.classify("reading", tableSchema, err)
	}
	return int(v.Int64), nil
}

// migrationLockTimeout bounds the wait for another sidecar's migration.
const migrationLockTimeout = 60 * time.Second

// lock takes the database's migration lock on conn and returns its release.
func (s *SQL) lock(ctx context.Context, conn *sql.Conn) (func(), error) {
	switch s.dialect {
	case dialectMySQL:
		// GET_LOCK names are server-wide: include the database.
		name := "pulsegate_schema:" + s.database
		if len(name) > 64 {
			name = name[:64]
		}
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, ?)`, name, int(migrationLockTimeout.Seconds())).Scan(&got); err != nil {
			return nil, s.classify("taking the migration lock (GET_LOCK) on", tableSchema, err)
		}
		if got.Int64 != 1 {
			return nil, fmt.Errorf("store.dsn (RESPONSIVENESS_STORE_DSN): another sidecar held the migration lock %q for %s on %s", name, migrationLockTimeout, s.target)
		}
		return func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_, _ = conn.ExecContext(rctx, `SELECT RELEASE_LOCK(?)`, name)
		}, nil
	default:
		h := fnv.New64a()
		_, _ = h.Write([]byte("pulsegate_schema"))
		key := int64(h.Sum64() >> 1)
		lctx, cancel := context.WithTimeout(ctx, migrationLockTimeout)
		defer cancel()
		if _, err := conn.ExecContext(lctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
			if errors.Is(lctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("store.dsn (RESPONSIVENESS_STORE_DSN): another sidecar held the migration lock for %s on %s", migrationLockTimeout, s.target)
			}
			return nil, s.classify("taking the migration lock (pg_advisory_lock) on", tableSchema, err)
		}
		return func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_, _ = conn.ExecContext(rctx, `SELECT pg_advisory_unlock($1)`, key)
		}, nil
	}
}

// checkPrivileges runs one no-op statement per table and privilege the
// store needs (WHERE 1=0: nothing is read or written, but the server
// checks the privilege), so a missing grant is one clear error at start
// rather than a failed write later.
func (s *SQL) checkPrivileges(ctx context.Context) error {
	for _, t := range dataTables {
		checks := []struct{ priv, stmt string }{
			{"SELECT", "SELECT 1 FROM " + t + " WHERE 1=0"},
			{"INSERT", "INSERT INTO " + t + " SELECT * FROM " + t + " WHERE 1=0"},
			{"UPDATE", "UPDATE " + t + " SET " + firstColumn(t) + " = " + firstColumn(t) + " WHERE 1=0"},
			{"DELETE", "DELETE FROM " + t + " WHERE 1=0"},
		}
		for _, c := range checks {
			if _, err := s.db.ExecContext(ctx, c.stmt); err != nil {
				if isPrivilegeError(err) {
					return s.privilegeError(c.priv, t)
				}
				return s.classify("checking privileges on", t, err)
			}
		}
	}
	return nil
}

func firstColumn(table string) string {
	switch table {
	case tableFleetAlerts:
		return "id"
	case tableFleetAlertInst:
		return "alert_id"
	default:
		return "fleet"
	}
}

// privilegeError names the privilege, the table and the grant to run.
func (s *SQL) privilegeError(priv, table string) error {
	return fmt.Errorf("store.dsn (RESPONSIVENESS_STORE_DSN): user %q lacks the %s privilege on table %s in %s: %s",
		s.user, priv, table, s.target, s.grantHint(priv))
}

// grantHint is the statement an administrator runs to fix a missing privilege.
func (s *SQL) grantHint(priv string) string {
	if s.dialect == dialectMySQL {
		if priv == "CREATE" || priv == "ALTER" || priv == "INDEX" {
			return fmt.Sprintf("run GRANT CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE, DELETE ON `%s`.* TO '%s'@'%%' (or create the tables once with a user that may, see docs/store.md)", s.database, s.user)
		}
		return fmt.Sprintf("run GRANT SELECT, INSERT, UPDATE, DELETE ON `%s`.* TO '%s'@'%%'", s.database, s.user)
	}
	if priv == "CREATE" {
		return fmt.Sprintf("run GRANT CREATE ON SCHEMA %s TO %s (or create the tables once with a user that may, see docs/store.md)", s.schema, pgIdent(s.user))
	}
	return fmt.Sprintf("run GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s TO %s", s.schema, pgIdent(s.user))
}

func pgIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
