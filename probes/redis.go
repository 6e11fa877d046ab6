package probes

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/figures"
)

// RedisProbeName is the component name of the Redis probe.
const RedisProbeName = "session_monitoring"

// Redis probe limits.
const (
	// redisScanCount is the COUNT hint of each SCAN: ~500 slots examined per call.
	redisScanCount = 500
	// redisScanTimeMax caps the time one tick spends scanning.
	redisScanTimeMax = 250 * time.Millisecond
	// redisSizeSamplesPerTick caps MEMORY USAGE calls per tick.
	redisSizeSamplesPerTick = 20
	// redisGrowthRing is how many completed passes the growth fit keeps.
	redisGrowthRing = 30
	// redisGrowthMinPasses is the fewest completed passes the fit judges.
	redisGrowthMinPasses = 6
	// redisGrowthMinR2 is how linear the climb must be (coefficient of determination).
	redisGrowthMinR2 = 0.8
	// redisGrowthMinFraction is the least growth over the window, as a
	// fraction of the mean count, that counts as a climb.
	redisGrowthMinFraction = 0.1
	// redisGrowthMinKeys is the least absolute growth over the window.
	redisGrowthMinKeys = 10
)

// RedisDetails is the Redis probe's report (Result.Details), JSON-ready.
// Pointer fields are null when unknown.
type RedisDetails struct {
	// Target is the URL with its password replaced by xxxxx.
	Target string `json:"target"`
	// Version is redis_version from INFO server.
	Version string `json:"version,omitempty"`
	// LatencySeconds is the PING round trip.
	LatencySeconds float64 `json:"latency_seconds"`
	// Memory is used_memory against its limit.
	Memory *RedisMemory `json:"memory"`
	// Clients is connected and blocked clients against maxclients.
	Clients *RedisClients `json:"clients"`
	// EvictedKeys is the evicted_keys counter and its rate.
	EvictedKeys *RedisEvictions `json:"evicted_keys"`
	// Keyspace is the probed database's line of INFO keyspace.
	Keyspace *RedisKeyspace `json:"keyspace"`
	// Sessions are the keys under redis.session_prefix.
	Sessions *RedisSessions `json:"sessions"`
	// Queues are the configured job queues' depths.
	Queues []RedisQueue `json:"queues,omitempty"`
	// Partial names ACL permissions the probe lacks for optional readings (e.g. "+memory|usage").
	Partial []string `json:"partial,omitempty"`
}

// RedisMemory is Redis memory use against a limit.
type RedisMemory struct {
	// UsedBytes is used_memory.
	UsedBytes int64 `json:"used_bytes"`
	// MaxmemoryBytes is maxmemory (0 = no limit).
	MaxmemoryBytes int64 `json:"maxmemory_bytes"`
	// LimitBytes is what Usage divides by; null when no limit is known.
	LimitBytes *int64 `json:"limit_bytes"`
	// LimitSource says where LimitBytes comes from: "maxmemory", the source
	// the sidecar's own memory reading names (e.g. "container", "host"),
	// "redis_total_system_memory" (the Redis host's RAM as Redis reports it),
	// or "unknown".
	LimitSource string `json:"limit_source"`
	// Usage is UsedBytes ÷ LimitBytes; null when no limit is known.
	Usage *float64 `json:"usage"`
	// Policy is maxmemory_policy.
	Policy string `json:"policy,omitempty"`
}

// RedisClients is client connections against maxclients.
type RedisClients struct {
	Connected int64 `json:"connected"`
	Blocked   int64 `json:"blocked"`
	// MaxClients is maxclients from INFO clients or CONFIG GET; null when neither is readable.
	MaxClients *int64 `json:"max_clients"`
	// Utilization is Connected ÷ MaxClients.
	Utilization *float64 `json:"utilization"`
}

// RedisEvictions is the evicted_keys counter.
type RedisEvictions struct {
	Total int64 `json:"total"`
	// PerSecond is the rate since the previous tick; null on the first tick and after a restart.
	PerSecond *float64 `json:"per_second"`
}

// RedisKeyspace is one database's keyspace line.
type RedisKeyspace struct {
	DB      int   `json:"db"`
	Keys    int64 `json:"keys"`
	Expires int64 `json:"expires"`
}

// RedisSessions is what SCAN found under the session prefix.
type RedisSessions struct {
	// Prefix is redis.session_prefix.
	Prefix string `json:"prefix"`
	// Count is the number of keys under the prefix.
	Count int64 `json:"count"`
	// WithoutTTL is how many of them never expire (TTL -1): leaked sessions.
	WithoutTTL int64 `json:"without_ttl"`
	// AvgTTLSeconds is the mean remaining TTL of those that expire; null when none do.
	AvgTTLSeconds *float64 `json:"avg_ttl_seconds"`
	// AvgSizeBytes is the mean MEMORY USAGE of a sample; null when not sampled.
	AvgSizeBytes *float64 `json:"avg_size_bytes"`
	// SizeSamples is how many keys the average size is from.
	SizeSamples int `json:"size_samples"`
	// Partial is true until a first full SCAN pass completes: the numbers
	// are then the running pass's so far, a lower bound.
	Partial bool `json:"partial"`
	// PassesCompleted counts full SCAN passes since start.
	PassesCompleted int `json:"passes_completed"`
	// PassCompletedAt is when the pass the numbers come from completed.
	PassCompletedAt time.Time `json:"pass_completed_at,omitzero"`
	// PassTicks is how many ticks that pass took.
	PassTicks int `json:"pass_ticks,omitempty"`
	// Scan is the running pass's progress.
	Scan RedisScanProgress `json:"scan"`
	// Growth is the linear fit over completed passes; null until enough passes.
	Growth *RedisGrowth `json:"growth"`
}

// RedisScanProgress is the state of the SCAN pass in progress.
type RedisScanProgress struct {
	// Cursor is where the next tick resumes (0 = a new pass starts).
	Cursor uint64 `json:"cursor"`
	// KeysThisPass is how many prefix keys the running pass found so far.
	KeysThisPass int64 `json:"keys_this_pass"`
	// TicksThisPass is how many ticks the running pass has taken.
	TicksThisPass int `json:"ticks_this_pass"`
	// CallsThisTick is how many SCAN calls this tick made.
	CallsThisTick int `json:"calls_this_tick"`
	// BudgetKeys is redis.scan_budget: the most keys examined per tick (SCAN calls × 500).
	BudgetKeys int `json:"budget_keys"`
	// SecondsThisTick is the time this tick spent scanning.
	SecondsThisTick float64 `json:"seconds_this_tick"`
}

// RedisGrowth is a least-squares line through (time, count) of completed passes.
type RedisGrowth struct {
	// Passes is the number of points fitted.
	Passes int `json:"passes"`
	// WindowSeconds is the time the points span.
	WindowSeconds float64 `json:"window_seconds"`
	// SessionsPerHour is the fitted slope of the session count.
	SessionsPerHour float64 `json:"sessions_per_hour"`
	// R2 is the fit's coefficient of determination (1 = a straight climb).
	R2 float64 `json:"r2"`
	// WithoutTTLPerHour is the fitted slope of the TTL-less count.
	WithoutTTLPerHour float64 `json:"without_ttl_per_hour"`
	// LeakPattern is true for a sustained climb of either count.
	LeakPattern bool `json:"leak_pattern"`
}

// RedisQueue is one job queue's depth.
type RedisQueue struct {
	Key string `json:"key"`
	// Type is the key's Redis type (list, zset, stream), "none" when absent (an empty RQ/Celery queue).
	Type  string `json:"type"`
	Depth int64  `json:"depth"`
}

// MemoryLimitFunc reports the memory Redis usage is compared to when
// maxmemory is 0: bytes, a source label (e.g. "container", "host") and
// whether it is known.
type MemoryLimitFunc func() (bytes uint64, source string, ok bool)

// RedisOption adjusts the Redis probe.
type RedisOption func(*Redis)

// WithRedisMemoryLimit supplies the container/host memory limit (from the
// system probe) for Redis with maxmemory 0. Without it the probe uses the
// total_system_memory Redis reports for its own host.
func WithRedisMemoryLimit(f MemoryLimitFunc) RedisOption {
	return func(r *Redis) { r.memLimit = f }
}

// redisPass accumulates one SCAN pass.
type redisPass struct {
	started     time.Time
	ticks       int
	keys        int64
	noTTL       int64
	ttlSum      float64
	ttlCount    int64
	sizeSum     float64
	sizeCount   int
	completedAt time.Time
}

// redisPoint is one completed pass in the growth ring.
type redisPoint struct {
	at    time.Time
	count float64
	noTTL float64
}

// Redis is the Redis probe (session_monitoring): PING, INFO, a budgeted
// SCAN of the session prefix carried over between ticks, and job-queue
// depths, on its own pool of at most two connections.
type Redis struct {
	client   *redis.Client
	db       int
	target   string
	scrubber secretScrubber
	log      *zap.Logger
	now      func() time.Time
	memLimit MemoryLimitFunc

	scanTime time.Duration
	// next holds the settings of the latest configuration (Apply); each
	// Probe copies them into redisSettings before it reads.
	next atomic.Pointer[redisSettings]

	mu            sync.Mutex
	redisSettings // the settings this tick reads and judges with
	// scan state
	cursor uint64
	pass   redisPass
	last   *redisPass
	passes int
	ring   []redisPoint
	noSize bool // MEMORY USAGE refused
	noConf bool // CONFIG GET refused
	// counter state
	prevEvicted   int64
	prevEvictedAt time.Time
	prevUptime    int64
	haveEvicted   bool
	// transition state for logs
	authFailed  bool
	sessionLeak bool
	leakPattern bool
	memLevel    Status
	queueLevel  Status
}

// NewRedis returns the Redis probe for cfg.Redis.URL
// (redis://[user:pass@]host:6379/db, rediss:// for TLS, unix:///path.sock?db=N). It does not
// connect; the first Probe does. Errors name the field and never contain
// the password.
func NewRedis(cfg *config.Config, log *zap.Logger, opts ...RedisOption) (Prober, error) {
	return newRedis(cfg, log, opts...)
}

func newRedis(cfg *config.Config, log *zap.Logger, opts ...RedisOption) (*Redis, error) {
	if cfg == nil {
		return nil, errors.New("redis probe: nil config")
	}
	if log == nil {
		log = zap.NewNop()
	}
	rc := cfg.Redis
	if !rc.URL.IsSet() {
		return nil, errors.New("redis.url (RESPONSIVENESS_REDIS_URL) is empty: the Redis probe is disabled")
	}
	parts, err := splitDSN(rc.URL.Reveal())
	if err != nil {
		return nil, fmt.Errorf("redis.url (RESPONSIVENESS_REDIS_URL): %w", err)
	}
	scrubber := newSecretScrubber(parts.Password, rc.URL.Reveal())
	switch parts.Scheme {
	case "redis", "rediss", "unix":
	default:
		return nil, fmt.Errorf("redis.url (RESPONSIVENESS_REDIS_URL): unsupported scheme %q: want redis://, rediss:// or unix://", parts.Scheme)
	}
	timeout := rc.ProbeTimeout.Duration()
	if timeout <= 0 {
		return nil, fmt.Errorf("redis.probe_timeout must be > 0, got %v", float64(rc.ProbeTimeout))
	}
	if rc.ScanBudget <= 0 {
		return nil, fmt.Errorf("redis.scan_budget must be > 0, got %d", rc.ScanBudget)
	}
	u := *parts.Rest
	u.User = nil
	opt, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("redis.url (RESPONSIVENESS_REDIS_URL): %s", scrubber.Scrub(err.Error()))
	}
	if parts.User != "" {
		opt.Username = parts.User
	}
	if parts.HasPassword {
		opt.Password = parts.Password
	}
	// Its own small pool: blocking commands of the app (BLPOP) on a shared
	// pool cannot starve the probe, and the probe never holds more than two
	// connections (pipelines included).
	opt.PoolSize = 2
	opt.MinIdleConns = 0
	opt.MaxIdleConns = 1
	opt.PipelinePoolSize = -1
	opt.PoolTimeout = timeout
	opt.DialTimeout = timeout
	opt.ReadTimeout = timeout
	opt.WriteTimeout = timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.ConnMaxIdleTime = probeConnMaxIdle
	// RESP2 and no CLIENT SETINFO / HELLO / maintenance notifications: a
	// minimal ACL user (+ping +info +scan ...) can connect.
	opt.Protocol = 2
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	r := &Redis{
		client:     redis.NewClient(opt),
		db:         opt.DB,
		target:     parts.Redacted(),
		scrubber:   scrubber,
		log:        log.Named(RedisProbeName),
		now:        time.Now,
		scanTime:   min(timeout/4, redisScanTimeMax),
		memLevel:   StatusOK,
		queueLevel: StatusOK,
	}
	r.Apply(cfg)
	r.redisSettings = *r.next.Load()
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// redisSettings are what the Redis probe reads and judges with. They are
// live: Apply swaps them, and the next Probe uses them.
type redisSettings struct {
	prefix, match      string
	queues             []string
	budget             int
	lat, mem, queue    figureLimits
	connWarn, connCrit float64
}

// Apply takes the session prefix, queue keys, scan budget and thresholds
// of a new configuration; the next Probe uses them (a new prefix starts a
// new SCAN pass). The URL and the probe timeout (the client's dial and
// read timeouts) are fixed at construction.
func (r *Redis) Apply(cfg *config.Config) {
	rc, rs := cfg.Redis, cfg.Responsiveness
	r.next.Store(&redisSettings{
		prefix:   rc.SessionPrefix,
		match:    RedisGlobEscape(rc.SessionPrefix) + "*",
		queues:   slices.Clone(rc.QueueKeys),
		budget:   rc.ScanBudget,
		lat:      limitsOf(cfg, figures.RedisLatency),
		mem:      limitsOf(cfg, figures.RedisMemoryUsage),
		queue:    limitsOf(cfg, figures.JobQueueDepth),
		connWarn: rs.DBConnectionWarningThreshold,
		connCrit: rs.DBConnectionCriticalThreshold,
	})
}

// takeSettings installs the latest settings for this tick. Keys counted
// under another prefix say nothing about the new one: a changed prefix
// restarts the SCAN pass and the growth ring.
func (r *Redis) takeSettings() {
	next := r.next.Load()
	if r.prefix != "" && next.prefix != r.prefix {
		r.cursor, r.pass, r.last, r.passes, r.ring = 0, redisPass{}, nil, 0, nil
	}
	r.redisSettings = *next
}

// Name returns "session_monitoring".
func (r *Redis) Name() string { return RedisProbeName }

// Close closes the probe's connections.
func (r *Redis) Close() error {
	if err := r.client.Close(); err != nil {
		return errors.New(r.scrubber.Scrub(fmt.Sprintf("closing redis connections: %v", err)))
	}
	return nil
}

// redisAuthError reports whether err is Redis refusing the credentials or a command.
func redisAuthError(err error) (auth, noperm bool) {
	if err == nil {
		return false, false
	}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "NOPERM"):
		return false, true
	case strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "WRONGPASS"),
		strings.Contains(msg, "invalid password"), strings.Contains(msg, "invalid username-password"):
		return true, false
	}
	return false, false
}

// Probe runs one tick.
func (r *Redis) Probe(ctx context.Context) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.takeSettings()
	start := r.now()
	res := Result{Probe: RedisProbeName, Started: start}
	det := &RedisDetails{Target: r.target}
	res.Details = det

	fail := func(doing string, err error) Result { return r.failed(res, start, doing, err) }

	t0 := time.Now()
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fail("PING", err)
	}
	lat := time.Since(t0).Seconds()
	r.authFailed = false
	det.LatencySeconds = lat
	figs := map[string]float64{string(figures.RedisLatency): lat}
	res.Figures = figs

	infoText, err := r.client.Info(ctx).Result()
	if err != nil {
		return fail("INFO", err)
	}
	info := parseInfo(infoText)
	det.Version = info["server"]["redis_version"]

	v := &tickVerdict{res: &res, level: StatusOK}
	raise := v.raise
	r.judgeLatency(v, lat)

	r.judgeMemory(det, info, figs, raise)
	r.judgeClients(ctx, det, info, raise)
	r.judgeEvictions(det, info, figs, start, raise)
	if ks, ok := info["keyspace"][fmt.Sprintf("db%d", r.db)]; ok {
		f := parseKeyspaceLine(ks)
		det.Keyspace = &RedisKeyspace{DB: r.db, Keys: f["keys"], Expires: f["expires"]}
	} else if info["keyspace"] != nil || strings.Contains(infoText, "# Keyspace") {
		det.Keyspace = &RedisKeyspace{DB: r.db}
	}

	if err := r.scan(ctx, det, start); err != nil {
		return fail("SCAN of "+r.prefix+"*", err)
	}
	r.judgeSessions(det, figs, raise)

	if len(r.queues) > 0 {
		if err := r.readQueues(ctx, det); err != nil {
			return fail("reading queue lengths", err)
		}
		r.judgeQueues(det, figs, raise)
	}
	if r.noSize {
		det.Partial = append(det.Partial, "+memory|usage")
	}
	if r.noConf && (det.Clients == nil || det.Clients.MaxClients == nil) {
		det.Partial = append(det.Partial, "+config|get")
	}
	res.Status = v.level
	res.Duration = r.now().Sub(start)
	return res
}

// judgeLatency compares the PING round trip with the Redis latency thresholds.
func (r *Redis) judgeLatency(v *tickVerdict, lat float64) {
	if s, thr := r.lat.judge(lat); s != StatusOK {
		v.raise(s, fmt.Sprintf("PING took %s (%s ≥ %s)", formatSeconds(lat), s, formatSeconds(thr)))
	}
}

// failed fills res for a tick that could not read Redis (doing names the
// step): an auth or permission refusal is a configuration error
// (critical), anything else is down.
func (r *Redis) failed(res Result, start time.Time, doing string, err error) Result {
	msg := r.scrubber.Scrub(fmt.Sprintf("%s: %v", doing, err))
	auth, noperm := redisAuthError(err)
	switch {
	case auth:
		res.Status = StatusCritical
		res.Error = "auth failed: check RESPONSIVENESS_REDIS_URL credentials (" + msg + ")"
		res.Reasons = []string{"configuration error: auth failed: check RESPONSIVENESS_REDIS_URL credentials"}
		if !r.authFailed {
			r.log.Error("redis_auth_failed", zap.String("text", "Redis refused the probe's credentials: check RESPONSIVENESS_REDIS_URL"), zap.String("error", msg))
		}
		r.authFailed = true
	case noperm:
		res.Status = StatusCritical
		res.Error = msg
		res.Reasons = []string{"configuration error: the probe's Redis user lacks a permission (" + doing + "): see the ACL in the docs"}
	default:
		res.Status = StatusDown
		res.Error = msg
	}
	res.Duration = r.now().Sub(start)
	return res
}

// judgeMemory compares used_memory with maxmemory, or with the
// container/host memory when maxmemory is 0 (no limit). It never divides
// by zero: with no known limit, usage is null and no figure is published.
func (r *Redis) judgeMemory(det *RedisDetails, info map[string]map[string]string, figs map[string]float64, raise func(Status, string)) {
	used, ok := infoInt(info, "memory", "used_memory")
	if !ok {
		return
	}
	m := &RedisMemory{UsedBytes: used, LimitSource: "unknown", Policy: info["memory"]["maxmemory_policy"]}
	m.MaxmemoryBytes, _ = infoInt(info, "memory", "maxmemory")
	var limit int64
	switch {
	case m.MaxmemoryBytes > 0:
		limit, m.LimitSource = m.MaxmemoryBytes, "maxmemory"
	case r.memLimit != nil:
		if b, src, ok := r.memLimit(); ok && b > 0 && b <= math.MaxInt64 {
			limit, m.LimitSource = int64(b), src
		}
	}
	if limit == 0 {
		if tsm, ok := infoInt(info, "memory", "total_system_memory"); ok && tsm > 0 {
			limit, m.LimitSource = tsm, "redis_total_system_memory"
		}
	}
	det.Memory = m
	if limit <= 0 {
		return
	}
	m.LimitBytes = &limit
	u := float64(used) / float64(limit)
	m.Usage = &u
	figs[string(figures.RedisMemoryUsage)] = u
	lvl, thr := r.mem.judge(u)
	if lvl != StatusOK {
		raise(lvl, fmt.Sprintf("Redis memory at %.0f%% of %s (%s, %s ≥ %.0f%%)", u*100, redisFmtBytes(limit), m.LimitSource, lvl, thr*100))
	}
	if statusRank(lvl) > statusRank(r.memLevel) {
		r.log.Warn(string(figures.RedisMemoryUsage),
			zap.String("text", fmt.Sprintf("Redis memory usage at %.0f%%", u*100)),
			zap.Int64("used_bytes", used), zap.Int64("limit_bytes", limit), zap.String("limit_source", m.LimitSource))
	}
	r.memLevel = lvl
}

// judgeClients compares connected clients with maxclients (INFO clients on
// Redis ≥ 7, else CONFIG GET, which may be renamed or forbidden).
func (r *Redis) judgeClients(ctx context.Context, det *RedisDetails, info map[string]map[string]string, raise func(Status, string)) {
	conn, ok := infoInt(info, "clients", "connected_clients")
	if !ok {
		return
	}
	c := &RedisClients{Connected: conn}
	c.Blocked, _ = infoInt(info, "clients", "blocked_clients")
	if mc, ok := infoInt(info, "clients", "maxclients"); ok && mc > 0 {
		c.MaxClients = &mc
	} else if !r.noConf {
		vals, err := r.client.ConfigGet(ctx, "maxclients").Result()
		if err == nil {
			if n, err := strconv.ParseInt(vals["maxclients"], 10, 64); err == nil && n > 0 {
				c.MaxClients = &n
			}
		} else if ctx.Err() == nil {
			// Renamed, forbidden (NOPERM) or disabled: remember and mark unknown.
			r.noConf = true
		}
	}
	det.Clients = c
	if c.MaxClients == nil {
		return
	}
	u := float64(c.Connected) / float64(*c.MaxClients)
	c.Utilization = &u
	switch {
	case u >= r.connCrit:
		raise(StatusCritical, fmt.Sprintf("%d of %d Redis clients connected (critical ≥ %.0f%%)", c.Connected, *c.MaxClients, r.connCrit*100))
	case u >= r.connWarn:
		raise(StatusWarning, fmt.Sprintf("%d of %d Redis clients connected (warning ≥ %.0f%%)", c.Connected, *c.MaxClients, r.connWarn*100))
	}
}

// judgeEvictions turns the evicted_keys counter into a rate; a counter
// that went down (or an uptime that did) is a restart, not a negative rate.
func (r *Redis) judgeEvictions(det *RedisDetails, info map[string]map[string]string, figs map[string]float64, now time.Time, raise func(Status, string)) {
	ev, ok := infoInt(info, "stats", "evicted_keys")
	if !ok {
		return
	}
	up, _ := infoInt(info, "server", "uptime_in_seconds")
	e := &RedisEvictions{Total: ev}
	if r.haveEvicted && ev >= r.prevEvicted && up >= r.prevUptime {
		if el := now.Sub(r.prevEvictedAt).Seconds(); el > 0 {
			rate := float64(ev-r.prevEvicted) / el
			e.PerSecond = &rate
			figs["redis_evicted_per_sec"] = rate
			if rate > 0 {
				raise(StatusWarning, fmt.Sprintf("Redis is evicting keys: %.2f/s (sessions may be lost)", rate))
			}
		}
	}
	r.prevEvicted, r.prevEvictedAt, r.prevUptime, r.haveEvicted = ev, now, up, true
	det.EvictedKeys = e
}

// scan continues the SCAN pass over the session prefix within this tick's
// budget: at most ceil(scan_budget/500) SCAN calls and a small time budget.
// Each batch's TTLs come in one pipeline; a few keys per tick get MEMORY
// USAGE for the average size. A pass completes when the cursor returns to 0.
func (r *Redis) scan(ctx context.Context, det *RedisDetails, now time.Time) error {
	if r.cursor == 0 && r.pass.started.IsZero() {
		r.pass = redisPass{started: now}
	}
	r.pass.ticks++
	maxCalls := (r.budget + redisScanCount - 1) / redisScanCount
	t0 := time.Now()
	deadline := t0.Add(r.scanTime)
	calls := 0
	sized := 0
	completed := false
	for calls < maxCalls && (calls == 0 || time.Now().Before(deadline)) {
		keys, next, err := r.client.Scan(ctx, r.cursor, r.match, redisScanCount).Result()
		if err != nil {
			return err
		}
		calls++
		if len(keys) > 0 {
			if err := r.visit(ctx, keys, &sized); err != nil {
				return err
			}
		}
		r.cursor = next
		if next == 0 {
			completed = true
			break
		}
	}
	prog := RedisScanProgress{
		CallsThisTick:   calls,
		BudgetKeys:      r.budget,
		SecondsThisTick: time.Since(t0).Seconds(),
	}
	if completed {
		p := r.pass
		p.completedAt = now
		r.last = &p
		r.passes++
		r.ring = append(r.ring, redisPoint{at: now, count: float64(p.keys), noTTL: float64(p.noTTL)})
		if len(r.ring) > redisGrowthRing {
			r.ring = r.ring[len(r.ring)-redisGrowthRing:]
		}
		r.pass = redisPass{}
	} else {
		prog.Cursor = r.cursor
		prog.KeysThisPass = r.pass.keys
		prog.TicksThisPass = r.pass.ticks
	}
	src, partial := r.last, false
	if src == nil {
		src, partial = &r.pass, true
	}
	s := &RedisSessions{
		Prefix:          r.prefix,
		Count:           src.keys,
		WithoutTTL:      src.noTTL,
		SizeSamples:     src.sizeCount,
		Partial:         partial,
		PassesCompleted: r.passes,
		PassCompletedAt: src.completedAt,
		Scan:            prog,
	}
	if !partial {
		s.PassTicks = src.ticks
	}
	if src.ttlCount > 0 {
		v := src.ttlSum / float64(src.ttlCount)
		s.AvgTTLSeconds = &v
	}
	if src.sizeCount > 0 {
		v := src.sizeSum / float64(src.sizeCount)
		s.AvgSizeBytes = &v
	}
	det.Sessions = s
	return nil
}

// visit reads TTLs (and a few sizes) of one SCAN batch in one pipeline.
func (r *Redis) visit(ctx context.Context, keys []string, sized *int) error {
	pipe := r.client.Pipeline()
	ttls := make([]*redis.Cmd, len(keys))
	var sizes []*redis.IntCmd
	for i, k := range keys {
		ttls[i] = pipe.Do(ctx, "TTL", k)
		if !r.noSize && *sized < redisSizeSamplesPerTick {
			sizes = append(sizes, pipe.MemoryUsage(ctx, k))
			*sized++
		}
	}
	_, err := pipe.Exec(ctx)
	if err != nil && ctx.Err() != nil {
		return err
	}
	for _, c := range ttls {
		ttl, err := c.Int64()
		if err != nil {
			if _, noperm := redisAuthError(err); noperm {
				return err
			}
			if errors.Is(err, redis.Nil) {
				continue
			}
			return err
		}
		switch {
		case ttl == -2: // expired or deleted since SCAN returned it
		case ttl == -1:
			r.pass.keys++
			r.pass.noTTL++
		case ttl >= 0:
			r.pass.keys++
			r.pass.ttlSum += float64(ttl)
			r.pass.ttlCount++
		}
	}
	for _, c := range sizes {
		n, err := c.Result()
		if err != nil {
			if _, noperm := redisAuthError(err); noperm || strings.Contains(err.Error(), "unknown command") {
				r.noSize = true
			}
			continue
		}
		r.pass.sizeSum += float64(n)
		r.pass.sizeCount++
	}
	return nil
}

// judgeSessions publishes the session figures (from completed passes only)
// and the growth fit.
func (r *Redis) judgeSessions(det *RedisDetails, figs map[string]float64, raise func(Status, string)) {
	s := det.Sessions
	if s == nil || s.Partial {
		return
	}
	figs["session_count"] = float64(s.Count)
	figs["session_without_ttl"] = float64(s.WithoutTTL)
	if s.WithoutTTL > 0 {
		raise(StatusWarning, fmt.Sprintf("%d of %d session keys under %q have no TTL (leak: they never expire)", s.WithoutTTL, s.Count, r.prefix))
		if !r.sessionLeak {
			r.log.Error("session_leak",
				zap.String("text", fmt.Sprintf("Session leak detected - %d session keys without TTL", s.WithoutTTL)),
				zap.Int64("without_ttl", s.WithoutTTL), zap.Int64("count", s.Count), zap.String("prefix", r.prefix))
		}
	}
	r.sessionLeak = s.WithoutTTL > 0

	g := r.growth()
	s.Growth = g
	if g == nil {
		return
	}
	if g.LeakPattern {
		raise(StatusWarning, fmt.Sprintf("Memory leak pattern: sessions growing %.0f/h (without TTL %.0f/h) over %d passes, %s",
			g.SessionsPerHour, g.WithoutTTLPerHour, g.Passes, formatSeconds(g.WindowSeconds)))
		if !r.leakPattern {
			r.log.Warn("memory_leak_pattern",
				zap.String("text", "Memory leak pattern detected in session keys"),
				zap.Float64("sessions_per_hour", g.SessionsPerHour),
				zap.Float64("without_ttl_per_hour", g.WithoutTTLPerHour),
				zap.Int("passes", g.Passes), zap.Float64("r2", g.R2))
		}
	}
	r.leakPattern = g.LeakPattern
}

// growth fits the ring of completed passes.
func (r *Redis) growth() *RedisGrowth {
	n := len(r.ring)
	if n < 2 {
		return nil
	}
	xs := make([]float64, n)
	cs := make([]float64, n)
	ns := make([]float64, n)
	for i, p := range r.ring {
		xs[i] = p.at.Sub(r.ring[0].at).Seconds()
		cs[i] = p.count
		ns[i] = p.noTTL
	}
	slope, _, r2, ok := redisLinearFit(xs, cs)
	if !ok {
		return nil
	}
	nslope, _, nr2, _ := redisLinearFit(xs, ns)
	span := xs[n-1]
	g := &RedisGrowth{Passes: n, WindowSeconds: span, SessionsPerHour: slope * 3600, R2: r2, WithoutTTLPerHour: nslope * 3600}
	if n >= redisGrowthMinPasses {
		g.LeakPattern = redisSustainedClimb(slope, r2, span, cs) || redisSustainedClimb(nslope, nr2, span, ns)
	}
	return g
}

// redisSustainedClimb: a positive, nearly linear slope whose growth over the
// window is both ≥ redisGrowthMinKeys and ≥ 10 % of the mean.
func redisSustainedClimb(slope, r2, span float64, ys []float64) bool {
	if slope <= 0 || r2 < redisGrowthMinR2 {
		return false
	}
	mean := 0.0
	for _, y := range ys {
		mean += y
	}
	mean /= float64(len(ys))
	growth := slope * span
	return growth >= redisGrowthMinKeys && growth >= redisGrowthMinFraction*mean
}

// redisLinearFit is ordinary least squares y = a + b·x with the coefficient of
// determination. ok is false for fewer than two points or no spread in x.
// A flat series (no variance in y) has r2 = 0.
func redisLinearFit(xs, ys []float64) (slope, intercept, r2 float64, ok bool) {
	n := float64(len(xs))
	if len(xs) < 2 || len(xs) != len(ys) {
		return 0, 0, 0, false
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= n
	my /= n
	var sxx, sxy, syy float64
	for i := range xs {
		dx, dy := xs[i]-mx, ys[i]-my
		sxx += dx * dx
		sxy += dx * dy
		syy += dy * dy
	}
	if sxx == 0 {
		return 0, 0, 0, false
	}
	slope = sxy / sxx
	intercept = my - slope*mx
	if syy > 0 {
		r2 = (sxy * sxy) / (sxx * syy)
	}
	return slope, intercept, r2, true
}

// readQueues reads each queue key's type and length (LLEN/ZCARD/XLEN) in two pipelines.
func (r *Redis) readQueues(ctx context.Context, det *RedisDetails) error {
	pipe := r.client.Pipeline()
	types := make([]*redis.StatusCmd, len(r.queues))
	for i, k := range r.queues {
		types[i] = pipe.Type(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	pipe = r.client.Pipeline()
	lens := make([]*redis.IntCmd, len(r.queues))
	qs := make([]RedisQueue, len(r.queues))
	for i, k := range r.queues {
		qs[i] = RedisQueue{Key: k, Type: types[i].Val()}
		switch qs[i].Type {
		case "list":
			lens[i] = pipe.LLen(ctx, k)
		case "zset":
			lens[i] = pipe.ZCard(ctx, k)
		case "stream":
			lens[i] = pipe.XLen(ctx, k)
		}
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	for i := range qs {
		if lens[i] != nil {
			qs[i].Depth = lens[i].Val()
		}
	}
	det.Queues = qs
	return nil
}

// judgeQueues compares the deepest queue with thresholds.job_queue_warning/critical.
func (r *Redis) judgeQueues(det *RedisDetails, figs map[string]float64, raise func(Status, string)) {
	var deepest RedisQueue
	for _, q := range det.Queues {
		if q.Depth >= deepest.Depth {
			deepest = q
		}
	}
	figs[string(figures.JobQueueDepth)] = float64(deepest.Depth)
	lvl, thr := r.queue.judge(float64(deepest.Depth))
	if lvl != StatusOK {
		raise(lvl, fmt.Sprintf("job queue %s holds %d jobs (%s ≥ %.0f)", deepest.Key, deepest.Depth, lvl, thr))
	}
	if statusRank(lvl) > statusRank(r.queueLevel) {
		r.log.Warn(string(figures.JobQueueDepth),
			zap.String("text", fmt.Sprintf("Job queue %s backing up: %d jobs", deepest.Key, deepest.Depth)),
			zap.String("queue", deepest.Key), zap.Int64("depth", deepest.Depth), zap.String("level", string(lvl)))
	}
	r.queueLevel = lvl
}

// RedisGlobEscape escapes Redis glob specials (for SCAN MATCH) so a key
// prefix matches literally.
func RedisGlobEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// redisFmtBytes formats a byte count for reasons.
func redisFmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
