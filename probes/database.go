package probes

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/figures"
)

// DatabaseProbeName is the component name of the database probe.
const DatabaseProbeName = "database_manager"

// Connection settings of the probe's own single connection.
const (
	// dbConnMaxLifetime stays below any sane server wait_timeout /
	// idle_session_timeout so the server never kills the probe's idle
	// connection under it.
	dbConnMaxLifetime = 60 * time.Second
	// dbQueryTextMax bounds the query text reported per session, in characters.
	dbQueryTextMax = 200
	// dbListMax bounds every per-session list in the details (long queries,
	// idle-in-transaction sessions, leak sources).
	dbListMax = 10
)

// DatabaseDetails is the database probe's report (Result.Details), JSON-ready.
// Pointer fields are null when the probe could not read them (missing
// privileges or an unreachable server): a null is "unknown", never zero.
type DatabaseDetails struct {
	// Engine is mysql, mariadb or postgres.
	Engine string `json:"engine"`
	// Version is the server's version string.
	Version string `json:"version,omitempty"`
	// Target is the DSN with its password replaced by xxxxx.
	Target string `json:"target"`
	// LatencySeconds is the SELECT 1 round trip on the probe's connection.
	LatencySeconds float64 `json:"latency_seconds"`
	// Saturated is true when the server refused the probe for lack of connection slots.
	Saturated bool `json:"saturated"`
	// Connections counts the server's client connections.
	Connections *DBConnections `json:"connections"`
	// Privileges says whether the probe could see every session.
	Privileges DBPrivileges `json:"privileges"`
	// LeakSuspects are connections idle longer than database.leak_age.
	LeakSuspects *DBLeakSuspects `json:"leak_suspects"`
	// IdleInTransaction are sessions holding an open transaction while idle.
	IdleInTransaction *DBIdleInTransaction `json:"idle_in_transaction"`
	// LongQueries are statements running longer than thresholds.db_query_critical (at most 10, longest first).
	LongQueries []DBSession `json:"long_queries"`
	// LongQueryCount is how many statements run longer than thresholds.db_query_critical.
	LongQueryCount *int `json:"long_query_count"`
	// LockWaits counts sessions waiting on a lock (PostgreSQL only).
	LockWaits *int `json:"lock_waits,omitempty"`
	// SlowQueries is the server's Slow_queries counter and its change since the last tick (MySQL/MariaDB only).
	SlowQueries *DBSlowQueries `json:"slow_queries,omitempty"`
	// AppPool compares the app user's connections with database.app_pool_size (when set).
	AppPool *DBAppPool `json:"app_pool,omitempty"`
}

// DBConnections counts client connections against the server's ceiling.
type DBConnections struct {
	// InUse is the number of client connections, the probe's own included.
	InUse int `json:"in_use"`
	// MaxConnections is the server's max_connections.
	MaxConnections int `json:"max_connections"`
	// Reserved are slots only superusers may take (PostgreSQL
	// superuser_reserved_connections + reserved_connections); 0 on MySQL.
	Reserved int `json:"reserved"`
	// Limit is MaxConnections − Reserved: what the app can actually open.
	Limit int `json:"limit"`
	// Utilization is InUse ÷ Limit (0..1, may exceed 1 when superusers use reserved slots).
	Utilization float64 `json:"utilization"`
	// ByUser counts connections per database user.
	ByUser map[string]int `json:"by_user"`
	// ByHost counts connections per client host (MySQL/MariaDB; PostgreSQL client_addr, "local" for sockets).
	ByHost map[string]int `json:"by_host,omitempty"`
	// ByApplication counts connections per application_name (PostgreSQL).
	ByApplication map[string]int `json:"by_application,omitempty"`
	// ByState counts connections per state (PostgreSQL state, MySQL command).
	ByState map[string]int `json:"by_state"`
	// Hidden counts connections whose details the probe may not read.
	Hidden int `json:"hidden"`
}

// DBPrivileges reports whether the probe user sees every session.
type DBPrivileges struct {
	// Complete is false when a grant is missing and some readings are unknown.
	Complete bool `json:"complete"`
	// Missing names what to grant: "PROCESS" (MySQL) or "pg_monitor" (PostgreSQL).
	Missing []string `json:"missing,omitempty"`
	// Detail says what is unknown because of it.
	Detail string `json:"detail,omitempty"`
}

// DBLeakSuspects are idle connections older than the leak age.
type DBLeakSuspects struct {
	// Count is the number of connections idle longer than LeakAgeSeconds.
	Count int `json:"count"`
	// LeakAgeSeconds is database.leak_age.
	LeakAgeSeconds float64 `json:"leak_age_seconds"`
	// OldestIdleSeconds is the longest idle time among them.
	OldestIdleSeconds float64 `json:"oldest_idle_seconds"`
	// BySource groups them by user@host, largest group first (at most 10).
	BySource []DBSourceCount `json:"by_source"`
}

// DBSourceCount is a number of sessions from one user@host.
type DBSourceCount struct {
	Source        string  `json:"source"`
	Count         int     `json:"count"`
	OldestSeconds float64 `json:"oldest_seconds"`
}

// DBIdleInTransaction are sessions idle inside an open transaction.
type DBIdleInTransaction struct {
	// Count is the number of such sessions, the probe's own excluded.
	Count int `json:"count"`
	// OldestSeconds is the age of the oldest such transaction (now − transaction start).
	OldestSeconds float64 `json:"oldest_seconds"`
	// WarningSeconds is database.idle_in_transaction_warning.
	WarningSeconds float64 `json:"warning_seconds"`
	// Sessions lists them, oldest first (at most 10).
	Sessions []DBSession `json:"sessions"`
}

// DBSession describes one server session in a list.
type DBSession struct {
	// ID is the server's thread id (MySQL) or backend pid (PostgreSQL).
	ID int64 `json:"id"`
	// User is the database user.
	User string `json:"user"`
	// Host is the client host ("local" for a Unix socket).
	Host string `json:"host"`
	// Application is application_name (PostgreSQL).
	Application string `json:"application,omitempty"`
	// Seconds is the age that put the session in the list (query runtime, transaction age).
	Seconds float64 `json:"seconds"`
	// Query is the statement text, truncated to 200 characters.
	Query string `json:"query,omitempty"`
	// LockWait is true when the session waits on a lock (PostgreSQL).
	LockWait bool `json:"lock_wait,omitempty"`
}

// DBSlowQueries is the MySQL/MariaDB Slow_queries counter.
type DBSlowQueries struct {
	// Total is the server's counter since it started.
	Total uint64 `json:"total"`
	// Delta is the increase since the previous tick; null on the first tick or after a server restart.
	Delta *uint64 `json:"delta"`
	// PerSecond is Delta over the time between the ticks.
	PerSecond *float64 `json:"per_second"`
}

// DBAppPool compares the app's connections with its own pool size.
type DBAppPool struct {
	// User is database.app_user, or "*" for every user but the probe's.
	User string `json:"user"`
	// Connections is how many connections that user holds.
	Connections int `json:"connections"`
	// PoolSize is database.app_pool_size.
	PoolSize int `json:"pool_size"`
	// Utilization is Connections ÷ PoolSize.
	Utilization float64 `json:"utilization"`
}

// dbSessionKind classifies a session for leak and long-query accounting.
type dbSessionKind int

const (
	dbOther dbSessionKind = iota
	dbIdle
	dbIdleInTxn
	dbActive
)

// dbSession is one row of the server's session list, engine-neutral.
type dbSession struct {
	id       int64
	user     string
	host     string
	app      string
	state    string // breakdown label
	kind     dbSessionKind
	idleFor  float64 // seconds since the session's last statement ended (idle, idle in transaction)
	txnFor   float64 // seconds since its transaction began (idle in transaction)
	runFor   float64 // seconds its current statement has run (active)
	query    string
	lockWait bool
	hidden   bool // the probe may not read this session's details
}

// dbReading is what an engine reads in one tick.
type dbReading struct {
	engine   string
	version  string
	latency  time.Duration
	inUse    int
	maxConns int
	reserved int
	ownID    int64
	ownUser  string
	sessions []dbSession
	// missing names the grants the probe lacks; non-empty means partial visibility.
	missing []string
	// slowQueries is the Slow_queries counter (MySQL); nil elsewhere.
	slowQueries *uint64
	// lockWaitsKnown is true for engines that report lock waits.
	lockWaitsKnown bool
	// uptime is the server's uptime (counter resets), when known.
	uptime time.Duration
}

// dbErrorKind classifies a failed tick.
type dbErrorKind int

const (
	dbErrUnreachable dbErrorKind = iota // network, timeout, server gone: Down
	dbErrSaturated                      // too many connections: Critical "saturated"
	dbErrAuth                           // wrong credentials or database: Critical, configuration error
)

// dbError is a classified tick failure; its text is already scrubbed.
type dbError struct {
	kind   dbErrorKind
	reason string // for dbErrSaturated: the reason shown
	err    error
}

func (e *dbError) Error() string { return e.err.Error() }
func (e *dbError) Unwrap() error { return e.err }

// dbEngine is one database dialect. read runs on at most one server
// connection and must honour ctx; close releases that connection.
type dbEngine interface {
	read(ctx context.Context) (*dbReading, error)
	close() error
}

// Database is the database probe (database_manager). It keeps one
// connection to MySQL/MariaDB or PostgreSQL and reads the server's session
// list each tick. Probe is safe for concurrent use but meant to be called
// by one Runner goroutine.
type Database struct {
	engine   dbEngine
	kind     string // mysql | postgres
	target   string
	scrubber secretScrubber
	log      *zap.Logger
	now      func() time.Time

	// next holds the limits of the latest configuration (Apply); each
	// Probe copies them into dbLimits before it judges.
	next atomic.Pointer[dbLimits]

	mu       sync.Mutex
	dbLimits // the limits this tick judges against
	// transition state for logs
	poolLevel    Status
	leakCount    int
	idleTxnCount int
	privPartial  bool
	appPoolWarn  bool
	// counter state
	prevSlow   *uint64
	prevSlowAt time.Time
	prevUptime time.Duration
}

// NewDatabase returns the database probe for cfg.Database.DSN: mysql:// for
// MySQL/MariaDB (go-sql-driver/mysql), postgres:// or postgresql:// for
// PostgreSQL (pgx). It does not connect; the first Probe does. Errors name
// the field and never contain the password.
func NewDatabase(cfg *config.Config, log *zap.Logger) (Prober, error) {
	return newDatabase(cfg, log)
}

func newDatabase(cfg *config.Config, log *zap.Logger) (*Database, error) {
	if cfg == nil {
		return nil, errors.New("database probe: nil config")
	}
	if log == nil {
		log = zap.NewNop()
	}
	dc := cfg.Database
	if !dc.DSN.IsSet() {
		return nil, errors.New("database.dsn (RESPONSIVENESS_DB_DSN) is empty: the database probe is disabled")
	}
	parts, err := splitDSN(dc.DSN.Reveal())
	if err != nil {
		return nil, fmt.Errorf("database.dsn (RESPONSIVENESS_DB_DSN): %w", err)
	}
	timeout := dc.ProbeTimeout.Duration()
	if timeout <= 0 {
		return nil, fmt.Errorf("database.probe_timeout must be > 0, got %v", float64(dc.ProbeTimeout))
	}
	d := &Database{
		target:    parts.Redacted(),
		scrubber:  newSecretScrubber(parts.Password, dc.DSN.Reveal()),
		log:       log.Named(DatabaseProbeName),
		now:       time.Now,
		poolLevel: StatusOK,
	}
	d.Apply(cfg)
	d.dbLimits = *d.next.Load()
	switch parts.Scheme {
	case "mysql", "mariadb":
		d.kind = "mysql"
		d.engine, err = newMySQLEngine(parts, timeout, d.scrubber, d.log)
	case "postgres", "postgresql":
		d.kind = "postgres"
		d.engine, err = newPostgresEngine(parts, timeout, d.scrubber)
	default:
		return nil, fmt.Errorf("database.dsn (RESPONSIVENESS_DB_DSN): unsupported scheme %q: want mysql:// or postgres://", parts.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("database.dsn (RESPONSIVENESS_DB_DSN): %s", d.scrubber.Scrub(err.Error()))
	}
	return d, nil
}

// dbLimits are the settings the database probe judges against. They are
// live: Apply swaps them, and the next Probe uses them.
type dbLimits struct {
	lat, pool   figureLimits
	leakAge     float64
	idleTxnWarn float64
	longQuery   float64
	appPoolSize int
	appUser     string
}

// Apply takes the thresholds and pool settings of a new configuration; the
// next Probe judges against them. The DSN and the probe timeout (the
// driver's connect and statement timeouts) are fixed at construction.
func (d *Database) Apply(cfg *config.Config) {
	dc := cfg.Database
	d.next.Store(&dbLimits{
		lat:         limitsOf(cfg, figures.DBLatency),
		pool:        limitsOf(cfg, figures.ConnectionPoolUtilization),
		leakAge:     float64(dc.LeakAge),
		idleTxnWarn: float64(dc.IdleInTransactionWarning),
		longQuery:   float64(dc.LongQueryThreshold),
		appPoolSize: dc.AppPoolSize,
		appUser:     dc.AppUser,
	})
}

// Name returns "database_manager".
func (d *Database) Name() string { return DatabaseProbeName }

// Close releases the probe's connection.
func (d *Database) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.engine.close(); err != nil {
		return errors.New(d.scrubber.Scrub(fmt.Sprintf("closing database connection: %v", err)))
	}
	return nil
}

// Probe runs one tick: connects if needed, times SELECT 1, reads the
// session list and judges it against the thresholds.
func (d *Database) Probe(ctx context.Context) Result {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dbLimits = *d.next.Load()
	start := d.now()
	res := Result{Probe: DatabaseProbeName, Started: start}
	details := &DatabaseDetails{Engine: d.kind, Target: d.target}
	res.Details = details

	rd, err := d.engine.read(ctx)
	res.Duration = d.now().Sub(start)
	if err != nil {
		d.fail(&res, details, err)
		return res
	}
	d.judge(&res, details, rd, start)
	return res
}

// fail fills res for a tick that could not read the server.
func (d *Database) fail(res *Result, details *DatabaseDetails, err error) {
	msg := d.scrubber.Scrub(err.Error())
	var de *dbError
	kind := dbErrUnreachable
	if errors.As(err, &de) {
		kind = de.kind
	}
	switch kind {
	case dbErrSaturated:
		details.Saturated = true
		res.Status = StatusCritical
		res.Reasons = []string{de.reason}
		res.Error = msg
		if d.poolLevel != StatusCritical {
			d.log.Warn("db_pool_utilization",
				zap.String("text", "Database connection pool saturated: server refused a new connection"),
				zap.String("level", string(StatusCritical)),
				zap.Bool("saturated", true))
			d.poolLevel = StatusCritical
		}
	case dbErrAuth:
		res.Status = StatusCritical
		res.Reasons = []string{"configuration error: check RESPONSIVENESS_DB_DSN credentials and database name"}
		res.Error = msg
	default:
		res.Status = StatusDown
		res.Error = msg
	}
}

// judge turns a reading into figures, details, status and reasons, and
// logs the transitions the product logs: one step per concern, each
// judging with the limits this tick took (dbLimits).
func (d *Database) judge(res *Result, details *DatabaseDetails, rd *dbReading, now time.Time) {
	details.Engine = rd.engine
	details.Version = rd.version
	lat := rd.latency.Seconds()
	details.LatencySeconds = lat
	res.Figures = map[string]float64{string(figures.DBLatency): lat}
	v := &tickVerdict{res: res, level: StatusOK}

	d.judgeLatency(v, lat)
	partial := d.judgePrivileges(v, details, rd)
	d.judgeConnections(v, details, rd)
	d.countSlowQueries(details, rd, now)
	d.judgeAppPool(v, details, rd, partial)
	if !partial { // nothing below may be read from a partial session list
		ss := d.sortSessions(rd)
		d.judgeLeaks(v, details, ss.leaks)
		d.judgeIdleInTransaction(v, details, ss.idleTxn)
		d.judgeLongQueries(v, details, ss.long)
		judgeLockWaits(v, details, rd, ss.lockWaits)
	}
	res.Status = v.level
}

// judgeLatency compares the SELECT 1 round trip with the query-time thresholds.
func (d *Database) judgeLatency(v *tickVerdict, lat float64) {
	if s, thr := d.lat.judge(lat); s != StatusOK {
		v.raise(s, fmt.Sprintf("SELECT 1 took %s (%s ≥ %s)", formatSeconds(lat), s, formatSeconds(thr)))
	}

}

// judgePrivileges reports a probe user that sees only part of the session
// list, and whether it does.
func (d *Database) judgePrivileges(v *tickVerdict, details *DatabaseDetails, rd *dbReading) (partial bool) {
	partial = len(rd.missing) > 0
	details.Privileges = DBPrivileges{Complete: !partial}
	if partial {
		details.Privileges.Missing = rd.missing
		details.Privileges.Detail = "only the probe's own sessions are visible: leak suspects, idle-in-transaction sessions and long queries are unknown"
		if rd.engine == "postgres" {
			details.Privileges.Detail = "other users' session states are hidden (<insufficient privilege>): leak suspects, idle-in-transaction sessions and long queries are unknown"
		}
		v.raise(StatusWarning, "partial: needs "+strings.Join(rd.missing, ", "))
		if !d.privPartial {
			d.log.Warn("db_privileges_partial",
				zap.Strings("missing", rd.missing),
				zap.String("text", "database probe user lacks privileges: readings are partial"))
		}
	}
	d.privPartial = partial

	return partial
}

// judgeConnections counts the server's connections and judges their
// utilisation against max_connections.
func (d *Database) judgeConnections(v *tickVerdict, details *DatabaseDetails, rd *dbReading) {
	conns := &DBConnections{
		InUse:          rd.inUse,
		MaxConnections: rd.maxConns,
		Reserved:       rd.reserved,
		Limit:          rd.maxConns - rd.reserved,
		ByUser:         map[string]int{},
		ByState:        map[string]int{},
	}
	if rd.engine == "postgres" {
		conns.ByApplication = map[string]int{}
	}
	conns.ByHost = map[string]int{}
	for _, s := range rd.sessions {
		conns.ByUser[dbLabel(s.user, "(none)")]++
		if s.hidden {
			conns.Hidden++
			conns.ByState["(hidden)"]++
			continue
		}
		conns.ByHost[dbLabel(s.host, "local")]++
		if conns.ByApplication != nil {
			conns.ByApplication[dbLabel(s.app, "(none)")]++
		}
		conns.ByState[dbLabel(s.state, "(none)")]++
	}
	details.Connections = conns
	if conns.Limit > 0 {
		conns.Utilization = float64(conns.InUse) / float64(conns.Limit)
		v.res.Figures[string(figures.ConnectionPoolUtilization)] = conns.Utilization
		u := conns.Utilization
		pct := int(math.Round(u * 100))
		poolLevel, thr := d.pool.judge(u)
		if poolLevel != StatusOK {
			v.raise(poolLevel, fmt.Sprintf("%d of %d connections in use (%d%%, %s ≥ %.0f%%)", conns.InUse, conns.Limit, pct, poolLevel, thr*100))
		}
		if statusRank(poolLevel) > statusRank(d.poolLevel) {
			d.log.Warn("db_pool_utilization",
				zap.String("text", fmt.Sprintf("Database connection pool at %d%% utilization", pct)),
				zap.String("level", string(poolLevel)),
				zap.Int("in_use", conns.InUse),
				zap.Int("limit", conns.Limit),
				zap.Float64("utilization", u))
		} else if poolLevel == StatusOK && d.poolLevel != StatusOK {
			d.log.Info("db_pool_utilization_recovered",
				zap.String("text", fmt.Sprintf("Database connection pool back to %d%% utilization", pct)),
				zap.Int("in_use", conns.InUse),
				zap.Int("limit", conns.Limit),
				zap.Float64("utilization", u))
		}
		d.poolLevel = poolLevel
	}

}

// countSlowQueries reads MySQL's slow-query counter as a delta and a rate.
func (d *Database) countSlowQueries(details *DatabaseDetails, rd *dbReading, now time.Time) {
	if rd.slowQueries != nil {
		sq := &DBSlowQueries{Total: *rd.slowQueries}
		restarted := d.prevUptime > 0 && rd.uptime > 0 && rd.uptime < d.prevUptime
		if d.prevSlow != nil && !restarted && *rd.slowQueries >= *d.prevSlow {
			delta := *rd.slowQueries - *d.prevSlow
			sq.Delta = &delta
			if el := now.Sub(d.prevSlowAt).Seconds(); el > 0 {
				ps := float64(delta) / el
				sq.PerSecond = &ps
			}
		}
		v := *rd.slowQueries
		d.prevSlow, d.prevSlowAt, d.prevUptime = &v, now, rd.uptime
		details.SlowQueries = sq
	}

}

// judgeAppPool compares the app's own connections with its pool size
// (counts per user are visible even when partial on PostgreSQL).
func (d *Database) judgeAppPool(v *tickVerdict, details *DatabaseDetails, rd *dbReading, partial bool) {
	if d.appPoolSize > 0 && (!partial || rd.engine == "postgres") {
		ap := &DBAppPool{User: dbLabel(d.appUser, "*"), PoolSize: d.appPoolSize}
		for _, s := range rd.sessions {
			if (d.appUser != "" && s.user == d.appUser) || (d.appUser == "" && s.user != rd.ownUser) {
				ap.Connections++
			}
		}
		ap.Utilization = float64(ap.Connections) / float64(ap.PoolSize)
		details.AppPool = ap
		// The app's own pool is judged at the pool figure's warning level only.
		warn := d.pool.thr.WarningOn && ap.Utilization >= d.pool.thr.Warning
		if warn {
			v.raise(StatusWarning, fmt.Sprintf("app pool: %d of %d connections of user %s in use (%.0f%%): the app's pool is nearly exhausted",
				ap.Connections, ap.PoolSize, ap.User, ap.Utilization*100))
			if !d.appPoolWarn {
				d.log.Warn("db_app_pool_utilization",
					zap.String("text", fmt.Sprintf("App connection pool at %.0f%% utilization", ap.Utilization*100)),
					zap.String("user", ap.User), zap.Int("connections", ap.Connections), zap.Int("pool_size", ap.PoolSize))
			}
		}
		d.appPoolWarn = warn
	}

}

// dbSessionsByKind are the sessions a tick judges, by concern.
type dbSessionsByKind struct {
	leaks, idleTxn, long []dbSession
	lockWaits            int
}

// sortSessions sorts the other sessions into leak suspects, idle in
// transaction and long queries, and counts lock waits.
func (d *Database) sortSessions(rd *dbReading) dbSessionsByKind {
	var leaks, idleTxn, long []dbSession
	lockWaits := 0
	for _, s := range rd.sessions {
		if s.id == rd.ownID || s.hidden {
			continue
		}
		if s.lockWait {
			lockWaits++
		}
		switch s.kind {
		case dbIdle:
			if s.idleFor > d.leakAge {
				leaks = append(leaks, s)
			}
		case dbIdleInTxn:
			idleTxn = append(idleTxn, s)
		case dbActive:
			if d.longQuery > 0 && s.runFor > d.longQuery {
				long = append(long, s)
			}
		}
	}

	return dbSessionsByKind{leaks: leaks, idleTxn: idleTxn, long: long, lockWaits: lockWaits}
}

// judgeLeaks reports connections idle longer than the leak age, grouped by source.
func (d *Database) judgeLeaks(v *tickVerdict, details *DatabaseDetails, leaks []dbSession) {
	ls := &DBLeakSuspects{Count: len(leaks), LeakAgeSeconds: d.leakAge, BySource: []DBSourceCount{}}
	groups := map[string]*DBSourceCount{}
	for _, s := range leaks {
		ls.OldestIdleSeconds = math.Max(ls.OldestIdleSeconds, s.idleFor)
		src := sessionSource(s)
		g := groups[src]
		if g == nil {
			g = &DBSourceCount{Source: src}
			groups[src] = g
		}
		g.Count++
		g.OldestSeconds = math.Max(g.OldestSeconds, s.idleFor)
	}
	for _, g := range groups {
		ls.BySource = append(ls.BySource, *g)
	}
	sort.Slice(ls.BySource, func(i, j int) bool {
		if ls.BySource[i].Count != ls.BySource[j].Count {
			return ls.BySource[i].Count > ls.BySource[j].Count
		}
		return ls.BySource[i].Source < ls.BySource[j].Source
	})
	if len(ls.BySource) > dbListMax {
		ls.BySource = ls.BySource[:dbListMax]
	}
	details.LeakSuspects = ls
	v.res.Figures["db_leak_suspects"] = float64(ls.Count)
	if ls.Count > 0 {
		var from []string
		for i, g := range ls.BySource {
			if i == 3 {
				break
			}
			from = append(from, fmt.Sprintf("%d from %s", g.Count, g.Source))
		}
		v.raise(StatusWarning, fmt.Sprintf("%d connections idle > %s (%s)", ls.Count, formatSeconds(d.leakAge), strings.Join(from, ", ")))
		if d.leakCount == 0 {
			fields := []zap.Field{
				zap.String("text", fmt.Sprintf("Connection leak detected - %d connections not properly closed", ls.Count)),
				zap.Int("count", ls.Count),
				zap.Float64("leak_age_s", d.leakAge),
				zap.Float64("oldest_idle_s", ls.OldestIdleSeconds),
			}
			if len(ls.BySource) > 0 {
				fields = append(fields, zap.String("top_source", ls.BySource[0].Source))
			}
			d.log.Error("connection_leak", fields...)
		}
	} else if d.leakCount > 0 {
		d.log.Info("connection_leak_cleared", zap.String("text", "No connections idle beyond the leak age any more"))
	}
	d.leakCount = ls.Count

}

// judgeIdleInTransaction reports sessions idle in a transaction longer than the warning.
func (d *Database) judgeIdleInTransaction(v *tickVerdict, details *DatabaseDetails, idleTxn []dbSession) {
	sort.Slice(idleTxn, func(i, j int) bool { return idleTxn[i].txnFor > idleTxn[j].txnFor })
	it := &DBIdleInTransaction{Count: len(idleTxn), WarningSeconds: d.idleTxnWarn, Sessions: []DBSession{}}
	for i, s := range idleTxn {
		if i == 0 {
			it.OldestSeconds = s.txnFor
		}
		if i < dbListMax {
			it.Sessions = append(it.Sessions, publicSession(s, s.txnFor))
		}
	}
	details.IdleInTransaction = it
	v.res.Figures["db_idle_in_transaction"] = float64(it.Count)
	v.res.Figures["db_idle_in_transaction_oldest"] = it.OldestSeconds
	if it.Count > 0 && it.OldestSeconds > d.idleTxnWarn {
		v.raise(StatusWarning, fmt.Sprintf("%d sessions idle in transaction, oldest %s (%s, warning > %s)",
			it.Count, formatSeconds(it.OldestSeconds), sessionSource(idleTxn[0]), formatSeconds(d.idleTxnWarn)))
		if d.idleTxnCount == 0 {
			d.log.Warn("db_idle_in_transaction",
				zap.String("text", fmt.Sprintf("%d database sessions idle in transaction, oldest %s", it.Count, formatSeconds(it.OldestSeconds))),
				zap.Int("count", it.Count),
				zap.Float64("oldest_s", it.OldestSeconds),
				zap.String("source", sessionSource(idleTxn[0])))
		}
		d.idleTxnCount = it.Count
	} else {
		d.idleTxnCount = 0
	}

}

// judgeLongQueries reports queries running longer than the long-query threshold.
func (d *Database) judgeLongQueries(v *tickVerdict, details *DatabaseDetails, long []dbSession) {
	sort.Slice(long, func(i, j int) bool { return long[i].runFor > long[j].runFor })
	n := len(long)
	details.LongQueryCount = &n
	details.LongQueries = []DBSession{}
	for i, s := range long {
		if i == dbListMax {
			break
		}
		details.LongQueries = append(details.LongQueries, publicSession(s, s.runFor))
	}
	v.res.Figures["db_long_queries"] = float64(n)
	if n > 0 {
		v.raise(StatusWarning, fmt.Sprintf("%d queries running > %s, longest %s (%s)", n, formatSeconds(d.longQuery), formatSeconds(long[0].runFor), sessionSource(long[0])))
	}
}

// judgeLockWaits notes sessions waiting on a lock (a note, not a level).
func judgeLockWaits(v *tickVerdict, details *DatabaseDetails, rd *dbReading, lockWaits int) {
	if rd.lockWaitsKnown {
		lw := lockWaits
		details.LockWaits = &lw
		if lw > 0 {
			v.note(fmt.Sprintf("%d sessions waiting on a lock", lw))
		}
	}
}

// sessionSource is user@host, the unit the product's advice names.
func sessionSource(s dbSession) string {
	return dbLabel(s.user, "(none)") + "@" + dbLabel(s.host, "local")
}

// publicSession converts a session for the details JSON.
func publicSession(s dbSession, seconds float64) DBSession {
	return DBSession{
		ID:          s.id,
		User:        s.user,
		Host:        dbLabel(s.host, "local"),
		Application: s.app,
		Seconds:     seconds,
		Query:       dbTruncate(s.query, dbQueryTextMax),
		LockWait:    s.lockWait,
	}
}

// dbLabel returns s, or def when s is empty.
func dbLabel(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// dbTruncate cuts s to at most n characters on a rune boundary, with
// whitespace runs collapsed so multi-line SQL stays one line.
func dbTruncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// dbNonNeg clamps small negative clock skews between columns to 0.
func dbNonNeg(v float64) float64 {
	if v < 0 || math.IsNaN(v) {
		return 0
	}
	return v
}
