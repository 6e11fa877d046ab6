package actions

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/probes"
)

// The real Redis on 127.0.0.1:6379, database 14 (flushed at start and end).
const testRedisURL = "redis://127.0.0.1:6379/14"

func testRedis(t *testing.T) *redis.Client {
	t.Helper()
	opt, _ := redis.ParseURL(testRedisURL)
	rdb := redis.NewClient(opt)
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		t.Skipf("redis on 127.0.0.1:6379 not reachable: %v", err)
	}
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rdb.FlushDB(context.Background())
		rdb.Close()
	})
	return rdb
}

func ttlConfig() *config.Config {
	cfg := baseConfig()
	cfg.Redis.URL = testRedisURL
	cfg.Redis.SessionPrefix = "session:"
	cfg.Actions.SessionTTLRepair = true
	cfg.Actions.SessionTTL = 3600
	cfg.Actions.SessionRepairMax = 20
	cfg.Actions.Cooldown = 0
	return cfg
}

// Session keys without a TTL get one, at most session_repair_max per tick;
// keys with a TTL, non-session keys and values are untouched; nothing is
// deleted.
func TestSessionTTLRepair(t *testing.T) {
	rdb := testRedis(t)
	ctx := context.Background()
	for i := range 50 {
		rdb.Set(ctx, fmt.Sprintf("session:%03d", i), "user-data", 0)
	}
	for i := range 10 {
		rdb.Set(ctx, fmt.Sprintf("session:ttl:%d", i), "x", 100*time.Second)
	}
	for i := range 5 {
		rdb.Set(ctx, fmt.Sprintf("cache:%d", i), "keep", 0)
	}
	rdb.Set(ctx, "session*glob", "literal prefix check", 0) // must not match "session:*"
	before := rdb.DBSize(ctx).Val()

	h := start(t, ttlConfig(), Deps{}, false)
	h.a.ttl.tick(ctx)
	st := h.status(ActionTTLRepair)
	if st.LastOutcome != OutcomeOK || st.Count != 1 {
		t.Fatalf("status after tick 1 = %+v", st)
	}
	if n := countNoTTL(t, rdb, "session:*"); n != 30 {
		t.Errorf("after one tick %d session keys without TTL, want 30 (50 − max 20)", n)
	}
	for range 5 {
		h.a.ttl.tick(ctx)
	}
	if n := countNoTTL(t, rdb, "session:*"); n != 0 {
		t.Errorf("after more ticks %d session keys without TTL, want 0", n)
	}
	if got := rdb.DBSize(ctx).Val(); got != before {
		t.Errorf("DBSIZE %d → %d: repair must never delete", before, got)
	}
	if v := rdb.Get(ctx, "session:007").Val(); v != "user-data" {
		t.Errorf("value changed: %q", v)
	}
	if ttl := rdb.TTL(ctx, "session:007").Val(); ttl < 3590*time.Second || ttl > 3600*time.Second {
		t.Errorf("repaired TTL = %v, want ≈ 3600 s", ttl)
	}
	if ttl := rdb.TTL(ctx, "session:ttl:3").Val(); ttl > 100*time.Second {
		t.Errorf("an existing TTL was overridden: %v", ttl)
	}
	if n := countNoTTL(t, rdb, "cache:*"); n != 5 {
		t.Errorf("non-session keys touched: %d of 5 still without TTL", n)
	}
	if ttl := rdb.TTL(ctx, "session*glob").Val(); ttl != -1 {
		t.Errorf("key outside the literal prefix got TTL %v", ttl)
	}
	if got := h.a.Snapshot(); got == nil {
		t.Fatal()
	}
	if name, err, _ := h.tasks.last(); name != ActionTTLRepair || err != nil {
		t.Errorf("task = %s %v", name, err)
	}
}

func TestSessionTTLRepairDryRunAndBudget(t *testing.T) {
	rdb := testRedis(t)
	ctx := context.Background()
	for i := range 300 {
		rdb.Set(ctx, fmt.Sprintf("session:%d", i), "v", 0)
	}
	cfg := ttlConfig()
	cfg.Actions.DryRun = true
	cfg.Redis.ScanBudget = 50
	h := start(t, cfg, Deps{}, false)
	h.a.ttl.tick(ctx)
	if n := countNoTTL(t, rdb, "session:*"); n != 300 {
		t.Errorf("dry-run changed TTLs: %d of 300 left without", n)
	}
	st := h.status(ActionTTLRepair)
	if st.LastOutcome != OutcomeDryRun {
		t.Errorf("status = %+v", st)
	}
	// SCAN COUNT is a hint: one call may return a few more than the budget,
	// but the pass stops once the budget is spent.
	var visited, noTTL int
	if _, err := fmt.Sscanf(st.LastDetail, "visited %d keys, %d without TTL", &visited, &noTTL); err != nil || visited < 50 || visited >= 300 {
		t.Errorf("detail = %q: budget 50 of 300 keys not honoured", st.LastDetail)
	}
}

func TestSessionTTLRepairRedisDown(t *testing.T) {
	cfg := ttlConfig()
	cfg.Redis.URL = "redis://:hunter2pw@127.0.0.1:1/0"
	cfg.Redis.ProbeTimeout = 0.5
	h := start(t, cfg, Deps{}, false)
	h.a.ttl.tick(context.Background())
	st := h.status(ActionTTLRepair)
	if st.LastOutcome != OutcomeError || st.Failures != 1 {
		t.Errorf("status = %+v", st)
	}
	for _, e := range h.logs.All() {
		for _, v := range e.ContextMap() {
			if s := fmt.Sprint(v); contains(s, "hunter2pw") {
				t.Errorf("password leaked in log: %s", s)
			}
		}
	}
	if contains(st.LastError, "hunter2pw") {
		t.Errorf("password leaked in status: %s", st.LastError)
	}
	h.a.ttl.closeClient()
	// go-redis keeps one dial-probe goroutine after dial failures; it sees
	// the closed pool within a second and exits.
	waitForNoGoroutine(t, "tryDial")
}

func waitForNoGoroutine(t *testing.T, fn string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		if !strings.Contains(string(buf[:n]), fn) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutine %s still running", fn)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func countNoTTL(t *testing.T, rdb *redis.Client, match string) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	iter := rdb.Scan(ctx, 0, match, 100).Iterator()
	for iter.Next(ctx) {
		if rdb.TTL(ctx, iter.Val()).Val() == -1 {
			n++
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEscapeGlob(t *testing.T) {
	if got := probes.RedisGlobEscape(`a*b?c[d]\`); got != `a\*b\?c\[d\]\\` {
		t.Errorf("RedisGlobEscape = %q", got)
	}
}
