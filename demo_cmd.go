package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsegate/pulsegate/demo"
	"github.com/pulsegate/pulsegate/figures"
	"github.com/pulsegate/pulsegate/monitor"
)

// demoDefaults make the demo lively: a short monitoring interval, a low
// slow-request threshold and a small concurrency limit that the bursts
// overflow. Any RESPONSIVENESS_* variable the user sets wins.
var demoDefaults = []string{
	"RESPONSIVENESS_LISTEN_ADDR=127.0.0.1:8080",
	"RESPONSIVENESS_ADMIN_ADDR=127.0.0.1:9901",
	"RESPONSIVENESS_SLOW_REQUEST_THRESHOLD=1",
	"RESPONSIVENESS_RESPONSE_TIME_WARNING_THRESHOLD=0.5",
	"RESPONSIVENESS_RESPONSE_TIME_CRITICAL_THRESHOLD=1.5",
	"RESPONSIVENESS_MAX_CONCURRENCY=12",
	"RESPONSIVENESS_QUEUE_WARNING_THRESHOLD=4",
	"RESPONSIVENESS_QUEUE_CRITICAL_THRESHOLD=16",
	"RESPONSIVENESS_BACKPRESSURE_QUEUE_TIMEOUT=3",
	"RESPONSIVENESS_PROXY_DRAIN_DELAY=0",
	"RESPONSIVENESS_PROXY_SHUTDOWN_TIMEOUT=5",
	"RESPONSIVENESS_APP_VERSION_HEADER=" + demo.VersionHeader,
}

// cmdDemo runs the sample app, the sidecar in front of it and traffic
// through it, and prints where to look. With real services found (MySQL or
// MariaDB, PostgreSQL, Redis) the sample app uses its own database and key
// prefix on them and misbehaves on a schedule; everything the demo created
// there is removed when it stops.
func cmdDemo(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 0, "stop after this long (0 = until Ctrl-C)")
	rps := fs.Int("rps", 15, "steady requests per second")
	noServices := fs.Bool("no-services", false, "use no database or Redis, even when found")
	dbChoice := fs.String("db", "auto", "database to use when both are found: auto (MySQL/MariaDB first), mysql or postgres")
	speed := fs.Float64("speed", 1, "play the sample app's schedule this many times faster (tests use it)")
	releaseAfter := fs.Duration("release-after", 5*time.Minute, "roll the sample app out from release "+demo.ReleaseOld+" to "+demo.ReleaseNew+" (slower /api/search) after this long (0 = never)")
	mysqlAddr := fs.String("mysql-addr", "127.0.0.1:3306", "where to look for MySQL/MariaDB (user root, no password) when RESPONSIVENESS_DB_DSN is unset")
	pgAddr := fs.String("postgres-addr", "127.0.0.1:5432", "where to look for PostgreSQL (user postgres or $USER, trust) when RESPONSIVENESS_DB_DSN is unset")
	redisAddr := fs.String("redis-addr", "127.0.0.1:6379", "where to look for Redis when RESPONSIVENESS_REDIS_URL is unset")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch *dbChoice {
	case "auto", demo.EngineMySQL, demo.EnginePostgres:
	default:
		fmt.Fprintf(stderr, "pulsegate demo: --db must be auto, mysql or postgres, got %q\n", *dbChoice)
		return 2
	}
	if !(*speed >= 0.1 && *speed <= 100) {
		fmt.Fprintf(stderr, "pulsegate demo: --speed must be between 0.1 and 100, got %v\n", *speed)
		return 2
	}
	scaled := func(d time.Duration) time.Duration { return time.Duration(float64(d) / *speed) }
	// Signals are ours from here on, so Ctrl-C during the setup still
	// removes what the setup created. The first stops the demo (serve
	// drains); a second while it stops is answered with what it is doing;
	// a third quits at once (the next run removes any leftovers).
	sigs := make(chan os.Signal, 1)
	stopped := make(chan struct{})
	defer close(stopped)
	go forwardSignals(signals(), sigs, stopped, stderr)

	var svc *demo.Services
	if !*noServices {
		svc = demo.FindServices(ctx, demo.ServiceOptions{
			DBDSN: lookupEnv(environ, "RESPONSIVENESS_DB_DSN"), RedisURL: lookupEnv(environ, "RESPONSIVENESS_REDIS_URL"),
			MySQLAddr: *mysqlAddr, PostgresAddr: *pgAddr, RedisAddr: *redisAddr, DB: *dbChoice,
		})
		svc.Setup(ctx)
		if svc.DB != nil {
			// Idle pooled connections close well before the leak age, so
			// the only leak suspect from the app is the one it leaks.
			svc.DB.App().SetConnMaxIdleTime(scaled(demo.LeakAge) / 3)
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := svc.Close(cctx); err != nil {
				fmt.Fprintf(stderr, "pulsegate demo: could not remove everything it created: %v\n", err)
				return
			}
			var gone []string
			if svc.DB != nil {
				gone = append(gone, "database and user "+demo.Name)
			}
			if svc.Redis != nil {
				gone = append(gone, "Redis keys "+demo.RedisPrefix+"*")
			}
			if len(gone) > 0 {
				fmt.Fprintf(stdout, "removed what the demo created: %s\n", strings.Join(gone, ", "))
			}
		}()
	}

	app := demo.NewApp()
	app.UseServices(svc)
	app.SetVersion(demo.ReleaseOld)
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate demo: %v\n", err)
		return 1
	}
	upSrv := &http.Server{Handler: app, ReadHeaderTimeout: 5 * time.Second}
	go upSrv.Serve(upLn)
	defer upSrv.Close()
	upURL := "http://" + upLn.Addr().String()

	dataDir, err := os.MkdirTemp("", "pulsegate-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate demo: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dataDir)

	// An admin token, so the sign-in link works as it would in production.
	token, ownToken := lookupEnv(environ, "RESPONSIVENESS_ADMIN_TOKEN"), true
	if token == "" {
		b := make([]byte, 24)
		rand.Read(b)
		token, ownToken = hex.EncodeToString(b), false
	}
	defaults := append(append([]string(nil), demoDefaults...),
		"RESPONSIVENESS_MONITORING_INTERVAL="+seconds(max(time.Second, scaled(5*time.Second))),
		"RESPONSIVENESS_UPSTREAM_URL="+upURL,
		"RESPONSIVENESS_DATA_DIR="+dataDir,
		"RESPONSIVENESS_ACTIONS_CLEANUP_URL="+upURL+"/internal/cleanup",
		"RESPONSIVENESS_ADMIN_TOKEN="+token,
	)
	env := environ
	if svc != nil {
		var forced []string
		defaults, forced = servicesEnv(defaults, svc, scaled)
		env = withOverrides(env, forced)
	}
	env = withDefaults(env, defaults)
	cfg, code := loadConfig("demo", nil, env, stderr)
	if cfg == nil {
		return code
	}
	log, level, err := newLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate demo: %v\n", err)
		return 1
	}
	defer log.Sync()
	a, err := build(cfg, log, level, dashboardHandler(cfg))
	if err != nil {
		fmt.Fprintf(stderr, "pulsegate demo: %v\n(set RESPONSIVENESS_LISTEN_ADDR / RESPONSIVENESS_ADMIN_ADDR to free ports if these are taken)\n", err)
		return 1
	}
	proxyURL := "http://" + a.proxyLn.Addr().String()
	adminURL := "http://" + a.adminLn.Addr().String()
	shownToken := token
	if ownToken {
		shownToken = "$RESPONSIVENESS_ADMIN_TOKEN"
	}
	fmt.Fprintf(stdout, `pulsegate demo is running (Ctrl-C to stop)

  sign in to the dashboard (one click)  %[2]s/admin/responsiveness/login#token=%[4]s&name=%[5]s
  dashboard                             %[2]s/admin/responsiveness/
  the sample app, through pulsegate     %[1]s/
  the app's admin page with widgets     %[1]s/admin/users
  performance JSON                      curl -H 'Authorization: Bearer %[4]s' %[2]s/admin/api/performance/responsiveness
  health JSON                           %[2]s/admin/api/health/responsiveness (same header)
  alerts JSON                           %[2]s/admin/api/alerts/responsiveness (same header)
  Prometheus metrics                    %[2]s/metrics
  status                                go run . status --admin %[2]s --token %[4]s

Traffic: %[3]d req/s, with a burst every minute (slow reports fill the
queue, the flaky route fails): watch slow requests, queueing, 503s and alerts.

`, proxyURL, adminURL, *rps, shownToken, url.QueryEscape(demoViewerName(env)))
	if svc != nil {
		printServices(stdout, svc, *speed)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	traffic := &demo.Traffic{Base: proxyURL, App: app, RPS: *rps, Period: scaled(time.Minute), BurstFor: scaled(15 * time.Second),
		Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	scenario := &demo.Scenario{App: app, Speed: *speed, Out: stdout}
	var wg sync.WaitGroup
	if *releaseAfter > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTimer(scaled(*releaseAfter))
			defer t.Stop()
			select {
			case <-t.C:
				app.SetVersion(demo.ReleaseNew)
				fmt.Fprintf(stdout, "%s  app: release %s rolled out (was %s): /api/search is slower; the route page compares the two\n",
					time.Now().Format("15:04:05"), demo.ReleaseNew, demo.ReleaseOld)
			case <-ctx.Done():
			}
		}()
	}
	wg.Add(3)
	go func() { defer wg.Done(); traffic.Run(ctx) }()
	go func() { defer wg.Done(); scenario.Run(ctx) }()
	go func() {
		defer wg.Done()
		printSummaries(ctx, stdout, a.monitor, max(time.Second, scaled(10*time.Second)))
	}()
	exit := a.serve(ctx, sigs)
	cancel()
	wg.Wait()
	dry := ""
	if c, _ := a.holder.Get(); c.Actions.DryRun {
		dry = " (automated actions ran in dry-run: RESPONSIVENESS_ACTIONS_DRY_RUN=false lets them act)"
	}
	fmt.Fprintf(stdout, "demo stopped: %d requests sent, cleanup hook called %d times%s\n", traffic.Sent(), app.Cleanups(), dry)
	return exit
}

// forwardSignals passes the first signal on to serve; a second is
// answered with a note (the demo is removing what it created), a third
// exits at once. It returns when stopped is closed.
func forwardSignals(in <-chan os.Signal, out chan<- os.Signal, stopped <-chan struct{}, stderr io.Writer) {
	n := 0
	for {
		select {
		case <-stopped:
			return
		case sig := <-in:
			n++
			switch n {
			case 1:
				out <- sig
			case 2:
				fmt.Fprintln(stderr, "pulsegate demo: stopping and removing what it created; press Ctrl-C once more to quit at once (the next run removes leftovers)")
			default:
				os.Exit(2)
			}
		}
	}
}

// lookupEnv returns the last value of key in environ ("" when unset or empty).
func lookupEnv(environ []string, key string) string {
	v := ""
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

// servicesEnv returns the configuration that points pulsegate's probes at
// what the demo created: defaults (a user's RESPONSIVENESS_* wins) and
// forced settings (they decide what the probes and actions may touch, so
// nothing outside the demo's database and keys is ever written).
func servicesEnv(defaults []string, svc *demo.Services, scaled func(time.Duration) time.Duration) (def, forced []string) {
	def = defaults
	if svc.DB != nil {
		forced = append(forced, "RESPONSIVENESS_DB_DSN="+svc.DB.ProbeDSN())
		def = append(def,
			"RESPONSIVENESS_DATABASE_LEAK_AGE="+seconds(scaled(demo.LeakAge)),
			"RESPONSIVENESS_DATABASE_IDLE_IN_TRANSACTION_WARNING="+seconds(scaled(demo.IdleInTransactionWarning)),
			"RESPONSIVENESS_DB_QUERY_WARNING_THRESHOLD="+seconds(demo.DBQueryWarning),
			"RESPONSIVENESS_DB_QUERY_CRITICAL_THRESHOLD="+seconds(demo.DBQueryCritical),
			"RESPONSIVENESS_DATABASE_APP_USER="+demo.Name,
			"RESPONSIVENESS_DATABASE_APP_POOL_SIZE="+strconv.Itoa(demo.AppPoolSize),
		)
	}
	if svc.Redis != nil {
		forced = append(forced,
			"RESPONSIVENESS_REDIS_URL="+svc.Redis.URL,
			"RESPONSIVENESS_REDIS_SESSION_PREFIX="+demo.SessionPrefix,
			"RESPONSIVENESS_REDIS_QUEUE_KEYS="+demo.QueueKey,
		)
		def = append(def,
			"RESPONSIVENESS_ACTIONS_SESSION_TTL_REPAIR=true",
			"RESPONSIVENESS_ACTIONS_DRY_RUN=true",
			"RESPONSIVENESS_CLEANUP_INTERVAL="+seconds(scaled(time.Minute)),
			"RESPONSIVENESS_ACTIONS_COOLDOWN="+seconds(scaled(time.Minute)),
		)
	}
	return def, forced
}

// withOverrides replaces (or adds) the variables of forced in environ.
func withOverrides(environ, forced []string) []string {
	drop := map[string]bool{}
	for _, kv := range forced {
		k, _, _ := strings.Cut(kv, "=")
		drop[k] = true
	}
	var out []string
	for _, kv := range environ {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			out = append(out, kv)
		}
	}
	return append(out, forced...)
}

// printServices says which services the demo found, which it uses, how to
// enable the others, and what the sample app does with them.
func printServices(w io.Writer, svc *demo.Services, speed float64) {
	fmt.Fprintln(w, "Services (the demo uses what it finds; --no-services to use none):")
	for _, f := range svc.Findings {
		name := f.Service
		if f.Version != "" {
			name = f.Version
		}
		switch {
		case f.Used && f.Service == "Redis":
			fmt.Fprintf(w, "  used       %-22s %-16s keys %s* (sessions, job queue)\n", name, f.Addr, demo.RedisPrefix)
		case f.Used:
			fmt.Fprintf(w, "  used       %-22s %-16s database %s, user %s (database probe)\n", name, f.Addr, demo.Name, demo.Name)
		case f.Found:
			fmt.Fprintf(w, "  found      %-22s %-16s %s\n", name, f.Addr, f.Note)
		default:
			fmt.Fprintf(w, "  not found  %-22s %-16s %s\n", name, f.Addr, f.Note)
			fmt.Fprintf(w, "             to enable: %s\n", f.Enable)
		}
	}
	fmt.Fprintln(w)
	if svc.DB == nil && svc.Redis == nil {
		fmt.Fprintln(w, "Without them the dashboard shows database_manager and session_monitoring as disabled.")
		fmt.Fprintln(w)
		return
	}
	cycle := time.Duration(float64(demo.Cycle) / speed).Round(time.Second)
	fmt.Fprintf(w, "The sample app misbehaves on a %s cycle, the way real apps go wrong:\n", cycle)
	if svc.DB != nil {
		fmt.Fprintln(w, "  a connection leaked and held, a transaction left idle, slow report queries")
		fmt.Fprintln(w, "  -> database_manager: db_connection_leak, db_idle_in_transaction_oldest, db_long_queries")
	}
	if svc.Redis != nil {
		fmt.Fprintln(w, "  sessions written with and without a TTL, an email queue whose worker stalls")
		fmt.Fprintln(w, "  -> session_monitoring: session_without_ttl, job_queue_depth; TTL repair runs in dry-run")
	}
	fmt.Fprintln(w, "What each alert means and how to confirm it (SQL, redis-cli): docs/troubleshooting.md, docs/runbooks/.")
	fmt.Fprintf(w, "Everything the demo creates (%s) is removed when it stops.\n\n", demo.Name)
}

// withDefaults appends defaults for variables environ does not set.
func withDefaults(environ, defaults []string) []string {
	set := map[string]bool{}
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	out := append([]string(nil), environ...)
	for _, kv := range defaults {
		k, _, _ := strings.Cut(kv, "=")
		if !set[k] {
			out = append(out, kv)
		}
	}
	return out
}

// printSummaries prints one line of live figures every period.
func printSummaries(ctx context.Context, w io.Writer, m *monitor.Monitor, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			tk := m.Last()
			if tk == nil {
				continue
			}
			r := tk.Requests
			p95 := "-"
			if r.P95 != nil {
				p95 = fmt.Sprintf("%.0fms", *r.P95*1000)
			}
			fmt.Fprintf(w, "%s  health=%-8s req/s=%5.1f p95=%-7s errors=%4.1f%% slow=%d queued=%v db=%s sessions=%s active_alerts=%d\n",
				tk.Time.Format("15:04:05"), tk.Verdict.Status, r.ThroughputRPS, p95, r.ErrorRate*100,
				r.SlowRequests, tk.Figures[string(figures.QueueDepth)], tk.Verdict.Components["database_manager"],
				tk.Verdict.Components["session_monitoring"], len(tk.Verdict.Alerts))
		}
	}
}

// demoViewerName is the name the demo's sign-in link fills in, so that an
// acknowledgement made from the dashboard reads "by <your login name>".
func demoViewerName(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "USER="); ok && v != "" {
			return v
		}
	}
	return "demo"
}
