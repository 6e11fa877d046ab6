package main

// Helpers shared by the root package's in-process fleet tests (fleet
// config, fleet alerts): real databases and sidecars running serve in this
// process. The fleet's end-to-end test with three pulsegate processes is
// test/fleet_process_test.go.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/pulsegate/pulsegate/internal/fleettest"
)

const fleetToken = "i11w-fleet-token"

// eachFleetDB runs fn as a subtest per real database server
// (fleettest.DBs), skipping a server that is not reachable.
func eachFleetDB(t *testing.T, fn func(t *testing.T, d fleettest.DB)) {
	t.Helper()
	fleettest.Each(t, func(t *testing.T, d fleettest.DB, err error) { t.Skipf("needs %s: %v", d.Addr, err) }, fn)
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
