package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/pulsegate/pulsegate/actions"
	"github.com/pulsegate/pulsegate/adminapi"
	"github.com/pulsegate/pulsegate/alerts"
	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/dashboard"
	"github.com/pulsegate/pulsegate/events"
	"github.com/pulsegate/pulsegate/figures"
	"github.com/pulsegate/pulsegate/health"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/membudget"
	"github.com/pulsegate/pulsegate/monitor"
	"github.com/pulsegate/pulsegate/probes"
	"github.com/pulsegate/pulsegate/proxy"
	"github.com/pulsegate/pulsegate/store"
)

func cmdServe(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	cfg, deps, code := loadConfigNoting("serve", args, environ, stderr)
	if cfg == nil {
		return code
	}
	log, level, err := newLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate: %v\n", err)
		return 1
	}
	defer log.Sync()
	for _, d := range deps {
		log.Warn("config_deprecated", zap.String("key", d.Key), zap.String("env", d.Env),
			zap.Strings("carried_to", d.Carried), zap.String("text", d.String()))
	}
	budget := applyRuntime(cfg, environ, log)
	a, err := build(cfg, log, level, dashboardHandler(cfg))
	if err == nil {
		a.runtime = &budget
		err = registerRuntimeMetrics(a.reg, budget, limitClientConns(a, cfg, budget))
		tuneGC(a, cfg, environ, budget)
	}
	if err != nil {
		log.Error("startup_failed", zap.Error(err))
		return 1
	}
	return a.serve(ctx, signals())
}

// signals delivers SIGTERM and SIGINT.
func signals() <-chan os.Signal {
	ch := make(chan os.Signal, 3)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	return ch
}

func newLogger(cfg *config.Config, out io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	level, err := zap.ParseAtomicLevel(cfg.Log.Level)
	if err != nil {
		return nil, level, fmt.Errorf("log.level (RESPONSIVENESS_LOG_LEVEL): %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder = zapcore.NewJSONEncoder(encCfg)
	if cfg.Log.Format == "console" {
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), level)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(out)))), level, nil
}

// app is a fully built sidecar: every component, both listeners bound.
type app struct {
	log    *zap.Logger
	holder *config.Holder
	reg    *prometheus.Registry
	st     store.Backend
	// audit is what the admin API records to: st, or the shared store's
	// Writer in front of it.
	audit store.Backend
	// link and writer: the shared store (store.dsn set), nil otherwise.
	link   *storeLink
	writer *store.Writer
	// fleetCfg is the fleet's live configuration (shared store only).
	fleetCfg *fleetConfig
	// fleetName and instance name this sidecar in the fleet.
	fleetName, instance string
	hb                  heartbeats
	started             time.Time
	proxy               *proxy.Proxy
	chain               *backpressure.Chain
	runner              *probes.Runner
	tasks               *probes.Tasks
	alerts              *alerts.Manager
	actions             *actions.Actions
	monitor             *monitor.Monitor
	health              *health.Evaluator
	hub                 *events.Hub
	api                 *adminapi.API
	proxySrv            *http.Server
	adminSrv            *http.Server
	proxyLn             net.Listener
	adminLn             net.Listener
	draining            atomic.Bool
	// loops are the background goroutines run alongside the servers.
	loops []func(context.Context) error
	// archive is the persisted trend history (nil without the dashboard,
	// or when <data_dir>/history.db cannot be used).
	archive *history.Archive
	// backfill copies the archive's rows from before store.dsn was set to
	// the shared store (history_backfill.go); nil without both.
	backfill *historyBackfill
	// historyReader answers the history endpoint (nil without the dashboard).
	historyReader *history.Reader
	// runtime is the memory budget and GOMAXPROCS applied at start (serve only).
	runtime *membudget.Budget
	// gcTuner lowers GOGC with many busy connections (nil: GOGC fixed).
	gcTuner *membudget.GCTuner
}

// build wires every component for cfg. dash may be nil.
func build(cfg *config.Config, log *zap.Logger, level zap.AtomicLevel, dash *dashboard.Dashboard) (*app, error) {
	log = log.With(zap.String("instance", cfg.InstanceName()), zap.String("fleet", cfg.Fleet))
	a := &app{log: log, holder: config.NewHolder(cfg), reg: prometheus.NewRegistry(), hub: events.New(), started: time.Now()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ok := false
	defer func() {
		if !ok {
			a.closeAll()
		}
	}()

	var err error
	if err = a.openStore(cfg, log.Named("store")); err != nil {
		return nil, err
	}
	cfg = a.startFleetConfig(cfg) // the stored fleet version over the files
	if a.proxy, err = proxy.New(cfg, log.Named("proxy"), a.reg); err != nil {
		return nil, err
	}
	a.reg.MustRegister(a.proxy.Stats().RateCollectors(time.Now)...)
	if a.chain, err = backpressure.New(cfg, log.Named("backpressure"), a.reg, a.proxy.Forwarder()); err != nil {
		return nil, fmt.Errorf("backpressure: %w", err)
	}

	// Probes beside the path: the container always, the DB and Redis when configured.
	a.tasks = probes.NewTasks(time.Now, probes.WithTaskLogger(log.Named("tasks")))
	a.tasks.SetEnabled(cfg.Responsiveness.TaskMonitoringEnabled)
	var probers []probes.Prober
	if cfg.Responsiveness.MonitoringEnabled {
		probers = append(probers, probes.NewSystemProbe(cfg, log.Named("system"), time.Now))
		if cfg.Database.DSN.IsSet() {
			p, err := probes.NewDatabase(cfg, log.Named("database"))
			if err != nil {
				return nil, fmt.Errorf("database probe: %w", err)
			}
			probers = append(probers, p)
		}
		if cfg.Redis.URL.IsSet() {
			// maxmemory 0 means "no limit": compare Redis with the
			// container's memory limit, as the system probe read it.
			p, err := probes.NewRedis(cfg, log.Named("redis"), probes.WithRedisMemoryLimit(a.memoryLimit))
			if err != nil {
				return nil, fmt.Errorf("redis probe: %w", err)
			}
			probers = append(probers, p)
		}
	}
	a.runner = probes.NewRunner(probes.RunnerConfigFrom(cfg), log.Named("probes"), a.reg, a.tasks, probers...)

	if a.alerts, err = alerts.New(cfg, log.Named("alerts"), a.reg, a.st, time.Now); err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	a.alerts.PublishTo(a.hub) // one broadcaster for alert events and ticks
	if err = a.useFleetAlerts(); err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	if a.actions, err = actions.New(cfg, log.Named("actions"), a.reg, a.tasks,
		actions.Deps{CloseIdleUpstream: a.proxy.CloseIdleConnections}); err != nil {
		return nil, fmt.Errorf("actions: %w", err)
	}
	a.health = health.New(cfg, time.Now)
	a.monitor = monitor.New(monitor.Deps{
		Log: log.Named("monitor"), Config: a.holder, Probes: a.runner.Store(), Tasks: a.tasks,
		Requests: a.proxy.Stats(), Pressure: a.chain, Alerts: a.alerts, Actions: actionsWithMode{a.actions, a.chain},
		Health: a.health, Hub: a.hub,
		Backpressure:  a.chain.State,
		UpstreamDials: a.proxy.UpstreamDials,
		Upstream:      a.proxy,
	})

	// A new probe result is evaluated at once, not at the next tick.
	a.runner.OnResult = func(probes.Result) { a.monitor.Poke() }
	// Each tick is a heartbeat for the shared store (handed to the Writer).
	if a.writer != nil {
		a.monitor.OnTick(a.heartbeat)
	}
	// The history ring behind the dashboard's trend graphs is fed by the tick.
	var dashHandler http.Handler
	var hist *history.Reader
	if dash != nil {
		a.monitor.OnTick(dash.History().Record)
		dashHandler = dash
		hist = a.openHistory(cfg, dash.History())
		a.historyReader = hist
	}
	a.api = adminapi.New(adminapi.Deps{
		Log: log.Named("admin"), Config: a.holder, Gatherer: a.reg, Requests: a.proxy.Stats(),
		Resources:    a.resources,
		Health:       a.verdict,
		Backpressure: a.chain.State,
		Judgements:   a.monitor.Judgements,
		Extra:        a.extraSections,
		Alerts:       alertsAdapter{a.alerts},
		Audit:        a.audit,
		Fleet:        a.fleetAPI(),
		FleetConfig:  a.fleetConfigAPI(),
		Events:       a.hub,
		Ready:        a.ready,
		Dashboard:    dashHandler,
		// The trend history (ring and archive) and its events.
		History: hist, HistoryEvents: a.st,
		FleetRoutes: a.fleetRoutes(), InstanceHistory: a.instanceHistoryAPI(),
	})

	// Live configuration: every part takes the new config after a
	// validated, atomic swap.
	a.holder.Subscribe(func(c *config.Config) {
		level.SetLevel(mustLevel(c.Log.Level, level.Level()))
		errs := []error{a.proxy.Apply(c), a.chain.Apply(c), a.alerts.Apply(c)}
		a.health.Apply(c)
		a.runner.Apply(c)
		a.actions.Apply(c)
		a.tasks.SetEnabled(c.Responsiveness.TaskMonitoringEnabled)
		a.tasks.SetCheckInterval(c.Responsiveness.TaskHealthCheckInterval.Duration())
		if err := errors.Join(errs...); err != nil {
			log.Error("config_apply_failed", zap.Error(err))
			return
		}
		log.Info("config_applied")
	})

	// Bind both listeners before anything runs, so a taken port fails now.
	if a.proxyLn, err = net.Listen("tcp", cfg.Proxy.ListenAddr); err != nil {
		return nil, fmt.Errorf("proxy.listen_addr (RESPONSIVENESS_LISTEN_ADDR): %w", err)
	}
	if a.adminLn, err = net.Listen("tcp", cfg.Admin.Addr); err != nil {
		return nil, fmt.Errorf("admin.addr (RESPONSIVENESS_ADMIN_ADDR): %w", err)
	}
	serverLog := zap.NewStdLog(log.Named("http"))
	a.proxySrv = &http.Server{
		Handler:           a.api.ProxyHandler(a.proxy.Instrument(a.chain)),
		ReadHeaderTimeout: cfg.Proxy.ReadHeaderTimeout.Duration(),
		IdleTimeout:       cfg.Proxy.ClientIdleTimeout.Duration(),
		MaxHeaderBytes:    cfg.Proxy.MaxHeaderBytes,
		ErrorLog:          serverLog,
	}
	a.adminSrv = &http.Server{
		Handler:           a.api.AdminHandler(a.adminLn.Addr().String()),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          serverLog,
	}
	a.loops = []func(context.Context) error{
		a.runner.Run,
		func(ctx context.Context) error {
			c, _ := a.holder.Get()
			return a.tasks.Run(ctx, c.Responsiveness.TaskHealthCheckInterval.Duration())
		},
		a.chain.Run,
		a.alerts.Run,
		a.actions.Run,
		a.monitor.Run,
		a.monitor.RunUpstreamCheck,
	}
	if a.archive != nil {
		a.loops = append(a.loops, func(ctx context.Context) error {
			return a.archive.Run(ctx, hist.Ring, historyFlushInterval, time.Now)
		})
	}
	if a.writer != nil {
		a.loops = append(a.loops, a.writer.Run)
	}
	if a.writer != nil && a.archive != nil {
		if a.backfill, err = newHistoryBackfill(a, a.reg); err != nil {
			return nil, fmt.Errorf("history backfill: %w", err)
		}
		a.loops = append(a.loops, a.backfill.run)
	}
	if a.fleetCfg != nil {
		a.loops = append(a.loops, a.fleetCfg.run)
	}
	ok = true
	return a, nil
}

func mustLevel(s string, fallback zapcore.Level) zapcore.Level {
	l, err := zapcore.ParseLevel(s)
	if err != nil {
		return fallback
	}
	return l
}

// memoryLimit is the container (or host) memory limit the system probe
// read last, for Redis with maxmemory 0.
func (a *app) memoryLimit() (uint64, string, bool) {
	if a.runner == nil {
		return 0, "", false
	}
	r, ok := a.runner.Store().Get(probes.SystemComponent)
	if !ok {
		return 0, "", false
	}
	d, ok := r.Details.(probes.SystemDetails)
	if !ok || d.Memory.LimitBytes == nil {
		return 0, "", false
	}
	return *d.Memory.LimitBytes, "container_" + d.Memory.LimitSource, true
}

// resources reads the latest probe figures for the performance JSON.
func (a *app) resources() adminapi.Resources {
	f := a.runner.Store().Figures()
	get := func(k figures.Name) *float64 {
		if v, ok := f[string(k)]; ok {
			return &v
		}
		return nil
	}
	return adminapi.Resources{MemoryUsage: get(figures.MemoryUsage), CPUUsage: get(figures.CPUUsage),
		ConnectionPoolUtilization: get(figures.ConnectionPoolUtilization), DBLatency: get(figures.DBLatency)}
}

// extraSections adds the probes and background tasks to the performance JSON.
func (a *app) extraSections() map[string]any {
	out := map[string]any{
		"probes":           a.runner.Store().Snapshot(),
		"background_tasks": a.tasks.Snapshot(),
		"actions":          a.actions.Snapshot(),
	}
	if a.runtime != nil {
		out["runtime"] = runtimeSection(*a.runtime, a.gcTuner)
	}
	if a.writer != nil {
		out["store"] = a.storeSection()
	}
	return out
}

// ready is /readyz: not while draining, and not while the app has been
// failing to answer.
func (a *app) ready() (bool, string) {
	if a.draining.Load() {
		return false, "draining"
	}
	if !a.proxy.UpstreamSeen() {
		return false, "the app has not answered yet (RESPONSIVENESS_UPSTREAM_URL)"
	}
	if n := a.proxy.ConsecutiveUpstreamFailures(); n >= upstreamFailuresNotReady {
		return false, fmt.Sprintf("the app failed %d requests in a row", n)
	}
	if a.actions.Overloaded() {
		return false, "sustained overload (actions.readiness_on_overload)"
	}
	return true, ""
}

// actionsWithMode tells the actions whether backpressure is shedding.
type actionsWithMode struct {
	*actions.Actions
	chain *backpressure.Chain
}

// Observe adds the mode to a copy of the levels: the tick's own levels
// (published to the API and the dashboard) stay the figures' levels.
func (x actionsWithMode) Observe(figs map[string]float64, levels map[string]string) {
	lv := maps.Clone(levels)
	if lv == nil {
		lv = map[string]string{}
	}
	lv["backpressure"] = x.chain.State().Mode
	x.Actions.Observe(figs, lv)
}

// upstreamFailuresNotReady: this many consecutive failures to reach the
// app (refused, reset, timeout) make /readyz fail until one succeeds.
const upstreamFailuresNotReady = 5

// serve runs until a signal, then drains: /readyz fails at once, the proxy
// keeps serving for the drain delay, then Shutdown with a deadline. A
// second signal cuts the drain short (1 s for in-flight requests); a third
// exits at once.
func (a *app) serve(ctx context.Context, sigs <-chan os.Signal) int {
	cfg, _ := a.holder.Get()
	a.log.Info("listening",
		zap.String("proxy_addr", a.proxyLn.Addr().String()),
		zap.String("admin_addr", a.adminLn.Addr().String()),
		zap.String("upstream", config.RedactURL(cfg.Proxy.UpstreamURL)),
		zap.String("version", versionString()))

	loopCtx, stopLoops := context.WithCancel(context.Background())
	defer stopLoops()
	var g errgroup.Group
	failed := make(chan error, len(a.loops)+2)
	for _, loop := range a.loops {
		g.Go(func() error {
			if err := loop(loopCtx); err != nil && !errors.Is(err, context.Canceled) {
				failed <- err
				return err
			}
			return nil
		})
	}
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{a.proxySrv, a.proxyLn}, {a.adminSrv, a.adminLn}} {
		g.Go(func() error {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				failed <- err
				return err
			}
			return nil
		})
	}

	exit := 0
	select {
	case sig := <-sigs:
		a.log.Info("draining", zap.String("signal", sig.String()), zap.Float64("drain_delay", float64(cfg.Proxy.DrainDelay)))
	case <-ctx.Done():
		a.log.Info("draining", zap.String("signal", "context"), zap.Float64("drain_delay", float64(cfg.Proxy.DrainDelay)))
	case err := <-failed:
		a.log.Error("component_failed", zap.Error(err))
		exit = 1
	}
	start := time.Now()
	a.draining.Store(true)
	shutdownTimeout := cfg.Proxy.ShutdownTimeout.Duration()
	if exit == 0 {
		drain := time.NewTimer(cfg.Proxy.DrainDelay.Duration())
		select {
		case <-drain.C:
		case sig := <-sigs:
			a.log.Warn("drain_cut_short", zap.String("signal", sig.String()))
			shutdownTimeout = time.Second
		}
		drain.Stop()
	}
	go func() { // a signal during Shutdown ends everything at once
		select {
		case sig := <-sigs:
			a.log.Warn("forced_exit", zap.String("signal", sig.String()))
			a.log.Sync()
			os.Exit(2)
		case <-loopCtx.Done():
		}
	}()
	a.hub.Close() // live streams end so Shutdown need not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := a.proxySrv.Shutdown(sctx); err != nil {
		a.log.Warn("shutdown_deadline_exceeded", zap.String("listener", "proxy"), zap.Error(err))
		a.proxySrv.Close()
	}
	a.proxy.CloseHijacked()
	if err := a.adminSrv.Shutdown(sctx); err != nil {
		a.adminSrv.Close()
	}
	stopLoops()
	g.Wait()
	a.closeAll()
	a.log.Info("stopped", zap.Float64("drain_seconds", time.Since(start).Seconds()))
	return exit
}

// closeAll releases probes' connections and the store.
func (a *app) closeAll() {
	if a.runner != nil {
		a.runner.Close()
	}
	if a.proxy != nil {
		a.proxy.CloseIdleConnections()
	}
	if a.st != nil && (a.link == nil || a.st != store.Backend(a.link.sql.Load())) {
		a.st.Close()
	}
	if a.archive != nil {
		a.archive.Close()
	}
	if a.link != nil {
		a.link.Close()
	}
	for _, ln := range []net.Listener{a.proxyLn, a.adminLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// alertsAdapter gives the admin API its view of the alert manager.
type alertsAdapter struct{ m *alerts.Manager }

func (x alertsAdapter) List(state, severity string, limit int) any {
	out := x.m.List(alerts.Filter{State: state, Severity: severity, Limit: limit})
	if out == nil {
		return []alerts.Alert{}
	}
	return out
}

func (x alertsAdapter) Acknowledge(ids []string, note, actor string) (any, error) {
	res, err := x.m.Acknowledge(ids, note, actor)
	switch {
	case errors.Is(err, alerts.ErrUnknownAlert):
		return nil, fmt.Errorf("%w: %v", adminapi.ErrUnknownAlert, err)
	case errors.Is(err, alerts.ErrResolved):
		return nil, fmt.Errorf("%w: %v", adminapi.ErrAlertConflict, err)
	case errors.Is(err, store.ErrQueueFull):
		return nil, fmt.Errorf("%w: %v", adminapi.ErrAlertsUnavailable, err)
	}
	return res, err
}
