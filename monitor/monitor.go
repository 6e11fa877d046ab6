// Package monitor is the one place where measurements turn into
// decisions. Every tick it reads the probes' latest results and the proxy's
// request window, then:
//
//	figures + levels → health verdict (with hysteresis)
//	                 → alerts (rules, lifecycle, channels)
//	                 → backpressure pressure signals (shedding)
//	                 → automated actions (cleanup hook, recycle, TTL repair)
//	                 → a "snapshot" event for the dashboard and tick hooks
//
// It does no I/O of its own: probes run on their own loops, and every
// reader (API, metrics, dashboard) reads what the last tick published.
package monitor

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/alerts"
	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/events"
	"github.com/pulsegate/pulsegate/figures"
	"github.com/pulsegate/pulsegate/health"
	"github.com/pulsegate/pulsegate/probes"
	"github.com/pulsegate/pulsegate/proxy"
)

// Pressure receives shedding signals (backpressure.Chain).
type Pressure interface {
	SetPressure(signal, level string)
	QueueDepth() int
}

// AlertSink evaluates alert rules (alerts.Manager).
type AlertSink interface {
	Evaluate(now time.Time, in alerts.Input)
	Active() []alerts.Alert
}

// ActionSink runs automated responses (actions.Actions).
type ActionSink interface {
	Observe(figures map[string]float64, levels map[string]string)
}

// Deps are what the monitor reads and drives. Nil sinks are skipped.
type Deps struct {
	Log      *zap.Logger
	Config   *config.Holder
	Probes   *probes.Store
	Tasks    *probes.Tasks
	Requests *proxy.Stats
	Pressure Pressure
	Alerts   AlertSink
	Actions  ActionSink
	Health   *health.Evaluator
	Hub      *events.Hub
	// Backpressure returns the limiter state for snapshots; may be nil.
	Backpressure func() backpressure.State
	// UpstreamDials counts connections opened to the app (churn); may be nil.
	UpstreamDials func() uint64
	// Upstream, when set, is checked by RunUpstreamCheck until the app has
	// been seen (readiness before the first request); may be nil.
	Upstream interface {
		NeedsUpstreamCheck() bool
		CheckUpstream(ctx context.Context) error
	}
	Now func() time.Time
}

// Tick is what one evaluation saw and decided.
type Tick struct {
	Time     time.Time          `json:"time"`
	Figures  map[string]float64 `json:"figures"`
	Levels   map[string]string  `json:"levels"`
	Verdict  health.Verdict     `json:"health"`
	Requests proxy.WindowStats  `json:"requests"`
	// Backpressure is the limiter state, if any.
	Backpressure *backpressure.State `json:"backpressure,omitempty"`
	// Tasks is background task health.
	Tasks []probes.TaskStatus `json:"tasks"`
	// Judgements are every judged figure with its level and thresholds
	// (the dashboard colours from these, never re-judging).
	Judgements map[figures.Name]figures.Judgement `json:"judgements"`
	// judged is what the judgements were computed from, so that a reader
	// can judge the same measurements with a newer configuration.
	judged figures.Inputs
}

// Monitor runs the evaluation loop. Build it with New.
type Monitor struct {
	d     Deps
	last  atomic.Pointer[Tick]
	mu    sync.Mutex // serialises Tick; guards the fields below
	hooks []func(*Tick)
	// the previous tick's dial count, for upstream_dials_per_sec
	prevDials uint64
	prevAt    time.Time
	poke      chan struct{}
}

// New returns a Monitor over d.
func New(d Deps) *Monitor {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	return &Monitor{d: d, poke: make(chan struct{}, 1)}
}

// Poke asks Run for a tick now, without waiting for the interval: a probe
// that just reported a database hang should reach the verdict, alerts and
// shedding at once. It never blocks; pokes during a tick coalesce.
func (m *Monitor) Poke() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// OnTick registers fn to run after every tick (e.g. the dashboard's
// history ring). Register before Run.
func (m *Monitor) OnTick(fn func(*Tick)) { m.hooks = append(m.hooks, fn) }

// Last returns the latest tick, or nil before the first.
func (m *Monitor) Last() *Tick { return m.last.Load() }

// Verdict returns the latest tick's health verdict. Before the first tick
// it is the evaluator's verdict of nothing measured yet: reading it never
// evaluates alerts, shedding or actions.
func (m *Monitor) Verdict() health.Verdict {
	if t := m.last.Load(); t != nil {
		return t.Verdict
	}
	if m.d.Health == nil {
		return health.Verdict{}
	}
	return m.d.Health.Preview(health.Inputs{})
}

// Interval is how often Run ticks: the monitoring interval, but at least
// every 5 s so that request-side signals (error rate, response time)
// reach shedding and alerts quickly and the dashboard stays live.
func Interval(cfg *config.Config) time.Duration {
	d := cfg.Responsiveness.MonitoringInterval.Duration()
	if d <= 0 || d > 5*time.Second {
		d = 5 * time.Second
	}
	return d
}

// Run ticks until ctx ends: every Interval, and at once when poked.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.Tick()
			cfg, _ := m.d.Config.Get()
			t.Reset(Interval(cfg))
		case <-m.poke:
			m.Tick()
		}
	}
}

// upstreamCheckTimeout bounds one readiness check of the app.
const upstreamCheckTimeout = 2 * time.Second

// RunUpstreamCheck checks the app every Interval until it has been seen
// (readiness before the first request), on its own loop: the tick does no
// I/O. It returns when ctx ends; without Deps.Upstream it returns at once.
func (m *Monitor) RunUpstreamCheck(ctx context.Context) error {
	u := m.d.Upstream
	if u == nil {
		return nil
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if u.NeedsUpstreamCheck() {
			cctx, cancel := context.WithTimeout(ctx, upstreamCheckTimeout)
			if err := u.CheckUpstream(cctx); err != nil && ctx.Err() == nil {
				m.d.Log.Warn("upstream_unreachable", zap.String("error", err.Error()))
			}
			cancel()
		}
		cfg, _ := m.d.Config.Get()
		t.Reset(Interval(cfg))
	}
}

// minRequestsForRates: below this many requests in the window, error rate
// and response time are unknown (one failed request of one is not a 100 %
// error rate worth shedding for).
const minRequestsForRates = 10

// Tick evaluates once, synchronously, and publishes the result.
func (m *Monitor) Tick() *Tick {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.d.Now()
	cfg, _ := m.d.Config.Get()

	var probeResults map[string]probes.Result
	figs := map[string]float64{}
	if m.d.Probes != nil {
		probeResults = m.d.Probes.Snapshot()
		for k, v := range m.d.Probes.Figures() {
			figs[k] = v
		}
	}
	tick := &Tick{Time: now}
	sig := health.RequestSignals{}
	if m.d.Requests != nil {
		w := m.d.Requests.Window(now, "1m")
		tick.Requests = w
		sig.Valid = true
		sig.Requests = int64(w.Requests)
		sig.ErrorRate = w.ErrorRate
		sig.AppErrorRate = w.AppErrorRate
		sig.ThroughputRPS = w.ThroughputRPS
		figs[string(figures.ThroughputRPS)] = w.ThroughputRPS
		if w.AvgResponseTime != nil {
			sig.AvgResponseTime = *w.AvgResponseTime
		}
		if w.P95 != nil {
			sig.P95 = *w.P95
		}
		if w.Requests >= minRequestsForRates {
			figs[string(figures.ErrorRate)] = w.ErrorRate
			figs[string(figures.AppErrorRate)] = w.AppErrorRate
			figs[string(figures.RejectionRate)] = w.RejectionRate
			if w.AvgResponseTime != nil {
				figs[string(figures.AvgResponseTime)] = *w.AvgResponseTime
				figs[string(figures.P95ResponseTime)] = *w.P95
			}
			if w.Apdex != nil {
				figs[string(figures.Apdex)] = *w.Apdex
			}
		}
	}
	if m.d.UpstreamDials != nil {
		n := m.d.UpstreamDials()
		if !m.prevAt.IsZero() && now.After(m.prevAt) && n >= m.prevDials {
			figs["upstream_dials_per_sec"] = float64(n-m.prevDials) / now.Sub(m.prevAt).Seconds()
		}
		m.prevDials, m.prevAt = n, now
	}
	if m.d.Pressure != nil {
		q := m.d.Pressure.QueueDepth()
		sig.QueueDepth = q
		figs[string(figures.QueueDepth)] = float64(q)
	}
	var tasks health.TaskSignals
	if m.d.Tasks != nil {
		tasks = health.TaskSignalsFrom(m.d.Tasks, now)
		tick.Tasks = tasks.Tasks
	}
	tick.Figures = figs
	tick.Levels = Levels(cfg, figs)
	tick.judged = judgeInputs(cfg, figs, probeResults)
	tick.Judgements = figures.JudgeAll(cfg, tick.judged)

	if m.d.Alerts != nil {
		in := alerts.Input{Figures: figs, ProbeStatus: map[string]string{}, Tasks: map[string]string{}}
		for name, r := range probeResults {
			in.ProbeStatus[name] = string(r.Status)
		}
		for _, t := range tasks.Tasks {
			switch {
			case t.Stuck:
				in.Tasks[t.Name] = "stuck"
			case t.ConsecutiveFailures >= probes.TaskCriticalConsecutiveFailures:
				in.Tasks[t.Name] = "failing"
			default:
				in.Tasks[t.Name] = "ok"
			}
		}
		m.d.Alerts.Evaluate(now, in)
	}
	var active []any
	if m.d.Alerts != nil {
		for _, a := range m.d.Alerts.Active() {
			active = append(active, a)
		}
	}
	if m.d.Health != nil {
		tick.Verdict = m.d.Health.Evaluate(health.Inputs{Probes: probeResults, Tasks: tasks, Request: sig, Alerts: active})
	}
	if m.d.Pressure != nil {
		// Only the configured shed signals may shed; the others are
		// reported as ok to the governor (they still alert).
		shed := map[string]bool{}
		for _, s := range cfg.Backpressure.ShedSignals {
			shed[s] = true
		}
		for _, s := range config.ShedSignals() {
			lvl := tick.Levels[s]
			if !shed[s] {
				lvl = "ok"
			}
			m.d.Pressure.SetPressure(s, lvl)
		}
	}
	if m.d.Actions != nil {
		m.d.Actions.Observe(figs, tick.Levels)
	}
	if m.d.Backpressure != nil {
		bp := m.d.Backpressure()
		tick.Backpressure = &bp
	}
	m.last.Store(tick)
	for _, h := range m.hooks {
		h(tick)
	}
	if m.d.Hub != nil {
		m.d.Hub.Publish(events.Event{Type: "snapshot", Data: tick})
	}
	return tick
}

// Levels maps figures to signal levels ("ok", "warning", "critical") by
// the configured thresholds (figures.LevelOf). A signal whose figure is
// unknown is "ok": nothing is shed or cleaned up on a guess.
func Levels(cfg *config.Config, f map[string]float64) map[string]string {
	level := func(name figures.Name) string {
		v, ok := f[string(name)]
		if !ok {
			return string(figures.OK)
		}
		return string(figures.LevelOf(cfg, name, v))
	}
	lv := map[string]string{
		config.ShedMemory:        level(figures.MemoryUsage),
		config.ShedCPU:           level(figures.CPUUsage),
		"disk":                   level(figures.DiskUsage),
		config.ShedDBConnections: level(figures.ConnectionPoolUtilization),
		"db_query":               level(figures.DBLatency),
		config.ShedErrorRate:     level(figures.AppErrorRate), // shedding never sheds for its own rejections
		config.ShedResponseTime:  level(figures.AvgResponseTime),
		"queue":                  level(figures.QueueDepth),
		"job_queue":              level(figures.JobQueueDepth),
		"redis_memory":           level(figures.RedisMemoryUsage),
		config.ShedRedisEvicting: "ok",
	}
	// Redis evicting keys means it is full and throwing data (sessions)
	// away: a warning; critical when it is also at its memory limit.
	if v, ok := f["redis_evicted_per_sec"]; ok && v > 0 && !math.IsNaN(v) {
		lv[config.ShedRedisEvicting] = "warning"
		if lv["redis_memory"] == "critical" {
			lv[config.ShedRedisEvicting] = "critical"
		}
	}
	return lv
}

// judgeInputs are the tick's measurements for figures.JudgeAll: the
// figures, the sources that are not configured (their figures are
// disabled, with the setting that turns them on) and memory's qualifier.
func judgeInputs(cfg *config.Config, figs map[string]float64, results map[string]probes.Result) figures.Inputs {
	in := figures.Inputs{Values: figs, Off: map[figures.Source]string{}, Of: map[figures.Name]string{}}
	if !cfg.Responsiveness.MonitoringEnabled {
		why := "monitoring is off: set RESPONSIVENESS_MONITORING_ENABLED=true (restart required)"
		in.Off[figures.System], in.Off[figures.Database], in.Off[figures.Redis] = why, why, why
	}
	if !cfg.Database.DSN.IsSet() {
		in.Off[figures.Database] = "set RESPONSIVENESS_DB_DSN to measure the database"
	}
	if !cfg.Redis.URL.IsSet() {
		in.Off[figures.Redis] = "set RESPONSIVENESS_REDIS_URL to measure Redis"
	}
	if d, ok := results[probes.SystemComponent].Details.(probes.SystemDetails); ok {
		switch d.Memory.LimitSource {
		case probes.LimitSourceCgroup:
			in.Of[figures.MemoryUsage] = "of the container limit"
		case "":
		default:
			in.Of[figures.MemoryUsage] = "of host memory"
		}
	}
	return in
}

// Judgements judges the latest tick's measurements with cfg (the current
// configuration: a threshold changed since the tick shows at once). Before
// the first tick every figure is not measured yet.
func (m *Monitor) Judgements(cfg *config.Config) map[figures.Name]figures.Judgement {
	if t := m.last.Load(); t != nil {
		return figures.JudgeAll(cfg, t.judged)
	}
	return figures.JudgeAll(cfg, judgeInputs(cfg, nil, nil))
}
