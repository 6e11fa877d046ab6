// Package fleettest holds what the fleet tests of the root package (in
// process sidecars) and of test/ (pulsegate processes) share: the real
// database servers a fleet's store lives in, a private database on one of
// them per test, and a subtest per server.
//
// Only _test.go files import it. It keeps no state and registers nothing:
// the database/sql drivers it opens ("mysql", "pgx") are the ones the
// importing test registers (the store package imports both).
package fleettest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

// DB is one real database server that can hold a fleet's store.
type DB struct {
	Name, Driver, Addr string
	// Admin is the database/sql DSN that creates and drops the private
	// database; Open reaches the database db once created.
	Admin string
	Open  func(db string) string
	// DSN is the store DSN (RESPONSIVENESS_STORE_DSN) for the database db
	// at addr (the server's address, or a chaos switch in front of it).
	DSN func(addr, db string) string
}

// DBs are the servers the fleet tests run against: the real MariaDB and
// the real PostgreSQL on loopback.
func DBs() []DB {
	return []DB{
		{Name: "mariadb", Driver: "mysql", Addr: "127.0.0.1:3306", Admin: "root@tcp(127.0.0.1:3306)/",
			Open: func(db string) string { return "root@tcp(127.0.0.1:3306)/" + db },
			DSN:  func(addr, db string) string { return "mysql://root@" + addr + "/" + db }},
		{Name: "postgres", Driver: "pgx", Addr: "127.0.0.1:5432", Admin: "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
			Open: func(db string) string { return "postgres://postgres@127.0.0.1:5432/" + db + "?sslmode=disable" },
			DSN:  func(addr, db string) string { return "postgres://postgres@" + addr + "/" + db + "?sslmode=disable" }},
	}
}

// Each runs fn as a subtest per server of DBs. A server that does not
// accept a connection within a second is handed to unreachable instead
// (which skips or fails the subtest, as the caller's suite wants).
func Each(t *testing.T, unreachable func(t *testing.T, d DB, err error), fn func(t *testing.T, d DB)) {
	t.Helper()
	for _, d := range DBs() {
		t.Run(d.Name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", d.Addr, time.Second)
			if err != nil {
				unreachable(t, d, err)
				return
			}
			c.Close()
			fn(t, d)
		})
	}
}

// Private creates a database of its own for the test on d, named prefix
// and this process's id (so that runs at the same time do not share one;
// a leftover of that name is dropped first), drops it when the test ends
// and returns its name.
func (d DB) Private(t testing.TB, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s_%d", prefix, os.Getpid())
	d.Exec(t, "DROP DATABASE IF EXISTS "+name)
	d.Exec(t, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		stmt := "DROP DATABASE IF EXISTS " + name
		if d.Driver == "pgx" {
			stmt += " WITH (FORCE)"
		}
		d.Exec(t, stmt)
	})
	return name
}

// Exec runs stmt on d's admin connection, failing the test on an error.
func (d DB) Exec(t testing.TB, stmt string) {
	t.Helper()
	db, err := sql.Open(d.Driver, d.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}
