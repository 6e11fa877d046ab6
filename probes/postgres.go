package probes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PostgreSQL SQLSTATEs the probe branches on.
const (
	pgTooManyConnections   = "53300"
	pgInvalidPassword      = "28P01"
	pgInvalidAuthorization = "28000"
	pgInvalidCatalog       = "3D000"
)

// pgInsufficientPrivilege is what pg_stat_activity.query holds for sessions
// the probe user may not read.
const pgInsufficientPrivilege = "<insufficient privilege>"

// postgresEngine reads PostgreSQL through one *pgx.Conn it reconnects
// when the connection is lost, too old or idle too long.
type postgresEngine struct {
	cfg         *pgx.ConnConfig
	timeout     time.Duration
	scrubber    secretScrubber
	conn        *pgx.Conn
	connectedAt time.Time
	lastUsed    time.Time
}

// newPostgresEngine builds the pgx config from the URL parts: credentials
// set as fields (never through a connection string an error could quote),
// connect_timeout, and session limits sent in the startup packet.
func newPostgresEngine(p dsnParts, timeout time.Duration, scrubber secretScrubber) (*postgresEngine, error) {
	u := *p.Rest
	u.User = nil
	u.Scheme = "postgres"
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
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > timeout {
		cfg.ConnectTimeout = timeout
	}
	ms := strconv.FormatInt(timeout.Milliseconds(), 10)
	cfg.RuntimeParams["application_name"] = "pulsegate"
	cfg.RuntimeParams["statement_timeout"] = ms
	cfg.RuntimeParams["lock_timeout"] = ms
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = ms
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	// Plain extended protocol without a statement cache: works behind
	// PgBouncer and keeps nothing between reconnects.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	return &postgresEngine{cfg: cfg, timeout: timeout, scrubber: scrubber}, nil
}

func (e *postgresEngine) close() error {
	if e.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	err := e.conn.Close(ctx)
	e.conn = nil
	return err
}

// drop discards the connection without waiting on the server.
func (e *postgresEngine) drop() {
	if e.conn == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // closing with a done context skips the polite Terminate round trip
	_ = e.conn.Close(ctx)
	e.conn = nil
}

// connect makes sure there is a usable connection. It reports whether the
// connection was reused (and might therefore be stale).
func (e *postgresEngine) connect(ctx context.Context) (reused bool, err error) {
	now := time.Now()
	if e.conn != nil && (e.conn.IsClosed() || now.Sub(e.connectedAt) > dbConnMaxLifetime || now.Sub(e.lastUsed) > probeConnMaxIdle) {
		e.drop()
	}
	if e.conn != nil {
		return true, nil
	}
	conn, err := pgx.ConnectConfig(ctx, e.cfg)
	if err != nil {
		return false, classifyPostgres("connecting to postgres", err)
	}
	e.conn, e.connectedAt, e.lastUsed = conn, now, now
	return false, nil
}

// read runs one tick's queries on the single connection.
func (e *postgresEngine) read(ctx context.Context) (*dbReading, error) {
	reused, err := e.connect(ctx)
	if err != nil {
		return nil, err
	}
	rd, err := e.readOn(ctx)
	if err != nil && reused && ctx.Err() == nil && e.lost(err) {
		// The server may have closed the idle connection (idle_session_timeout,
		// restart): one transparent retry of the read-only tick on a new one.
		e.drop()
		if _, err = e.connect(ctx); err != nil {
			return nil, err
		}
		rd, err = e.readOn(ctx)
	}
	if err != nil {
		if ctx.Err() != nil || e.lost(err) {
			e.drop()
		}
		return nil, err
	}
	e.lastUsed = time.Now()
	return rd, nil
}

// lost reports whether err ended the connection: a network error, or a
// FATAL the server sends before it closes the session (57P01 administrator
// command, 57P05 idle_session_timeout, shutdown).
func (e *postgresEngine) lost(err error) bool {
	if e.conn == nil || e.conn.IsClosed() {
		return true
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return true
	}
	return pe.Severity == "FATAL" || pe.Severity == "PANIC"
}

func (e *postgresEngine) readOn(ctx context.Context) (*dbReading, error) {
	c := e.conn
	rd := &dbReading{engine: "postgres", lockWaitsKnown: true}
	t0 := time.Now()
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return nil, classifyPostgres("running SELECT 1", err)
	}
	rd.latency = time.Since(t0)

	var superReserved, reserved int
	var privileged bool
	err := c.QueryRow(ctx, `SELECT current_setting('server_version'),
		current_setting('max_connections')::int,
		current_setting('superuser_reserved_connections')::int,
		COALESCE(NULLIF(current_setting('reserved_connections', true), ''), '0')::int,
		pg_backend_pid(), current_user::text,
		COALESCE((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false)
		  OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')`).
		Scan(&rd.version, &rd.maxConns, &superReserved, &reserved, &rd.ownID, &rd.ownUser, &privileged)
	if err != nil {
		return nil, classifyPostgres("reading server settings", err)
	}
	rd.reserved = superReserved + reserved
	if !privileged {
		rd.missing = []string{"pg_monitor"}
	}

	rows, err := c.Query(ctx, `SELECT pid, COALESCE(usename::text, ''), COALESCE(application_name, ''),
		COALESCE(host(client_addr), ''), backend_type, state,
		EXTRACT(EPOCH FROM now() - state_change)::float8,
		EXTRACT(EPOCH FROM now() - xact_start)::float8,
		EXTRACT(EPOCH FROM now() - query_start)::float8,
		COALESCE(wait_event_type, ''), COALESCE(left(query, 200), ''),
		datid IS NOT NULL
		FROM pg_stat_activity`)
	if err != nil {
		return nil, classifyPostgres("reading pg_stat_activity", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s dbSession
		var backendType, state *string
		var sinceState, sinceXact, sinceQuery *float64
		var waitType string
		var hasDB bool
		if err := rows.Scan(&s.id, &s.user, &s.app, &s.host, &backendType, &state,
			&sinceState, &sinceXact, &sinceQuery, &waitType, &s.query, &hasDB); err != nil {
			return nil, classifyPostgres("reading pg_stat_activity", err)
		}
		hidden := backendType == nil || s.query == pgInsufficientPrivilege
		if hidden {
			// Another user's session we may not read: it counts as a
			// connection when it belongs to a user and a database, but
			// none of its columns are data.
			if s.user == "" || !hasDB {
				continue
			}
			rd.sessions = append(rd.sessions, dbSession{id: s.id, user: s.user, hidden: true})
			rd.inUse++
			continue
		}
		if *backendType != "client backend" {
			continue
		}
		rd.inUse++
		if state != nil {
			s.state = *state
		}
		s.lockWait = waitType == "Lock"
		switch s.state {
		case "idle":
			s.kind = dbIdle
			s.idleFor = dbNonNeg(dbDeref(sinceState))
		case "idle in transaction", "idle in transaction (aborted)":
			s.kind = dbIdleInTxn
			s.idleFor = dbNonNeg(dbDeref(sinceState))
			s.txnFor = dbNonNeg(dbDeref(sinceXact))
		case "active":
			s.kind = dbActive
			s.runFor = dbNonNeg(dbDeref(sinceQuery))
		}
		rd.sessions = append(rd.sessions, s)
	}
	if err := rows.Err(); err != nil {
		return nil, classifyPostgres("reading pg_stat_activity", err)
	}
	return rd, nil
}

// dbDeref returns *p, or 0 for nil.
func dbDeref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// classifyPostgres wraps err with what was being done and its kind.
func classifyPostgres(doing string, err error) error {
	kind := dbErrUnreachable
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case pgTooManyConnections:
			return &dbError{kind: dbErrSaturated, reason: "saturated: the server refused the probe's connection (too many connections)", err: fmt.Errorf("%s: %w", doing, err)}
		case pgInvalidPassword, pgInvalidAuthorization, pgInvalidCatalog:
			kind = dbErrAuth
		}
	}
	return &dbError{kind: kind, err: fmt.Errorf("%s: %w", doing, err)}
}
