// Command driver runs pulsegate's load benchmark; bench/run.sh and
// bench/scale.sh build everything and call it.
//
// Modes (-mode, comma-separated):
//
//   - compare: every target (direct, pulsegate full, pulsegate with
//     monitoring off, bare ReverseProxy, nginx, HAProxy, Caddy) against the
//     same upstream, in interleaved rounds whose order rotates, each target
//     freshly started per round; per round: peak closed-loop (wrk), 16 KiB
//     body (wrk), fixed-rate open-loop (loadgen), low-rate single connection
//     (loadgen), 512 connections (wrk) then peak RSS. Medians over rounds,
//     every figure also ÷ bare ReverseProxy and ÷ direct.
//   - agree: pulsegate's own p50/p99 (admin API, 1-minute window) against
//     the load generator's for the same fixed-rate run.
//   - scale: pulsegate's (and the bare proxy's) CPU per request and RSS at
//     1, 64, 512, 4096 connections and with 10, 1 000, 100 000 distinct
//     paths; plus pulsegate's idle CPU (probes and history at default
//     intervals).
//   - flask: in front of a real Flask app (gunicorn, 2 sync workers, a
//     small JSON route) at fixed everyday rates (100, 300, 1 000 req/s):
//     each proxy's CPU per request, ÷ the app's own CPU per request and ÷
//     nginx's, its context switches per request, and the p50/p99 it adds
//     over direct, all in the same run. Nothing is pinned unless
//     -flask-cpu is given.
//   - profile: a perf CPU profile of pulsegate and the bare proxy under the
//     peak load (not used for any figure).
//
// CPU layout: the proxy and the upstream are pinned to -proxy-cpu (a sidecar
// shares the app's CPU), the load generators to -load-cpu.
//
// It prints Markdown on stdout and writes it, with the raw samples as JSON,
// under -out.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

//go:embed report.lua
var reportLua string

//go:embed paths.lua
var pathsLua string

// options are the driver's flags.
type options struct {
	modes        []string
	binDir       string
	workDir      string
	outDir       string
	targets      []string
	rounds       int
	duration     time.Duration
	rate         float64
	lowRate      float64
	conns        int
	proxyCPU     string
	loadCPU      string
	nice         int
	dbDSN        string
	redisURL     string
	scaleConns   []int
	scaleRoutes  []int
	scaleTargets []string
	idle         time.Duration
	// profileTargets are profiled with perf in the profile mode.
	profileTargets []string
	// agreeRates are the open-loop rates of the agree mode.
	agreeRates []float64
	// flask mode: targets, rates, connections, run length, CPU lists.
	flaskTargets           []string
	flaskRates             []float64
	flaskConns             int
	flaskDuration          time.Duration
	flaskCPU, flaskLoadCPU string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(flagName, s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		v, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive integer", flagName, f)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseOptions() (options, error) {
	var o options
	var modes, targets, scaleConns, scaleRoutes, scaleTargets, profileTargets, agreeRates, flaskTargets, flaskRates string
	flag.StringVar(&modes, "mode", "compare,agree", "comma-separated: compare, agree, scale, flask, profile")
	flag.StringVar(&o.binDir, "bin", "", "directory holding pulsegate, upstream, bareproxy, loadgen")
	flag.StringVar(&o.workDir, "work", "", "scratch directory for configs and logs (default: a new temp dir)")
	flag.StringVar(&o.outDir, "out", "bench/results", "where the Markdown and JSON results are written")
	flag.StringVar(&targets, "targets", strings.Join(allTargets, ","), "comma-separated targets: "+strings.Join(allTargets, ", "))
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds (medians are taken over them)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each peak, 16 KiB and open-loop run (low-rate and 512-connection runs take half)")
	flag.Float64Var(&o.rate, "rate", 6000, "fixed open-loop rate, requests/s")
	flag.Float64Var(&o.lowRate, "low-rate", 200, "low-rate single-connection run, requests/s")
	flag.IntVar(&o.conns, "conns", 64, "connections of the peak, 16 KiB and open-loop runs")
	flag.StringVar(&o.proxyCPU, "proxy-cpu", "0", "taskset CPU list for the proxy and the upstream")
	flag.StringVar(&o.loadCPU, "load-cpu", "1", "taskset CPU list for the load generators")
	flag.IntVar(&o.nice, "nice", 0, "niceness of the processes under test and the load generators (-19 favours them over unrelated work; needs root)")
	flag.StringVar(&o.dbDSN, "db-dsn", "mysql://root@127.0.0.1:3306/test", "pulsegate (full)'s database probe DSN (empty: none)")
	flag.StringVar(&o.redisURL, "redis-url", "redis://127.0.0.1:6379/0", "pulsegate (full)'s Redis probe URL (empty: none)")
	flag.StringVar(&scaleConns, "scale-conns", "1,64,512,4096", "scale: connection counts")
	flag.StringVar(&scaleRoutes, "scale-routes", "10,1000,100000", "scale: distinct path counts (at -conns connections)")
	flag.StringVar(&scaleTargets, "scale-targets", tPulsegate+","+tBare, "scale: targets")
	flag.StringVar(&agreeRates, "agree-rates", "1000,6000", "agree: open-loop rates, req/s (a moderate one, and the compare mode's)")
	flag.StringVar(&profileTargets, "profile-targets", tPulsegate+","+tBare, "profile: targets recorded with perf under the peak load")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "scale: idle window for pulsegate's background CPU (0 skips)")
	flag.StringVar(&flaskTargets, "flask-targets", strings.Join([]string{tDirect, tNginx, tBare, tPulseDefaults}, ","), "flask: targets (a Go proxy target may carry variant settings: pulsegate-defaults/GOMAXPROCS=1)")
	flag.StringVar(&flaskRates, "flask-rates", "100,300,1000", "flask: fixed rates, req/s")
	flag.IntVar(&o.flaskConns, "flask-conns", 16, "flask: the load generator's connections")
	flag.DurationVar(&o.flaskDuration, "flask-duration", 15*time.Second, "flask: length of each fixed-rate run")
	flag.StringVar(&o.flaskCPU, "flask-cpu", "", "flask: taskset CPU list for the app and the proxy (empty: unpinned)")
	flag.StringVar(&o.flaskLoadCPU, "flask-load-cpu", "", "flask: taskset CPU list for the load generator (empty: unpinned)")
	flag.Parse()

	o.modes = splitList(modes)
	for _, m := range o.modes {
		if m != "compare" && m != "agree" && m != "scale" && m != "flask" && m != "profile" {
			return o, fmt.Errorf("-mode: unknown mode %q (compare, agree, scale, flask, profile)", m)
		}
	}
	o.targets = splitList(targets)
	o.scaleTargets = splitList(scaleTargets)
	o.profileTargets = splitList(profileTargets)
	o.flaskTargets = splitList(flaskTargets)
	for _, t := range slices.Concat(o.targets, o.scaleTargets, o.profileTargets, o.flaskTargets) {
		if kind, _ := splitTarget(t); targetLabel[kind] == "" {
			return o, fmt.Errorf("-targets: unknown target %q (known: %s)", t, strings.Join(allTargets, ", "))
		}
	}
	var err error
	if o.scaleConns, err = intList("-scale-conns", scaleConns); err != nil {
		return o, err
	}
	if o.scaleRoutes, err = intList("-scale-routes", scaleRoutes); err != nil {
		return o, err
	}
	for _, f := range splitList(agreeRates) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !(v > 0) {
			return o, fmt.Errorf("-agree-rates: %q is not a positive rate", f)
		}
		o.agreeRates = append(o.agreeRates, v)
	}
	for _, f := range splitList(flaskRates) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !(v > 0) {
			return o, fmt.Errorf("-flask-rates: %q is not a positive rate", f)
		}
		o.flaskRates = append(o.flaskRates, v)
	}
	switch {
	case o.flaskConns < 1:
		return o, fmt.Errorf("-flask-conns: must be at least 1, got %d", o.flaskConns)
	case o.flaskDuration < time.Second:
		return o, fmt.Errorf("-flask-duration: must be at least 1s, got %v", o.flaskDuration)
	case o.binDir == "":
		return o, fmt.Errorf("-bin: required (the directory with the built binaries)")
	case o.rounds < 1:
		return o, fmt.Errorf("-rounds: must be at least 1, got %d", o.rounds)
	case o.duration < time.Second:
		return o, fmt.Errorf("-duration: must be at least 1s, got %v", o.duration)
	case !(o.rate > 0):
		return o, fmt.Errorf("-rate: must be positive, got %v", o.rate)
	case !(o.lowRate > 0):
		return o, fmt.Errorf("-low-rate: must be positive, got %v", o.lowRate)
	case o.conns < 1:
		return o, fmt.Errorf("-conns: must be at least 1, got %d", o.conns)
	case o.nice < -20 || o.nice > 19:
		return o, fmt.Errorf("-nice: must be within -20..19, got %d", o.nice)
	case o.idle < 0:
		return o, fmt.Errorf("-idle: must not be negative, got %v", o.idle)
	}
	return o, nil
}

// report accumulates one invocation's Markdown and raw data.
type report struct {
	md    strings.Builder
	Start time.Time      `json:"start"`
	Host  map[string]any `json:"host"`
	Notes []string       `json:"notes"`
	// Compare, Scale and Agree hold the raw samples of each mode.
	Compare []sample     `json:"compare,omitempty"`
	RSS     []rssSample  `json:"rss,omitempty"`
	Scale   []scaleRow   `json:"scale,omitempty"`
	Agree   []*agreement `json:"agree,omitempty"`
	Idle    []idleRow    `json:"idle,omitempty"`
	Flask   []flaskRow   `json:"flask,omitempty"`
}

func (r *report) printf(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	r.md.WriteString(s)
	fmt.Print(s)
}

func (r *report) note(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	r.Notes = append(r.Notes, s)
	fmt.Fprintln(os.Stderr, "note:", s)
}

func run() error {
	o, err := parseOptions()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.workDir == "" {
		if o.workDir, err = os.MkdirTemp("", "pulsegate-bench-"); err != nil {
			return fmt.Errorf("creating a work dir: %w", err)
		}
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return fmt.Errorf("creating -out %s: %w", o.outDir, err)
	}
	report, paths, err := writeScripts(o.workDir)
	if err != nil {
		return err
	}
	e := env{binDir: o.binDir, workDir: o.workDir, proxyCPU: o.proxyCPU, loadCPU: o.loadCPU, nice: o.nice, dbDSN: o.dbDSN, redisURL: o.redisURL}

	// The one upstream every target forwards to, on the proxy core.
	upAddr, err := freePort()
	if err != nil {
		return err
	}
	e.upstream = upAddr
	up := pinned(o.nice, o.proxyCPU, filepath.Join(o.binDir, "upstream"), "-addr", upAddr)
	upLog, err := os.Create(filepath.Join(o.workDir, "upstream.log"))
	if err != nil {
		return fmt.Errorf("creating upstream log: %w", err)
	}
	up.Stdout, up.Stderr = upLog, upLog
	if err := up.Start(); err != nil {
		return fmt.Errorf("starting upstream: %w", err)
	}
	upRun := &running{name: "upstream", url: "http://" + upAddr, cmd: up, exited: make(chan struct{}), logPath: upLog.Name()}
	go func() { _ = up.Wait(); _ = upLog.Close(); close(upRun.exited) }()
	defer upRun.stop()
	if err := waitReady(ctx, upRun, 15*time.Second); err != nil {
		return fmt.Errorf("starting upstream: %w\n%s", err, tail(upRun.logPath, 10))
	}

	m := &meter{env: e, proc: procFS{root: "/proc"}, tick: 1e6 / clockTick(), upPID: up.Process.Pid, wrkLua: report, pathsLua: paths}
	if m.proxyCPUs, err = parseCPUList(o.proxyCPU); err != nil {
		return fmt.Errorf("-proxy-cpu: %w", err)
	}
	if m.loadCPUs, err = parseCPUList(o.loadCPU); err != nil {
		return fmt.Errorf("-load-cpu: %w", err)
	}
	rep := newReport(o)
	stamp := rep.Start.UTC().Format("20060102-150405")
	defer func() {
		name := filepath.Join(o.outDir, strings.Join(o.modes, "+")+"-"+stamp)
		_ = os.WriteFile(name+".md", []byte(rep.md.String()), 0o644)
		if b, err := json.MarshalIndent(rep, "", "  "); err == nil {
			_ = os.WriteFile(name+".json", b, 0o644)
		}
		fmt.Fprintf(os.Stderr, "results: %s.md, %s.json (work dir %s)\n", name, name, o.workDir)
	}()

	rep.printf("# pulsegate benchmark, %s\n\n", rep.Start.UTC().Format("2006-01-02 15:04 UTC"))
	rep.printf("%s\n", hostLine(rep.Host))
	for _, mode := range o.modes {
		var err error
		switch mode {
		case "compare":
			err = compare(ctx, o, e, m, rep)
		case "agree":
			err = agree(ctx, o, e, m, rep)
		case "scale":
			err = scale(ctx, o, e, m, rep)
		case "flask":
			err = flask(ctx, o, e, m, rep)
		case "profile":
			err = profile(ctx, o, e, m, rep)
		}
		if err != nil {
			return err
		}
	}
	if len(rep.Notes) > 0 {
		rep.printf("\nNotes:\n")
		for _, n := range rep.Notes {
			rep.printf("- %s\n", n)
		}
	}
	return nil
}

// newReport records what the figures were measured on.
func newReport(o options) *report {
	r := &report{Start: time.Now(), Host: map[string]any{}}
	r.Host["go"] = runtime.Version()
	r.Host["cpus"] = runtime.NumCPU()
	r.Host["rounds"] = o.rounds
	r.Host["duration_s"] = o.duration.Seconds()
	r.Host["open_loop_rate"] = o.rate
	r.Host["proxy_cpu"] = o.proxyCPU
	r.Host["load_cpu"] = o.loadCPU
	r.Host["nice"] = o.nice
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.Host["loadavg_at_start"] = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Host["kernel"] = strings.TrimSpace(string(b))
	}
	versions := map[string][]string{
		"nginx": {"nginx", "-v"}, "haproxy": {"haproxy", "-v"}, "caddy": {"caddy", "version"}, "wrk": {"wrk", "-v"},
	}
	for name, argv := range versions {
		out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if line := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]); line != "" {
			r.Host[name] = line
		}
	}
	return r
}

func hostLine(h map[string]any) string {
	keys := []string{"go", "cpus", "kernel", "loadavg_at_start", "rounds", "duration_s", "open_loop_rate", "proxy_cpu", "load_cpu", "nice", "nginx", "haproxy", "caddy", "wrk"}
	var parts []string
	for _, k := range keys {
		if v, ok := h[k]; ok {
			parts = append(parts, fmt.Sprintf("%s: %v", k, v))
		}
	}
	return "Machine and settings — " + strings.Join(parts, "; ") + ".\n"
}

// compareModes are the per-round runs of the compare mode, in order.
func compareModes(o options) []struct {
	key, title string
	l          load
} {
	half := max(2*time.Second, o.duration/2)
	return []struct {
		key, title string
		l          load
	}{
		{"peak", fmt.Sprintf("Peak, closed loop (wrk, %d connections, 12-byte body)", o.conns), load{conns: o.conns, path: "/", duration: o.duration}},
		{"body16k", fmt.Sprintf("16 KiB body, closed loop (wrk, %d connections)", o.conns), load{conns: o.conns, path: "/16k", duration: o.duration}},
		{"open", fmt.Sprintf("Fixed rate %s req/s, open loop (loadgen, %d connections; latency from the scheduled send)", fmtNum(o.rate), o.conns), load{open: true, rate: o.rate, conns: o.conns, path: "/", duration: o.duration}},
		{"low", fmt.Sprintf("Low rate %s req/s on a single connection (loadgen)", fmtNum(o.lowRate)), load{open: true, rate: o.lowRate, conns: 1, path: "/", duration: half}},
		{"c512", "512 connections, closed loop (wrk); peak RSS is read after it", load{conns: 512, path: "/", duration: half}},
	}
}

// rotate returns targets starting at position r (mod len).
func rotate(targets []string, r int) []string {
	n := len(targets)
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, targets[(i+r)%n])
	}
	return out
}

// compare runs the interleaved comparison and prints its tables.
func compare(ctx context.Context, o options, e env, m *meter, rep *report) error {
	var targets []string
	for _, t := range o.targets {
		if why := e.available(t); why != "" {
			rep.note("target %s skipped: %s", t, why)
			continue
		}
		targets = append(targets, t)
	}
	modes := compareModes(o)
	for round := range o.rounds {
		for _, t := range rotate(targets, round) {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := e.start(ctx, t, round)
			if err != nil {
				rep.note("round %d: %v", round+1, err)
				continue
			}
			// Warm up: connections, pools, JIT-free but GC heap sizing.
			if _, err := m.run(ctx, r, load{conns: o.conns, path: "/", duration: time.Second}); err != nil {
				rep.note("round %d %s warm-up: %v", round+1, t, err)
			}
			for _, md := range modes {
				f, err := m.run(ctx, r, md.l)
				if err != nil {
					rep.note("round %d %s %s: %v", round+1, t, md.key, err)
					continue
				}
				rep.Compare = append(rep.Compare, sample{Target: t, Round: round + 1, Mode: md.key, Fig: f})
				fmt.Fprintf(os.Stderr, "round %d/%d %-16s %-8s %8.0f req/s  p50 %7.3f ms  p99 %7.3f ms  proxy %6s µs/req  errors %d\n",
					round+1, o.rounds, t, md.key, f.RPS, f.P50, f.P99, fmtNum(f.ProxyCPU), f.Errors)
			}
			if peak, now, err := m.rss(r); err != nil {
				rep.note("round %d %s RSS: %v", round+1, t, err)
			} else {
				rep.RSS = append(rep.RSS, rssSample{Target: t, Round: round + 1, PeakMiB: peak, NowMiB: now})
			}
			r.stop()
		}
	}

	med := summarize(rep.Compare, rep.RSS)
	rep.printf("\n## Summary (medians of %d interleaved round(s); ratios ÷ bare ReverseProxy and ÷ direct)\n\n", o.rounds)
	rep.printf("%s", summaryTable(med, targets, "peak", "open", fmt.Sprintf("at %s req/s open-loop", fmtNum(o.rate))))
	rep.printf("\nproxy CPU = the proxy's processes' utime+stime ÷ requests; pod CPU adds the upstream's (the whole cost on the shared core; for direct it is the upstream alone).\n")
	pc, lc := interference(rep.Compare)
	rep.printf("\nOther processes on this machine used a median %s of the proxy core and %s of the load core during these runs", fmtPct(pc), fmtPct(lc))
	if pc > 0.05 || lc > 0.05 {
		rep.printf(": the machine was shared, absolute figures are disturbed; compare ratios within this run.\n")
	} else {
		rep.printf(".\n")
	}
	for _, md := range modes {
		rep.printf("\n### %s\n\ncells: median value (÷ bare · ÷ direct)\n\n", md.title)
		rep.printf("%s", modeTable(med, targets, md.key, md.l.open))
	}
	rep.printf("\n### Resident memory after the 512-connection run (process tree; nginx = master + worker)\n\n")
	rep.printf("%s", rssTable(med, targets))
	return nil
}
