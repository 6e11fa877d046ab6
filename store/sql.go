package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/dsn"
)

type dialect int

const (
	dialectMySQL dialect = iota
	dialectPostgres
)

func (d dialect) String() string {
	if d == dialectPostgres {
		return "postgres"
	}
	return "mysql"
}

// Defaults of the SQL store.
const (
	// DefaultOpTimeout bounds one store operation (query or transaction).
	DefaultOpTimeout = 10 * time.Second
	// DefaultConnectTimeout bounds dialling the server.
	DefaultConnectTimeout = 5 * time.Second
	sqlMaxOpenConns       = 4
)

// SQL is the shared store in MySQL/MariaDB or PostgreSQL: the Backend of
// one instance of a fleet and the Fleet's tables. Safe for concurrent use.
type SQL struct {
	db       *sql.DB
	dialect  dialect
	fleet    string
	instance string
	target   string // the DSN with its password masked
	user     string
	database string
	schema   string // PostgreSQL schema the tables live in
	scrub    dsn.Scrubber
	log      *zap.Logger
	now      func() time.Time

	auditRetention int
	opTimeout      time.Duration

	// rows caches recent decoded heartbeats for the fleet view (sql_fleet_cache.go).
	rowsOnce sync.Once
	rows     *rowCache
}

// WithInstance names this sidecar and its fleet in the shared store
// (defaults "localhost" and "default").
func WithInstance(fleet, instance string) Option {
	return func(o *options) {
		if fleet != "" {
			o.fleet = fleet
		}
		if instance != "" {
			o.instance = instance
		}
	}
}

// WithOpTimeout bounds each operation of the SQL store (default 10 s).
func WithOpTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.opTimeout = d
		}
	}
}

// OpenSQL connects to the store at rawDSN (mysql://… or postgres://…),
// creates or migrates its tables (one sidecar at a time, under the
// database's lock) and checks that the user may read and write each of
// them. Errors name the setting and the DSN with its password masked,
// never the password; a missing privilege names the grant to run and the
// table.
func OpenSQL(ctx context.Context, rawDSN string, log *zap.Logger, opts ...Option) (*SQL, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = zap.NewNop()
	}
	parts, err := dsn.Split(rawDSN)
	if err != nil {
		return nil, fmt.Errorf("store.dsn (RESPONSIVENESS_STORE_DSN): %w", err)
	}
	s := &SQL{
		fleet: o.fleet, instance: o.instance, target: parts.Redacted(), user: parts.User,
		database: strings.TrimPrefix(parts.Rest.Path, "/"), schema: "public",
		scrub: dsn.NewScrubber(parts.Password, rawDSN), log: log, now: o.now,
		auditRetention: o.auditRetention, opTimeout: o.opTimeout,
	}
	switch parts.Scheme {
	case "mysql", "mariadb":
		s.dialect = dialectMySQL
		s.db, err = openMySQL(parts, o.opTimeout, s.scrub, log)
	case "postgres", "postgresql":
		s.dialect = dialectPostgres
		s.db, err = openPostgres(parts, o.opTimeout)
		if sc := parts.Rest.Query().Get("search_path"); sc != "" {
			s.schema = strings.Split(sc, ",")[0]
		}
	default:
		return nil, fmt.Errorf("store.dsn (RESPONSIVENESS_STORE_DSN): unsupported scheme %q: want mysql:// or postgres://", parts.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("store.dsn (RESPONSIVENESS_STORE_DSN): %s", s.scrub.Scrub(err.Error()))
	}
	s.db.SetMaxOpenConns(sqlMaxOpenConns)
	s.db.SetMaxIdleConns(sqlMaxOpenConns)
	s.db.SetConnMaxLifetime(5 * time.Minute)
	s.db.SetConnMaxIdleTime(time.Minute)

	octx, cancel := context.WithTimeout(ctx, migrationLockTimeout+o.opTimeout)
	defer cancel()
	if err := s.db.PingContext(octx); err != nil {
		_ = s.db.Close()
		return nil, s.classify("connecting to", "", err)
	}
	if err := s.migrate(octx); err != nil {
		_ = s.db.Close()
		return nil, err
	}
	if err := s.checkPrivileges(octx); err != nil {
		_ = s.db.Close()
		return nil, err
	}
	log.Info("store_opened", s.logTarget(), zap.String("fleet", s.fleet), zap.String("instance", s.instance),
		zap.Int("schema_version", SchemaVersion()))
	return s, nil
}

func (s *SQL) logTarget() zap.Field { return zap.String("store", s.target) }

func zapInt(k string, v int) zap.Field { return zap.Int(k, v) }

// Ping runs one trivial round trip to the server (SELECT 1).
func (s *SQL) Ping(ctx context.Context) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return s.classify("pinging", "", err)
	}
	return nil
}

// Target is the store's DSN with its password masked.
func (s *SQL) Target() string { return s.target }

// Fleet and Instance are the names this store writes under.
func (s *SQL) Fleet() string    { return s.fleet }
func (s *SQL) Instance() string { return s.instance }

// Close closes the connection pool.
func (s *SQL) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing store %s: %s", s.target, s.scrub.Scrub(err.Error()))
	}
	return nil
}

type mysqlLogger struct {
	log   *zap.Logger
	scrub dsn.Scrubber
}

func (l mysqlLogger) Print(v ...any) {
	l.log.Debug("mysql_driver", zap.String("text", l.scrub.Scrub(fmt.Sprint(v...))))
}

func openMySQL(p dsn.Parts, timeout time.Duration, scrub dsn.Scrubber, log *zap.Logger) (*sql.DB, error) {
	mc := mysql.NewConfig()
	mc.User = p.User
	mc.Passwd = p.Password
	mc.Net = "tcp"
	port := p.Rest.Port()
	if port == "" {
		port = "3306"
	}
	mc.Addr = net.JoinHostPort(p.Rest.Hostname(), port)
	mc.DBName = strings.TrimPrefix(p.Rest.Path, "/")
	mc.Timeout = min(timeout, DefaultConnectTimeout)
	mc.ReadTimeout = timeout
	mc.WriteTimeout = timeout
	mc.Logger = mysqlLogger{log: log, scrub: scrub}
	if tlsMode := p.Rest.Query().Get("tls"); tlsMode != "" {
		mc.TLSConfig = tlsMode
	}
	if err := mc.Apply(); err != nil {
		return nil, fmt.Errorf("configuring mysql driver: %w", err)
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("configuring mysql driver: %w", err)
	}
	return sql.OpenDB(conn), nil
}

// openPostgres sets the credentials as fields (never in a connection
// string an error could quote) and bounds statements server-side.
func openPostgres(p dsn.Parts, timeout time.Duration) (*sql.DB, error) {
	u := *p.Rest
	u.User = nil
	u.Scheme = "postgres"
	q := u.Query()
	q.Del("search_path")
	u.RawQuery = q.Encode()
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("parsing postgres URL: %w", err)
	}
	if p.User != "" {
		cfg.User = p.User
	}
	if p.HasPassword {
		cfg.Password = p.Password
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > DefaultConnectTimeout {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	cfg.RuntimeParams["application_name"] = "pulsegate-store"
	cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt((timeout + migrationLockTimeout).Milliseconds(), 10)
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(timeout.Milliseconds(), 10)
	if sp := p.Rest.Query().Get("search_path"); sp != "" {
		cfg.RuntimeParams["search_path"] = sp
	}
	// Plain extended protocol without a statement cache: works behind PgBouncer.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	return stdlib.OpenDB(*cfg), nil
}

// classify turns a driver error into one that names the setting, what was
// being done and the table, with the password scrubbed; a missing
// privilege becomes the grant to run.
func (s *SQL) classify(doing, table string, err error) error {
	if err == nil {
		return nil
	}
	if isPrivilegeError(err) && table != "" {
		priv := "SELECT"
		switch {
		case strings.HasPrefix(doing, "creating"):
			priv = "CREATE"
		case strings.HasPrefix(doing, "inserting"):
			priv = "INSERT"
		case strings.HasPrefix(doing, "updating"):
			priv = "UPDATE"
		case strings.HasPrefix(doing, "deleting"):
			priv = "DELETE"
		}
		return s.privilegeError(priv, table)
	}
	where := s.target
	if table != "" {
		where = table + " in " + s.target
	}
	return fmt.Errorf("store.dsn (RESPONSIVENESS_STORE_DSN): %s %s: %s", doing, where, s.scrub.Scrub(err.Error()))
}

// isPrivilegeError: MySQL 1142 (table access denied), 1044 (database
// access denied), 1227 (specific privilege needed); PostgreSQL 42501.
func isPrivilegeError(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1142 || me.Number == 1044 || me.Number == 1227 || me.Number == 1143
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "42501"
	}
	return false
}

// rebind turns ? placeholders into $n for PostgreSQL.
func (s *SQL) rebind(q string) string {
	if s.dialect != dialectPostgres {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// upsert is INSERT … ON DUPLICATE KEY UPDATE / ON CONFLICT … DO UPDATE,
// updating every column outside keys.
func (s *SQL) upsert(table string, cols, keys []string) string {
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")
	q := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + ph + ")"
	isKey := map[string]bool{}
	for _, k := range keys {
		isKey[k] = true
	}
	var sets []string
	for _, c := range cols {
		if isKey[c] {
			continue
		}
		if s.dialect == dialectPostgres {
			sets = append(sets, c+" = EXCLUDED."+c)
		} else {
			sets = append(sets, c+" = VALUES("+c+")")
		}
	}
	if s.dialect == dialectPostgres {
		q += " ON CONFLICT (" + strings.Join(keys, ", ") + ") DO UPDATE SET " + strings.Join(sets, ", ")
	} else {
		q += " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
	}
	return s.rebind(q)
}

func (s *SQL) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// inTx runs fn in one transaction, rolled back on error.
func (s *SQL) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func usOrNull(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

// SaveAlert writes one alert record (and its acknowledgement, if any).
func (s *SQL) SaveAlert(a AlertRecord) error { return s.SaveAlerts(a) }

// SaveAlerts writes this instance's alert records and their
// acknowledgements in one transaction: all or none.
func (s *SQL) SaveAlerts(as ...AlertRecord) error {
	if len(as) == 0 {
		return nil
	}
	ctx, cancel := s.opCtx(context.Background())
	defer cancel()
	alertQ := s.upsert(tableAlerts, []string{"fleet", "instance", "id", "state", "first_seen_us", "resolved_us", "record"}, []string{"fleet", "instance", "id"})
	ackQ := s.upsert(tableAcks, []string{"fleet", "instance", "alert_id", "ack_us", "record"}, []string{"fleet", "instance", "alert_id"})
	var table string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, a := range as {
			if a.ID == "" {
				return errors.New("alert record has no id")
			}
			a.AckNote = Truncate(a.AckNote, MaxTextLen)
			a.AcknowledgedBy = Truncate(a.AcknowledgedBy, MaxTextLen)
			v, err := json.Marshal(a)
			if err != nil {
				return fmt.Errorf("encoding alert %s: %w", a.ID, err)
			}
			table = tableAlerts
			if _, err := tx.ExecContext(ctx, alertQ, s.fleet, s.instance, a.ID, a.State, a.FirstSeen.UnixMicro(), usOrNull(a.ResolvedAt), string(v)); err != nil {
				return err
			}
			if a.AcknowledgedAt == nil {
				continue
			}
			ack, err := json.Marshal(Acknowledgement{AlertID: a.ID, Time: *a.AcknowledgedAt, By: a.AcknowledgedBy, Note: a.AckNote})
			if err != nil {
				return fmt.Errorf("encoding acknowledgement of %s: %w", a.ID, err)
			}
			table = tableAcks
			if _, err := tx.ExecContext(ctx, ackQ, s.fleet, s.instance, a.ID, a.AcknowledgedAt.UnixMicro(), string(ack)); err != nil {
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

// LoadAlerts returns this instance's alerts, newest first (by first_seen),
// with acknowledgement fields filled from the acknowledgements table.
func (s *SQL) LoadAlerts() ([]AlertRecord, error) {
	ctx, cancel := s.opCtx(context.Background())
	defer cancel()
	acks, err := s.ackMap(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT id, record FROM pulsegate_alerts WHERE fleet = ? AND instance = ?`), s.fleet, s.instance)
	if err != nil {
		return nil, s.classify("reading", tableAlerts, err)
	}
	defer rows.Close()
	var out []AlertRecord
	for rows.Next() {
		var id, rec string
		if err := rows.Scan(&id, &rec); err != nil {
			return nil, s.classify("reading", tableAlerts, err)
		}
		var a AlertRecord
		if err := json.Unmarshal([]byte(rec), &a); err != nil {
			return nil, fmt.Errorf("decoding alert %q from %s: %w", id, tableAlerts, err)
		}
		if ack, ok := acks[id]; ok {
			t := ack.Time
			a.AcknowledgedAt, a.AcknowledgedBy, a.AckNote = &t, ack.By, ack.Note
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", tableAlerts, err)
	}
	SortNewestFirst(out)
	return out, nil
}

func (s *SQL) ackMap(ctx context.Context) (map[string]Acknowledgement, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT alert_id, record FROM pulsegate_acknowledgements WHERE fleet = ? AND instance = ?`), s.fleet, s.instance)
	if err != nil {
		return nil, s.classify("reading", tableAcks, err)
	}
	defer rows.Close()
	out := map[string]Acknowledgement{}
	for rows.Next() {
		var id, rec string
		if err := rows.Scan(&id, &rec); err != nil {
			return nil, s.classify("reading", tableAcks, err)
		}
		var ack Acknowledgement
		if err := json.Unmarshal([]byte(rec), &ack); err != nil {
			return nil, fmt.Errorf("decoding acknowledgement of %q from %s: %w", id, tableAcks, err)
		}
		out[id] = ack
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", tableAcks, err)
	}
	return out, nil
}

// Acknowledgements returns this instance's acknowledgements, newest first.
func (s *SQL) Acknowledgements() ([]Acknowledgement, error) {
	ctx, cancel := s.opCtx(context.Background())
	defer cancel()
	m, err := s.ackMap(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Acknowledgement, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.After(out[j].Time)
		}
		return out[i].AlertID > out[j].AlertID
	})
	return out, nil
}

// PruneAlerts keeps this instance's newest keep resolved alerts (by
// resolved_at) and deletes older resolved ones with their
// acknowledgements. Active alerts are never pruned.
func (s *SQL) PruneAlerts(keep int) error {
	if keep < 0 {
		return fmt.Errorf("pruning alerts: keep must be >= 0, got %d", keep)
	}
	ctx, cancel := s.opCtx(context.Background())
	defer cancel()
	ids, err := s.queryStrings(ctx, `SELECT id FROM pulsegate_alerts WHERE fleet = ? AND instance = ? AND state = ?
 ORDER BY COALESCE(resolved_us, 0) DESC, id DESC`, s.fleet, s.instance, StateResolved)
	if err != nil {
		return s.classify("reading", tableAlerts, err)
	}
	if len(ids) <= keep {
		return s.pruneFleetAlerts(ctx, keep)
	}
	drop := ids[keep:]
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		for len(drop) > 0 {
			n := min(len(drop), 200)
			ph := strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
			args := []any{s.fleet, s.instance}
			for _, id := range drop[:n] {
				args = append(args, id)
			}
			if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_acknowledgements WHERE fleet = ? AND instance = ? AND alert_id IN (`+ph+`)`), args...); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_alerts WHERE fleet = ? AND instance = ? AND id IN (`+ph+`)`), args...); err != nil {
				return err
			}
			drop = drop[n:]
		}
		return nil
	})
	if err != nil {
		return s.classify("deleting from", tableAlerts, err)
	}
	return s.pruneFleetAlerts(ctx, keep)
}

// pruneFleetAlerts keeps the fleet's newest keep resolved fleet alerts (by
// first seen) and deletes older resolved ones with their instance rows.
// Active fleet alerts are never pruned. Every sidecar runs it with the same
// keep (alerts.history_size), so running it twice changes nothing.
func (s *SQL) pruneFleetAlerts(ctx context.Context, keep int) error {
	ids, err := s.queryStrings(ctx, `SELECT id FROM pulsegate_fleet_alerts WHERE fleet = ? AND active_key IS NULL
 ORDER BY first_seen_us DESC, id DESC`, s.fleet)
	if err != nil {
		return s.classify("reading", tableFleetAlerts, err)
	}
	if len(ids) <= keep {
		return nil
	}
	drop := ids[keep:]
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		for len(drop) > 0 {
			n := min(len(drop), 200)
			ph := strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
			args := make([]any, 0, n)
			for _, id := range drop[:n] {
				args = append(args, id)
			}
			if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_fleet_alert_instances WHERE alert_id IN (`+ph+`)`), args...); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_fleet_alerts WHERE active_key IS NULL AND id IN (`+ph+`)`), args...); err != nil {
				return err
			}
			drop = drop[n:]
		}
		return nil
	})
	if err != nil {
		return s.classify("deleting from", tableFleetAlerts, err)
	}
	return nil
}

// queryStrings runs a query of one string column.
func (s *SQL) queryStrings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// AppendAudit appends one entry to the fleet's audit log, stamped with
// this instance when it names none. When the fleet's log holds more than
// its retention, the oldest entries are dropped.
func (s *SQL) AppendAudit(e AuditEntry) error {
	ctx, cancel := s.opCtx(context.Background())
	defer cancel()
	return s.AppendAuditContext(ctx, e)
}

// AppendAuditContext is AppendAudit bounded by ctx.
func (s *SQL) AppendAuditContext(ctx context.Context, e AuditEntry) error {
	if e.Action == "" {
		return errors.New("appending audit entry: action is required")
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if e.Instance == "" {
		e.Instance = s.instance
	}
	e = e.bounded()
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("appending audit entry: encoding: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO pulsegate_audit (fleet, instance, time_us, action, entry) VALUES (?, ?, ?, ?, ?)`),
		s.fleet, e.Instance, e.Time.UnixMicro(), Truncate(e.Action, 64), string(v)); err != nil {
		return s.classify("inserting into", tableAudit, err)
	}
	// Retention: find the newest entry beyond the limit and drop it and
	// everything older (two statements: MySQL cannot delete from a table
	// it selects from in a subquery).
	var cut sql.NullInt64
	err = s.db.QueryRowContext(ctx, s.rebind(`SELECT seq FROM pulsegate_audit WHERE fleet = ? ORDER BY time_us DESC, seq DESC LIMIT 1 OFFSET ?`),
		s.fleet, s.auditRetention).Scan(&cut)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return s.classify("reading", tableAudit, err)
	}
	var cutTime int64
	if err := s.db.QueryRowContext(ctx, s.rebind(`SELECT time_us FROM pulsegate_audit WHERE seq = ?`), cut.Int64).Scan(&cutTime); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return s.classify("reading", tableAudit, err)
	}
	if _, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_audit WHERE fleet = ? AND (time_us < ? OR (time_us = ? AND seq <= ?))`),
		s.fleet, cutTime, cutTime, cut.Int64); err != nil {
		return s.classify("deleting from", tableAudit, err)
	}
	return nil
}

// Audit returns up to limit entries of the fleet's log older than before
// (zero: no bound), newest first. limit <= 0 means DefaultAuditLimit.
func (s *SQL) Audit(limit int, before time.Time) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = DefaultAuditLimit
	}
	ctx, cancel := s.opCtx(context.Background())
	defer cancel()
	q := `SELECT entry FROM pulsegate_audit WHERE fleet = ?`
	args := []any{s.fleet}
	if !before.IsZero() {
		q += ` AND time_us < ?`
		args = append(args, before.UnixMicro())
	}
	q += ` ORDER BY time_us DESC, seq DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, s.classify("reading", tableAudit, err)
	}
	defer rows.Close()
	out := make([]AuditEntry, 0, min(limit, 256))
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, s.classify("reading", tableAudit, err)
		}
		var e AuditEntry
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return nil, fmt.Errorf("decoding audit entry from %s: %w", tableAudit, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify("reading", tableAudit, err)
	}
	return out, nil
}
