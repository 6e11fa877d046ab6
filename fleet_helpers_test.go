package main

// Helpers shared by the root package's in-process fleet tests (fleet
// config, fleet alerts): real databases and sidecars running serve in this
// process. The fleet's end-to-end test with three pulsegate processes is
// test/fleet_process_test.go.

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
)

const fleetToken = "i11w-fleet-token"

// fleetDB is one real database server for the fleet test: a private
// database created for the test and dropped after it.
type fleetDB struct {
	name, driver, admin, addr string
	dsn                       func(addr, db string) string
}

var fleetDBs = []fleetDB{
	{name: "mariadb", driver: "mysql", admin: "root@tcp(127.0.0.1:3306)/", addr: "127.0.0.1:3306",
		dsn: func(addr, db string) string { return "mysql://root@" + addr + "/" + db }},
	{name: "postgres", driver: "pgx", admin: "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", addr: "127.0.0.1:5432",
		dsn: func(addr, db string) string { return "postgres://postgres@" + addr + "/" + db + "?sslmode=disable" }},
}

// eachFleetDB runs fn as a subtest per database server, skipping a
// server that is not reachable.
func eachFleetDB(t *testing.T, fn func(t *testing.T, d fleetDB)) {
	t.Helper()
	for _, d := range fleetDBs {
		t.Run(d.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", d.addr, time.Second)
			if err != nil {
				t.Skipf("needs %s: %v", d.addr, err)
			}
			c.Close()
			fn(t, d)
		})
	}
}

// private creates the database name on d, dropped when the test ends.
func (d fleetDB) private(t *testing.T, name string) {
	t.Helper()
	d.exec(t, "DROP DATABASE IF EXISTS "+name)
	d.exec(t, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		stmt := "DROP DATABASE IF EXISTS " + name
		if d.driver == "pgx" {
			stmt += " WITH (FORCE)"
		}
		d.exec(t, stmt)
	})
}

func (d fleetDB) exec(t *testing.T, stmt string) {
	t.Helper()
	db, err := sql.Open(d.driver, d.admin)
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

// fleetMember is one in-process sidecar running serve.
type fleetMember struct {
	a      *app
	name   string
	proxy  string // proxy listener
	admin  string // admin listener
	cancel context.CancelFunc
	done   chan int
}

func (m *fleetMember) stop(t *testing.T) {
	t.Helper()
	m.cancel()
	select {
	case code := <-m.done:
		if code != 0 {
			t.Errorf("%s: serve exited %d", m.name, code)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: serve did not stop", m.name)
	}
}

func (m *fleetMember) get(t *testing.T, path string, into any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+m.admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+fleetToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", m.name, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if into != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s %s: %v: %s", m.name, path, err, b)
		}
	}
	return resp.StatusCode
}
