package probes

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/test/chaos"
)

// redisTestDB is the database index the tests own and flush.
const redisTestDB = 13

// redisFixture returns a client on the test database, flushed before and after.
func redisFixture(t *testing.T) (*redis.Client, string) {
	t.Helper()
	addr := envOr("PULSEGATE_TEST_REDIS_ADDR", "127.0.0.1:6379")
	c := redis.NewClient(&redis.Options{Addr: addr, DB: redisTestDB, Protocol: 2, DisableIdentity: true,
		DialTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	if err := c.Ping(ctxT(t, 10*time.Second)).Err(); err != nil {
		c.Close()
		t.Skipf("Redis at %s unreachable (%v): start it to run this test", addr, err)
	}
	if err := c.FlushDBAsync(ctxT(t, 30*time.Second)).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.FlushDBAsync(context.Background())
		c.Close()
	})
	return c, addr
}

func testRedisConfig(u string) *config.Config {
	cfg := config.Defaults()
	cfg.Redis.URL = config.Secret(u)
	cfg.Redis.ProbeTimeout = 10
	return cfg
}

func newTestRedis(t *testing.T, cfg *config.Config, opts ...RedisOption) *Redis {
	t.Helper()
	r, err := newRedis(cfg, zap.NewNop(), opts...)
	if err != nil {
		t.Fatalf("newRedis: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func redisDetails(t *testing.T, r Result) *RedisDetails {
	t.Helper()
	det, ok := r.Details.(*RedisDetails)
	if !ok || det == nil {
		t.Fatalf("no Redis details in %+v", r)
	}
	return det
}

// fill creates keys in pipelined batches: name(i) with ttl (0 = none).
func fill(t *testing.T, c *redis.Client, n int, name func(int) string, ttl time.Duration) {
	t.Helper()
	const batch = 5000
	for i := 0; i < n; i += batch {
		pipe := c.Pipeline()
		for j := i; j < i+batch && j < n; j++ {
			pipe.Set(context.Background(), name(j), "v", ttl)
		}
		if _, err := pipe.Exec(ctxT(t, 60*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRedisSessionsWithoutTTL(t *testing.T) {
	c, addr := redisFixture(t)
	fill(t, c, 200, func(i int) string { return fmt.Sprintf("session:ok:%d", i) }, time.Hour)
	fill(t, c, 37, func(i int) string { return fmt.Sprintf("session:leak:%d", i) }, 0)
	fill(t, c, 100, func(i int) string { return fmt.Sprintf("cache:%d", i) }, 0)
	// A key whose name holds glob specials must not widen the match.
	fill(t, c, 5, func(i int) string { return fmt.Sprintf("sessionX%d", i) }, 0)

	core, logs := observerCore()
	r, err := newRedis(testRedisConfig(fmt.Sprintf("redis://%s/%d", addr, redisTestDB)), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res := probeOnce(t, r, 15*time.Second)
	if res.Error != "" {
		t.Fatalf("probe: %s", res.Error)
	}
	det := redisDetails(t, res)
	s := det.Sessions
	if s.Partial || s.PassesCompleted != 1 {
		t.Fatalf("a small keyspace should complete a pass in one tick: %+v", s)
	}
	if s.Count != 237 || s.WithoutTTL != 37 {
		t.Errorf("count %d without TTL %d; want 237 and 37", s.Count, s.WithoutTTL)
	}
	if res.Figures["session_count"] != 237 || res.Figures["session_without_ttl"] != 37 {
		t.Errorf("figures = %v", res.Figures)
	}
	if s.AvgTTLSeconds == nil || *s.AvgTTLSeconds <= 3000 || *s.AvgTTLSeconds > 3600 {
		t.Errorf("avg TTL = %v, want ~3600 s", s.AvgTTLSeconds)
	}
	if s.AvgSizeBytes == nil || *s.AvgSizeBytes <= 0 || s.SizeSamples == 0 {
		t.Errorf("avg size = %v from %d samples", s.AvgSizeBytes, s.SizeSamples)
	}
	if res.Status != StatusWarning || !hasReason(res, "37 of 237 session keys") {
		t.Errorf("status %s reasons %q; want a warning for TTL-less sessions", res.Status, res.Reasons)
	}
	if det.Keyspace == nil || det.Keyspace.DB != redisTestDB || det.Keyspace.Keys != 342 {
		t.Errorf("keyspace = %+v, want db13 with 342 keys", det.Keyspace)
	}
	// The second tick evaluates the eviction rate; the leak is logged once.
	res = probeOnce(t, r, 15*time.Second)
	det = redisDetails(t, res)
	if det.EvictedKeys == nil || det.EvictedKeys.PerSecond == nil {
		t.Errorf("no eviction rate on the second tick: %+v", det.EvictedKeys)
	}
	if _, ok := res.Figures["redis_evicted_per_sec"]; !ok {
		t.Errorf("redis_evicted_per_sec missing: %v", res.Figures)
	}
	if n := logs.FilterMessage("session_leak").Len(); n != 1 {
		t.Errorf("session_leak logged %d times over two ticks, want 1", n)
	}
}

// TestRedisLargeKeyspace: 300 000 keys; each tick stays within its SCAN
// budget, the pass completes over several ticks with exact totals, and a
// side client's PING latency is measured meanwhile (reported, not asserted).
func TestRedisLargeKeyspace(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 300 000 Redis keys")
	}
	c, addr := redisFixture(t)
	const sessions, leaked, others = 50_000, 1_000, 249_000
	fill(t, c, sessions-leaked, func(i int) string { return fmt.Sprintf("session:%d", i) }, time.Hour)
	fill(t, c, leaked, func(i int) string { return fmt.Sprintf("session:noexp:%d", i) }, 0)
	fill(t, c, others, func(i int) string { return fmt.Sprintf("rq:job:%d", i) }, time.Hour)

	cfg := testRedisConfig(fmt.Sprintf("redis://%s/%d", addr, redisTestDB))
	cfg.Redis.ScanBudget = 10_000
	r := newTestRedis(t, cfg)
	maxCalls := (cfg.Redis.ScanBudget + redisScanCount - 1) / redisScanCount

	// Side client measuring PING latency while the probe scans.
	side := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, PoolSize: 1})
	defer side.Close()
	stop := make(chan struct{})
	var lat []time.Duration
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			if side.Ping(context.Background()).Err() == nil {
				lat = append(lat, time.Since(t0))
			}
			time.Sleep(time.Millisecond)
		}
	}()

	ticks := 0
	var det *RedisDetails
	var scanSeconds []float64
	for {
		res := probeOnce(t, r, 15*time.Second)
		if res.Error != "" {
			t.Fatalf("tick %d: %s", ticks, res.Error)
		}
		ticks++
		det = redisDetails(t, res)
		if calls := det.Sessions.Scan.CallsThisTick; calls > maxCalls {
			t.Fatalf("tick %d made %d SCAN calls, budget %d", ticks, calls, maxCalls)
		}
		scanSeconds = append(scanSeconds, det.Sessions.Scan.SecondsThisTick)
		if det.Sessions.PassesCompleted > 0 {
			break
		}
		if !det.Sessions.Partial {
			t.Fatalf("tick %d: numbers of an unfinished first pass not flagged partial", ticks)
		}
		if _, ok := res.Figures["session_count"]; ok {
			t.Fatalf("tick %d: session_count published before a full pass", ticks)
		}
		if ticks > 2000 {
			t.Fatalf("no full pass after %d ticks", ticks)
		}
	}
	close(stop)
	wg.Wait()

	if ticks < 2 {
		t.Errorf("300 000 keys scanned in %d tick(s) with a 10 000-key budget", ticks)
	}
	s := det.Sessions
	if s.Count != sessions || s.WithoutTTL != leaked || s.Partial {
		t.Errorf("after a full pass: count %d without TTL %d partial %v; want %d, %d, false", s.Count, s.WithoutTTL, s.Partial, sessions, leaked)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Float64s(scanSeconds)
	if len(lat) > 0 {
		t.Logf("300k keys: pass took %d ticks; side PING during the probes: n=%d p50=%v p99=%v max=%v; scan time per tick max=%.1f ms",
			ticks, len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], scanSeconds[len(scanSeconds)-1]*1000)
	}
}

func TestRedisQueueDepth(t *testing.T) {
	c, addr := redisFixture(t)
	for i := 0; i < 60; i++ {
		c.RPush(context.Background(), "rq:queue:default", fmt.Sprintf("job%d", i))
	}
	for i := 0; i < 5; i++ {
		c.ZAdd(context.Background(), "rq:scheduled", redis.Z{Score: float64(i), Member: i})
	}
	c.XAdd(context.Background(), &redis.XAddArgs{Stream: "events", Values: map[string]any{"a": 1}})
	cfg := testRedisConfig(fmt.Sprintf("redis://%s/%d", addr, redisTestDB))
	cfg.Redis.QueueKeys = []string{"rq:queue:default", "rq:scheduled", "events", "celery"}
	r := newTestRedis(t, cfg)
	res := probeOnce(t, r, 15*time.Second)
	if res.Error != "" {
		t.Fatal(res.Error)
	}
	det := redisDetails(t, res)
	want := []RedisQueue{{"rq:queue:default", "list", 60}, {"rq:scheduled", "zset", 5}, {"events", "stream", 1}, {"celery", "none", 0}}
	if fmt.Sprint(det.Queues) != fmt.Sprint(want) {
		t.Errorf("queues = %v, want %v", det.Queues, want)
	}
	if res.Figures["job_queue_depth"] != 60 {
		t.Errorf("job_queue_depth = %v", res.Figures["job_queue_depth"])
	}
	if res.Status != StatusWarning || !hasReason(res, "job queue rq:queue:default holds 60 jobs (warning ≥ 50)") {
		t.Errorf("status %s reasons %q", res.Status, res.Reasons)
	}
}

// TestRedisMaxmemoryZero: maxmemory 0 (the local default) is "no limit":
// usage is against a labelled other limit, never Inf/NaN.
func TestRedisMaxmemoryZero(t *testing.T) {
	c, addr := redisFixture(t)
	mm, err := c.ConfigGet(context.Background(), "maxmemory").Result()
	if err != nil || mm["maxmemory"] != "0" {
		t.Skipf("the local Redis has maxmemory %q (%v): this test needs 0", mm["maxmemory"], err)
	}
	u := fmt.Sprintf("redis://%s/%d", addr, redisTestDB)
	for _, tc := range []struct {
		desc, source string
		opts         []RedisOption
	}{
		{desc: "redis host memory", source: "redis_total_system_memory"},
		{desc: "container limit", source: "container", opts: []RedisOption{WithRedisMemoryLimit(func() (uint64, string, bool) { return 512 << 20, "container", true })}},
		{desc: "limit unknown to the sidecar", source: "redis_total_system_memory", opts: []RedisOption{WithRedisMemoryLimit(func() (uint64, string, bool) { return 0, "", false })}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := newTestRedis(t, testRedisConfig(u), tc.opts...)
			res := probeOnce(t, r, 15*time.Second)
			det := redisDetails(t, res)
			m := det.Memory
			if m == nil || m.MaxmemoryBytes != 0 || m.LimitSource != tc.source || m.Usage == nil {
				t.Fatalf("memory = %+v, want limit source %s", m, tc.source)
			}
			v := res.Figures["redis_memory_usage"]
			if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 || v != *m.Usage {
				t.Errorf("redis_memory_usage = %v", v)
			}
			if _, err := json.Marshal(res); err != nil {
				t.Errorf("result does not marshal (Inf/NaN?): %v", err)
			}
		})
	}
	// No limit anywhere: usage unknown, no figure, no false critical.
	r := newTestRedis(t, testRedisConfig(u))
	det := &RedisDetails{}
	figs := map[string]float64{}
	r.judgeMemory(det, parseInfo("# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\n"), figs, func(Status, string) { t.Errorf("judged without a limit") })
	if det.Memory.Usage != nil || det.Memory.LimitSource != "unknown" {
		t.Errorf("memory = %+v", det.Memory)
	}
	if _, ok := figs["redis_memory_usage"]; ok {
		t.Errorf("figure published without a limit")
	}
}

func TestRedisHung(t *testing.T) {
	_, addr := redisFixture(t)
	px, err := chaos.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	cfg := testRedisConfig(fmt.Sprintf("redis://%s/%d", px.Addr(), redisTestDB))
	cfg.Redis.ProbeTimeout = 1
	r := newTestRedis(t, cfg)
	run := func(what string) Result {
		t.Helper()
		done := make(chan Result, 1)
		go func() { done <- probeOnce(t, r, time.Second) }()
		select {
		case res := <-done:
			return res
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: probe hung past its 1 s timeout", what)
			return Result{}
		}
	}
	pollUntil(t, "baseline", run, func(r Result) bool { return r.Error == "" })
	px.Set(chaos.Fault{Mode: chaos.Blackhole})
	for _, what := range []string{"open connection blackholed", "again"} {
		if res := run(what); res.Status != StatusDown || res.Error == "" {
			t.Errorf("%s: status %s error %q, want down", what, res.Status, res.Error)
		} else {
			t.Logf("%s: %s after %v", what, res.Error, res.Duration)
		}
	}
	px.Set(chaos.Fault{Mode: chaos.Pass})
	pollUntil(t, "recovery", run, func(r Result) bool { return r.Error == "" && r.Status != StatusDown })
}

// TestRedisACL: a minimal ACL user works; a wrong password is an auth
// configuration error without the password in it; a missing permission is
// a configuration error, not "Redis down".
func TestRedisACL(t *testing.T) {
	c, addr := redisFixture(t)
	user, nosc := uniqueName("acl"), uniqueName("noscan")
	rules := []any{"ACL", "SETUSER", user, "reset", "on", ">" + canary, "~*", "+ping", "+info", "+scan", "+ttl", "+type", "+llen", "+zcard", "+xlen", "+memory|usage", "+select"}
	if err := c.Do(context.Background(), rules...).Err(); err != nil {
		t.Skipf("ACL SETUSER not available: %v", err)
	}
	c.Do(context.Background(), "ACL", "SETUSER", nosc, "reset", "on", ">pw", "~*", "+ping", "+info", "+select")
	t.Cleanup(func() { c.Do(context.Background(), "ACL", "DELUSER", user, nosc) })
	c.Set(context.Background(), "session:a", "1", time.Hour)
	c.RPush(context.Background(), "q", "x")

	good := fmt.Sprintf("redis://%s:%s@%s/%d", user, url.QueryEscape(canary), addr, redisTestDB)
	cfg := testRedisConfig(good)
	cfg.Redis.QueueKeys = []string{"q"}
	r := newTestRedis(t, cfg)
	res := probeOnce(t, r, 15*time.Second)
	if res.Error != "" || res.Status == StatusDown {
		t.Fatalf("minimal ACL user: status %s error %q", res.Status, res.Error)
	}
	det := redisDetails(t, res)
	if det.Sessions.Count != 1 || len(det.Queues) != 1 || det.Queues[0].Depth != 1 {
		t.Errorf("minimal ACL user read sessions %+v queues %+v", det.Sessions, det.Queues)
	}
	if det.Clients == nil || det.Clients.MaxClients == nil {
		t.Errorf("maxclients not read from INFO: %+v", det.Clients)
	}
	b, _ := json.Marshal(res)
	assertNoCanary(t, "result", string(b))

	// Wrong password (the canary), raw in the URL.
	bad := fmt.Sprintf("redis://%s:%s@%s/%d", user, canary+"x", addr, redisTestDB)
	r = newTestRedis(t, testRedisConfig(bad))
	res = probeOnce(t, r, 15*time.Second)
	if res.Status != StatusCritical || !strings.Contains(res.Error, "auth failed: check RESPONSIVENESS_REDIS_URL credentials") {
		t.Errorf("wrong password: status %s error %q", res.Status, res.Error)
	}
	b, _ = json.Marshal(res)
	assertNoCanary(t, "wrong-password result", string(b))

	// No +scan: a configuration error naming the command.
	r = newTestRedis(t, testRedisConfig(fmt.Sprintf("redis://%s:pw@%s/%d", nosc, addr, redisTestDB)))
	res = probeOnce(t, r, 15*time.Second)
	if res.Status != StatusCritical || !hasReason(res, "configuration error") || !strings.Contains(res.Error, "SCAN") {
		t.Errorf("no +scan: status %s reasons %q error %q", res.Status, res.Reasons, res.Error)
	}
}

func TestRedisConfigErrors(t *testing.T) {
	for _, tc := range []struct{ desc, url, want string }{
		{"empty", "", "RESPONSIVENESS_REDIS_URL"},
		{"scheme", "http://u:" + canary + "@h:1/0", "unsupported scheme"},
		{"not a URL", canary, "RESPONSIVENESS_REDIS_URL"},
		{"bad db", "redis://u:" + url.QueryEscape(canary) + "@h:1/notanumber", "RESPONSIVENESS_REDIS_URL"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := newRedis(testRedisConfig(tc.url), zap.NewNop())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			assertNoCanary(t, "error", err.Error())
		})
	}
}

func TestRedisLinearFit(t *testing.T) {
	slope, icpt, r2, ok := redisLinearFit([]float64{0, 1, 2, 3}, []float64{1, 3, 5, 7})
	if !ok || slope != 2 || icpt != 1 || r2 != 1 {
		t.Errorf("fit = %v %v %v %v; want 2 1 1 true", slope, icpt, r2, ok)
	}
	if _, _, r2, ok := redisLinearFit([]float64{0, 1, 2}, []float64{5, 5, 5}); !ok || r2 != 0 {
		t.Errorf("flat: r2 = %v ok %v", r2, ok)
	}
	if _, _, _, ok := redisLinearFit([]float64{1, 1}, []float64{1, 2}); ok {
		t.Errorf("no spread in x fitted")
	}
	if _, _, _, ok := redisLinearFit([]float64{1}, []float64{1}); ok {
		t.Errorf("one point fitted")
	}
}

// TestRedisGrowthPattern feeds the growth ring directly.
func TestRedisGrowthPattern(t *testing.T) {
	r := &Redis{}
	t0 := time.Unix(1_700_000_000, 0)
	set := func(counts, noTTL []float64) *RedisGrowth {
		r.ring = r.ring[:0]
		for i := range counts {
			r.ring = append(r.ring, redisPoint{at: t0.Add(time.Duration(i) * 30 * time.Second), count: counts[i], noTTL: noTTL[i]})
		}
		return r.growth()
	}
	zeros := make([]float64, 8)
	tests := []struct {
		desc         string
		counts, none []float64
		want         bool
	}{
		{"steady climb", []float64{1000, 1100, 1210, 1300, 1400, 1520, 1600, 1700}, zeros, true},
		{"flat with noise", []float64{1000, 1010, 990, 1005, 995, 1000, 1008, 992}, zeros, false},
		{"too few passes", []float64{1000, 1200, 1400, 1600, 1800}, zeros[:5], false},
		{"small absolute growth", []float64{1, 2, 3, 4, 5, 6, 7, 8}, zeros, false},
		{"TTL-less climb", []float64{5000, 5010, 4990, 5005, 4995, 5000, 5008, 4992}, []float64{10, 30, 50, 70, 90, 110, 130, 150}, true},
		{"falling", []float64{1700, 1600, 1500, 1400, 1300, 1200, 1100, 1000}, zeros, false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			g := set(tt.counts, tt.none)
			if g == nil || g.LeakPattern != tt.want {
				t.Errorf("growth = %+v, want leak pattern %v", g, tt.want)
			}
		})
	}
}

// observerCore records log entries for assertions.
func observerCore() (zapcore.Core, *observer.ObservedLogs) { return observer.New(zapcore.DebugLevel) }

func TestRedisUnixURL(t *testing.T) {
	r, err := newRedis(testRedisConfig("unix://u:"+url.QueryEscape(canary)+"@/run/redis/none.sock?db=2"), zap.NewNop())
	if err != nil {
		t.Fatalf("unix URL refused: %v", err)
	}
	defer r.Close()
	if r.db != 2 {
		t.Errorf("db = %d, want 2", r.db)
	}
	assertNoCanary(t, "target", r.target)
	res := probeOnce(t, r, 5*time.Second)
	if res.Status != StatusDown {
		t.Errorf("missing socket: status %s", res.Status)
	}
	b, _ := json.Marshal(res)
	assertNoCanary(t, "result", string(b))
}
