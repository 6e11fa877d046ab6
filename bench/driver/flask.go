package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed flaskapp.py
var flaskApp string

// flaskRow is one target at one rate in one round of the flask mode.
type flaskRow struct {
	Target string  `json:"target"`
	Round  int     `json:"round"`
	Rate   float64 `json:"rate"`
	Fig    figures `json:"figures"`
	// AppCPU is gunicorn's process tree CPU ÷ requests, µs.
	AppCPU float64 `json:"app_cpu_us"`
	// CtxSw is the proxy's context switches (voluntary + involuntary, all
	// threads) ÷ requests: how often it went to sleep and was woken.
	CtxSw float64 `json:"ctx_switches_per_request"`
}

// startGunicorn runs the benchmark's Flask app under gunicorn with 2 sync
// workers (Debian's python3-flask and gunicorn), on cpus ("" = unpinned).
func startGunicorn(ctx context.Context, e env, addr string) (*running, error) {
	dir := filepath.Join(e.workDir, "flaskapp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(flaskApp), 0o644); err != nil {
		return nil, fmt.Errorf("writing the Flask app: %w", err)
	}
	gunicorn, err := exec.LookPath("gunicorn")
	if err != nil {
		return nil, fmt.Errorf("gunicorn is not installed (apt-get install gunicorn python3-flask)")
	}
	r := &running{name: "gunicorn", url: "http://" + addr, logPath: filepath.Join(dir, "gunicorn.log")}
	cmd := pinned(e.nice, e.proxyCPU, gunicorn, "-k", "sync", "-w", "2", "--keep-alive", "2",
		"-b", addr, "--chdir", dir, "--log-level", "warning", "app:app")
	logf, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting gunicorn: %w", err)
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(r.exited) }()
	if err := waitReady(ctx, r, 60*time.Second); err != nil {
		r.stop()
		return nil, fmt.Errorf("starting gunicorn: %w\n%s", err, tail(r.logPath, 20))
	}
	return r, nil
}

// ctxSwitches sums voluntary and involuntary context switches over every
// thread of every process in pid's tree.
func (p procFS) ctxSwitches(pid int) uint64 {
	var sum uint64
	for _, q := range p.tree(pid) {
		tasks, err := os.ReadDir(filepath.Join(p.root, strconv.Itoa(q), "task"))
		if err != nil {
			continue
		}
		for _, t := range tasks {
			b, err := os.ReadFile(filepath.Join(p.root, strconv.Itoa(q), "task", t.Name(), "status"))
			if err != nil {
				continue
			}
			for line := range strings.SplitSeq(string(b), "\n") {
				k, v, ok := strings.Cut(line, ":")
				if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
					n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
					sum += n
				}
			}
		}
	}
	return sum
}

// flask measures, in front of a real Flask app under gunicorn, each
// target's CPU per request at fixed everyday rates, against the app's own
// CPU per request and nginx's, and the latency it adds over direct.
func flask(ctx context.Context, o options, e env, m *meter, rep *report) error {
	// Nothing pinned unless asked: a pod without a CPU limit sees every core,
	// and the cost measured here is largely waking goroutines across them.
	fe := e
	fe.proxyCPU, fe.loadCPU = o.flaskCPU, o.flaskLoadCPU
	addr, err := freePort()
	if err != nil {
		return err
	}
	app, err := startGunicorn(ctx, fe, addr)
	if err != nil {
		return err
	}
	defer app.stop()
	fe.upstream = addr
	fm := *m
	fm.env = fe

	var targets []string
	for _, t := range o.flaskTargets {
		if why := fe.available(t); why != "" {
			rep.note("flask target %s skipped: %s", t, why)
			continue
		}
		targets = append(targets, t)
	}
	var rows []flaskRow
	for round := range o.rounds {
		for _, t := range rotate(targets, round) {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := fe.start(ctx, t, round)
			if err != nil {
				rep.note("flask round %d: %v", round+1, err)
				continue
			}
			if _, err := fm.loadgen(ctx, r.url+"/api/item", load{open: true, rate: 300, conns: o.flaskConns, duration: time.Second}); err != nil {
				rep.note("flask round %d %s warm-up: %v", round+1, t, err)
			}
			for _, rate := range o.flaskRates {
				row, err := fm.flaskOnce(ctx, r, app, rate, o.flaskConns, o.flaskDuration)
				if err != nil {
					rep.note("flask round %d %s %v req/s: %v", round+1, t, rate, err)
					continue
				}
				row.Target, row.Round = t, round+1
				rows = append(rows, row)
				fmt.Fprintf(os.Stderr, "flask round %d/%d %-18s %5.0f req/s  p50 %6.3f ms  p99 %6.3f ms  proxy %6s µs/req  app %6s µs/req  ctxsw/req %5s  errors %d\n",
					round+1, o.rounds, t, rate, row.Fig.P50, row.Fig.P99, fmtNum(row.Fig.ProxyCPU), fmtNum(row.AppCPU), fmtNum(row.CtxSw), row.Fig.Errors)
			}
			r.stop()
		}
	}
	rep.Flask = append(rep.Flask, rows...)
	rep.printf("\n## In front of Flask (gunicorn, 2 sync workers, a small JSON route), fixed rates, open loop\n\n")
	pin := "nothing pinned"
	if o.flaskCPU != "" {
		pin = "proxy and app on CPU " + o.flaskCPU + ", load on " + o.flaskLoadCPU
	}
	rep.printf("loadgen, %d connections, %v per rate, medians of %d interleaved round(s); %s.\n", o.flaskConns, o.flaskDuration, o.rounds, pin)
	rep.printf("proxy CPU = the proxy's process tree utime+stime ÷ requests; app = gunicorn's tree, same run; ctx sw = the proxy's context switches per request.\n")
	for _, rate := range o.flaskRates {
		rep.printf("\n### %s req/s\n\n%s", fmtNum(rate), flaskTable(rows, targets, rate))
	}
	return nil
}

// flaskOnce runs one rate against r and reads the proxy's and the app's CPU.
func (m *meter) flaskOnce(ctx context.Context, r, app *running, rate float64, conns int, d time.Duration) (flaskRow, error) {
	pid := r.pid()
	var p0, p1, c0, c1 uint64
	var err error
	if pid > 0 {
		if p0, err = m.proc.treeTicks(pid); err != nil {
			return flaskRow{}, err
		}
		c0 = m.proc.ctxSwitches(pid)
	}
	a0, err := m.proc.treeTicks(app.pid())
	if err != nil {
		return flaskRow{}, fmt.Errorf("reading gunicorn's CPU: %w", err)
	}
	f, err := m.loadgen(ctx, r.url+"/api/item", load{open: true, rate: rate, conns: conns, duration: d})
	if err != nil {
		return flaskRow{}, err
	}
	if pid > 0 {
		if p1, err = m.proc.treeTicks(pid); err != nil {
			return flaskRow{}, err
		}
		c1 = m.proc.ctxSwitches(pid)
	}
	a1, err := m.proc.treeTicks(app.pid())
	if err != nil {
		return flaskRow{}, fmt.Errorf("reading gunicorn's CPU: %w", err)
	}
	row := flaskRow{Rate: rate, Fig: f, AppCPU: math.NaN(), CtxSw: math.NaN()}
	row.Fig.ProxyCPU, row.Fig.PodCPU = math.NaN(), math.NaN()
	if f.Requests > 0 {
		n := float64(f.Requests)
		row.AppCPU = float64(a1-a0) * m.tick / n
		if pid > 0 {
			row.Fig.ProxyCPU = float64(p1-p0) * m.tick / n
			row.CtxSw = float64(c1-c0) / n
		}
	}
	return row, nil
}

// flaskTable renders one rate's medians.
func flaskTable(rows []flaskRow, targets []string, rate float64) string {
	type med struct{ proxy, app, p50, p99, ctxsw, errs float64 }
	get := func(t string) med {
		var px, ap, p50, p99, cs, er []float64
		for _, r := range rows {
			if r.Target != t || r.Rate != rate {
				continue
			}
			px, ap = append(px, r.Fig.ProxyCPU), append(ap, r.AppCPU)
			p50, p99 = append(p50, r.Fig.P50), append(p99, r.Fig.P99)
			cs, er = append(cs, r.CtxSw), append(er, float64(r.Fig.Errors))
		}
		return med{median(px), median(ap), median(p50), median(p99), median(cs), median(er)}
	}
	direct, nginx := get(tDirect), get(tNginx)
	var out [][]string
	for _, t := range targets {
		x := get(t)
		out = append(out, []string{label(t), fmtNum(x.proxy), fmtRatio(ratio(x.proxy, x.app)), fmtRatio(ratio(x.proxy, nginx.proxy)),
			fmtNum(x.app), fmt.Sprintf("%s / %s", fmtNum(x.p50), fmtNum(x.p99)),
			fmt.Sprintf("%s / %s", fmtSigned(x.p50-direct.p50), fmtSigned(x.p99-direct.p99)), fmtNum(x.ctxsw), fmtNum(x.errs)})
	}
	return mdTable([]string{"target", "proxy CPU µs/req", "÷ app's CPU/req", "÷ nginx", "app CPU µs/req", "p50 / p99 ms", "added over direct ms", "ctx sw/req", "errors"}, out)
}

// fmtSigned prints a difference with its sign, or "–".
func fmtSigned(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if v >= 0 {
		return "+" + fmtNum(v)
	}
	return fmtNum(v)
}

// MarshalJSON writes NaN figures as null (encoding/json rejects NaN).
func (r flaskRow) MarshalJSON() ([]byte, error) {
	n := func(v float64) any {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return v
	}
	return json.Marshal(map[string]any{"target": r.Target, "round": r.Round, "rate": r.Rate, "figures": r.Fig,
		"app_cpu_us": n(r.AppCPU), "ctx_switches_per_request": n(r.CtxSw)})
}
