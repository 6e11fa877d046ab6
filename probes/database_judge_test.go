package probes

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestSplitDSN(t *testing.T) {
	tests := []struct {
		desc, raw          string
		user, pass, host   string
		wantErr            bool
		redactedHasNoInput string
	}{
		{desc: "encoded canary", raw: "mysql://app:c%40n%23ry%25P4ss%3Azz@db:3306/shop", user: "app", pass: canary, host: "db:3306"},
		{desc: "raw canary", raw: "mysql://app:" + canary + "@db:3306/shop", user: "app", pass: canary, host: "db:3306"},
		{desc: "no password", raw: "postgres://app@db/shop?sslmode=disable", user: "app", pass: "", host: "db"},
		{desc: "no userinfo", raw: "redis://127.0.0.1:6379/2", host: "127.0.0.1:6379"},
		{desc: "password with slash and question mark", raw: "postgres://u:a/b?c@db:5432/x", user: "u", pass: "a/b?c", host: "db:5432"},
		{desc: "not a URL", raw: canary, wantErr: true},
		{desc: "no host", raw: "mysql://u:" + canary + "@/db", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			p, err := splitDSN(tt.raw)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error")
				}
				assertNoCanary(t, "error", err.Error())
				return
			}
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if p.User != tt.user || p.Password != tt.pass || p.Rest.Host != tt.host {
				t.Errorf("user %q pass %q host %q; want %q %q %q", p.User, p.Password, p.Rest.Host, tt.user, tt.pass, tt.host)
			}
			red := p.Redacted()
			assertNoCanary(t, "redacted", red)
			if tt.pass != "" && !strings.Contains(red, "xxxxx") {
				t.Errorf("redacted %q shows no mask", red)
			}
		})
	}
}

func TestSecretScrubber(t *testing.T) {
	s := newSecretScrubber(canary)
	for _, form := range canaryForms {
		out := s.Scrub("dial mysql://u:" + form + "@h failed: " + form)
		assertNoCanary(t, "scrubbed", out)
		if !strings.Contains(out, "xxxxx") {
			t.Errorf("scrub(%q) = %q", form, out)
		}
	}
}

// judgeFixture is a database probe that never connects, judged on synthetic readings.
func judgeFixture(t *testing.T) (*Database, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := testDBConfig("postgres://probe:pw@127.0.0.1:1/test")
	cfg.Database.LeakAge = 300
	cfg.Database.IdleInTransactionWarning = 30
	d, err := newDatabase(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, logs
}

func reading(inUse int, sessions ...dbSession) *dbReading {
	return &dbReading{engine: "postgres", latency: 3 * time.Millisecond, inUse: inUse, maxConns: 103, reserved: 3,
		ownID: 1, ownUser: "probe", sessions: append([]dbSession{{id: 1, user: "probe", state: "active", kind: dbActive}}, sessions...), lockWaitsKnown: true}
}

func idle(id int64, user, host string, secs float64) dbSession {
	return dbSession{id: id, user: user, host: host, state: "idle", kind: dbIdle, idleFor: secs}
}

func judgeOnce(d *Database, rd *dbReading) (Result, *DatabaseDetails) {
	res := Result{}
	det := &DatabaseDetails{}
	d.judge(&res, det, rd, time.Now())
	return res, det
}

// TestDatabaseJudgeTransitions: the product's log lines come once per
// transition, not once per tick, and reasons carry the numbers.
func TestDatabaseJudgeTransitions(t *testing.T) {
	d, logs := judgeFixture(t)
	var leaked []dbSession
	for i := 0; i < 5; i++ {
		leaked = append(leaked, idle(int64(10+i), "app", "10.0.0.5", 400))
	}
	// 92 of 100 in use, 5 idle for 400 s.
	for tick := 0; tick < 3; tick++ {
		res, det := judgeOnce(d, reading(92, leaked...))
		if res.Status != StatusCritical {
			t.Fatalf("status %s, want critical at 92%%", res.Status)
		}
		if !hasReason(res, "92 of 100 connections in use (92%") || !hasReason(res, "5 connections idle > 300 s (5 from app@10.0.0.5)") {
			t.Errorf("reasons %q", res.Reasons)
		}
		if det.LeakSuspects.Count != 5 || det.LeakSuspects.OldestIdleSeconds != 400 {
			t.Errorf("leak suspects %+v", det.LeakSuspects)
		}
	}
	if e := logs.FilterMessage("connection_leak").All(); len(e) != 1 || e[0].Level != zapcore.ErrorLevel ||
		e[0].ContextMap()["text"] != "Connection leak detected - 5 connections not properly closed" {
		t.Errorf("connection_leak entries = %+v, want one error line with the product's text", e)
	}
	if e := logs.FilterMessage("db_pool_utilization").All(); len(e) != 1 || e[0].Level != zapcore.WarnLevel ||
		e[0].ContextMap()["text"] != "Database connection pool at 92% utilization" {
		t.Errorf("db_pool_utilization entries = %+v, want one warn line", e)
	}
	// Back to normal: one recovery line each.
	res, _ := judgeOnce(d, reading(10))
	if res.Status != StatusOK {
		t.Errorf("status %s reasons %q after recovery", res.Status, res.Reasons)
	}
	if logs.FilterMessage("connection_leak_cleared").Len() != 1 || logs.FilterMessage("db_pool_utilization_recovered").Len() != 1 {
		t.Errorf("recovery not logged once")
	}
}

func TestDatabaseJudgeIdleInTransactionAndLocks(t *testing.T) {
	d, _ := judgeFixture(t)
	rd := reading(10,
		dbSession{id: 20, user: "app", host: "10.0.0.7", state: "idle in transaction", kind: dbIdleInTxn, txnFor: 45, idleFor: 44},
		dbSession{id: 21, user: "app", host: "10.0.0.7", state: "idle in transaction", kind: dbIdleInTxn, txnFor: 5},
		dbSession{id: 22, user: "app", host: "10.0.0.8", state: "active", kind: dbActive, runFor: 9, lockWait: true, query: "UPDATE  t\n SET x = 1"},
		// The probe's own session never counts, even idle in transaction.
		dbSession{id: 1, user: "probe", kind: dbIdleInTxn, txnFor: 999},
	)
	res, det := judgeOnce(d, rd)
	it := det.IdleInTransaction
	if it.Count != 2 || it.OldestSeconds != 45 || it.Sessions[0].ID != 20 {
		t.Errorf("idle in transaction = %+v", it)
	}
	if !hasReason(res, "2 sessions idle in transaction, oldest 45 s (app@10.0.0.7, warning > 30 s)") {
		t.Errorf("reasons %q", res.Reasons)
	}
	if *det.LongQueryCount != 1 || det.LongQueries[0].Query != "UPDATE t SET x = 1" || !det.LongQueries[0].LockWait {
		t.Errorf("long queries = %+v", det.LongQueries)
	}
	if *det.LockWaits != 1 || !hasReason(res, "1 sessions waiting on a lock") {
		t.Errorf("lock waits %v reasons %q", *det.LockWaits, res.Reasons)
	}
	if res.Figures["db_idle_in_transaction_oldest"] != 45 || res.Figures["db_long_queries"] != 1 {
		t.Errorf("figures %v", res.Figures)
	}
	if res.Status != StatusWarning {
		t.Errorf("status %s", res.Status)
	}
}

func TestDatabaseJudgeSlowQueryDelta(t *testing.T) {
	d, _ := judgeFixture(t)
	t0 := time.Unix(1_700_000_000, 0)
	feed := func(total uint64, uptime time.Duration, at time.Time) *DBSlowQueries {
		rd := reading(5)
		rd.slowQueries, rd.uptime = &total, uptime
		res, det := Result{}, &DatabaseDetails{}
		d.judge(&res, det, rd, at)
		return det.SlowQueries
	}
	if sq := feed(100, time.Hour, t0); sq.Delta != nil {
		t.Errorf("delta on the first tick: %+v", sq)
	}
	if sq := feed(130, time.Hour+30*time.Second, t0.Add(30*time.Second)); sq.Delta == nil || *sq.Delta != 30 || *sq.PerSecond != 1 {
		t.Errorf("delta = %+v, want 30 (1/s)", sq)
	}
	// Server restarted: counter and uptime went back; no negative delta.
	if sq := feed(2, time.Minute, t0.Add(60*time.Second)); sq.Delta != nil {
		t.Errorf("delta across a restart: %+v", *sq.Delta)
	}
}

func TestDBTruncate(t *testing.T) {
	long := strings.Repeat("é", 300)
	if got := dbTruncate(long, 200); len([]rune(got)) != 200 || !strings.HasSuffix(got, "…") {
		t.Errorf("truncated to %d runes", len([]rune(got)))
	}
	if got := dbTruncate("SELECT\n\t1", 200); got != "SELECT 1" {
		t.Errorf("got %q", got)
	}
}
