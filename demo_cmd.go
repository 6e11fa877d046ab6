package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pulsegate/pulsegate/demo"
	"github.com/pulsegate/pulsegate/monitor"
)

// demoDefaults make the demo lively: a short monitoring interval, a low
// slow-request threshold and a small concurrency limit that the bursts
// overflow. Any RESPONSIVENESS_* variable the user sets wins.
var demoDefaults = []string{
	"RESPONSIVENESS_LISTEN_ADDR=127.0.0.1:8080",
	"RESPONSIVENESS_ADMIN_ADDR=127.0.0.1:9901",
	"RESPONSIVENESS_MONITORING_INTERVAL=5",
	"RESPONSIVENESS_SLOW_REQUEST_THRESHOLD=1",
	"RESPONSIVENESS_RESPONSE_TIME_WARNING_THRESHOLD=0.5",
	"RESPONSIVENESS_RESPONSE_TIME_CRITICAL_THRESHOLD=1.5",
	"RESPONSIVENESS_MAX_CONCURRENCY=12",
	"RESPONSIVENESS_QUEUE_WARNING_THRESHOLD=4",
	"RESPONSIVENESS_QUEUE_CRITICAL_THRESHOLD=16",
	"RESPONSIVENESS_BACKPRESSURE_QUEUE_TIMEOUT=3",
	"RESPONSIVENESS_PROXY_DRAIN_DELAY=0",
	"RESPONSIVENESS_PROXY_SHUTDOWN_TIMEOUT=5",
}

// cmdDemo runs the sample app, the sidecar in front of it and traffic
// through it, and prints where to look.
func cmdDemo(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 0, "stop after this long (0 = until Ctrl-C)")
	rps := fs.Int("rps", 15, "steady requests per second")
	if err := fs.Parse(args); err != nil {
		return 2
	}

	app := demo.NewApp()
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
	env := withDefaults(environ, append(demoDefaults,
		"RESPONSIVENESS_UPSTREAM_URL="+upURL,
		"RESPONSIVENESS_DATA_DIR="+dataDir,
		"RESPONSIVENESS_ACTIONS_CLEANUP_URL="+upURL+"/internal/cleanup",
	))
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
	fmt.Fprintf(stdout, `pulsegate demo is running (Ctrl-C to stop)

  the sample app, through pulsegate   %[1]s/
  dashboard                           %[2]s/admin/responsiveness/
  the app's admin page with widgets   %[1]s/admin/users
  performance JSON                    %[2]s/admin/api/performance/responsiveness
  health JSON                         %[2]s/admin/api/health/responsiveness
  alerts JSON                         %[2]s/admin/api/alerts/responsiveness
  Prometheus metrics                  %[2]s/metrics
  status                              go run . status --admin %[2]s

Traffic: %[3]d req/s, with a 15 s burst every minute (slow reports fill the
queue, the flaky route fails): watch slow requests, queueing, 503s and alerts.

`, proxyURL, adminURL, *rps)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	traffic := &demo.Traffic{Base: proxyURL, App: app, RPS: *rps, Period: time.Minute, BurstFor: 15 * time.Second,
		Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); traffic.Run(ctx) }()
	go func() { defer wg.Done(); printSummaries(ctx, stdout, a.monitor, 10*time.Second) }()
	exit := a.serve(ctx, signals())
	cancel()
	wg.Wait()
	fmt.Fprintf(stdout, "demo stopped: %d requests sent, cleanup hook called %d times\n", traffic.Sent(), app.Cleanups())
	return exit
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
			fmt.Fprintf(w, "%s  health=%-8s req/s=%5.1f p95=%-7s errors=%4.1f%% slow=%d queue=%v active_alerts=%d\n",
				tk.Time.Format("15:04:05"), tk.Verdict.Status, r.ThroughputRPS, p95, r.ErrorRate*100,
				r.SlowRequests, tk.Figures["queue_depth"], len(tk.Verdict.Alerts))
		}
	}
}
