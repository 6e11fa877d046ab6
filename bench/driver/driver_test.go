package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeProc writes a /proc-like tree: pid → (ppid, utime, stime, hwm kB, rss kB).
func fakeProc(t *testing.T, procs map[int][5]int) procFS {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// A command name with spaces and a ')' must not shift the fields.
		stat := strconv.Itoa(pid) + " (nginx: worker) x) S " + strconv.Itoa(p[0]) + " 1 1 0 -1 4194560 100 0 0 0 " +
			strconv.Itoa(p[1]) + " " + strconv.Itoa(p[2]) + " 0 0 20 0 1 0 100 1000 10\n"
		status := "Name:\tnginx\nVmPeak:\t 9999 kB\nVmHWM:\t " + strconv.Itoa(p[3]) + " kB\nVmRSS:\t " + strconv.Itoa(p[4]) + " kB\n"
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil { // non-numeric entries are ignored
		t.Fatal(err)
	}
	return procFS{root: root}
}

func TestProcTreeSumsCPUAndMemoryOverDescendants(t *testing.T) {
	p := fakeProc(t, map[int][5]int{
		100: {1, 10, 5, 2048, 1024},      // master
		101: {100, 300, 100, 4096, 3072}, // worker
		102: {101, 1, 1, 1024, 1024},     // worker's child
		200: {1, 999, 999, 99999, 99999}, // unrelated
	})
	ticks, err := p.treeTicks(100)
	if err != nil {
		t.Fatal(err)
	}
	if ticks != 10+5+300+100+1+1 {
		t.Fatalf("tree ticks %d, want 417", ticks)
	}
	hwm, err := p.treeKB(100, "VmHWM")
	if err != nil || hwm != 2048+4096+1024 {
		t.Fatalf("tree VmHWM %d (%v), want 7168", hwm, err)
	}
	rss, err := p.treeKB(101, "VmRSS")
	if err != nil || rss != 3072+1024 {
		t.Fatalf("VmRSS of the worker subtree %d (%v), want 4096", rss, err)
	}
	if _, err := p.treeTicks(999); err == nil || !strings.Contains(err.Error(), "pid 999") {
		t.Fatalf("missing pid: error %v, want one naming pid 999", err)
	}
}

func TestProcReadsThisProcess(t *testing.T) {
	p := procFS{root: "/proc"}
	if _, err := p.cpuTicks(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	hwm, err := p.statusKB(os.Getpid(), "VmHWM")
	if err != nil || hwm == 0 {
		t.Fatalf("VmHWM of the test process: %d, %v", hwm, err)
	}
}

func TestParseWrkFindsTheSummaryLine(t *testing.T) {
	out := []byte(`Running 1s test @ http://127.0.0.1:1/
  1 threads and 64 connections
Requests/sec:  12345.67
WRKJSON {"requests":12345,"duration_us":1000000,"bytes":99,"errors":{"connect":1,"read":2,"write":0,"status":3,"timeout":4},"latency_us":{"p50":510,"p90":900,"p99":2500,"p999":7000,"max":9000,"mean":600.5}}
`)
	w, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if w.Requests != 12345 || w.Errors.Status != 3 || w.Errors.Timeout != 4 || w.Latency.P999 != 7000 {
		t.Fatalf("parsed %+v", w)
	}
	if _, err := parseWrk([]byte("wrk: connection refused\n")); err == nil || !strings.Contains(err.Error(), "WRKJSON") {
		t.Fatalf("error %v, want one about the missing summary", err)
	}
}

// The Lua scripts run in the real wrk against a real server: the summary
// line parses, and the paths script sends distinct letter-only paths.
func TestWrkScriptsAgainstARealServer(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk not installed (bench/run.sh installs it)")
	}
	seen := make(chan string, 100000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.URL.Path:
		default:
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	report, paths, err := writeScripts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		script string
		args   []string
	}{{report, nil}, {paths, []string{"--", "30"}}} {
		args := append([]string{"-t1", "-c2", "-d1s", "-s", tc.script, srv.URL + "/"}, tc.args...)
		out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("wrk %v: %v\n%s", args, err, out)
		}
		w, err := parseWrk(out)
		if err != nil {
			t.Fatal(err)
		}
		if w.Requests == 0 || w.Latency.P50 <= 0 || w.Latency.P50 > w.Latency.P99 {
			t.Fatalf("wrk summary %+v", w)
		}
	}
	srv.Close() // waits for the handlers: none sends on seen after this
	close(seen)
	distinct := map[string]bool{}
	sent := 0 // the paths script's requests (on a loaded machine 1 s may hold fewer than 30)
	for p := range seen {
		if p == "/" {
			continue
		}
		sent++
		rest, ok := strings.CutPrefix(p, "/bench/")
		if !ok || strings.ContainsAny(rest, "0123456789/") {
			t.Fatalf("path %q: want /bench/<letters>", p)
		}
		distinct[p] = true
	}
	if want := min(sent, 30); len(distinct) != want {
		t.Fatalf("%d distinct paths in %d requests, want %d (the script cycles through 30)", len(distinct), sent, want)
	}
}

func TestMedianAndRatioSkipMissingFigures(t *testing.T) {
	nan := math.NaN()
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Fatalf("median even = %v", m)
	}
	if m := median([]float64{nan, 5, nan}); m != 5 {
		t.Fatalf("median with NaN = %v", m)
	}
	if !math.IsNaN(median(nil)) || !math.IsNaN(ratio(1, 0)) || !math.IsNaN(ratio(nan, 1)) {
		t.Fatal("missing figures must give NaN")
	}
}

func TestRotateVisitsEveryTargetOncePerRound(t *testing.T) {
	ts := []string{"a", "b", "c"}
	firsts := map[string]bool{}
	for r := range 3 {
		got := rotate(ts, r)
		if len(got) != 3 {
			t.Fatalf("round %d: %v", r, got)
		}
		firsts[got[0]] = true
	}
	if len(firsts) != 3 {
		t.Fatalf("each target should go first once in 3 rounds, got %v", firsts)
	}
}

func TestSummaryTableShowsRatiosToBareAndDirect(t *testing.T) {
	fig := func(rps, p99, cpu, pod float64) figures {
		return figures{Requests: 100, RPS: rps, P50: 1, P99: p99, P999: 3, ProxyCPU: cpu, PodCPU: pod,
			ServiceP50: math.NaN(), ServiceP99: math.NaN(), SendLagP99: math.NaN()}
	}
	samples := []sample{
		{Target: tDirect, Round: 1, Mode: "peak", Fig: fig(40000, 1, math.NaN(), 20)},
		{Target: tBare, Round: 1, Mode: "peak", Fig: fig(10000, 4, 50, 80)},
		{Target: tBare, Round: 2, Mode: "peak", Fig: fig(12000, 4, 50, 80)},
		{Target: tBare, Round: 3, Mode: "peak", Fig: fig(8000, 4, 50, 80)},
		{Target: tPulsegate, Round: 1, Mode: "peak", Fig: fig(13000, 4, 35, 60)},
		{Target: tBare, Round: 1, Mode: "open", Fig: fig(6000, 2, 50, 80)},
		{Target: tPulsegate, Round: 1, Mode: "open", Fig: fig(6000, 1.5, 35, 60)},
	}
	rss := []rssSample{{Target: tBare, PeakMiB: 50}, {Target: tPulsegate, PeakMiB: 25}}
	med := summarize(samples, rss)
	if got := med.get(tBare, "peak").RPS; got != 10000 {
		t.Fatalf("bare peak median %v, want 10000", got)
	}
	tab := summaryTable(med, []string{tDirect, tPulsegate, tBare}, "peak", "open", "at 6000 req/s")
	for _, want := range []string{
		"| pulsegate (full) | 13000 | 1.30× | 0.33× | 35.0 | 0.70× | 60.0 | 0.75× | 3.00× | 1.50 | 0.75× | – | 25.0 | 0.50× |",
		"| bare ReverseProxy | 10000 | 1.00× | 0.25× |",
		"| direct (no proxy) | 40000 | 4.00× | 1.00× | – | – | 20.0 |",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("summary table lacks %q:\n%s", want, tab)
		}
	}
	detail := modeTable(med, []string{tDirect, tPulsegate, tBare}, "peak", false)
	if !strings.Contains(detail, "| pulsegate (full) | 13000 (1.30× · 0.33×) |") {
		t.Errorf("mode table:\n%s", detail)
	}
	if b, err := json.Marshal(samples[0].Fig); err != nil || !strings.Contains(string(b), `"proxy_cpu_us":null`) {
		t.Errorf("figures JSON %s, %v: want NaN as null", b, err)
	}
}

func TestFindWindowLocatesTheProxySnapshotAnywhere(t *testing.T) {
	var doc any
	raw := `{"performance_metrics":{"avg_response_time":0.001},
	  "requests":{"windows":{"1m":{"requests":60000,"p50":0.0004,"p99":0.002},"5m":{"requests":1}}, "routes_tracked": 3}}`
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	w := findWindow(doc, "1m")
	if w == nil || num(w, "requests") != 60000 || num(w, "p99") != 0.002 {
		t.Fatalf("window %v", w)
	}
	if v, ok := findNumber(doc, "routes_tracked"); !ok || v != 3 {
		t.Fatalf("routes_tracked %v %v", v, ok)
	}
	if findWindow(map[string]any{"windows": map[string]any{}}, "1m") != nil {
		t.Fatal("no 1m window must give nil")
	}
	if !math.IsNaN(num(map[string]any{"p50": nil}, "p50")) {
		t.Fatal("null figure must read as NaN")
	}
}

func TestGeneratedProxyConfigsAreAccepted(t *testing.T) {
	dir := t.TempDir()
	listen, upstream := "127.0.0.1:18080", "127.0.0.1:15000"
	checks := []struct {
		bin  string
		file string
		body string
		argv []string
	}{
		{"nginx", "nginx.conf", nginxConf(dir, listen, upstream), []string{"-t", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c"}},
		{"haproxy", "haproxy.cfg", haproxyConf(listen, upstream), []string{"-c", "-f"}},
		{"caddy", "Caddyfile", caddyConf(listen, upstream), []string{"validate", "--adapter", "caddyfile", "--config"}},
	}
	for _, c := range checks {
		t.Run(c.bin, func(t *testing.T) {
			if _, err := exec.LookPath(c.bin); err != nil {
				t.Skipf("%s not installed (bench/run.sh installs it)", c.bin)
			}
			path := filepath.Join(dir, c.file)
			if err := os.WriteFile(path, []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(c.bin, append(c.argv, path)...)
			cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s rejects the generated config: %v\n%s\n%s", c.bin, err, out, c.body)
			}
		})
	}
	// Keep-alive to the upstream is on in each.
	for _, want := range []string{"keepalive 1024", "proxy_http_version 1.1", `proxy_set_header Connection ""`} {
		if !strings.Contains(nginxConf(dir, listen, upstream), want) {
			t.Errorf("nginx config lacks %q", want)
		}
	}
	if !strings.Contains(haproxyConf(listen, upstream), "http-reuse always") {
		t.Error("haproxy config lacks http-reuse")
	}
}

func TestPulsegateEnvVariants(t *testing.T) {
	full := strings.Join(pulsegateEnv(tPulsegate, "http://u", "l", "a", "d", "mysql://root@h/test", "redis://h/0"), "\n")
	for _, want := range []string{"RESPONSIVENESS_MONITORING_ENABLED=true", "RESPONSIVENESS_MAX_CONCURRENCY=8192",
		"RESPONSIVENESS_RATE_LIMIT_RPS=1000000", "RESPONSIVENESS_DB_DSN=mysql://root@h/test", "RESPONSIVENESS_REDIS_URL=redis://h/0",
		"RESPONSIVENESS_UPSTREAM_URL=http://u", "RESPONSIVENESS_LISTEN_ADDR=l", "RESPONSIVENESS_ADMIN_ADDR=a", "RESPONSIVENESS_DATA_DIR=d"} {
		if !strings.Contains(full, want) {
			t.Errorf("full env lacks %s", want)
		}
	}
	off := strings.Join(pulsegateEnv(tPulseNoMon, "http://u", "l", "a", "d", "x", "y"), "\n")
	if !strings.Contains(off, "RESPONSIVENESS_MONITORING_ENABLED=false") || strings.Contains(off, "DB_DSN") {
		t.Errorf("monitoring-off env: %s", off)
	}
}

// The whole path for one target: the upstream and the bare proxy built and
// started pinned, a short wrk run measured with CPU from /proc, stopped.
func TestMeterAgainstBareProxy(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk not installed (bench/run.sh installs it)")
	}
	if testing.Short() {
		t.Skip("builds binaries")
	}
	bin := t.TempDir()
	for _, p := range []string{"upstream", "bareproxy", "loadgen"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, p), "../"+p).CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", p, err, out)
		}
	}
	work := t.TempDir()
	report, paths, err := writeScripts(work)
	if err != nil {
		t.Fatal(err)
	}
	upAddr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	up := pinned(0, "0", filepath.Join(bin, "upstream"), "-addr", upAddr)
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	upRun := &running{name: "upstream", url: "http://" + upAddr, cmd: up, exited: make(chan struct{})}
	go func() { _ = up.Wait(); close(upRun.exited) }()
	defer upRun.stop()
	ctx := context.Background()
	if err := waitReady(ctx, upRun, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	e := env{binDir: bin, workDir: work, upstream: upAddr, proxyCPU: "0", loadCPU: "1"}
	m := &meter{env: e, proc: procFS{root: "/proc"}, tick: 1e6 / clockTick(), upPID: up.Process.Pid, wrkLua: report, pathsLua: paths}
	r, err := e.start(ctx, tBare, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.stop()
	f, err := m.run(ctx, r, load{conns: 8, path: "/16k", duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if f.Requests == 0 || f.Errors != 0 || !(f.ProxyCPU > 0) || !(f.PodCPU > f.ProxyCPU) {
		t.Fatalf("figures %+v: want requests, no errors, proxy CPU > 0 and pod CPU > proxy CPU", f)
	}
	o, err := m.run(ctx, r, load{open: true, rate: 200, conns: 2, path: "/", duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if o.Requests != 200 || o.Errors != 0 || o.P99 < o.ServiceP50 {
		t.Fatalf("open-loop figures %+v", o)
	}
	peak, now, err := m.rss(r)
	if err != nil || !(peak > 1) || now > peak {
		t.Fatalf("RSS peak %v now %v (%v)", peak, now, err)
	}
	d, err := e.start(ctx, tDirect, 0)
	if err != nil || d.pid() != 0 || d.url != "http://"+upAddr {
		t.Fatalf("direct: %+v %v", d, err)
	}
}

func TestCPUTimesAndLists(t *testing.T) {
	root := t.TempDir()
	stat := "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 5 1 4 50 7 1 1 2 3 0\ncpu1 5 0 5 50 0 0 0 0 0 0\nintr 1 2 3\n"
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	p := procFS{root: root}
	busy, total, err := p.cpuTimes([]int{0})
	// busy = user+nice+system+steal = 5+1+4+2; irq and softirq (1+1) are the
	// kernel's, guest (3) is inside user already.
	if err != nil || busy != 12 || total != 14+50+7 {
		t.Fatalf("cpu0 busy %d total %d (%v), want 12 and 71", busy, total, err)
	}
	if busy, _, err = p.cpuTimes([]int{0, 1}); err != nil || busy != 22 {
		t.Fatalf("cpu0+1 busy %d (%v), want 22", busy, err)
	}
	if _, _, err = p.cpuTimes([]int{7}); err == nil {
		t.Fatal("a CPU missing from /proc/stat must be an error")
	}
	for in, want := range map[string]string{"0": "[0]", "0,2": "[0 2]", "1-3": "[1 2 3]"} {
		got, err := parseCPUList(in)
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("parseCPUList(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "3-1", "-1"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q): want an error", bad)
		}
	}
}
