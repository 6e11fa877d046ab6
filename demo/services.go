package demo

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
)

// Name is the one name the demo owns on the user's servers: the database
// and the database user it creates, and (with a colon) its Redis key
// prefix. The demo writes nothing anywhere else and removes all of it when
// it stops.
const Name = "pulsegate_demo"

// RedisPrefix prefixes every Redis key the demo writes.
const RedisPrefix = Name + ":"

// Redis keys of the sample app.
const (
	SessionPrefix = RedisPrefix + "session:"
	QueueKey      = RedisPrefix + "queue:emails"
)

// markerTable exists in a database the demo created, and only there: the
// demo drops a leftover pulsegate_demo database (a previous run killed
// before it could clean up) only when it finds this table in it.
const markerTable = "pulsegate_demo_marker"

// Engines the demo can use for the database probe.
const (
	EngineMySQL    = "mysql"
	EnginePostgres = "postgres"
)

// ServiceOptions says where to look for services.
type ServiceOptions struct {
	// DBDSN is RESPONSIVENESS_DB_DSN when set: the server (and credentials)
	// to use; its engine is then the only one looked for.
	DBDSN string
	// RedisURL is RESPONSIVENESS_REDIS_URL when set.
	RedisURL string
	// MySQLAddr, PostgresAddr and RedisAddr are the usual local addresses
	// looked at when no DSN/URL is given.
	MySQLAddr, PostgresAddr, RedisAddr string
	// DB picks the engine when both are found: "auto" (MySQL/MariaDB
	// first), "mysql" or "postgres".
	DB string
	// Timeout bounds each connection attempt.
	Timeout time.Duration
}

// Finding is what the demo found (or not) at one address.
type Finding struct {
	Service string // "MySQL/MariaDB", "PostgreSQL", "Redis"
	Addr    string
	Found   bool
	Version string
	Used    bool
	// Note explains: why not found, or why found but not used.
	Note string
	// Enable is the one line that makes the demo find it.
	Enable string
}

// Services are the real services the demo found and prepared. Build with
// FindServices, then Setup; Close removes everything Setup created.
type Services struct {
	Findings []Finding

	DB    *Database // nil when no database is used
	Redis *Redis    // nil when Redis is not used

	dbIdx, redisIdx int // their findings
}

// Database is the demo's private database on a real server.
type Database struct {
	Engine  string // EngineMySQL or EnginePostgres
	Server  string // "MariaDB 10.11.19" or "PostgreSQL 15.20"
	Addr    string
	admin   *sql.DB // the found credentials, for creating and dropping
	adminU  *url.URL
	app     *sql.DB // as the demo's own user, on the demo's database
	appPass string
	created bool
	// leftover: setup found (and dropped) a database an earlier run left.
	leftover bool
}

// Redis is the demo's key prefix on a real Redis.
type Redis struct {
	URL    string
	Addr   string
	Server string
	client *redis.Client
}

// Enable lines printed for services that were not found.
var enableLine = map[string]string{
	EngineMySQL:    "docker run -d --name pulsegate-mariadb -p 3306:3306 -e MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1 mariadb   (or: sudo apt-get install -y mariadb-server; or set RESPONSIVENESS_DB_DSN=mysql://user:pass@host:3306/db)",
	EnginePostgres: "docker run -d --name pulsegate-postgres -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres   (or: sudo apt-get install -y postgresql; or set RESPONSIVENESS_DB_DSN=postgres://user:pass@host:5432/db)",
	"redis":        "docker run -d --name pulsegate-redis -p 6379:6379 redis   (or: sudo apt-get install -y redis-server; or set RESPONSIVENESS_REDIS_URL=redis://host:6379/0)",
}

// FindServices looks for MySQL/MariaDB, PostgreSQL and Redis and connects
// to what it finds. It changes nothing on them (Setup does). Errors are
// findings, never fatal.
func FindServices(ctx context.Context, o ServiceOptions) *Services {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	s := &Services{}
	var mysqlDB, pgDB *Database
	mysqlIdx, pgIdx := -1, -1
	dsnEngine := ""
	if o.DBDSN != "" {
		if u, err := url.Parse(o.DBDSN); err == nil {
			switch strings.ToLower(u.Scheme) {
			case "mysql", "mariadb":
				dsnEngine = EngineMySQL
			case "postgres", "postgresql":
				dsnEngine = EnginePostgres
			}
		}
	}
	if dsnEngine == "" || dsnEngine == EngineMySQL {
		f := Finding{Service: "MySQL/MariaDB", Addr: o.MySQLAddr, Enable: enableLine[EngineMySQL]}
		var cands []*url.URL
		if dsnEngine == EngineMySQL {
			u, _ := url.Parse(o.DBDSN)
			f.Addr = u.Host
			cands = []*url.URL{u}
		} else {
			cands = []*url.URL{{Scheme: "mysql", User: url.User("root"), Host: o.MySQLAddr}}
		}
		db, err := connectAdmin(ctx, EngineMySQL, cands, o.Timeout)
		if err != nil {
			f.Note = err.Error()
		} else {
			f.Found, f.Version, mysqlDB = true, db.Server, db
		}
		mysqlIdx = len(s.Findings)
		s.Findings = append(s.Findings, f)
	}
	if dsnEngine == "" || dsnEngine == EnginePostgres {
		f := Finding{Service: "PostgreSQL", Addr: o.PostgresAddr, Enable: enableLine[EnginePostgres]}
		var cands []*url.URL
		if dsnEngine == EnginePostgres {
			u, _ := url.Parse(o.DBDSN)
			f.Addr = u.Host
			cands = []*url.URL{u}
		} else {
			for _, user := range pgUsers() {
				cands = append(cands, &url.URL{Scheme: "postgres", User: url.User(user), Host: o.PostgresAddr, Path: "/postgres", RawQuery: "sslmode=disable"})
			}
		}
		db, err := connectAdmin(ctx, EnginePostgres, cands, o.Timeout)
		if err != nil {
			f.Note = err.Error()
		} else {
			f.Found, f.Version, pgDB = true, db.Server, db
		}
		pgIdx = len(s.Findings)
		s.Findings = append(s.Findings, f)
	}
	used := -1
	switch {
	case mysqlDB != nil && pgDB != nil:
		if o.DB == EnginePostgres {
			s.DB, used = pgDB, pgIdx
			s.Findings[mysqlIdx].Note = "not used: the demo watches one database at a time (run with --db mysql to use this one)"
			mysqlDB.close()
		} else {
			s.DB, used = mysqlDB, mysqlIdx
			s.Findings[pgIdx].Note = "not used: the demo watches one database at a time (run with --db postgres to use this one)"
			pgDB.close()
		}
	case mysqlDB != nil:
		s.DB, used = mysqlDB, mysqlIdx
	case pgDB != nil:
		s.DB, used = pgDB, pgIdx
	}
	if used >= 0 {
		s.Findings[used].Used = true
		s.dbIdx = used
	}

	rf := Finding{Service: "Redis", Addr: o.RedisAddr, Enable: enableLine["redis"]}
	rawURL := o.RedisURL
	if rawURL == "" {
		rawURL = "redis://" + o.RedisAddr + "/0"
	}
	r, err := connectRedis(ctx, rawURL, o.Timeout)
	if err != nil {
		rf.Note = err.Error()
		if u, perr := url.Parse(rawURL); perr == nil {
			rf.Addr = u.Host
		}
	} else {
		rf.Found, rf.Used, rf.Version, rf.Addr = true, true, r.Server, r.Addr
		s.Redis = r
	}
	s.redisIdx = len(s.Findings)
	s.Findings = append(s.Findings, rf)
	return s
}

// pgUsers are the roles tried on a local PostgreSQL: postgres, then the
// login user (root on CI machines).
func pgUsers() []string {
	users := []string{"postgres"}
	for _, k := range []string{"PGUSER", "USER"} {
		if u := os.Getenv(k); u != "" && u != users[len(users)-1] && u != "postgres" {
			users = append(users, u)
		}
	}
	return users
}

// connectAdmin tries each candidate URL and returns the first that answers.
func connectAdmin(ctx context.Context, engine string, cands []*url.URL, timeout time.Duration) (*Database, error) {
	var firstErr error
	for _, u := range cands {
		db, err := openSQL(engine, u, timeout)
		if err == nil {
			var version string
			cctx, cancel := context.WithTimeout(ctx, timeout)
			err = db.QueryRowContext(cctx, "SELECT version()").Scan(&version)
			cancel()
			if err == nil {
				return &Database{Engine: engine, Server: serverName(engine, version), Addr: u.Host, admin: db, adminU: u}, nil
			}
			db.Close()
		}
		if firstErr == nil {
			firstErr = scrub(shortErr(err), u)
		}
	}
	return nil, firstErr
}

// scrub removes u's password (raw and URL-encoded) from err: a driver
// error must never print it.
func scrub(err error, u *url.URL) error {
	if err == nil || u == nil || u.User == nil {
		return err
	}
	pass, ok := u.User.Password()
	if !ok || pass == "" {
		return err
	}
	msg := err.Error()
	for _, p := range []string{pass, url.QueryEscape(pass), url.PathEscape(pass)} {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	return errors.New(msg)
}

func serverName(engine, version string) string {
	if engine == EngineMySQL {
		v, _, _ := strings.Cut(version, "-")
		if strings.Contains(strings.ToLower(version), "mariadb") {
			return "MariaDB " + v
		}
		return "MySQL " + v
	}
	// "PostgreSQL 15.20 (Debian …) on …"
	f := strings.Fields(version)
	if len(f) >= 2 {
		return f[0] + " " + f[1]
	}
	return version
}

// shortErr keeps the part of a driver error a newcomer needs ("connection
// refused", "access denied …"), without credentials.
func shortErr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "i/o timeout", "no such host", "network is unreachable"} {
		if strings.Contains(msg, s) {
			return errors.New("not reachable: " + s)
		}
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return fmt.Errorf("not reachable: %v", ne.Err)
	}
	return errors.New(msg)
}

// openSQL opens a database/sql pool on u (a pulsegate-style URL).
func openSQL(engine string, u *url.URL, timeout time.Duration) (*sql.DB, error) {
	switch engine {
	case EngineMySQL:
		c := mysql.NewConfig()
		c.Net = "tcp"
		c.Addr = u.Host
		if u.Port() == "" {
			c.Addr = net.JoinHostPort(u.Hostname(), "3306")
		}
		c.User = u.User.Username()
		c.Passwd, _ = u.User.Password()
		c.DBName = strings.TrimPrefix(u.Path, "/")
		c.Timeout, c.ReadTimeout, c.WriteTimeout = timeout, 30*time.Second, 30*time.Second
		c.InterpolateParams = true
		conn, err := mysql.NewConnector(c)
		if err != nil {
			return nil, err
		}
		return sql.OpenDB(conn), nil
	case EnginePostgres:
		v := *u
		q := v.Query()
		if q.Get("sslmode") == "" {
			q.Set("sslmode", "prefer")
		}
		if q.Get("connect_timeout") == "" {
			q.Set("connect_timeout", strconv.Itoa(max(1, int(timeout/time.Second))))
		}
		v.RawQuery = q.Encode()
		cfg, err := pgx.ParseConfig(v.String())
		if err != nil {
			return nil, errors.New("cannot parse the PostgreSQL URL")
		}
		return stdlib.OpenDB(*cfg), nil
	}
	return nil, fmt.Errorf("unknown engine %q", engine)
}

func connectRedis(ctx context.Context, rawURL string, timeout time.Duration) (*Redis, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, errors.New("cannot parse the Redis URL")
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeout, timeout, timeout
	opt.MaxRetries = -1
	opt.PoolSize = 8
	opt.ClientName = Name
	opt.DisableIdentity = true
	c := redis.NewClient(opt)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := c.Info(cctx, "server").Result()
	if err != nil {
		c.Close()
		u, _ := url.Parse(rawURL)
		return nil, scrub(shortErr(err), u)
	}
	version := ""
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			version = v
		}
	}
	opt.MaxRetries = 1
	return &Redis{URL: rawURL, Addr: opt.Addr, Server: "Redis " + version, client: c}, nil
}

// Setup creates the demo's database, its user and tables, and clears
// leftovers of an earlier run under the Redis prefix. A service that cannot
// be prepared is dropped from s (with the reason in its finding); the rest
// goes on.
func (s *Services) Setup(ctx context.Context) {
	if s.DB != nil {
		if err := s.DB.setup(ctx); err != nil {
			s.Findings[s.dbIdx].Used = false
			s.Findings[s.dbIdx].Note = "not used: " + err.Error()
			s.DB.teardown(context.WithoutCancel(ctx))
			s.DB.close()
			s.DB = nil
		}
	}
	if s.Redis != nil {
		if _, err := s.Redis.deletePrefix(ctx); err != nil {
			s.Findings[s.redisIdx].Used = false
			s.Findings[s.redisIdx].Note = "not used: " + err.Error()
			s.Redis.client.Close()
			s.Redis = nil
		}
	}
}

// Close removes everything the demo created (database, user, keys) and
// closes every connection. It reports what it could not remove.
func (s *Services) Close(ctx context.Context) error {
	var errs []error
	if s.DB != nil {
		if err := s.DB.teardown(ctx); err != nil {
			errs = append(errs, err)
		}
		s.DB.close()
	}
	if s.Redis != nil {
		if _, err := s.Redis.deletePrefix(ctx); err != nil {
			errs = append(errs, fmt.Errorf("removing Redis keys %s*: %w", RedisPrefix, err))
		}
		s.Redis.client.Close()
	}
	return errors.Join(errs...)
}

// ProbeDSN is the database probe's DSN: the found credentials on the demo's
// database.
func (d *Database) ProbeDSN() string {
	u := *d.adminU
	u.Path = "/" + Name
	if d.Engine == EngineMySQL {
		u.Scheme = "mysql"
		u.RawQuery = ""
	} else {
		u.Scheme = "postgres"
	}
	return u.String()
}

// App is the sample app's connection pool (as the demo's own user).
func (d *Database) App() *sql.DB { return d.app }

func (d *Database) close() {
	if d.app != nil {
		d.app.Close()
	}
	if d.admin != nil {
		d.admin.Close()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *Database) setup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d.appPass = randomHex(12)
	if err := d.dropLeftover(ctx); err != nil {
		return err
	}
	if err := d.dropLeftoverUser(ctx); err != nil {
		return err
	}
	var stmts []string
	if d.Engine == EngineMySQL {
		stmts = []string{
			"CREATE DATABASE " + Name,
			"CREATE TABLE " + Name + "." + markerTable + " (created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, pid INT)",
			fmt.Sprintf("INSERT INTO %s.%s (pid) VALUES (%d)", Name, markerTable, os.Getpid()),
			"CREATE TABLE " + Name + ".orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL DEFAULT 'new', created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB",
			"CREATE USER '" + Name + "'@'%' IDENTIFIED BY '" + d.appPass + "'",
			"GRANT ALL PRIVILEGES ON " + Name + ".* TO '" + Name + "'@'%'",
		}
	} else {
		stmts = []string{
			"CREATE ROLE " + Name + " LOGIN PASSWORD '" + d.appPass + "'",
			"COMMENT ON ROLE " + Name + " IS '" + roleComment + "'",
			"CREATE DATABASE " + Name + " OWNER " + Name,
		}
	}
	for i, q := range stmts {
		if _, err := d.admin.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("preparing %s: %s: %v", Name, redactPass(q), shortErr(err))
		}
		if i == 0 {
			d.created = true // from here on, teardown removes what exists
		}
	}
	u := *d.adminU
	u.User = url.UserPassword(Name, d.appPass)
	u.Path = "/" + Name
	app, err := openSQL(d.Engine, &u, 5*time.Second)
	if err != nil {
		return fmt.Errorf("connecting as %s: %v", Name, shortErr(err))
	}
	d.app = app
	app.SetMaxOpenConns(AppPoolSize)
	app.SetMaxIdleConns(2)
	if d.Engine == EnginePostgres {
		for _, q := range []string{
			"CREATE TABLE " + markerTable + " (created_at timestamptz DEFAULT now(), pid int)",
			fmt.Sprintf("INSERT INTO %s (pid) VALUES (%d)", markerTable, os.Getpid()),
			"CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, status text NOT NULL DEFAULT 'new', created_at timestamptz DEFAULT now())",
		} {
			if _, err := app.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("preparing %s: %v", Name, shortErr(err))
			}
		}
	}
	if err := app.PingContext(ctx); err != nil {
		return fmt.Errorf("connecting as %s: %v", Name, shortErr(err))
	}
	return nil
}

func redactPass(q string) string {
	if i := strings.Index(q, "BY '"); i >= 0 {
		return q[:i] + "BY '…'"
	}
	if i := strings.Index(q, "PASSWORD '"); i >= 0 {
		return q[:i] + "PASSWORD '…'"
	}
	return q
}

// dropLeftover removes a pulsegate_demo database left by an earlier run
// (it has the marker table); any other database of that name is not the
// demo's and stops the setup.
func (d *Database) dropLeftover(ctx context.Context) error {
	var n int
	if d.Engine == EngineMySQL {
		if err := d.admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", Name).Scan(&n); err != nil {
			return fmt.Errorf("looking for an earlier %s: %v", Name, shortErr(err))
		}
		if n == 0 {
			return nil
		}
		var m int
		if err := d.admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", Name, markerTable).Scan(&m); err != nil || m == 0 {
			return fmt.Errorf("a database %s exists that the demo did not create: left alone (drop or rename it to let the demo use this server)", Name)
		}
		d.leftover = true
		_, err := d.admin.ExecContext(ctx, "DROP DATABASE "+Name)
		return err
	}
	if err := d.admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM pg_database WHERE datname = $1", Name).Scan(&n); err != nil {
		return fmt.Errorf("looking for an earlier %s: %v", Name, shortErr(err))
	}
	if n == 0 {
		return nil
	}
	u := *d.adminU
	u.Path = "/" + Name
	db, err := openSQL(EnginePostgres, &u, 5*time.Second)
	if err != nil {
		return err
	}
	var m int
	err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM pg_tables WHERE tablename = $1", markerTable).Scan(&m)
	db.Close()
	if err != nil || m == 0 {
		return fmt.Errorf("a database %s exists that the demo did not create: left alone (drop or rename it to let the demo use this server)", Name)
	}
	d.leftover = true
	return d.dropPostgres(ctx)
}

// roleComment marks the PostgreSQL role the demo created.
const roleComment = "created by pulsegate demo; removed when it stops"

// dropLeftoverUser removes a pulsegate_demo user left by an earlier run;
// one the demo did not create stops the setup. On MySQL/MariaDB a user
// left by the demo has no database left (teardown drops the user first,
// then the marked database), so a user found after no marked database was
// is not the demo's; on PostgreSQL the demo's role carries roleComment.
func (d *Database) dropLeftoverUser(ctx context.Context) error {
	notOurs := fmt.Errorf("a database user %s exists that the demo did not create: left alone (drop or rename it to let the demo use this server)", Name)
	if d.Engine == EngineMySQL {
		var n int
		if err := d.admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.user WHERE User = ?", Name).Scan(&n); err != nil {
			return fmt.Errorf("looking for an earlier user %s: %v", Name, shortErr(err))
		}
		if n == 0 {
			return nil
		}
		if !d.leftover {
			return notOurs
		}
		_, err := d.admin.ExecContext(ctx, "DROP USER IF EXISTS '"+Name+"'@'%'")
		return err
	}
	var comment sql.NullString
	err := d.admin.QueryRowContext(ctx, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", Name).Scan(&comment)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking for an earlier role %s: %v", Name, shortErr(err))
	}
	if comment.String != roleComment {
		return notOurs
	}
	_, err = d.admin.ExecContext(ctx, "DROP ROLE IF EXISTS "+Name)
	return err
}

func (d *Database) dropPostgres(ctx context.Context) error {
	// Sessions still on the database (the sidecar's probe is closed by
	// now; a killed run may have left some) are ended first.
	d.admin.ExecContext(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", Name)
	_, err := d.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+Name)
	return err
}

// teardown drops what setup created: the database (and so its tables) and
// the demo's user.
func (d *Database) teardown(ctx context.Context) error {
	if !d.created {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if d.app != nil {
		d.app.Close()
		d.app = nil
	}
	var errs []error
	if d.Engine == EngineMySQL {
		// Any session of the demo's user still open (a leaked connection
		// the pool has not closed yet) is ended first.
		rows, err := d.admin.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", Name)
		if err == nil {
			var ids []int64
			for rows.Next() {
				var id int64
				if rows.Scan(&id) == nil {
					ids = append(ids, id)
				}
			}
			rows.Close()
			for _, id := range ids {
				d.admin.ExecContext(ctx, "KILL "+strconv.FormatInt(id, 10))
			}
		}
		// The user first: a user left without its marked database would
		// not be recognised as the demo's by the next run.
		for _, q := range []string{"DROP USER IF EXISTS '" + Name + "'@'%'", "DROP DATABASE IF EXISTS " + Name} {
			if _, err := d.admin.ExecContext(ctx, q); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", q, shortErr(err)))
			}
		}
	} else {
		if err := d.dropPostgres(ctx); err != nil {
			errs = append(errs, fmt.Errorf("DROP DATABASE %s: %v", Name, shortErr(err)))
		}
		if _, err := d.admin.ExecContext(ctx, "DROP ROLE IF EXISTS "+Name); err != nil {
			errs = append(errs, fmt.Errorf("DROP ROLE %s: %v", Name, shortErr(err)))
		}
	}
	if len(errs) == 0 {
		d.created = false
	}
	return errors.Join(errs...)
}

// deletePrefix removes every key under RedisPrefix and returns how many.
func (r *Redis) deletePrefix(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n := 0
	var cursor uint64
	for {
		keys, next, err := r.client.Scan(ctx, cursor, RedisPrefix+"*", 1000).Result()
		if err != nil {
			return n, err
		}
		if len(keys) > 0 {
			if err := r.client.Unlink(ctx, keys...).Err(); err != nil {
				return n, err
			}
			n += len(keys)
		}
		cursor = next
		if cursor == 0 {
			return n, nil
		}
	}
}

// Client is the sample app's Redis client.
func (r *Redis) Client() *redis.Client { return r.client }
