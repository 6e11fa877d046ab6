package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// load describes one load run.
type load struct {
	// open selects the open-loop generator (loadgen) at rate; otherwise wrk
	// runs closed-loop as fast as the target answers.
	open  bool
	rate  float64
	conns int
	path  string
	// routes > 0 makes wrk spread requests over that many distinct paths.
	routes   int
	duration time.Duration
}

// figures is what one load run measured. Times in ms, CPU in µs per request;
// NaN where a figure does not apply (no proxy process for direct).
type figures struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	RPS      float64 `json:"rps"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	P999     float64 `json:"p999_ms"`
	// ServiceP50/P99 are the open-loop generator's send-to-response figures
	// (NaN for wrk runs, whose latency already is send-to-response).
	ServiceP50 float64 `json:"service_p50_ms"`
	ServiceP99 float64 `json:"service_p99_ms"`
	// SendLagP99 is how late the open-loop generator sent (queueing for a
	// free connection or the generator itself).
	SendLagP99 float64 `json:"send_lag_p99_ms"`
	// ProxyCPU is the proxy's utime+stime over the run ÷ requests.
	ProxyCPU float64 `json:"proxy_cpu_us"`
	// PodCPU adds the upstream's: what the proxy's core spent per request.
	PodCPU float64 `json:"pod_cpu_us"`
	// OtherProxyCore and OtherLoadCore are the share (0..1) of the proxy's
	// and the load generator's cores that processes outside the benchmark
	// used during the run: how much a shared machine disturbed it.
	OtherProxyCore float64 `json:"other_proxy_core"`
	OtherLoadCore  float64 `json:"other_load_core"`
}

// MarshalJSON writes NaN figures as null (encoding/json rejects NaN).
func (f figures) MarshalJSON() ([]byte, error) {
	n := func(v float64) any {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return v
	}
	return json.Marshal(map[string]any{
		"requests": f.Requests, "errors": f.Errors, "rps": n(f.RPS),
		"p50_ms": n(f.P50), "p99_ms": n(f.P99), "p999_ms": n(f.P999),
		"service_p50_ms": n(f.ServiceP50), "service_p99_ms": n(f.ServiceP99),
		"send_lag_p99_ms": n(f.SendLagP99),
		"proxy_cpu_us":    n(f.ProxyCPU), "pod_cpu_us": n(f.PodCPU),
		"other_proxy_core": n(f.OtherProxyCore), "other_load_core": n(f.OtherLoadCore),
	})
}

// meter runs loads against one target and reads its CPU from /proc.
type meter struct {
	env      env
	proc     procFS
	tick     float64 // µs per clock tick
	upPID    int
	wrkLua   string // report.lua path
	pathsLua string // paths.lua + report.lua path
	// proxyCPUs and loadCPUs are the parsed -proxy-cpu and -load-cpu lists.
	proxyCPUs, loadCPUs []int
	// loadTicks is the CPU the last load generator run used, in ticks.
	loadTicks float64
}

// run drives l against r and returns the figures.
func (m *meter) run(ctx context.Context, r *running, l load) (figures, error) {
	pid := r.pid()
	var p0, u0 uint64
	var err error
	if pid > 0 {
		if p0, err = m.proc.treeTicks(pid); err != nil {
			return figures{}, fmt.Errorf("reading %s CPU: %w", r.name, err)
		}
	}
	if u0, err = m.proc.cpuTicks(m.upPID); err != nil {
		return figures{}, fmt.Errorf("reading upstream CPU: %w", err)
	}
	pb0, pt0, perr0 := m.proc.cpuTimes(m.proxyCPUs)
	lb0, lt0, lerr0 := m.proc.cpuTimes(m.loadCPUs)
	var f figures
	if l.open {
		f, err = m.loadgen(ctx, r.url+l.path, l)
	} else {
		f, err = m.wrk(ctx, r.url+l.path, l)
	}
	if err != nil {
		return f, err
	}
	var p1, u1 uint64
	if pid > 0 {
		if p1, err = m.proc.treeTicks(pid); err != nil {
			return f, fmt.Errorf("reading %s CPU: %w", r.name, err)
		}
	}
	if u1, err = m.proc.cpuTicks(m.upPID); err != nil {
		return f, fmt.Errorf("reading upstream CPU: %w", err)
	}
	pb1, pt1, perr1 := m.proc.cpuTimes(m.proxyCPUs)
	lb1, lt1, lerr1 := m.proc.cpuTimes(m.loadCPUs)
	f.OtherProxyCore, f.OtherLoadCore = math.NaN(), math.NaN()
	if perr0 == nil && perr1 == nil && pt1 > pt0 {
		ours := float64(p1-p0) + float64(u1-u0)
		f.OtherProxyCore = math.Max(0, (float64(pb1-pb0)-ours)/float64(pt1-pt0))
	}
	if lerr0 == nil && lerr1 == nil && lt1 > lt0 {
		f.OtherLoadCore = math.Max(0, (float64(lb1-lb0)-m.loadTicks)/float64(lt1-lt0))
	}
	f.ProxyCPU, f.PodCPU = math.NaN(), math.NaN()
	if f.Requests > 0 {
		up := float64(u1-u0) * m.tick / float64(f.Requests)
		if pid > 0 {
			f.ProxyCPU = float64(p1-p0) * m.tick / float64(f.Requests)
			f.PodCPU = f.ProxyCPU + up
		} else {
			f.PodCPU = up
		}
	}
	return f, nil
}

// wrkResult is the WRKJSON line report.lua prints.
type wrkResult struct {
	Requests   int   `json:"requests"`
	DurationUS int64 `json:"duration_us"`
	Errors     struct {
		Connect, Read, Write, Status, Timeout int
	} `json:"errors"`
	Latency struct {
		P50, P90, P99, P999, Max int64
		Mean                     float64
	} `json:"latency_us"`
}

// parseWrk finds report.lua's line in wrk's output.
func parseWrk(out []byte) (wrkResult, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "WRKJSON ")
		if !ok {
			continue
		}
		var w wrkResult
		if err := json.Unmarshal([]byte(rest), &w); err != nil {
			return w, fmt.Errorf("parsing wrk summary %q: %w", rest, err)
		}
		return w, nil
	}
	return wrkResult{}, fmt.Errorf("no WRKJSON line in wrk output:\n%s", out)
}

// wrkSeconds is the duration as wrk takes it (whole seconds, at least 1).
func wrkSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))) + "s"
}

func (m *meter) wrk(ctx context.Context, url string, l load) (figures, error) {
	script := m.wrkLua
	var extra []string
	if l.routes > 0 {
		script = m.pathsLua
		extra = []string{"--", strconv.Itoa(l.routes)}
	}
	argv := pinnedArgv(m.env.nice, m.env.loadCPU, "wrk", append([]string{"-t1", "-c", strconv.Itoa(l.conns),
		"-d", wrkSeconds(l.duration), "--timeout", "10s", "-s", script, url}, extra...)...)
	cctx, cancel := context.WithTimeout(ctx, l.duration+60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	m.loadTicks = m.childTicks(cmd)
	if err != nil {
		return figures{}, fmt.Errorf("running wrk: %w\n%s", err, out)
	}
	w, err := parseWrk(out)
	if err != nil {
		return figures{}, err
	}
	e := w.Errors
	f := figures{
		Requests:   w.Requests,
		Errors:     e.Connect + e.Read + e.Write + e.Status + e.Timeout,
		P50:        float64(w.Latency.P50) / 1e3,
		P99:        float64(w.Latency.P99) / 1e3,
		P999:       float64(w.Latency.P999) / 1e3,
		ServiceP50: math.NaN(),
		ServiceP99: math.NaN(),
		SendLagP99: math.NaN(),
	}
	if w.DurationUS > 0 {
		f.RPS = float64(w.Requests) / (float64(w.DurationUS) / 1e6)
	}
	return f, nil
}

// loadgenResult is the part of loadgen's JSON the driver reads.
type loadgenResult struct {
	Scheduled   int     `json:"scheduled"`
	Requests    int     `json:"requests"`
	AchievedRPS float64 `json:"achieved_rps"`
	Errors      struct {
		Connect, IO, Status int
	} `json:"errors"`
	Latency pct `json:"latency_ms"`
	Service pct `json:"service_ms"`
	SendLag pct `json:"send_lag_ms"`
}

type pct struct {
	P50, P90, P99, Max, Mean float64
	P999                     float64 `json:"p999"`
}

func (m *meter) loadgen(ctx context.Context, url string, l load) (figures, error) {
	lg, err := m.loadgenRaw(ctx, url, l)
	if err != nil {
		return figures{}, err
	}
	return figures{
		Requests:   lg.Requests,
		Errors:     lg.Scheduled - lg.Requests + lg.Errors.Status, // unanswered + non-2xx/3xx
		RPS:        lg.AchievedRPS,
		P50:        lg.Latency.P50,
		P99:        lg.Latency.P99,
		P999:       lg.Latency.P999,
		ServiceP50: lg.Service.P50,
		ServiceP99: lg.Service.P99,
		SendLagP99: lg.SendLag.P99,
	}, nil
}

func (m *meter) loadgenRaw(ctx context.Context, url string, l load) (loadgenResult, error) {
	cctx, cancel := context.WithTimeout(ctx, l.duration+60*time.Second)
	defer cancel()
	argv := pinnedArgv(m.env.nice, m.env.loadCPU, filepath.Join(m.env.binDir, "loadgen"),
		"-url", url, "-rate", strconv.FormatFloat(l.rate, 'f', -1, 64),
		"-duration", l.duration.String(), "-conns", strconv.Itoa(l.conns))
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	m.loadTicks = m.childTicks(cmd)
	if err != nil {
		return loadgenResult{}, fmt.Errorf("running loadgen: %w\n%s", err, stderr.Bytes())
	}
	var lg loadgenResult
	if err := json.Unmarshal(out, &lg); err != nil {
		return lg, fmt.Errorf("parsing loadgen output %q: %w", out, err)
	}
	return lg, nil
}

// rss reads the target tree's peak (VmHWM) and current (VmRSS) resident
// memory in MiB.
func (m *meter) rss(r *running) (peak, cur float64, err error) {
	pid := r.pid()
	if pid == 0 {
		return math.NaN(), math.NaN(), nil
	}
	hwm, err := m.proc.treeKB(pid, "VmHWM")
	if err != nil {
		return 0, 0, err
	}
	now, err := m.proc.treeKB(pid, "VmRSS")
	if err != nil {
		return 0, 0, err
	}
	return float64(hwm) / 1024, float64(now) / 1024, nil
}

// childTicks is the user+system CPU of a finished command, in clock ticks.
func (m *meter) childTicks(cmd *exec.Cmd) float64 {
	if cmd.ProcessState == nil {
		return 0
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	us := float64(ru.Utime.Sec*1e6+ru.Utime.Usec) + float64(ru.Stime.Sec*1e6+ru.Stime.Usec)
	return us / m.tick
}

// clockTick asks getconf for CLK_TCK (100 on every Linux we know).
func clockTick() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && v > 0 {
			return float64(v)
		}
	}
	return 100
}

// writeScripts puts the wrk Lua scripts into dir.
func writeScripts(dir string) (report, paths string, err error) {
	report = filepath.Join(dir, "report.lua")
	paths = filepath.Join(dir, "paths-report.lua")
	if err := os.WriteFile(report, []byte(reportLua), 0o644); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", report, err)
	}
	if err := os.WriteFile(paths, []byte(pathsLua+"\n"+reportLua), 0o644); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", paths, err)
	}
	return report, paths, nil
}
