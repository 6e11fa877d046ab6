package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTargetVariantsCarryTheirSettings(t *testing.T) {
	kind, env := splitTarget("pulsegate-defaults/GOMAXPROCS=2/GOGC=50")
	if kind != tPulseDefaults || strings.Join(env, " ") != "GOMAXPROCS=2 GOGC=50" {
		t.Fatalf("splitTarget = %q %v", kind, env)
	}
	if l := label("pulsegate-defaults/GOGC=50"); l != "pulsegate (shipped defaults), GOGC=50" {
		t.Fatalf("label = %q", l)
	}
	if l := label(tNginx); l != "nginx" {
		t.Fatalf("label(nginx) = %q", l)
	}
	def := strings.Join(pulsegateEnv(tPulseDefaults, "http://u", "l", "a", "d", "mysql://x", "redis://y"), "\n")
	if strings.Contains(def, "MONITORING_ENABLED") || strings.Contains(def, "DB_DSN") || strings.Contains(def, "MAX_CONCURRENCY") {
		t.Fatalf("shipped-defaults env sets more than the addresses:\n%s", def)
	}
	if argv := pinnedArgv(0, "", "bin", "-x"); strings.Join(argv, " ") != "bin -x" {
		t.Fatalf("unpinned argv %v", argv)
	}
}

// TestCtxSwitchesSumsEveryThread: voluntary and involuntary switches of
// every thread of every process in the tree.
func TestCtxSwitchesSumsEveryThread(t *testing.T) {
	p := fakeProc(t, map[int][5]int{10: {1, 0, 0, 0, 0}, 11: {10, 0, 0, 0, 0}})
	for pid, tasks := range map[string][]string{"10": {"10", "12"}, "11": {"11"}} {
		for i, tid := range tasks {
			dir := filepath.Join(p.root, pid, "task", tid)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			st := "Name:\tx\nvoluntary_ctxt_switches:\t" + []string{"100", "20"}[i] + "\nnonvoluntary_ctxt_switches:\t3\n"
			if err := os.WriteFile(filepath.Join(dir, "status"), []byte(st), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := p.ctxSwitches(10); got != 100+3+20+3+100+3 {
		t.Fatalf("ctxSwitches = %d; want 229", got)
	}
}

func TestFlaskTableRatios(t *testing.T) {
	row := func(target string, proxy, app, p50 float64) flaskRow {
		return flaskRow{Target: target, Round: 1, Rate: 300, AppCPU: app, CtxSw: 3,
			Fig: figures{P50: p50, P99: 2 * p50, ProxyCPU: proxy}}
	}
	rows := []flaskRow{row(tDirect, math.NaN(), 600, 1.0), row(tNginx, 150, 600, 1.1), row(tPulseDefaults, 300, 600, 1.5)}
	out := flaskTable(rows, []string{tDirect, tNginx, tPulseDefaults}, 300)
	for _, want := range []string{
		"| pulsegate (shipped defaults) | 300 | 0.50× | 2.00× | 600 | 1.50 / 3.00 | +0.500 / +1.00 |",
		"| nginx | 150 | 0.25× | 1.00× |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
