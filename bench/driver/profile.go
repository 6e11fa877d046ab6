package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// profile records where each target spends its CPU under the peak load,
// with Linux perf (sampling the whole process, kernel included, without
// touching the target's code). Figures from these runs are not used in the
// comparison: perf's sampling perturbs them.
func profile(ctx context.Context, o options, e env, m *meter, rep *report) error {
	if _, err := exec.LookPath("perf"); err != nil {
		rep.note("profile skipped: perf is not installed (apt-get install linux-perf)")
		return nil
	}
	rep.printf("\n## CPU profiles under the peak load (perf, %v, %d connections)\n", o.duration, o.conns)
	for _, t := range o.profileTargets {
		if why := e.available(t); why != "" || t == tDirect {
			continue
		}
		r, err := e.start(ctx, t, 700)
		if err != nil {
			rep.note("profile: %v", err)
			continue
		}
		if _, err := m.run(ctx, r, load{conns: o.conns, path: "/", duration: time.Second}); err != nil {
			rep.note("profile %s warm-up: %v", t, err)
		}
		data := filepath.Join(o.workDir, "perf-"+t+".data")
		secs := strconv.Itoa(max(1, int(o.duration.Seconds())))
		pids := make([]string, 0, 4)
		for _, p := range m.proc.tree(r.pid()) {
			pids = append(pids, strconv.Itoa(p))
		}
		rec := exec.CommandContext(ctx, "taskset", "-c", o.loadCPU, "perf", "record", "-F", "499", "-g",
			"-o", data, "-p", strings.Join(pids, ","), "--", "sleep", secs)
		var recOut bytes.Buffer
		rec.Stdout, rec.Stderr = &recOut, &recOut
		if err := rec.Start(); err != nil {
			r.stop()
			rep.note("profile %s: starting perf: %v", t, err)
			continue
		}
		f, lerr := m.run(ctx, r, load{conns: o.conns, path: "/", duration: o.duration})
		werr := rec.Wait()
		r.stop()
		if lerr != nil || werr != nil {
			rep.note("profile %s: load %v, perf %v: %s", t, lerr, werr, recOut.String())
			continue
		}
		byDSO, err := exec.CommandContext(ctx, "perf", "report", "-i", data, "--stdio", "--no-children",
			"--sort", "dso", "-g", "none").Output()
		if err != nil {
			rep.note("profile %s: perf report: %v", t, err)
			continue
		}
		out, err := exec.CommandContext(ctx, "perf", "report", "-i", data, "--stdio", "--no-children",
			"--sort", "dso,symbol", "--percent-limit", "0.7", "-g", "none").Output()
		if err != nil {
			rep.note("profile %s: perf report: %v", t, err)
			continue
		}
		out = append(append(byDSO, '\n'), out...)
		stamp := rep.Start.UTC().Format("20060102-150405")
		full := filepath.Join(o.outDir, "profile-"+t+"-"+stamp+".txt")
		_ = os.WriteFile(full, out, 0o644)
		rep.printf("\n### %s (%s req/s while profiled; flat; full report %s)\n\n```\n%s\n%s```\n",
			label(t), fmtNum(f.RPS), filepath.Base(full), topLines(byDSO, 6), topLines(out[len(byDSO)+1:], 35))
	}
	return nil
}

// topLines keeps the first n sample lines of a perf report, without its
// comment header.
func topLines(report []byte, n int) string {
	var b strings.Builder
	for line := range strings.SplitSeq(string(report), "\n") {
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		b.WriteString(line + "\n")
		if n--; n == 0 {
			break
		}
	}
	return b.String()
}
