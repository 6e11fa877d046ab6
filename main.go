// Command pulsegate is a responsiveness sidecar for Flask apps: it takes
// the app's traffic on its own port, forwards it with
// httputil.ReverseProxy, measures what users feel, pushes back when the app
// is drowning, and watches the app's database, Redis and container beside
// the path.
//
//	pulsegate [serve] [--config FILE]   run the sidecar (the default)
//	pulsegate demo                      everything working, with a built-in sample app and traffic
//	pulsegate check-config [--config F] print the effective configuration (secrets redacted); exit 1 if invalid
//	pulsegate status [--admin URL]      the health verdict, readable; exit 0/1/2 healthy/warning/critical, 3 unreachable
//	pulsegate report [--since 24h|7d|30d] [--format text|markdown|json] [--admin URL] [--fleet]   the daily/weekly/monthly review
//	pulsegate version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/membudget"
	"github.com/pulsegate/pulsegate/proxy"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// applyRuntime sizes the Go runtime for a sidecar, once at start (serve):
//   - a soft memory limit of runtime.memory_limit_share × the container's
//     memory limit (256 MiB outside containers) instead of the fixed GOGC=50
//     of earlier versions, which paid GC CPU at every rate to keep a heap
//     small that had room to grow (docs/performance.md);
//   - GOMAXPROCS = runtime.max_procs (default 1) when no CPU limit is set:
//     one P serves thousands of requests a second, while with more P's
//     every request of an everyday rate wakes goroutines across cores and
//     spins idle P's (with a CPU limit, Go follows it).
//
// GOMEMLIMIT, GOGC and GOMAXPROCS in the environment win.
func applyRuntime(cfg *config.Config, environ []string, log *zap.Logger) membudget.Budget {
	getenv := func(k string) string { return lookup(environ, k) }
	b := membudget.Apply(membudget.Decide(membudget.Probe(getenv), membudget.Settings{
		Share:        cfg.Runtime.MemoryLimitShare,
		DefaultBytes: int64(cfg.Runtime.MemoryLimitDefaultMiB) << 20,
		MaxProcs:     cfg.Runtime.MaxProcs,
	}))
	log.Info("runtime_budget", zap.Int64("memory_budget_bytes", b.LimitBytes), zap.String("memory_budget_source", b.Source),
		zap.Int64("container_memory_limit_bytes", b.ContainerLimitBytes), zap.Int("gogc", b.GOGC),
		zap.Int("gomaxprocs", b.GOMAXPROCS), zap.String("gomaxprocs_source", b.GOMAXPROCSSource))
	return b
}

// lookup is os.Getenv over an environ slice (the last entry wins).
func lookup(environ []string, key string) string {
	v := ""
	for _, kv := range environ {
		if len(kv) > len(key) && kv[len(key)] == '=' && kv[:len(key)] == key {
			v = kv[len(key)+1:]
		}
	}
	return v
}

// heapBytes is the live and not-yet-swept heap objects, read from
// runtime/metrics (no stop-the-world, unlike runtime.ReadMemStats).
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// limitClientConns caps the proxy listener's open connections at what fits
// in the memory budget (runtime.max_client_connections; none outside
// containers). It returns the limit, nil when there is none.
func limitClientConns(a *app, cfg *config.Config, b membudget.Budget) *proxy.ConnLimit {
	n := b.MaxConnections(cfg.Runtime.MaxClientConnections)
	if n <= 0 {
		return nil
	}
	l := proxy.NewConnLimit(n)
	if a.runtime != nil {
		a.runtime.MaxClientConnections = n
	}
	a.proxyLn = l.Listener(a.proxyLn)
	a.proxySrv.ConnState = l.ConnState
	a.log.Info("client_connection_limit", zap.Int("max_client_connections", n),
		zap.Int64("memory_budget_bytes", b.LimitBytes), zap.Int64("container_memory_limit_bytes", b.ContainerLimitBytes))
	return l
}

// registerRuntimeMetrics exposes the budget, the heap and the client
// connection cap (when there is one) in /metrics.
func registerRuntimeMetrics(reg prometheus.Registerer, b membudget.Budget, conns *proxy.ConnLimit) error {
	budget := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "pulsegate_memory_budget_bytes",
		Help:        "Go's soft memory limit in force (0 = none); see memory_budget_source in the performance JSON.",
		ConstLabels: prometheus.Labels{"source": b.Source},
	}, func() float64 { return float64(b.LimitBytes) })
	heap := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pulsegate_heap_bytes",
		Help: "Bytes of heap objects (live and not yet swept), from runtime/metrics.",
	}, func() float64 { return float64(heapBytes()) })
	cs := []prometheus.Collector{budget, heap}
	if conns != nil {
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "pulsegate_client_connections_max",
				Help: "Cap on open client connections (runtime.max_client_connections or what fits in the memory budget).",
			}, func() float64 { return float64(conns.Max()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "pulsegate_client_connections_open",
				Help: "Client connections open now (counted against the cap).",
			}, func() float64 { return float64(conns.Open()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "pulsegate_client_connections_evicted_total",
				Help: "Idle keep-alive client connections closed to make room at the cap.",
			}, func() float64 { return float64(conns.Evicted()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// tuneGC starts the GC tuner (runtime.gc_headroom_mib) unless GOGC is
// set in the environment or the collector is off; it runs with the app's
// other loops and stops with them.
func tuneGC(a *app, cfg *config.Config, environ []string, b membudget.Budget) {
	if cfg.Runtime.GCHeadroomMiB <= 0 || lookup(environ, "GOGC") != "" || b.GOGC <= 0 {
		return
	}
	a.gcTuner = membudget.NewGCTuner(int64(cfg.Runtime.GCHeadroomMiB)<<20, b.GOGC)
	a.loops = append(a.loops, func(ctx context.Context) error { return a.gcTuner.Run(ctx, gcTuneInterval) })
}

// gcTuneInterval: connection counts change over seconds; a collection
// cycle at 512 busy connections is a fraction of one.
const gcTuneInterval = time.Second

// runtimeSection is the performance JSON's "runtime" object; gogc is the
// tuner's current value when it runs.
func runtimeSection(b membudget.Budget, tuner *membudget.GCTuner) map[string]any {
	gogc := b.GOGC
	if tuner != nil {
		gogc = tuner.GOGC()
	}
	heap := heapBytes()
	out := map[string]any{
		"memory_budget_bytes":          b.LimitBytes,
		"memory_budget_source":         b.Source,
		"container_memory_limit_bytes": b.ContainerLimitBytes,
		"memory_limit_share":           b.Share,
		"heap_bytes":                   heap,
		"heap_share_of_budget":         nil,
		"gogc":                         gogc,
		"gomaxprocs":                   b.GOMAXPROCS,
		"gomaxprocs_source":            b.GOMAXPROCSSource,
		"max_client_connections":       b.MaxClientConnections,
	}
	if b.LimitBytes > 0 {
		out["heap_share_of_budget"] = float64(heap) / float64(b.LimitBytes)
	}
	return out
}

// run dispatches a subcommand and returns the process exit code.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, args, environ, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args, environ, stdout, stderr)
	case "check-config":
		return cmdCheckConfig(args, environ, stdout, stderr)
	case "status":
		return cmdStatus(ctx, args, environ, stdout, stderr)
	case "report":
		return cmdReport(ctx, args, environ, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "pulsegate: unknown command %q\n\n%s", cmd, usage)
	return 2
}

const usage = `usage: pulsegate [command] [flags]

commands:
  serve          run the sidecar (default)            flags: --config FILE
  demo           run a built-in sample app, traffic and the sidecar, and print the URLs to open
  check-config   print the effective configuration with secrets redacted; exit 1 if invalid
  status         print the health verdict; exit 0 healthy, 1 warning, 2 critical, 3 unreachable
                 flags: --admin URL (default from RESPONSIVENESS_ADMIN_ADDR), --token T (default RESPONSIVENESS_ADMIN_TOKEN)
  report         the daily, weekly or monthly review (docs/report.md); exit 0, 1 sidecar unreachable or refused, 2 bad flag
                 flags: --since 24h|7d|30d (default 24h), --format text|markdown|json (default text), --admin URL, --token T, --fleet
  version        print the version

Configuration: RESPONSIVENESS_* environment variables, or a YAML file (--config or RESPONSIVENESS_CONFIG_FILE).
`
