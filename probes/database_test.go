package probes

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/test/chaos"
)

// TestMain checks that no test in the package leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// canary is the secret-leak canary password of RELIABILITY.md case 58.
const canary = "c@n#ry%P4ss:zz"

// canaryForms are the spellings of the canary that must never appear.
var canaryForms = []string{canary, url.QueryEscape(canary), url.PathEscape(canary), strings.ToLower(url.QueryEscape(canary))}

func assertNoCanary(t *testing.T, what, text string) {
	t.Helper()
	for _, f := range canaryForms {
		if strings.Contains(text, f) {
			t.Errorf("%s contains the password %q: %s", what, f, text)
		}
	}
}

// dbFixture is one real database server the tests run against.
type dbFixture struct {
	engine string // mysql | postgres
	host   string // host:port
	admin  *sql.DB
	// probeURL is the probe's DSN for user:pass.
	probeURL func(user, pass string) string
	// open returns a side connection pool as user:pass.
	open func(t *testing.T, user, pass string) *sql.DB
	// createUser creates a login (dropped at cleanup); monitor grants the probe privileges.
	createUser func(t *testing.T, user, pass string, monitor bool)
	// limitUser caps the user's connections.
	limitUser func(t *testing.T, user string, n int)
	// sleepSQL runs for 10 s.
	sleepSQL string
	// beginTxn opens a transaction that the server lists as one.
	beginTxn []string
	// cancel stops session id's statement.
	cancel func(id int64)
	// sessionCount counts user's sessions on the server.
	sessionCount func(t *testing.T, user string) int
}

var pid = os.Getpid()

// uniqueName is a database user name private to this test run.
func uniqueName(base string) string { return fmt.Sprintf("pgt_%s_%d", base, pid%100000) }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func mysqlFixture(t *testing.T) *dbFixture {
	t.Helper()
	host := envOr("PULSEGATE_TEST_MYSQL_ADDR", "127.0.0.1:3306")
	admin, err := sql.Open("mysql", "root@tcp("+host+")/test?timeout=5s")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.PingContext(ctxT(t, 10*time.Second)); err != nil {
		admin.Close()
		t.Skipf("MariaDB/MySQL at %s unreachable (%v): start it to run this test", host, err)
	}
	t.Cleanup(func() { admin.Close() })
	f := &dbFixture{engine: "mysql", host: host, admin: admin}
	f.probeURL = func(user, pass string) string {
		return "mysql://" + url.UserPassword(user, pass).String() + "@" + host + "/test"
	}
	f.open = func(t *testing.T, user, pass string) *sql.DB {
		t.Helper()
		db, err := sql.Open("mysql", user+":"+pass+"@tcp("+host+")/test?timeout=5s")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	exec := func(t *testing.T, q string, args ...any) {
		t.Helper()
		if _, err := admin.ExecContext(ctxT(t, 10*time.Second), q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	f.createUser = func(t *testing.T, user, pass string, monitor bool) {
		t.Helper()
		exec(t, "DROP USER IF EXISTS '"+user+"'@'%'")
		lit := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pass)
		exec(t, "CREATE USER '"+user+"'@'%' IDENTIFIED BY '"+lit+"'")
		exec(t, "GRANT SELECT, INSERT, UPDATE ON test.* TO '"+user+"'@'%'")
		if monitor {
			exec(t, "GRANT PROCESS, SELECT ON *.* TO '"+user+"'@'%'")
		}
		t.Cleanup(func() { admin.Exec("DROP USER IF EXISTS '" + user + "'@'%'") })
	}
	f.limitUser = func(t *testing.T, user string, n int) {
		exec(t, fmt.Sprintf("ALTER USER '%s'@'%%' WITH MAX_USER_CONNECTIONS %d", user, n))
	}
	f.sleepSQL = "SELECT SLEEP(10)"
	tbl := uniqueName("trx")
	exec(t, "CREATE TABLE IF NOT EXISTS test."+tbl+" (id INT PRIMARY KEY) ENGINE=InnoDB")
	t.Cleanup(func() { admin.Exec("DROP TABLE IF EXISTS test." + tbl) })
	f.beginTxn = []string{"START TRANSACTION", "SELECT COUNT(*) FROM test." + tbl + " FOR UPDATE"}
	f.cancel = func(id int64) { admin.Exec(fmt.Sprintf("KILL QUERY %d", id)) }
	f.sessionCount = func(t *testing.T, user string) int {
		var n int
		if err := admin.QueryRowContext(ctxT(t, 10*time.Second),
			"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?", user).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return f
}

func postgresFixture(t *testing.T) *dbFixture {
	t.Helper()
	host := envOr("PULSEGATE_TEST_POSTGRES_ADDR", "127.0.0.1:5432")
	admin, err := sql.Open("pgx", "postgres://postgres@"+host+"/test?sslmode=disable&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.PingContext(ctxT(t, 10*time.Second)); err != nil {
		admin.Close()
		t.Skipf("PostgreSQL at %s unreachable (%v): start it to run this test", host, err)
	}
	t.Cleanup(func() { admin.Close() })
	f := &dbFixture{engine: "postgres", host: host, admin: admin}
	f.probeURL = func(user, pass string) string {
		return "postgres://" + url.UserPassword(user, pass).String() + "@" + host + "/test?sslmode=disable"
	}
	f.open = func(t *testing.T, user, pass string) *sql.DB {
		t.Helper()
		db, err := sql.Open("pgx", "postgres://"+url.UserPassword(user, pass).String()+"@"+host+"/test?sslmode=disable&connect_timeout=5")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	exec := func(t *testing.T, q string) {
		t.Helper()
		if _, err := admin.ExecContext(ctxT(t, 10*time.Second), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	drop := func(user string) {
		admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", user)
		admin.Exec("DROP ROLE IF EXISTS " + user)
	}
	f.createUser = func(t *testing.T, user, pass string, monitor bool) {
		t.Helper()
		drop(user)
		exec(t, "CREATE ROLE "+user+" LOGIN PASSWORD '"+strings.ReplaceAll(pass, "'", "''")+"'")
		if monitor {
			exec(t, "GRANT pg_monitor TO "+user)
		}
		t.Cleanup(func() { drop(user) })
	}
	f.limitUser = func(t *testing.T, user string, n int) {
		exec(t, fmt.Sprintf("ALTER ROLE %s CONNECTION LIMIT %d", user, n))
	}
	f.sleepSQL = "SELECT pg_sleep(10)"
	f.beginTxn = []string{"BEGIN", "SELECT 1"}
	f.cancel = func(id int64) { admin.Exec("SELECT pg_cancel_backend($1)", id) }
	f.sessionCount = func(t *testing.T, user string) int {
		var n int
		if err := admin.QueryRowContext(ctxT(t, 10*time.Second),
			"SELECT COUNT(*) FROM pg_stat_activity WHERE usename = $1", user).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return f
}

// eachDB runs fn against MariaDB/MySQL and PostgreSQL as subtests.
func eachDB(t *testing.T, fn func(t *testing.T, f *dbFixture)) {
	t.Run("mysql", func(t *testing.T) { fn(t, mysqlFixture(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, postgresFixture(t)) })
}

// testDBConfig is a configuration for probing dsn with test-sized ages.
func testDBConfig(dsn string) *config.Config {
	cfg := config.Defaults()
	cfg.Database.DSN = config.Secret(dsn)
	cfg.Database.ProbeTimeout = 10
	cfg.Database.LeakAge = 1
	cfg.Database.IdleInTransactionWarning = 1
	return cfg
}

// newTestDatabase builds a probe closed at cleanup, logging to an observer.
func newTestDatabase(t *testing.T, cfg *config.Config) (*Database, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	d, err := newDatabase(cfg, zap.New(core))
	if err != nil {
		t.Fatalf("newDatabase: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d, logs
}

func probeOnce(t *testing.T, p Prober, timeout time.Duration) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Probe(ctx)
}

// pollProbe probes until ok accepts the result or the deadline passes.
func pollProbe(t *testing.T, p Prober, deadline time.Duration, what string, ok func(Result, *DatabaseDetails) bool) (Result, *DatabaseDetails) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		r := probeOnce(t, p, 15*time.Second)
		det, _ := r.Details.(*DatabaseDetails)
		if det != nil && r.Error == "" && ok(r, det) {
			return r, det
		}
		if time.Now().After(end) {
			b, _ := json.MarshalIndent(r, "", "  ")
			t.Fatalf("waiting for %s: gave up after %v; last result:\n%s", what, deadline, b)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// holdConns opens n established connections as user and keeps them idle until cleanup.
func holdConns(t *testing.T, f *dbFixture, user, pass string, n int) {
	t.Helper()
	db := f.open(t, user, pass)
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	conns := make([]*sql.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := db.Conn(ctxT(t, 20*time.Second))
		if err != nil {
			t.Fatalf("opening connection %d as %s: %v", i, user, err)
		}
		if err := c.PingContext(ctxT(t, 20*time.Second)); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		db.Close()
	})
}

func hasReason(r Result, sub string) bool {
	for _, s := range r.Reasons {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestDatabaseReadsServer(t *testing.T) {
	eachDB(t, func(t *testing.T, f *dbFixture) {
		user := uniqueName("probe")
		f.createUser(t, user, "probe-pw", true)
		d, _ := newTestDatabase(t, testDBConfig(f.probeURL(user, "probe-pw")))
		r := probeOnce(t, d, 15*time.Second)
		if r.Error != "" || r.Status == StatusDown {
			t.Fatalf("probe failed: status %s error %q", r.Status, r.Error)
		}
		det := r.Details.(*DatabaseDetails)
		if det.Connections == nil || det.Connections.InUse < 1 || det.Connections.MaxConnections < 1 {
			t.Fatalf("connections not read: %+v", det.Connections)
		}
		if det.Connections.ByUser[user] != 1 {
			t.Errorf("by_user[%s] = %d, want 1 (the probe itself)", user, det.Connections.ByUser[user])
		}
		for _, fig := range []string{"db_latency", "connection_pool_utilization", "db_leak_suspects", "db_idle_in_transaction", "db_idle_in_transaction_oldest", "db_long_queries"} {
			if _, ok := r.Figures[fig]; !ok {
				t.Errorf("figure %s missing: %v", fig, r.Figures)
			}
		}
		want := float64(det.Connections.InUse) / float64(det.Connections.Limit)
		if got := r.Figures["connection_pool_utilization"]; got != want {
			t.Errorf("connection_pool_utilization = %v, want in_use/limit = %v", got, want)
		}
		if !det.Privileges.Complete {
			t.Errorf("privileges reported partial for a user with PROCESS/pg_monitor: %+v", det.Privileges)
		}
		switch f.engine {
		case "mysql":
			if det.Engine != "mariadb" && det.Engine != "mysql" {
				t.Errorf("engine = %q", det.Engine)
			}
			// A second tick turns the Slow_queries counter into a delta.
			r2 := probeOnce(t, d, 15*time.Second)
			det2 := r2.Details.(*DatabaseDetails)
			if det2.SlowQueries == nil || det2.SlowQueries.Delta == nil || det2.SlowQueries.PerSecond == nil {
				t.Errorf("slow query delta missing on second tick: %+v", det2.SlowQueries)
			}
		case "postgres":
			if det.Connections.Reserved < 1 || det.Connections.Limit != det.Connections.MaxConnections-det.Connections.Reserved {
				t.Errorf("limit should be max_connections − reserved: %+v", det.Connections)
			}
			if det.LockWaits == nil {
				t.Errorf("lock waits not reported")
			}
		}
		// The Details JSON is snake_case and holds the redacted target.
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"connection_pool_utilization"`) || !strings.Contains(string(b), `"leak_suspects"`) {
			t.Errorf("unexpected JSON: %s", b)
		}
		if strings.Contains(string(b), "probe-pw") {
			t.Errorf("password in JSON: %s", b)
		}
	})
}

// TestDatabaseIdleConnections holds 30 idle connections from an app user and
// expects utilization, leak suspects, the per-user breakdown and the app
// pool warning to rise, with one connection_leak log line.
func TestDatabaseIdleConnections(t *testing.T) {
	eachDB(t, func(t *testing.T, f *dbFixture) {
		probeUser, appUser := uniqueName("probe"), uniqueName("leaker")
		f.createUser(t, probeUser, "probe-pw", true)
		f.createUser(t, appUser, "app-pw", false)
		cfg := testDBConfig(f.probeURL(probeUser, "probe-pw"))
		cfg.Database.AppUser = appUser
		cfg.Database.AppPoolSize = 32
		d, logs := newTestDatabase(t, cfg)

		base := probeOnce(t, d, 15*time.Second)
		if base.Error != "" {
			t.Fatalf("baseline probe: %s", base.Error)
		}
		baseDet := base.Details.(*DatabaseDetails)

		holdConns(t, f, appUser, "app-pw", 30)
		src := appUser + "@127.0.0.1"
		r, det := pollProbe(t, d, 30*time.Second, "30 leak suspects from "+src, func(r Result, det *DatabaseDetails) bool {
			if det.LeakSuspects == nil {
				return false
			}
			for _, g := range det.LeakSuspects.BySource {
				if g.Source == src && g.Count == 30 {
					return true
				}
			}
			return false
		})
		if got := det.Connections.ByUser[appUser]; got != 30 {
			t.Errorf("by_user[%s] = %d, want 30", appUser, got)
		}
		if det.Connections.InUse < baseDet.Connections.InUse+25 {
			t.Errorf("in_use went from %d to %d with 30 more connections", baseDet.Connections.InUse, det.Connections.InUse)
		}
		if r.Figures["connection_pool_utilization"] <= base.Figures["connection_pool_utilization"] {
			t.Errorf("utilization did not rise: %v → %v", base.Figures["connection_pool_utilization"], r.Figures["connection_pool_utilization"])
		}
		if r.Figures["db_leak_suspects"] < 30 {
			t.Errorf("db_leak_suspects = %v, want ≥ 30", r.Figures["db_leak_suspects"])
		}
		if !hasReason(r, "connections idle > 1.0 s") {
			t.Errorf("no leak reason: %q", r.Reasons)
		}
		if det.AppPool == nil || det.AppPool.Connections != 30 || det.AppPool.PoolSize != 32 {
			t.Errorf("app pool = %+v, want 30 of 32", det.AppPool)
		}
		if !hasReason(r, "app pool: 30 of 32 connections of user "+appUser) {
			t.Errorf("no app pool reason: %q", r.Reasons)
		}
		if r.Status != StatusWarning && r.Status != StatusCritical {
			t.Errorf("status = %s with 30 leaked connections, want warning or worse", r.Status)
		}
		// One more tick: the app pool warning is a transition, logged once.
		probeOnce(t, d, 15*time.Second)
		if n := logs.FilterMessage("db_app_pool_utilization").Len(); n != 1 {
			t.Errorf("db_app_pool_utilization logged %d times over several ticks, want 1", n)
		}
	})
}

func TestDatabaseIdleInTransaction(t *testing.T) {
	eachDB(t, func(t *testing.T, f *dbFixture) {
		probeUser, appUser := uniqueName("probe"), uniqueName("txn")
		f.createUser(t, probeUser, "probe-pw", true)
		f.createUser(t, appUser, "app-pw", false)
		d, logs := newTestDatabase(t, testDBConfig(f.probeURL(probeUser, "probe-pw")))

		db := f.open(t, appUser, "app-pw")
		conn, err := db.Conn(ctxT(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, q := range f.beginTxn {
			if _, err := conn.ExecContext(ctxT(t, 10*time.Second), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		defer conn.ExecContext(context.Background(), "ROLLBACK")

		r, det := pollProbe(t, d, 30*time.Second, "an idle-in-transaction session of "+appUser+" older than 1 s", func(r Result, det *DatabaseDetails) bool {
			if det.IdleInTransaction == nil {
				return false
			}
			for _, s := range det.IdleInTransaction.Sessions {
				if s.User == appUser && s.Seconds > 1 {
					return true
				}
			}
			return false
		})
		if det.IdleInTransaction.Count < 1 || det.IdleInTransaction.OldestSeconds <= 1 {
			t.Errorf("idle in transaction = %+v", det.IdleInTransaction)
		}
		if r.Figures["db_idle_in_transaction"] < 1 || r.Figures["db_idle_in_transaction_oldest"] <= 1 {
			t.Errorf("figures = %v", r.Figures)
		}
		if !hasReason(r, "idle in transaction") {
			t.Errorf("no idle-in-transaction reason: %q", r.Reasons)
		}
		if r.Status == StatusOK {
			t.Errorf("status ok with a transaction idle past the warning age")
		}
		for _, s := range det.IdleInTransaction.Sessions {
			if s.User == probeUser {
				t.Errorf("the probe's own session is listed: %+v", s)
			}
		}
		if logs.FilterMessage("db_idle_in_transaction").Len() == 0 {
			t.Errorf("no db_idle_in_transaction log")
		}
	})
}

func TestDatabaseLongQuery(t *testing.T) {
	eachDB(t, func(t *testing.T, f *dbFixture) {
		probeUser, appUser := uniqueName("probe"), uniqueName("slow")
		f.createUser(t, probeUser, "probe-pw", true)
		f.createUser(t, appUser, "app-pw", false)
		cfg := testDBConfig(f.probeURL(probeUser, "probe-pw"))
		cfg.Thresholds.DBQueryWarning = 0.5
		cfg.Thresholds.DBQueryCritical = 1
		cfg.Database.LongQueryThreshold = 1
		d, _ := newTestDatabase(t, cfg)

		db := f.open(t, appUser, "app-pw")
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			db.ExecContext(context.Background(), f.sleepSQL)
		}()
		var id int64 = -1
		defer func() {
			if id >= 0 {
				f.cancel(id)
			}
			wg.Wait()
		}()
		r, det := pollProbe(t, d, 30*time.Second, "a long query of "+appUser, func(r Result, det *DatabaseDetails) bool {
			for _, q := range det.LongQueries {
				if q.User == appUser {
					id = q.ID
					return true
				}
			}
			return false
		})
		var q DBSession
		for _, s := range det.LongQueries {
			if s.User == appUser {
				q = s
			}
		}
		if !strings.Contains(strings.ToLower(q.Query), "sleep") || q.Seconds <= 1 {
			t.Errorf("long query = %+v, want the sleep statement older than 1 s", q)
		}
		if det.LongQueryCount == nil || *det.LongQueryCount < 1 || r.Figures["db_long_queries"] < 1 {
			t.Errorf("long query count = %v, figure %v", det.LongQueryCount, r.Figures["db_long_queries"])
		}
		if !hasReason(r, "queries running > 1.0 s") {
			t.Errorf("no long-query reason: %q", r.Reasons)
		}
	})
}

// TestDatabaseMissingPrivileges: a probe user without PROCESS / pg_monitor
// is reported as partial, never as a healthy low count.
func TestDatabaseMissingPrivileges(t *testing.T) {
	eachDB(t, func(t *testing.T, f *dbFixture) {
		user, other := uniqueName("restricted"), uniqueName("other")
		f.createUser(t, user, "r-pw", false)
		f.createUser(t, other, "o-pw", false)
		holdConns(t, f, other, "o-pw", 3)
		d, logs := newTestDatabase(t, testDBConfig(f.probeURL(user, "r-pw")))
		r := probeOnce(t, d, 15*time.Second)
		if r.Error != "" {
			t.Fatalf("probe failed: %s", r.Error)
		}
		det := r.Details.(*DatabaseDetails)
		want := map[string]string{"mysql": "PROCESS", "postgres": "pg_monitor"}[f.engine]
		if !hasReason(r, "partial: needs "+want) {
			t.Errorf("reasons = %q, want partial: needs %s", r.Reasons, want)
		}
		if det.Privileges.Complete || len(det.Privileges.Missing) != 1 || det.Privileges.Missing[0] != want {
			t.Errorf("privileges = %+v", det.Privileges)
		}
		if r.Status == StatusOK {
			t.Errorf("status ok with partial privileges")
		}
		if det.LeakSuspects != nil || det.IdleInTransaction != nil || det.LongQueryCount != nil {
			t.Errorf("readings from a partial session list reported as data: leaks %+v, idle in txn %+v, long %v",
				det.LeakSuspects, det.IdleInTransaction, det.LongQueryCount)
		}
		for _, fig := range []string{"db_leak_suspects", "db_idle_in_transaction", "db_long_queries"} {
			if _, ok := r.Figures[fig]; ok {
				t.Errorf("figure %s published from a partial session list", fig)
			}
		}
		// The server-wide count does not need the grant: the other user's connections are counted.
		if det.Connections.InUse < 4 {
			t.Errorf("in_use = %d, want ≥ 4 (3 other + probe)", det.Connections.InUse)
		}
		if f.engine == "postgres" {
			if det.Connections.Hidden < 3 || det.Connections.ByUser[other] != 3 {
				t.Errorf("hidden = %d, by_user[%s] = %d; want other's 3 sessions counted as hidden",
					det.Connections.Hidden, other, det.Connections.ByUser[other])
			}
			for st := range det.Connections.ByState {
				if strings.Contains(st, "insufficient") {
					t.Errorf("<insufficient privilege> parsed as a state: %v", det.Connections.ByState)
				}
			}
		}
		if logs.FilterMessage("db_privileges_partial").Len() != 1 {
			t.Errorf("db_privileges_partial not logged once")
		}
	})
}

// TestDatabaseSaturated: the server refusing the probe for lack of slots is
// "saturated" (critical), not "down". The per-user cap stands in for
// max_connections, which the tests may not lower on a shared server.
func TestDatabaseSaturated(t *testing.T) {
	eachDB(t, func(t *testing.T, f *dbFixture) {
		user := uniqueName("capped")
		f.createUser(t, user, "c-pw", true)
		f.limitUser(t, user, 1)
		holdConns(t, f, user, "c-pw", 1)
		d, _ := newTestDatabase(t, testDBConfig(f.probeURL(user, "c-pw")))
		r := probeOnce(t, d, 15*time.Second)
		det := r.Details.(*DatabaseDetails)
		if r.Status != StatusCritical || !det.Saturated || !hasReason(r, "saturated") {
			t.Fatalf("status %s saturated %v reasons %q error %q; want critical saturated", r.Status, det.Saturated, r.Reasons, r.Error)
		}
	})
}

// TestDatabaseHungServer: a server that accepts and never answers (or stops
// answering on the open connection) fails the probe at its timeout, as down;
// the probe recovers when the server answers again.
func TestDatabaseHungServer(t *testing.T) {
	eachDB(t, func(t *testing.T, f *dbFixture) {
		user := uniqueName("probe")
		f.createUser(t, user, "probe-pw", true)
		px, err := chaos.New(f.host)
		if err != nil {
			t.Fatal(err)
		}
		defer px.Close()
		cfg := testDBConfig(strings.Replace(f.probeURL(user, "probe-pw"), f.host, px.Addr(), 1))
		cfg.Database.ProbeTimeout = 1
		d, _ := newTestDatabase(t, cfg)

		run := func(what string) Result {
			t.Helper()
			done := make(chan Result, 1)
			go func() { done <- probeOnce(t, d, time.Second) }()
			select {
			case r := <-done:
				return r
			case <-time.After(60 * time.Second):
				t.Fatalf("%s: probe hung past its 1 s timeout", what)
				return Result{}
			}
		}
		if r := pollUntil(t, "probe through the proxy", run, func(r Result) bool { return r.Error == "" }); r.Status == StatusDown {
			t.Fatalf("baseline down: %s", r.Error)
		}
		px.Set(chaos.Fault{Mode: chaos.Blackhole})
		r := run("open connection blackholed")
		if r.Status != StatusDown || r.Error == "" {
			t.Errorf("blackholed open connection: status %s error %q, want down", r.Status, r.Error)
		}
		r = run("new connection blackholed")
		if r.Status != StatusDown || r.Error == "" {
			t.Errorf("blackholed new connection: status %s error %q, want down", r.Status, r.Error)
		}
		t.Logf("hung server: %s after %v", r.Error, r.Duration)
		px.Set(chaos.Fault{Mode: chaos.Pass})
		pollUntil(t, "recovery after the server answers again", run, func(r Result) bool { return r.Error == "" && r.Status != StatusDown })
	})
}

// pollUntil repeats run until ok or 30 s passed.
func pollUntil(t *testing.T, what string, run func(string) Result, ok func(Result) bool) Result {
	t.Helper()
	end := time.Now().Add(30 * time.Second)
	for {
		r := run(what)
		if ok(r) {
			return r
		}
		if time.Now().After(end) {
			t.Fatalf("%s: last result status %s error %q", what, r.Status, r.Error)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDatabaseNoSecretLeak: the canary password never appears in errors,
// details, reasons or logs, raw or URL-encoded; and a real password with
// @ # % : works when percent-encoded in the DSN and also when written raw.
func TestDatabaseNoSecretLeak(t *testing.T) {
	eachDB(t, func(t *testing.T, f *dbFixture) {
		user := uniqueName("canary")
		f.createUser(t, user, canary, true)
		check := func(what string, r Result, logs *observer.ObservedLogs) {
			t.Helper()
			b, _ := json.Marshal(r)
			assertNoCanary(t, what+" result", string(b))
			for _, e := range logs.All() {
				line, _ := json.Marshal(e.ContextMap())
				assertNoCanary(t, what+" log "+e.Message, e.Message+string(line))
			}
		}
		for _, dsn := range []string{
			f.probeURL(user, canary), // percent-encoded
			strings.Replace(f.probeURL(user, "x"), ":x@", ":"+canary+"@", 1), // raw
		} {
			d, logs := newTestDatabase(t, testDBConfig(dsn))
			r := probeOnce(t, d, 15*time.Second)
			if r.Error != "" || r.Status == StatusDown {
				t.Errorf("right canary password: status %s error %q", r.Status, r.Error)
			}
			check("right password", r, logs)
			if det := r.Details.(*DatabaseDetails); !strings.Contains(det.Target, "xxxxx") {
				t.Errorf("target %q not redacted", det.Target)
			}
		}
		// Wrong password (MySQL checks it; PostgreSQL trusts loopback here,
		// so a missing database makes the server refuse instead).
		bad := f.probeURL("root", canary)
		if f.engine == "postgres" {
			bad = strings.Replace(f.probeURL("postgres", canary), "/test?", "/no_such_db_pgt?", 1)
		}
		d, logs := newTestDatabase(t, testDBConfig(bad))
		r := probeOnce(t, d, 15*time.Second)
		if r.Error == "" || r.Status != StatusCritical || !hasReason(r, "configuration error") {
			t.Errorf("refused login: status %s reasons %q error %q; want critical configuration error", r.Status, r.Reasons, r.Error)
		}
		check("refused login", r, logs)
		// Unreachable server: the driver error names the address, never the password.
		d, logs = newTestDatabase(t, testDBConfig(strings.Replace(f.probeURL(user, canary), f.host, "127.0.0.1:1", 1)))
		r = probeOnce(t, d, 15*time.Second)
		if r.Status != StatusDown {
			t.Errorf("unreachable: status %s", r.Status)
		}
		check("unreachable", r, logs)
		// Config errors name the field.
		cfg := testDBConfig("redis://u:" + url.QueryEscape(canary) + "@h/0")
		_, err := newDatabase(cfg, zap.NewNop())
		if err == nil || !strings.Contains(err.Error(), "RESPONSIVENESS_DB_DSN") {
			t.Errorf("bad scheme error = %v", err)
		} else {
			assertNoCanary(t, "config error", err.Error())
		}
	})
}

// TestDatabaseNoConnectionLeak runs a few hundred probes, many cancelled
// mid-flight, and counts the probe user's sessions on the server.
func TestDatabaseNoConnectionLeak(t *testing.T) {
	eachDB(t, func(t *testing.T, f *dbFixture) {
		user := uniqueName("probe")
		f.createUser(t, user, "probe-pw", true)
		d, _ := newTestDatabase(t, testDBConfig(f.probeURL(user, "probe-pw")))
		const runs = 300
		for i := 0; i < runs; i++ {
			// Timeouts from 0 to ~3 ms cancel at every stage of a tick; every
			// tenth run gets time to finish.
			timeout := time.Duration(i%30) * 100 * time.Microsecond
			if i%10 == 0 {
				timeout = 15 * time.Second
			}
			probeOnce(t, d, timeout)
			if i%50 == 49 {
				waitSessions(t, f, user, i+1)
			}
		}
		if r := probeOnce(t, d, 15*time.Second); r.Error != "" {
			t.Fatalf("probe after cancels: %s", r.Error)
		}
	})
}

// waitSessions waits until user holds at most one session (the probe's):
// a socket the probe closed on cancel leaves the server's session list
// asynchronously, so a second one may linger briefly.
func waitSessions(t *testing.T, f *dbFixture, user string, runs int) {
	t.Helper()
	end := time.Now().Add(30 * time.Second)
	for {
		n := f.sessionCount(t, user)
		if n <= 1 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("after %d runs the probe user holds %d sessions, want ≤ 1", runs, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDatabaseServerClosedIdleConnection: the server dropping the probe's
// idle connection (wait_timeout, idle_session_timeout, an admin's KILL)
// is not a false "down": the next tick reconnects transparently.
func TestDatabaseServerClosedIdleConnection(t *testing.T) {
	eachDB(t, func(t *testing.T, f *dbFixture) {
		user := uniqueName("probe")
		f.createUser(t, user, "probe-pw", true)
		d, _ := newTestDatabase(t, testDBConfig(f.probeURL(user, "probe-pw")))
		if r := probeOnce(t, d, 15*time.Second); r.Error != "" {
			t.Fatalf("first probe: %s", r.Error)
		}
		switch f.engine {
		case "mysql":
			rows, err := f.admin.QueryContext(ctxT(t, 10*time.Second), "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", user)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for rows.Next() {
				var id int64
				rows.Scan(&id)
				ids = append(ids, id)
			}
			rows.Close()
			for _, id := range ids {
				f.admin.Exec(fmt.Sprintf("KILL %d", id))
			}
		case "postgres":
			f.admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", user)
		}
		waitSessions0(t, f, user)
		r := probeOnce(t, d, 15*time.Second)
		if r.Error != "" || r.Status == StatusDown {
			t.Fatalf("after the server closed the idle connection: status %s error %q", r.Status, r.Error)
		}
	})
}

// waitSessions0 waits until user has no session left on the server.
func waitSessions0(t *testing.T, f *dbFixture, user string) {
	t.Helper()
	end := time.Now().Add(30 * time.Second)
	for f.sessionCount(t, user) > 0 {
		if time.Now().After(end) {
			t.Fatalf("sessions of %s not closed by the server", user)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
