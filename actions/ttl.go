package actions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/probes"
)

// scanCount is the COUNT hint per SCAN call.
const scanCount = 200

// ttlRepairer gives session keys without a TTL the configured one. It only
// ever sends SCAN, TTL and EXPIRE … NX: it never deletes or rewrites data,
// and NX means a TTL the app set meanwhile is never overridden.
type ttlRepairer struct {
	a      *Actions
	wakeCh chan struct{}

	// owned by loop's goroutine
	client *redis.Client
	url    string
	cursor uint64
	noNX   bool // server older than 7.0: EXPIRE without NX after the TTL check
}

// TTLResult is one repair tick's outcome.
type TTLResult struct {
	Visited  int  // keys SCAN returned
	NoTTL    int  // of those, keys without a TTL
	Repaired int  // keys given a TTL (0 in dry-run)
	Complete bool // the SCAN pass reached the end of the keyspace
}

func (t *ttlRepairer) wake() {
	select {
	case t.wakeCh <- struct{}{}:
	default:
	}
}

// interval is the repair period: the monitoring interval, or the action's
// cooldown when that is longer (so every tick may run).
func interval(cfg *config.Config) time.Duration {
	return max(cfg.Responsiveness.MonitoringInterval.Duration(), cfg.Actions.Cooldown.Duration(), time.Second)
}

// loop repairs once per interval while enabled, until ctx ends.
func (t *ttlRepairer) loop(ctx context.Context) {
	defer t.closeClient()
	for {
		iv := interval(t.a.cfg.Load())
		timer := time.NewTimer(iv)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-t.wakeCh:
			timer.Stop()
			continue
		case <-timer.C:
		}
		t.tick(ctx)
	}
}

// tick runs one bounded repair pass if the action is enabled.
func (t *ttlRepairer) tick(ctx context.Context) {
	a := t.a
	cfg := a.cfg.Load()
	if ok, _ := a.enabled(cfg, ActionTTLRepair); !ok {
		t.closeClient()
		return
	}
	now := a.now()
	if !a.claim(ActionTTLRepair, "interval", now) {
		return
	}
	deadline := cfg.Responsiveness.MonitoringInterval.Duration()
	end := a.begin(ActionTTLRepair, deadline)
	start := time.Now()
	res, err := t.repair(ctx, cfg, deadline)
	end(err)
	detail := fmt.Sprintf("visited %d keys, %d without TTL, repaired %d", res.Visited, res.NoTTL, res.Repaired)
	if cfg.Actions.DryRun {
		detail = fmt.Sprintf("visited %d keys, %d without TTL, would repair %d", res.Visited, res.NoTTL, min(res.NoTTL, cfg.Actions.SessionRepairMax))
	}
	if res.Complete {
		detail += "; scan pass complete"
	}
	a.done(ActionTTLRepair, "interval", cfg.Actions.DryRun, detail, err, time.Since(start))
}

func (t *ttlRepairer) closeClient() {
	if t.client != nil {
		_ = t.client.Close()
		t.client, t.url = nil, ""
	}
}

// clientFor returns a small client for cfg's Redis URL, rebuilt if it changed.
func (t *ttlRepairer) clientFor(cfg *config.Config) (*redis.Client, error) {
	raw := cfg.Redis.URL.Reveal()
	if t.client != nil && t.url == raw {
		return t.client, nil
	}
	t.closeClient()
	opt, err := redis.ParseURL(raw)
	if err != nil {
		// go-redis errors may quote the URL: never wrap them.
		return nil, fmt.Errorf("parsing redis.url %s: not a valid redis:// URL", cfg.Redis.URL)
	}
	to := cfg.Redis.ProbeTimeout.Duration()
	if to <= 0 {
		to = 2 * time.Second
	}
	opt.PoolSize = 1
	opt.MinIdleConns = 0
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = to, to, to
	opt.ClientName = "pulsegate-actions"
	opt.DialerRetries = 1 // one dial per tick against a down server; the next tick retries
	t.client, t.url, t.cursor, t.noNX = redis.NewClient(opt), raw, 0, false
	return t.client, nil
}

// repair continues the SCAN pass over the session prefix from where the last
// tick stopped, visiting at most redis.scan_budget keys and giving at most
// actions.session_repair_max of them a TTL.
func (t *ttlRepairer) repair(ctx context.Context, cfg *config.Config, timeout time.Duration) (TTLResult, error) {
	var res TTLResult
	rdb, err := t.clientFor(cfg)
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	budget := cfg.Redis.ScanBudget
	if budget <= 0 {
		budget = 10000
	}
	maxRepair := cfg.Actions.SessionRepairMax
	ttl := cfg.Actions.SessionTTL.Duration()
	match := probes.RedisGlobEscape(cfg.Redis.SessionPrefix) + "*"
	dry := cfg.Actions.DryRun
	for res.Visited < budget && (dry || res.Repaired < maxRepair) {
		keys, next, err := rdb.Scan(ctx, t.cursor, match, scanCount).Result()
		if err != nil {
			return res, fmt.Errorf("scanning session keys: %w", err)
		}
		res.Visited += len(keys)
		if len(keys) > 0 {
			n, fixed, err := t.fixBatch(ctx, rdb, keys, ttl, maxRepair-res.Repaired, dry)
			res.NoTTL += n
			res.Repaired += fixed
			if err != nil {
				return res, err
			}
		}
		t.cursor = next
		if next == 0 {
			res.Complete = true
			break
		}
	}
	if res.Repaired > 0 {
		t.a.repaired.Add(float64(res.Repaired))
	}
	return res, nil
}

// fixBatch checks keys' TTLs in one pipeline and sets ttl on those without
// one (at most limit), in a second pipeline.
func (t *ttlRepairer) fixBatch(ctx context.Context, rdb *redis.Client, keys []string, ttl time.Duration, limit int, dry bool) (noTTL, fixed int, err error) {
	pipe := rdb.Pipeline()
	ttls := make([]*redis.DurationCmd, len(keys))
	for i, k := range keys {
		ttls[i] = pipe.TTL(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, fmt.Errorf("reading session key TTLs: %w", err)
	}
	var todo []string
	for i, c := range ttls {
		if c.Val() == -1 { // exists, no expiry (-2 = gone)
			noTTL++
			if len(todo) < limit {
				todo = append(todo, keys[i])
			}
		}
	}
	if dry || len(todo) == 0 {
		return noTTL, 0, nil
	}
	for attempt := 0; attempt < 2; attempt++ {
		pipe = rdb.Pipeline()
		sets := make([]*redis.BoolCmd, len(todo))
		for i, k := range todo {
			if t.noNX {
				sets[i] = pipe.Expire(ctx, k, ttl)
			} else {
				sets[i] = pipe.ExpireNX(ctx, k, ttl)
			}
		}
		_, err = pipe.Exec(ctx)
		if err != nil && !t.noNX && noNXSupport(err) {
			t.noNX = true // Redis < 7.0 has no EXPIRE … NX
			continue
		}
		if err != nil {
			return noTTL, 0, fmt.Errorf("setting session key TTLs: %w", err)
		}
		for _, c := range sets {
			if c.Val() {
				fixed++
			}
		}
		return noTTL, fixed, nil
	}
	return noTTL, 0, errors.New("setting session key TTLs: server refused EXPIRE")
}

// noNXSupport recognises an old server refusing EXPIRE's NX option.
func noNXSupport(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "wrong number of arguments") || strings.Contains(msg, "syntax error")
}
