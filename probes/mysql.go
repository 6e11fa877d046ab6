package probes

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
)

// MySQL/MariaDB server error numbers the probe branches on.
const (
	mysqlErrConCount         = 1040 // Too many connections
	mysqlErrAccessDenied     = 1045 // Access denied for user (wrong password)
	mysqlErrDBAccessDenied   = 1044 // Access denied for user to database
	mysqlErrBadDB            = 1049 // Unknown database
	mysqlErrTooManyUserConns = 1203 // User already has more than 'max_user_connections'
	mysqlErrUserLimitReached = 1226 // User has exceeded the 'max_user_connections' resource
	mysqlErrUnknownSystemVar = 1193 // Unknown system variable
)

// mysqlEngine reads MySQL/MariaDB through a database/sql pool of exactly
// one connection.
type mysqlEngine struct {
	db      *sql.DB
	timeout time.Duration
}

// mysqlLogger routes the driver's own messages to zap at debug level, scrubbed.
type mysqlLogger struct {
	log      *zap.Logger
	scrubber secretScrubber
}

func (l mysqlLogger) Print(v ...any) {
	l.log.Debug("mysql_driver", zap.String("text", l.scrubber.Scrub(fmt.Sprint(v...))))
}

// newMySQLEngine builds the driver config from the URL parts: timeouts in
// the driver config (go-sql-driver does not derive socket deadlines from
// the context), one connection, a lifetime below wait_timeout.
func newMySQLEngine(p dsnParts, timeout time.Duration, scrubber secretScrubber, log *zap.Logger) (*mysqlEngine, error) {
	mc := mysql.NewConfig()
	mc.User = p.User
	mc.Passwd = p.Password
	mc.Net = "tcp"
	host := p.Rest.Hostname()
	port := p.Rest.Port()
	if port == "" {
		port = "3306"
	}
	mc.Addr = net.JoinHostPort(host, port)
	mc.DBName = strings.TrimPrefix(p.Rest.Path, "/")
	mc.Timeout = timeout
	mc.ReadTimeout = timeout
	mc.WriteTimeout = timeout
	mc.Logger = mysqlLogger{log: log, scrubber: scrubber}
	q := p.Rest.Query()
	if tlsMode := q.Get("tls"); tlsMode != "" {
		mc.TLSConfig = tlsMode
	}
	if err := mc.Apply(); err != nil {
		return nil, fmt.Errorf("configuring mysql driver: %w", err)
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("configuring mysql driver: %w", err)
	}
	db := sql.OpenDB(mysqlSessionConnector{Connector: conn, stmtLimit: timeout})
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(dbConnMaxLifetime)
	db.SetConnMaxIdleTime(probeConnMaxIdle)
	return &mysqlEngine{db: db, timeout: timeout}, nil
}

// mysqlSessionConnector sets a server-side statement limit on each new
// connection, so a probe query cancelled on the client (the driver closes
// the socket) does not keep running on the server.
type mysqlSessionConnector struct {
	driver.Connector
	stmtLimit time.Duration
}

// Connect opens a connection and limits its statements: MariaDB
// max_statement_time (seconds), else MySQL max_execution_time (ms).
func (c mysqlSessionConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		return conn, nil
	}
	secs := c.stmtLimit.Seconds()
	_, err = ex.ExecContext(ctx, fmt.Sprintf("SET SESSION max_statement_time = %.3f", secs), nil)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == mysqlErrUnknownSystemVar {
		_, err = ex.ExecContext(ctx, fmt.Sprintf("SET SESSION max_execution_time = %d", c.stmtLimit.Milliseconds()), nil)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("setting the probe session's statement limit: %w", err)
	}
	return conn, nil
}

func (e *mysqlEngine) close() error { return e.db.Close() }

// read runs one tick's queries on the single pooled connection.
func (e *mysqlEngine) read(ctx context.Context) (*dbReading, error) {
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return nil, classifyMySQL("connecting to mysql", err)
	}
	defer conn.Close()

	rd := &dbReading{engine: "mysql"}
	t0 := time.Now()
	var one int
	if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return nil, classifyMySQL("running SELECT 1", err)
	}
	rd.latency = time.Since(t0)

	var curUser string
	if err := conn.QueryRowContext(ctx,
		"SELECT @@version, @@max_connections, CONNECTION_ID(), CURRENT_USER()").
		Scan(&rd.version, &rd.maxConns, &rd.ownID, &curUser); err != nil {
		return nil, classifyMySQL("reading server settings", err)
	}
	if strings.Contains(strings.ToLower(rd.version), "mariadb") {
		rd.engine = "mariadb"
	}
	rd.ownUser, _, _ = strings.Cut(curUser, "@")

	hasProcess, err := mysqlHasProcess(ctx, conn)
	if err != nil {
		return nil, classifyMySQL("reading grants", err)
	}

	status, err := mysqlGlobalStatus(ctx, conn)
	if err != nil {
		return nil, classifyMySQL("reading global status", err)
	}
	tc, ok := status["threads_connected"]
	if !ok {
		return nil, errors.New("reading global status: Threads_connected missing")
	}
	rd.inUse = int(tc)
	if sq, ok := status["slow_queries"]; ok {
		rd.slowQueries = &sq
	}
	if up, ok := status["uptime"]; ok {
		rd.uptime = time.Duration(up) * time.Second
	}

	sessions, err := mysqlProcessList(ctx, conn)
	if err != nil {
		return nil, classifyMySQL("reading the process list", err)
	}
	if !hasProcess {
		rd.missing = []string{"PROCESS"}
	} else {
		trx, err := mysqlOpenTransactions(ctx, conn)
		if err != nil {
			return nil, classifyMySQL("reading information_schema.INNODB_TRX", err)
		}
		for i := range sessions {
			s := &sessions[i]
			if age, ok := trx[s.id]; ok && s.kind == dbIdle {
				s.kind = dbIdleInTxn
				s.txnFor = age
			}
		}
	}
	rd.sessions = sessions
	return rd, nil
}

// mysqlHasProcess reports whether the current user holds PROCESS (or ALL
// PRIVILEGES) on *.*: without it, the process list silently shows only
// the user's own threads.
func mysqlHasProcess(ctx context.Context, conn *sql.Conn) (bool, error) {
	rows, err := conn.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return false, err
	}
	defer rows.Close()
	has := false
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return false, err
		}
		if grantHasProcess(g) {
			has = true
		}
	}
	return has, rows.Err()
}

// grantHasProcess parses one SHOW GRANTS line: "GRANT <privs> ON *.* TO ...".
func grantHasProcess(line string) bool {
	up := strings.ToUpper(line)
	if !strings.HasPrefix(up, "GRANT ") {
		return false
	}
	privs, rest, ok := strings.Cut(up[len("GRANT "):], " ON ")
	if !ok {
		return false
	}
	if !strings.HasPrefix(strings.TrimSpace(rest), "*.*") {
		return false
	}
	for _, p := range strings.Split(privs, ",") {
		switch strings.TrimSpace(p) {
		case "PROCESS", "ALL", "ALL PRIVILEGES":
			return true
		}
	}
	return false
}

// mysqlGlobalStatus reads the counters the probe uses, keyed in lower case.
func mysqlGlobalStatus(ctx context.Context, conn *sql.Conn) (map[string]uint64, error) {
	rows, err := conn.QueryContext(ctx,
		"SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', 'Slow_queries', 'Uptime')")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var name, val string
		if err := rows.Scan(&name, &val); err != nil {
			return nil, err
		}
		if n, err := strconv.ParseUint(val, 10, 64); err == nil {
			out[strings.ToLower(name)] = n
		}
	}
	return out, rows.Err()
}

// mysqlProcessList reads every client thread visible to the probe user.
func mysqlProcessList(ctx context.Context, conn *sql.Conn) ([]dbSession, error) {
	rows, err := conn.QueryContext(ctx, `SELECT ID, COALESCE(USER, ''), COALESCE(HOST, ''),
		COALESCE(COMMAND, ''), COALESCE(TIME, 0), COALESCE(LEFT(INFO, 200), '')
		FROM information_schema.PROCESSLIST`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dbSession
	for rows.Next() {
		var s dbSession
		var secs int64
		if err := rows.Scan(&s.id, &s.user, &s.host, &s.state, &secs, &s.query); err != nil {
			return nil, err
		}
		// Server and replication threads are not client connections.
		switch s.state {
		case "Daemon", "Binlog Dump", "Binlog Dump GTID", "Slave_IO", "Slave_SQL", "Slave_worker":
			continue
		}
		if s.user == "system user" || s.user == "event_scheduler" {
			continue
		}
		s.host = mysqlHostOnly(s.host)
		t := dbNonNeg(float64(secs))
		switch s.state {
		case "Sleep":
			s.kind, s.idleFor = dbIdle, t
		case "Query", "Execute":
			s.kind, s.runFor = dbActive, t
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// mysqlOpenTransactions maps thread id → age in seconds of its open InnoDB transaction.
func mysqlOpenTransactions(ctx context.Context, conn *sql.Conn) (map[int64]float64, error) {
	rows, err := conn.QueryContext(ctx, `SELECT trx_mysql_thread_id,
		TIMESTAMPDIFF(MICROSECOND, trx_started, NOW(6)) / 1000000
		FROM information_schema.INNODB_TRX`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]float64{}
	for rows.Next() {
		var id int64
		var age float64
		if err := rows.Scan(&id, &age); err != nil {
			return nil, err
		}
		out[id] = dbNonNeg(age)
	}
	return out, rows.Err()
}

// mysqlHostOnly strips the client port from PROCESSLIST.HOST ("10.0.0.5:51234").
func mysqlHostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

// classifyMySQL wraps err with what was being done and its kind.
func classifyMySQL(doing string, err error) error {
	kind := dbErrUnreachable
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case mysqlErrConCount:
			return &dbError{kind: dbErrSaturated, reason: "saturated: the server refused the probe's connection (too many connections)", err: fmt.Errorf("%s: %w", doing, err)}
		case mysqlErrTooManyUserConns, mysqlErrUserLimitReached:
			return &dbError{kind: dbErrSaturated, reason: "saturated: the probe user reached its max_user_connections", err: fmt.Errorf("%s: %w", doing, err)}
		case mysqlErrAccessDenied, mysqlErrDBAccessDenied, mysqlErrBadDB:
			kind = dbErrAuth
		}
	}
	return &dbError{kind: kind, err: fmt.Errorf("%s: %w", doing, err)}
}
