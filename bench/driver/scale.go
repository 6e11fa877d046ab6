package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"
)

// scaleRow is one point of the scale curve in one round.
type scaleRow struct {
	Target  string  `json:"target"`
	Round   int     `json:"round"`
	Conns   int     `json:"conns"`
	Routes  int     `json:"routes"` // 0: every request to "/"
	Fig     figures `json:"figures"`
	PeakMiB float64 `json:"peak_mib"`
	NowMiB  float64 `json:"now_mib"`
	// AnonMiB is RssAnon at the end: private memory (heap, stacks, the
	// runtime's), without the binary's file-backed pages, which are clean
	// and which the kernel can drop under memory pressure.
	AnonMiB float64 `json:"anon_mib"`
	// RoutesTracked is pulsegate's routes_tracked after the run (NaN for others).
	RoutesTracked float64 `json:"-"`
}

// idleRow is a target's background CPU with no traffic.
type idleRow struct {
	Target     string  `json:"target"`
	Seconds    float64 `json:"seconds"`
	CPUPercent float64 `json:"cpu_percent_of_one_core"`
}

// scale measures the scale curve and pulsegate's idle CPU.
func scale(ctx context.Context, o options, e env, m *meter, rep *report) error {
	var targets []string
	for _, t := range o.scaleTargets {
		if why := e.available(t); why != "" {
			rep.note("scale target %s skipped: %s", t, why)
			continue
		}
		targets = append(targets, t)
	}
	type point struct{ conns, routes int }
	var points []point
	for _, c := range o.scaleConns {
		points = append(points, point{c, 0})
	}
	for _, n := range o.scaleRoutes {
		points = append(points, point{o.conns, n})
	}
	for round := range o.rounds {
		for _, t := range rotate(targets, round) {
			for _, p := range points {
				if err := ctx.Err(); err != nil {
					return err
				}
				r, err := e.start(ctx, t, round)
				if err != nil {
					rep.note("scale round %d: %v", round+1, err)
					continue
				}
				if _, err := m.run(ctx, r, load{conns: p.conns, path: "/", duration: time.Second}); err != nil {
					rep.note("scale round %d %s warm-up: %v", round+1, t, err)
				}
				f, err := m.run(ctx, r, load{conns: p.conns, path: "/", routes: p.routes, duration: o.duration})
				if err != nil {
					rep.note("scale round %d %s %d conns %d paths: %v", round+1, t, p.conns, p.routes, err)
					r.stop()
					continue
				}
				row := scaleRow{Target: t, Round: round + 1, Conns: p.conns, Routes: p.routes, Fig: f, RoutesTracked: math.NaN()}
				if row.PeakMiB, row.NowMiB, err = m.rss(r); err != nil {
					rep.note("scale round %d %s RSS: %v", round+1, t, err)
				}
				row.AnonMiB = math.NaN()
				if pid := r.pid(); pid != 0 {
					if kb, err := m.proc.treeKB(pid, "RssAnon"); err == nil {
						row.AnonMiB = float64(kb) / 1024
					}
				}
				if r.adminURL != "" {
					if doc, err := fetchJSON(ctx, r.adminURL+responsivenessPath); err == nil {
						if v, ok := findNumber(doc, "routes_tracked"); ok {
							row.RoutesTracked = v
						}
					}
				}
				rep.Scale = append(rep.Scale, row)
				fmt.Fprintf(os.Stderr, "scale round %d/%d %-16s conns %5d paths %6d: %8.0f req/s  p99 %7.3f ms  proxy %6s µs/req  peak RSS %6.1f MiB (anon at end %6.1f)\n",
					round+1, o.rounds, t, p.conns, p.routes, f.RPS, f.P99, fmtNum(f.ProxyCPU), row.PeakMiB, row.AnonMiB)
				r.stop()
			}
		}
	}

	rep.printf("\n## Scale curve (medians of %d round(s), %v closed-loop wrk runs, a fresh process per point)\n\n", o.rounds, o.duration)
	var rows [][]string
	for _, t := range targets {
		for _, p := range points {
			var rps, p99, cpu, peak, now, anon, tracked, errs, reqs []float64
			n := 0
			for _, s := range rep.Scale {
				if s.Target != t || s.Conns != p.conns || s.Routes != p.routes {
					continue
				}
				n++
				rps = append(rps, s.Fig.RPS)
				p99 = append(p99, s.Fig.P99)
				cpu = append(cpu, s.Fig.ProxyCPU)
				peak = append(peak, s.PeakMiB)
				now = append(now, s.NowMiB)
				anon = append(anon, s.AnonMiB)
				tracked = append(tracked, s.RoutesTracked)
				errs = append(errs, float64(s.Fig.Errors))
				reqs = append(reqs, float64(s.Fig.Requests))
			}
			if n == 0 {
				continue
			}
			paths := "1"
			if p.routes > 0 {
				paths = fmt.Sprintf("%d", p.routes)
			}
			rows = append(rows, []string{label(t), fmt.Sprintf("%d", p.conns), paths,
				fmtNum(median(rps)), fmtNum(median(p99)), fmtNum(median(cpu)),
				fmtNum(median(peak)), fmtNum(median(now)), fmtNum(median(anon)), fmtNum(median(tracked)),
				fmt.Sprintf("%.0f / %.0f", median(errs), median(reqs))})
		}
	}
	rep.printf("%s", mdTable([]string{"target", "connections", "distinct paths", "req/s", "p99 ms", "proxy CPU µs/req", "peak RSS MiB", "RSS at end MiB", "of it anon MiB", "routes tracked (API)", "errors / requests"}, rows))
	rep.printf("\nDistinct paths are /bench/<letters>: no digits, so route templating cannot fold them; with wrk -t1 they are sent in turn, so a run shorter than the path count sends each at most once.\n")

	if o.idle > 0 {
		if err := idle(ctx, o, e, m, rep); err != nil {
			return err
		}
	}
	return nil
}

// idle measures pulsegate's CPU with no traffic: the probes, windows and
// dashboard history at their default intervals.
func idle(ctx context.Context, o options, e env, m *meter, rep *report) error {
	for _, t := range []string{tPulsegate, tPulseNoMon} {
		if e.available(t) != "" {
			continue
		}
		r, err := e.start(ctx, t, 800)
		if err != nil {
			rep.note("idle: %v", err)
			continue
		}
		// Let start-up work (first probe ticks, connection set-up) pass.
		select {
		case <-ctx.Done():
			r.stop()
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
		t0, err0 := m.proc.treeTicks(r.pid())
		start := time.Now()
		select {
		case <-ctx.Done():
			r.stop()
			return ctx.Err()
		case <-time.After(o.idle):
		}
		t1, err1 := m.proc.treeTicks(r.pid())
		el := time.Since(start)
		r.stop()
		if err0 != nil || err1 != nil {
			rep.note("idle %s: reading CPU: %v %v", t, err0, err1)
			continue
		}
		pctv := float64(t1-t0) * m.tick / float64(el.Microseconds()) * 100
		rep.Idle = append(rep.Idle, idleRow{Target: t, Seconds: el.Seconds(), CPUPercent: pctv})
		fmt.Fprintf(os.Stderr, "idle %-16s %.0f s: %.3f %% of one core\n", t, el.Seconds(), pctv)
	}
	if len(rep.Idle) == 0 {
		return nil
	}
	rep.printf("\n## Idle CPU (no traffic, default probe and history intervals; %v after a 5 s settle)\n\n", o.idle)
	var rows [][]string
	for _, r := range rep.Idle {
		rows = append(rows, []string{label(r.Target), fmt.Sprintf("%.0f", r.Seconds), fmt.Sprintf("%.3f %%", r.CPUPercent)})
	}
	rep.printf("%s", mdTable([]string{"target", "seconds", "CPU (% of one core)"}, rows))
	rep.printf("\nResolution: one clock tick (10 ms) over the window, i.e. %.3f %% of a core.\n", m.tick/float64(o.idle.Microseconds())*100)
	return nil
}
