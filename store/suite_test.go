package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"
)

// The shared suite runs against the embedded store and real MariaDB and
// PostgreSQL servers (skipped, saying so, when a server is unreachable).
// Each SQL run uses the private database pulsegate_i11_test, created on
// first use and dropped when the package's tests end; each test writes
// under its own fleet name.

// PULSEGATE_TEST_DB names another database, so parallel runs (other
// checkouts) do not drop each other's.
var testDB = envOr("PULSEGATE_TEST_DB", "pulsegate_i11_test")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

var (
	// Admin connections (database/sql DSNs) used to create and drop the test database and users.
	mysqlAdminDSN = envOr("PULSEGATE_TEST_MYSQL_ADMIN", "root@tcp(127.0.0.1:3306)/")
	pgAdminDSN    = envOr("PULSEGATE_TEST_PG_ADMIN", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	// Store DSNs in pulsegate's own form (user, password and host go into the URL).
	mysqlHost = envOr("PULSEGATE_TEST_MYSQL_HOST", "127.0.0.1:3306")
	pgHost    = envOr("PULSEGATE_TEST_PG_HOST", "127.0.0.1:5432")
)

type server struct {
	name    string // "mariadb" or "postgres"
	driver  string
	admin   string
	once    sync.Once
	err     error
	created []string // databases to drop
	mu      sync.Mutex
}

var (
	mariadb  = &server{name: "mariadb", driver: "mysql", admin: mysqlAdminDSN}
	postgres = &server{name: "postgres", driver: "pgx", admin: pgAdminDSN}
)

// adminExec runs statements as the administrator.
func (sv *server) adminExec(stmts ...string) error {
	db, err := sql.Open(sv.driver, sv.admin)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, st := range stmts {
		if _, err := db.ExecContext(ctx, st); err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
	}
	return nil
}

// adminExecIn runs statements as the administrator inside database name
// (PostgreSQL grants are per database).
func (sv *server) adminExecIn(name string, stmts ...string) error {
	if sv.driver == "mysql" {
		return sv.adminExec(stmts...)
	}
	db, err := sql.Open("pgx", strings.Replace(sv.admin, "/test?", "/"+name+"?", 1))
	if err != nil {
		return err
	}
	defer db.Close()
	for _, st := range stmts {
		if _, err := db.Exec(st); err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
	}
	return nil
}

// createDB (re)creates database name, dropped at the end of the run.
func (sv *server) createDB(name string) error {
	var stmts []string
	if sv.driver == "mysql" {
		stmts = []string{"DROP DATABASE IF EXISTS " + name, "CREATE DATABASE " + name + " CHARACTER SET utf8mb4"}
	} else {
		stmts = []string{"DROP DATABASE IF EXISTS " + name + " WITH (FORCE)", "CREATE DATABASE " + name}
	}
	if err := sv.adminExec(stmts...); err != nil {
		return err
	}
	sv.mu.Lock()
	sv.created = append(sv.created, name)
	sv.mu.Unlock()
	return nil
}

// storeDSN is pulsegate's DSN for database name as user:pass.
func (sv *server) storeDSN(user, pass, name string) string {
	userinfo := user
	if pass != "" {
		userinfo += ":" + pass
	}
	if sv.driver == "mysql" {
		return "mysql://" + userinfo + "@" + mysqlHost + "/" + name
	}
	return "postgres://" + userinfo + "@" + pgHost + "/" + name + "?sslmode=disable"
}

func (sv *server) adminUser() string {
	if sv.driver == "mysql" {
		return "root"
	}
	return "postgres"
}

// ready creates the shared test database once, or skips t saying why.
func (sv *server) ready(t *testing.T) {
	t.Helper()
	sv.once.Do(func() { sv.err = sv.createDB(testDB) })
	if sv.err != nil {
		t.Skipf("%s unreachable or unusable, skipping its run of the suite: %v", sv.name, sv.err)
	}
}

func dropTestDatabases() {
	for _, sv := range []*server{mariadb, postgres} {
		for _, name := range sv.created {
			if sv.driver == "mysql" {
				_ = sv.adminExec("DROP DATABASE IF EXISTS " + name)
			} else {
				_ = sv.adminExec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			}
		}
	}
}

var nonWord = regexp.MustCompile(`[^A-Za-z0-9]+`)

// fleetName is a fleet of its own for one test (tables are shared).
func fleetName(t *testing.T) string {
	n := nonWord.ReplaceAllString(t.Name(), "_")
	if len(n) > 80 {
		n = n[len(n)-80:]
	}
	return fmt.Sprintf("%s_%d", n, time.Now().UnixNano()%1e9)
}

// backend is one implementation under test: open (re)opens it on the same
// data (same directory, or same database and fleet).
type backend struct {
	name string
	open func(t *testing.T, opts ...Option) Backend
}

func backends(t *testing.T) []backend {
	dir := t.TempDir()
	fleet := fleetName(t)
	out := []backend{{name: "bbolt", open: func(t *testing.T, opts ...Option) Backend {
		return openTest(t, dir, opts...)
	}}}
	for _, sv := range []*server{mariadb, postgres} {
		sv := sv
		out = append(out, backend{name: sv.name, open: func(t *testing.T, opts ...Option) Backend {
			sv.ready(t)
			return openSQLTest(t, sv.storeDSN(sv.adminUser(), "", testDB), append([]Option{WithInstance(fleet, "web-1")}, opts...)...)
		}})
	}
	return out
}

func openSQLTest(t *testing.T, dsn string, opts ...Option) *SQL {
	t.Helper()
	s, err := OpenSQL(context.Background(), dsn, zap.NewNop(), opts...)
	if err != nil {
		t.Fatalf("OpenSQL: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// sqlServers runs f once per SQL server, as a subtest.
func sqlServers(t *testing.T, f func(t *testing.T, sv *server)) {
	for _, sv := range []*server{mariadb, postgres} {
		t.Run(sv.name, func(t *testing.T) {
			sv.ready(t)
			f(t, sv)
		})
	}
}

// sqlStores runs f once per SQL server with a store of its own fleet.
func sqlStores(t *testing.T, f func(t *testing.T, s *SQL)) {
	sqlServers(t, func(t *testing.T, sv *server) {
		s := openSQLTest(t, sv.storeDSN(sv.adminUser(), "", testDB), WithInstance(fleetName(t), "web-1"))
		f(t, s)
	})
}
