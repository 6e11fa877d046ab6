package probes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
)

// Runner defaults.
const (
	// DefaultInterval is used when RunnerConfig.Interval is not positive.
	DefaultInterval = 30 * time.Second
	// DefaultProbeTimeout bounds a probe that has no timeout of its own
	// (system_optimizer).
	DefaultProbeTimeout = 5 * time.Second
	// DefaultStuckGrace is how long past its timeout the Runner waits for a
	// probe that ignores cancellation before it gives up on that run.
	DefaultStuckGrace = time.Second
	// DefaultShutdownGrace is how long Run and Close wait for in-flight runs.
	DefaultShutdownGrace = 5 * time.Second
	// DefaultJitter is the interval jitter fraction RunnerConfigFrom sets (±10 %).
	DefaultJitter = 0.1
	// DefaultMaxBackoff caps backoff: a target that stays down is retried
	// at least this often, or every interval if the interval is longer.
	// So a short interval never turns into a busy reconnect loop, and with
	// the default 30 s interval recovery shows within one interval
	// (RELIABILITY case 42).
	DefaultMaxBackoff = 30 * time.Second
)

// RunnerConfig configures a Runner. Zero values take the defaults above.
type RunnerConfig struct {
	// Interval is the probe period (responsiveness.monitoring_interval).
	Interval time.Duration
	// Timeouts maps probe name → per-run timeout; missing: DefaultProbeTimeout.
	Timeouts map[string]time.Duration
	// Jitter spreads each wait by ±Jitter (a fraction; 0 = none).
	Jitter float64
	// MaxBackoff caps the wait while a target stays down. The wait doubles
	// from Interval with each Down result in a row. 0: max(Interval, DefaultMaxBackoff).
	MaxBackoff time.Duration
	// StuckGrace: see DefaultStuckGrace.
	StuckGrace time.Duration
	// ShutdownGrace: see DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// RunnerConfigFrom derives a RunnerConfig from the configuration: interval
// from responsiveness.monitoring_interval, database_manager's timeout from
// database.probe_timeout, session_monitoring's from redis.probe_timeout,
// ±10 % jitter.
func RunnerConfigFrom(cfg *config.Config) RunnerConfig {
	return RunnerConfig{
		Interval: cfg.Responsiveness.MonitoringInterval.Duration(),
		Timeouts: map[string]time.Duration{
			"database_manager":   cfg.Database.ProbeTimeout.Duration(),
			"session_monitoring": cfg.Redis.ProbeTimeout.Duration(),
		},
		Jitter: DefaultJitter,
	}
}

// Runner runs each Prober on its own goroutine: first at start, then every
// interval (jittered), each run under its own timeout, timed, with panics
// turned into Down results, exponential backoff while the target is down,
// and at most one run in flight per probe. Results go to its Store.
type Runner struct {
	// OnResult, when set (before Run), is called after each Store.Set with
	// the stored result, on the probe's goroutine. It must not block long.
	OnResult func(Result)

	log   *zap.Logger
	store *Store
	tasks *Tasks
	now   func() time.Time
	loops []*probeLoop

	interval atomic.Int64 // ns
	running  atomic.Bool

	mu       sync.Mutex // guards the fields below
	timeouts map[string]time.Duration
	cfg      RunnerConfig
}

type probeLoop struct {
	p    Prober
	name string
	task string
	wake chan struct{}
	busy atomic.Bool // a run is in flight (possibly abandoned)

	mu         sync.Mutex
	last       Status
	consecDown int
	skipping   bool
}

// TaskName is the Tasks name under which the Runner tracks a probe's loop.
func TaskName(probe string) string { return "probe:" + probe }

// NewRunner builds a Runner over probers. tasks receives one task per probe
// ("probe:<name>"); nil makes a private tracker. When reg is not nil the
// Runner registers its Collector (probe and task metrics) on it; a name
// clash there panics, as MustRegister does.
func NewRunner(cfg RunnerConfig, log *zap.Logger, reg prometheus.Registerer, tasks *Tasks, probers ...Prober) *Runner {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.StuckGrace <= 0 {
		cfg.StuckGrace = DefaultStuckGrace
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.Jitter < 0 || cfg.Jitter >= 1 {
		cfg.Jitter = 0
	}
	if tasks == nil {
		tasks = NewTasks(cfg.Now)
	}
	r := &Runner{
		log:      log,
		store:    NewStore(),
		tasks:    tasks,
		now:      cfg.Now,
		timeouts: map[string]time.Duration{},
		cfg:      cfg,
	}
	for k, v := range cfg.Timeouts {
		if v > 0 {
			r.timeouts[k] = v
		}
	}
	r.interval.Store(int64(cfg.Interval))
	for _, p := range probers {
		r.loops = append(r.loops, &probeLoop{p: p, name: p.Name(), task: TaskName(p.Name()), wake: make(chan struct{}, 1)})
	}
	if reg != nil {
		reg.MustRegister(NewCollector(r.store, tasks))
	}
	return r
}

// Store is where the Runner keeps the latest results.
func (r *Runner) Store() *Store { return r.store }

// Tasks is the task tracker the Runner reports to.
func (r *Runner) Tasks() *Tasks { return r.tasks }

// Interval returns the current probe interval.
func (r *Runner) Interval() time.Duration { return time.Duration(r.interval.Load()) }

// SetInterval changes the probe interval; waiting loops re-arm at once.
// Non-positive values are ignored.
func (r *Runner) SetInterval(d time.Duration) {
	if d <= 0 || time.Duration(r.interval.Swap(int64(d))) == d {
		return
	}
	for _, pl := range r.loops {
		select {
		case pl.wake <- struct{}{}:
		default:
		}
	}
}

// SetTimeout changes one probe's per-run timeout (non-positive: default).
func (r *Runner) SetTimeout(probe string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d <= 0 {
		delete(r.timeouts, probe)
		return
	}
	r.timeouts[probe] = d
}

// Applier is a prober whose settings follow live configuration: the
// system, database and Redis probes.
type Applier interface {
	Apply(cfg *config.Config)
}

// Apply takes a new configuration: the interval and probe timeouts
// (RunnerConfigFrom's fields), and every prober's own settings and
// thresholds, so the next run of each probe judges with them.
func (r *Runner) Apply(cfg *config.Config) {
	rc := RunnerConfigFrom(cfg)
	for name, d := range rc.Timeouts {
		r.SetTimeout(name, d)
	}
	for _, pl := range r.loops {
		if a, ok := pl.p.(Applier); ok {
			a.Apply(cfg)
		}
	}
	r.SetInterval(rc.Interval)
}

func (r *Runner) timeout(probe string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.timeouts[probe]; ok {
		return d
	}
	return DefaultProbeTimeout
}

// Run runs every probe on its own goroutine until ctx ends, then waits up
// to the shutdown grace for runs still in flight. It returns nil, or an
// error naming the probes whose runs did not return (they ignore
// cancellation; their goroutines are abandoned). Run may be called once.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("running probes: Run called twice")
	}
	var wg sync.WaitGroup
	for _, pl := range r.loops {
		wg.Go(func() { r.loop(ctx, pl) })
	}
	wg.Wait()
	return r.waitIdle(r.cfg.ShutdownGrace)
}

func (r *Runner) loop(ctx context.Context, pl *probeLoop) {
	timer := time.NewTimer(0) // first run at once
	defer timer.Stop()
	delay := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-pl.wake:
			// The interval changed: re-arm with it (backoff keeps its factor).
			pl.mu.Lock()
			n := pl.consecDown
			pl.mu.Unlock()
			timer.Reset(r.delay(n))
			continue
		case <-timer.C:
		}
		_, delay, _ = r.runOne(ctx, pl)
		if ctx.Err() != nil {
			return
		}
		timer.Reset(delay)
	}
}

// RunOnce runs every probe once, concurrently, and returns the recorded
// results sorted by probe name. It returns when every run has ended or was
// given up (timeout + grace). A probe whose previous run is still in
// flight is not run again: its latest stored result is returned.
func (r *Runner) RunOnce(ctx context.Context) []Result {
	out := make([]Result, len(r.loops))
	var wg sync.WaitGroup
	for i, pl := range r.loops {
		wg.Go(func() {
			res, _, ran := r.runOne(ctx, pl)
			if !ran {
				if last, ok := r.store.Get(pl.name); ok {
					res = last
				}
			}
			out[i] = res
		})
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b Result) int {
		switch {
		case a.Probe < b.Probe:
			return -1
		case a.Probe > b.Probe:
			return 1
		}
		return 0
	})
	return out
}

// Close waits up to the shutdown grace for in-flight runs, then closes
// every prober (releasing DB and Redis connections). Call it after Run
// returned.
func (r *Runner) Close() error {
	errs := []error{r.waitIdle(r.cfg.ShutdownGrace)}
	for _, pl := range r.loops {
		if err := pl.p.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing probe %s: %w", pl.name, err))
		}
	}
	return errors.Join(errs...)
}

// waitIdle polls until no run is in flight or grace passed.
func (r *Runner) waitIdle(grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for {
		var busy []string
		for _, pl := range r.loops {
			if pl.busy.Load() {
				busy = append(busy, pl.name)
			}
		}
		if len(busy) == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("stopping probes: runs still in flight after %v (they ignore cancellation): %v", grace, busy)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// delay is the wait before the next run after n Down results in a row:
// the interval doubled per failure beyond the first, capped, jittered.
func (r *Runner) delay(n int) time.Duration {
	iv := r.Interval()
	d := iv
	maxB := r.cfg.MaxBackoff
	if maxB <= 0 {
		maxB = max(iv, DefaultMaxBackoff)
	}
	for i := 1; i < n && d < maxB; i++ {
		d *= 2
	}
	d = min(d, max(maxB, iv))
	if j := r.cfg.Jitter; j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*rand.Float64()-1)))
	}
	return d
}

// runOne runs pl once unless a run is already in flight (ran = false). It
// waits for the run up to timeout + grace; past that the run is abandoned
// (it keeps its in-flight slot until it returns) and recorded as Down.
func (r *Runner) runOne(ctx context.Context, pl *probeLoop) (res Result, next time.Duration, ran bool) {
	if !pl.busy.CompareAndSwap(false, true) {
		r.tasks.Skip(pl.task)
		pl.mu.Lock()
		first := !pl.skipping
		pl.skipping = true
		pl.mu.Unlock()
		if first {
			r.log.Warn("probe_skipped", zap.String("probe", pl.name),
				zap.String("reason", "previous run still in flight"))
		}
		return Result{}, r.Interval(), false
	}
	pl.mu.Lock()
	pl.skipping = false
	pl.mu.Unlock()

	timeout := r.timeout(pl.name)
	limit := timeout + r.cfg.StuckGrace
	end := r.tasks.Begin(pl.task, limit)
	done := make(chan Result, 1)
	start := r.now()
	go func() { // owned: busy stays set until it returns; Run/Close wait for it
		defer pl.busy.Store(false)
		res, err := r.execute(ctx, pl, timeout)
		if err == nil && res.Duration > limit {
			err = fmt.Errorf("run took %v, past its %v deadline (probe ignores cancellation)", res.Duration.Round(time.Millisecond), limit)
		}
		end(err)
		done <- res
	}()

	wait := time.NewTimer(limit)
	defer wait.Stop()
	select {
	case res = <-done:
	case <-wait.C:
		res = Result{
			Probe:    pl.name,
			Status:   StatusDown,
			Error:    fmt.Sprintf("probe did not return within its %v timeout + %v grace (it ignores cancellation); ticks are skipped until it returns", timeout, r.cfg.StuckGrace),
			Started:  start,
			Duration: r.now().Sub(start),
		}
		r.log.Error("probe_stuck", zap.String("probe", pl.name), zap.Duration("timeout", timeout),
			zap.Duration("waited", res.Duration))
	case <-ctx.Done():
		return Result{Probe: pl.name, Status: StatusDown, Error: "probe cancelled: shutting down", Started: start}, 0, true
	}
	res, next = r.record(pl, res)
	return res, next, true
}

// execute runs one probe under its timeout, timing it and turning a panic
// into a Down result (and a task error).
func (r *Runner) execute(ctx context.Context, pl *probeLoop, timeout time.Duration) (res Result, taskErr error) {
	start := r.now()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			msg := RedactText(fmt.Sprintf("panic: %v", v))
			res = Result{Status: StatusDown, Error: msg}
			taskErr = errors.New(msg)
			r.log.Error("probe_panic", zap.String("probe", pl.name), zap.String("panic", msg),
				zap.String("stack", string(debug.Stack())))
		}
		res.Probe = pl.name
		res.Started = start
		res.Duration = r.now().Sub(start)
		if res.Status == "" {
			res.Status = StatusDown
			if res.Error == "" {
				res.Error = "probe returned no status"
			}
		}
		res.Error = RedactText(res.Error)
	}()
	return pl.p.Probe(pctx), nil
}

// record stores res with the loop's bookkeeping (consecutive downs, next
// run), logs status transitions and calls OnResult. It returns the stored
// result and the wait before the next run.
func (r *Runner) record(pl *probeLoop, res Result) (Result, time.Duration) {
	pl.mu.Lock()
	prev := pl.last
	if res.Status == StatusDown {
		pl.consecDown++
	} else {
		pl.consecDown = 0
	}
	n := pl.consecDown
	pl.last = res.Status
	pl.mu.Unlock()

	next := r.delay(n)
	res.ConsecutiveDown = n
	res.NextRun = r.now().Add(next)
	if n > 1 {
		res.Reasons = append(slices.Clone(res.Reasons),
			fmt.Sprintf("backing off: next attempt in %v after %d failures in a row", next.Round(time.Second), n))
	}
	r.store.Set(res)

	switch {
	case res.Status == StatusDown && prev != StatusDown:
		r.log.Warn("probe_failed", zap.String("probe", pl.name), zap.String("error", res.Error),
			zap.Duration("duration", res.Duration), zap.Duration("next_attempt_in", next))
	case res.Status != StatusDown && prev == StatusDown:
		r.log.Info("probe_recovered", zap.String("probe", pl.name), zap.String("status", string(res.Status)),
			zap.Duration("duration", res.Duration))
	case res.Status != prev && prev != "":
		r.log.Info("probe_status_changed", zap.String("probe", pl.name), zap.String("from", string(prev)),
			zap.String("to", string(res.Status)), zap.Strings("reasons", res.Reasons))
	}
	if r.OnResult != nil {
		r.OnResult(res)
	}
	return res, next
}
