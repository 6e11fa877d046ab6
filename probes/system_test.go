package probes

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/config"
)

func TestParseCgroupValue(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		in        string
		want      uint64
		unlimited bool
		err       bool
	}{
		{"plain", "536870912\n", 536870912, false, false},
		{"v2 max", "max\n", 0, true, false},
		{"v1 sentinel", "9223372036854771712", 9223372036854771712, true, false},
		{"cfs -1", "-1", 0, true, false},
		{"garbage", "lots", 0, false, true},
		{"empty", "\n", 0, false, true},
		{"negative", "-5", 0, false, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			v, unl, err := parseCgroupValue(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v; want error %v", err, tc.err)
			}
			if err == nil && (v != tc.want || unl != tc.unlimited) {
				t.Errorf("got %d unlimited=%v; want %d unlimited=%v", v, unl, tc.want, tc.unlimited)
			}
		})
	}
}

func TestParseCPUQuotas(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  bool
	}{
		{"50000 100000", 0.5, false},
		{"max 100000", 0, false},
		{"200000 100000\n", 2, false},
		{"half 100000", 0, true},
		{"50000 0", 0, true},
		{"50000", 0, true},
	} {
		got, err := parseCPUMax(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseCPUMax(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
	if got, err := parseCFSQuota("50000\n", "100000\n"); err != nil || got != 0.5 {
		t.Errorf("parseCFSQuota(50000,100000) = %v, %v; want 0.5", got, err)
	}
	if got, err := parseCFSQuota("-1", "100000"); err != nil || got != 0 {
		t.Errorf("parseCFSQuota(-1) = %v, %v; want 0 (unlimited)", got, err)
	}
	if _, err := parseCFSQuota("x", "100000"); err == nil || !strings.Contains(err.Error(), "cfs_quota_us") {
		t.Errorf("parseCFSQuota(x) error = %v; want one naming cpu.cfs_quota_us", err)
	}
}

func TestParseFlatKeyedAndProcCgroup(t *testing.T) {
	m, err := parseFlatKeyed("inactive_file 42\nanon 7\n\n")
	if err != nil || m["inactive_file"] != 42 || m["anon"] != 7 {
		t.Fatalf("parseFlatKeyed = %v, %v", m, err)
	}
	if _, err := parseFlatKeyed("usage_usec many\n"); err == nil || !strings.Contains(err.Error(), "usage_usec") {
		t.Errorf("unparseable value: err = %v; want one naming usage_usec", err)
	}
	v1, v2, hasV2, err := parseProcCgroup("12:memory:/docker/abc\n11:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n0::/\n")
	if err != nil || v1["memory"] != "/docker/abc" || v1["cpuacct"] != "/docker/abc" || v1["cpu"] != "/docker/abc" || !hasV2 || v2 != "/" {
		t.Errorf("parseProcCgroup = %v %q %v %v", v1, v2, hasV2, err)
	}
	if _, _, _, err := parseProcCgroup("garbage\n"); err == nil {
		t.Error("parseProcCgroup(garbage): want an error")
	}
}

func TestParsePSIAndLoad(t *testing.T) {
	ps, err := parsePSI("some avg10=7.43 avg60=2.41 avg300=1.34 total=9338261\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	if err != nil || ps.Some == nil || ps.Some.Avg10 != 7.43 || ps.Full == nil || math.Abs(ps.Some.TotalSeconds-9.338261) > 1e-9 {
		t.Fatalf("parsePSI = %+v, %v", ps, err)
	}
	if _, err := parsePSI("some avg10=x\n"); err == nil {
		t.Error("parsePSI(avg10=x): want an error")
	}
	la, err := parseLoadAvg("0.50 0.40 0.30 1/100 12345\n")
	if err != nil || la != (SystemLoad{0.5, 0.4, 0.3}) {
		t.Errorf("parseLoadAvg = %+v, %v", la, err)
	}
	if _, err := parseLoadAvg("0.5"); err == nil {
		t.Error("parseLoadAvg(short): want an error")
	}
}

// sysFixtureConfig points the system probe at testdata/cgroup/<name>.
func sysFixtureConfig(t *testing.T, root string) *config.Config {
	t.Helper()
	cfg := config.Defaults()
	cfg.System.CgroupRoot = filepath.Join(root, "cgroup")
	cfg.System.ProcRoot = filepath.Join(root, "proc")
	cfg.System.DiskPaths = []string{t.TempDir()}
	return cfg
}

func sysDetails(t *testing.T, r Result) SystemDetails {
	t.Helper()
	d, ok := r.Details.(SystemDetails)
	if !ok {
		t.Fatalf("Details is %T; want SystemDetails", r.Details)
	}
	return d
}

func TestSystemProbeFixtures(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		fixture     string
		version     int
		memory      float64 // memory_usage figure
		limitSource string
		limitBytes  uint64
		limitCgroup string
		quota       float64 // 0 = none
		degraded    string  // substring of a "degraded:" reason; "" = none
	}{
		// working set = 256 MiB − 64 MiB inactive_file = 192 MiB of 512 MiB.
		{"v2-limit", 2, 192.0 / 512, LimitSourceCgroup, 512 * mib, "/kubepods/pod1/app", 0.5, ""},
		// memory.max = max everywhere: host (16 GiB, 8 GiB available) = 0.5.
		{"v2-max", 2, 0.5, LimitSourceHost, 16 << 30, "", 0, ""},
		// the leaf is unlimited, the pod has 1 GiB, the parent 2 GiB: the smallest wins.
		{"v2-ancestor", 2, 192.0 / 1024, LimitSourceCgroup, 1 << 30, "/kubepods/pod1", 2, ""},
		{"v2-nomemory", 2, 0.5, LimitSourceHost, 16 << 30, "", 0, "app/memory.current"},
		{"v2-garbage", 2, 0.5, LimitSourceHost, 16 << 30, "", 0, `"lots"`},
		{"v1-limit", 1, 192.0 / 512, LimitSourceCgroup, 512 * mib, "/docker/abc", 0.5, ""},
		{"v1-sentinel", 1, 0.5, LimitSourceHost, 16 << 30, "", 0, ""},
		{"v1-ancestor", 1, 192.0 / 1024, LimitSourceCgroup, 1 << 30, "/kubepods/pod1", 0, ""},
		{"v1-nomemory", 1, 0.5, LimitSourceHost, 16 << 30, "", 0, "cgroup/memory"},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			cfg := sysFixtureConfig(t, filepath.Join("testdata", "cgroup", tc.fixture))
			p := NewSystemProbe(cfg, nil, nil)
			r := p.Probe(context.Background())
			d := sysDetails(t, r)
			if d.CgroupVersion != tc.version {
				t.Errorf("cgroup_version = %d; want %d", d.CgroupVersion, tc.version)
			}
			if got := r.Figures["memory_usage"]; math.Abs(got-tc.memory) > 1e-9 {
				t.Errorf("memory_usage = %v; want %v (details %+v)", got, tc.memory, d.Memory)
			}
			if d.Memory.LimitSource != tc.limitSource || sysDeref(d.Memory.LimitBytes) != tc.limitBytes || d.Memory.LimitCgroup != tc.limitCgroup {
				t.Errorf("limit = %s %d %q; want %s %d %q", d.Memory.LimitSource, sysDeref(d.Memory.LimitBytes),
					d.Memory.LimitCgroup, tc.limitSource, tc.limitBytes, tc.limitCgroup)
			}
			if got := sysDeref(d.CPU.QuotaCPUs); got != tc.quota {
				t.Errorf("quota_cpus = %v; want %v", got, tc.quota)
			}
			if _, ok := r.Figures["cpu_usage"]; ok || !d.CPU.WarmingUp || d.CPU.UsageFraction != nil {
				t.Errorf("first reading: cpu_usage figure present=%v warming_up=%v usage=%v; want absent, true, null",
					ok, d.CPU.WarmingUp, d.CPU.UsageFraction)
			}
			js, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(js), `"usage_fraction":null`) {
				t.Errorf("first reading's cpu usage_fraction is not JSON null: %s", js)
			}
			reasons := strings.Join(r.Reasons, "\n")
			if tc.degraded == "" {
				if r.Status != StatusOK {
					t.Errorf("status = %s (%s); want ok", r.Status, reasons)
				}
				return
			}
			if r.Status != StatusWarning || !strings.Contains(reasons, "degraded: ") || !strings.Contains(reasons, tc.degraded) {
				t.Errorf("status = %s, reasons %q; want warning with a degraded reason naming %q", r.Status, reasons, tc.degraded)
			}
		})
	}
}

// sysCopyTree copies a fixture so a test can change it.
func sysCopyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func sysWriteFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSystemProbeCPUQuota: the container's CPU is measured against its
// quota from usage deltas, the host's separately, throttling as a fraction
// of periods; the first reading is null, never 0 (RELIABILITY.md case 39).
func TestSystemProbeCPUQuota(t *testing.T) {
	for _, tc := range []struct {
		fixture, statFile, stat2, usageFile, usage2 string
	}{
		{"v2-limit", "cgroup/kubepods/pod1/app/cpu.stat",
			"usage_usec 1500000\nnr_periods 110\nnr_throttled 15\nthrottled_usec 300000\n", "", ""},
		{"v1-limit", "cgroup/cpu,cpuacct/docker/abc/cpu.stat",
			"nr_periods 110\nnr_throttled 15\nthrottled_time 300000000\n", "cgroup/cpu,cpuacct/docker/abc/cpuacct.usage", "1500000000\n"},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			root := sysCopyTree(t, filepath.Join("testdata", "cgroup", tc.fixture))
			now := time.Date(2025, 1, 6, 10, 30, 0, 0, time.UTC)
			p := NewSystemProbe(sysFixtureConfig(t, root), nil, func() time.Time { return now })
			first := p.Probe(context.Background())
			if d := sysDetails(t, first); !d.CPU.WarmingUp {
				t.Fatalf("first reading not warming up: %+v", d.CPU)
			}
			// One second later the cgroup used 0.5 s of CPU (a full 0.5-CPU
			// quota) and the host 1.0 of its 2 CPUs' ticks: user +100, idle +100.
			now = now.Add(time.Second)
			sysWriteFile(t, filepath.Join(root, tc.statFile), tc.stat2)
			if tc.usageFile != "" {
				sysWriteFile(t, filepath.Join(root, tc.usageFile), tc.usage2)
			}
			sysWriteFile(t, filepath.Join(root, "proc/stat"), "cpu  1100 0 500 8100 100 0 0 0 0 0\n")
			r := p.Probe(context.Background())
			d := sysDetails(t, r)
			check := func(name string, got *float64, want float64) {
				t.Helper()
				if got == nil || math.Abs(*got-want) > 1e-9 {
					t.Errorf("%s = %v; want %v", name, got, want)
				}
			}
			check("cpu usage_fraction", d.CPU.UsageFraction, 1.0)
			check("container_cores", d.CPU.ContainerCores, 0.5)
			check("host_usage_fraction", d.CPU.HostUsageFraction, 0.5)
			check("throttled_fraction", d.CPU.ThrottledFraction, 0.5)
			if r.Figures["cpu_usage"] != 1.0 || r.Figures["host_cpu_usage"] != 0.5 {
				t.Errorf("figures = %v", r.Figures)
			}
			if r.Status != StatusCritical || !strings.Contains(strings.Join(r.Reasons, ";"), "cpu at 100% of a 0.50-CPU quota ≥ critical 90%") {
				t.Errorf("status %s reasons %q; want critical on CPU", r.Status, r.Reasons)
			}
		})
	}
}

// TestSystemProbeThresholdsLive: Apply changes the thresholds the status is judged by.
func TestSystemProbeThresholdsLive(t *testing.T) {
	cfg := sysFixtureConfig(t, filepath.Join("testdata", "cgroup", "v2-limit"))
	p := NewSystemProbe(cfg, nil, nil)
	if r := p.Probe(context.Background()); r.Status != StatusOK {
		t.Fatalf("status %s %v; want ok at 37.5%% memory", r.Status, r.Reasons)
	}
	cfg2 := *cfg
	cfg2.Responsiveness.MemoryWarningThreshold = 0.3
	cfg2.Responsiveness.MemoryCriticalThreshold = 0.35
	p.Apply(&cfg2)
	r := p.Probe(context.Background())
	want := "memory at 37.5% of the 512.0 MiB cgroup limit (working set 192.0 MiB) ≥ critical 35%"
	if r.Status != StatusCritical || len(r.Reasons) == 0 || r.Reasons[0] != want {
		t.Errorf("status %s reasons %q; want critical %q", r.Status, r.Reasons, want)
	}
}

// TestSystemProbeDisk: a missing disk path degrades; a real one is measured.
func TestSystemProbeDisk(t *testing.T) {
	cfg := sysFixtureConfig(t, filepath.Join("testdata", "cgroup", "v2-limit"))
	cfg.System.DiskPaths = []string{t.TempDir(), "/nonexistent/pulsegate"}
	r := NewSystemProbe(cfg, nil, nil).Probe(context.Background())
	d := sysDetails(t, r)
	if len(d.Disks) != 1 || d.Disks[0].TotalBytes == 0 || d.Disks[0].UsedFraction <= 0 || d.Disks[0].UsedFraction > 1 {
		t.Errorf("disks = %+v", d.Disks)
	}
	if r.Figures["disk_usage"] != d.Disks[0].UsedFraction {
		t.Errorf("disk_usage = %v; want %v", r.Figures["disk_usage"], d.Disks[0].UsedFraction)
	}
	if r.Status != StatusWarning || !strings.Contains(strings.Join(r.Reasons, ";"), "/nonexistent/pulsegate") {
		t.Errorf("status %s reasons %q; want warning naming the missing path", r.Status, r.Reasons)
	}
}

// TestSystemProbeRealMachine reads this machine (cgroup v1 hybrid, no
// memory limit on the root) and checks every figure is in a sane range.
func TestSystemProbeRealMachine(t *testing.T) {
	cfg := config.Defaults()
	p := NewSystemProbe(cfg, nil, nil)
	first := p.Probe(context.Background())
	time.Sleep(300 * time.Millisecond)
	r := p.Probe(context.Background())
	d := sysDetails(t, r)
	t.Logf("cgroup v%d memory %+v", d.CgroupVersion, d.Memory)
	if d.CgroupVersion == 0 {
		t.Errorf("no cgroup found on this machine; reasons %v", r.Reasons)
	}
	for _, f := range []string{"memory_usage", "disk_usage", "host_memory_usage"} {
		if v, ok := r.Figures[f]; !ok || v <= 0 || v > 1 {
			t.Errorf("%s = %v (present %v); want in (0, 1]", f, v, ok)
		}
	}
	if v, ok := r.Figures["cpu_usage"]; !ok || v < 0 || v > 4 {
		t.Errorf("cpu_usage = %v (present %v); want a measured value", v, ok)
	}
	if _, ok := first.Figures["cpu_usage"]; ok {
		t.Errorf("first reading has cpu_usage %v; want none (warming up)", first.Figures["cpu_usage"])
	}
	if d.Memory.LimitSource != LimitSourceHost && d.Memory.LimitSource != LimitSourceCgroup {
		t.Errorf("limit_source = %q", d.Memory.LimitSource)
	}
	if d.Sidecar.Goroutines < 1 || d.Sidecar.HeapBytes == 0 || d.Sidecar.OpenFDs == nil || *d.Sidecar.OpenFDs < 3 || d.Sidecar.RSSBytes == nil {
		t.Errorf("sidecar = %+v", d.Sidecar)
	}
	if d.Load == nil || d.Load.Load1 < 0 {
		t.Errorf("load = %+v", d.Load)
	}
	if len(d.Degraded) != 0 {
		t.Errorf("degraded on the real machine: %v", d.Degraded)
	}
}

// TestSystemProbeAppProcesses: processes found by name and by PID file
// (the master and its children) report RSS and growth since first seen.
func TestSystemProbeAppProcesses(t *testing.T) {
	// A master (sh) with one child (sleep), both named by the PID file's process.
	cmd := exec.Command("sh", "-c", "sleep 60 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group: sh and its sleep
		_ = cmd.Wait()
	})
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	sysWriteFile(t, pidFile, fmt.Sprintf("%d\n", cmd.Process.Pid))
	cfg := config.Defaults()
	cfg.System.AppPIDFile = pidFile
	p := NewSystemProbe(cfg, nil, nil)
	deadline := time.Now().Add(10 * time.Second)
	var d SystemDetails
	for {
		d = sysDetails(t, p.Probe(context.Background()))
		roles := map[string]int{}
		for _, ap := range d.AppProcesses {
			roles[ap.Role]++
		}
		if roles["master"] == 1 && roles["worker"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("app processes = %+v; want the master and its sleep worker", d.AppProcesses)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, ap := range d.AppProcesses {
		if ap.RSSBytes == 0 || ap.FirstRSSBytes == 0 {
			t.Errorf("process %+v: want RSS measured", ap)
		}
	}

	cfg2 := config.Defaults()
	cfg2.System.AppProcessNames = []string{"sleep"}
	cfg2.System.AppPIDFile = filepath.Join(t.TempDir(), "missing.pid")
	r := NewSystemProbe(cfg2, nil, nil).Probe(context.Background())
	d = sysDetails(t, r)
	found := false
	for _, ap := range d.AppProcesses {
		found = found || ap.Name == "sleep"
	}
	if !found {
		t.Errorf("no process named sleep in %+v", d.AppProcesses)
	}
	if r.Status != StatusWarning || !strings.Contains(strings.Join(r.Reasons, ";"), "missing.pid") {
		t.Errorf("missing PID file: status %s reasons %v; want warning naming it", r.Status, r.Reasons)
	}
}

// BenchmarkSystemProbe is one system_optimizer run on this machine.
func BenchmarkSystemProbe(b *testing.B) {
	p := NewSystemProbe(config.Defaults(), nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		p.Probe(context.Background())
	}
}
