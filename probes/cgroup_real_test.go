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
)

// realV1Cgroup creates a child cgroup named name under each v1 controller
// of this machine (skipping the test where that is impossible) and removes
// it at cleanup. It returns the directories by controller.
func realV1Cgroup(t *testing.T, name string, controllers ...string) map[string]string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		t.Skip("cgroup v2 machine: the v1 path is covered by fixtures")
	}
	dirs := map[string]string{}
	for _, c := range controllers {
		d := filepath.Join("/sys/fs/cgroup", c, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Skipf("cannot create %s: %v", d, err)
		}
		dirs[c] = d
		t.Cleanup(func() {
			// The processes are gone by now (their cleanup ran first); retry briefly while the kernel lets go.
			for i := 0; i < 100; i++ {
				if err := os.Remove(d); err == nil || os.IsNotExist(err) {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("could not remove %s", d)
		})
	}
	return dirs
}

// cgStartIn starts sh -c script with its PID written into every dir's
// cgroup.procs first; the process group is killed at cleanup.
func cgStartIn(t *testing.T, dirs map[string]string, script string) *exec.Cmd {
	t.Helper()
	var join strings.Builder
	for _, d := range dirs {
		fmt.Fprintf(&join, "echo $$ > %s/cgroup.procs && ", d)
	}
	cmd := exec.Command("sh", "-c", join.String()+script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

// cgFakeSelf is a proc root whose self/cgroup puts "this process" in the
// given v1 cgroup paths, with the host files linked from the real /proc.
func cgFakeSelf(t *testing.T, cgroupFile string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	sysWriteFile(t, filepath.Join(root, "self", "cgroup"), cgroupFile)
	for _, f := range []string{"meminfo", "stat", "loadavg"} {
		if err := os.Symlink(filepath.Join("/proc", f), filepath.Join(root, f)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func cgReadUint(t *testing.T, p, key string) float64 {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if key == "" {
		v, _, err := parseCgroupValue(string(b))
		if err != nil {
			t.Fatal(err)
		}
		return float64(v)
	}
	m, err := parseFlatKeyed(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return float64(m[key])
}

// TestRealV1MemoryLimit (RELIABILITY.md case 37): a 512 MiB v1 memory
// cgroup holding 64 MiB of shared memory reads as working set ÷ 512 MiB,
// within a point of the kernel's own numbers, not as a share of the host.
func TestRealV1MemoryLimit(t *testing.T) {
	name := fmt.Sprintf("pulsegate-test-%d", os.Getpid())
	dirs := realV1Cgroup(t, name, "memory")
	sysWriteFile(t, filepath.Join(dirs["memory"], "memory.limit_in_bytes"), "536870912")
	shm := filepath.Join("/dev/shm", name)
	t.Cleanup(func() { _ = os.Remove(shm) }) // runs after the process is killed: uncharges the cgroup
	cgStartIn(t, dirs, fmt.Sprintf("head -c 67108864 /dev/zero > %s && touch %s.done && exec sleep 120", shm, shm))
	t.Cleanup(func() { _ = os.Remove(shm + ".done") })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(shm + ".done"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the memory hog did not finish writing in 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	cfg := sysFixtureConfig(t, t.TempDir())
	cfg.System.CgroupRoot = "/sys/fs/cgroup"
	cfg.System.ProcRoot = cgFakeSelf(t, "4:memory:/"+name+"\n3:cpu:/\n2:cpuacct:/\n")
	r := NewSystemProbe(cfg, nil, nil).Probe(context.Background())
	d := sysDetails(t, r)
	usage := cgReadUint(t, filepath.Join(dirs["memory"], "memory.usage_in_bytes"), "")
	inactive := cgReadUint(t, filepath.Join(dirs["memory"], "memory.stat"), "total_inactive_file")
	kernel := (usage - inactive) / 536870912
	got := r.Figures["memory_usage"]
	js, _ := json.Marshal(d.Memory)
	t.Logf("memory_usage %.4f, kernel %.4f, details %s", got, kernel, js)
	if d.Memory.LimitSource != LimitSourceCgroup || sysDeref(d.Memory.LimitBytes) != 536870912 || d.Memory.LimitCgroup != "/"+name {
		t.Errorf("limit = %s %d %s; want the cgroup's 512 MiB", d.Memory.LimitSource, sysDeref(d.Memory.LimitBytes), d.Memory.LimitCgroup)
	}
	if math.Abs(got-kernel) > 0.01 {
		t.Errorf("memory_usage %.4f vs kernel working set ÷ limit %.4f: more than 1 point apart", got, kernel)
	}
	if got < 0.12 || got > 0.5 {
		t.Errorf("memory_usage %.4f; want about 64 MiB ÷ 512 MiB = 0.125", got)
	}
}

// TestRealV1CPUQuota (RELIABILITY.md case 39): a busy loop in a cgroup with
// quota 50000/100000 reads as its cores over the 0.5-CPU quota (not a
// share of the host's CPUs), and the host CPU is reported beside it.
func TestRealV1CPUQuota(t *testing.T) {
	name := fmt.Sprintf("pulsegate-test-cpu-%d", os.Getpid())
	dirs := realV1Cgroup(t, name, "cpu", "cpuacct")
	sysWriteFile(t, filepath.Join(dirs["cpu"], "cpu.cfs_period_us"), "100000")
	sysWriteFile(t, filepath.Join(dirs["cpu"], "cpu.cfs_quota_us"), "50000")
	cgStartIn(t, dirs, "while :; do :; done")

	cfg := sysFixtureConfig(t, t.TempDir())
	cfg.System.CgroupRoot = "/sys/fs/cgroup"
	cfg.System.ProcRoot = cgFakeSelf(t, fmt.Sprintf("4:memory:/\n3:cpu:/%s\n2:cpuacct:/%s\n", name, name))
	p := NewSystemProbe(cfg, nil, nil)
	first := p.Probe(context.Background())
	if _, ok := first.Figures["cpu_usage"]; ok {
		t.Errorf("first reading has cpu_usage: want none until a second sample")
	}
	time.Sleep(2 * time.Second)
	r := p.Probe(context.Background())
	d := sysDetails(t, r)
	js, _ := json.Marshal(d.CPU)
	t.Logf("cpu %s", js)
	if d.CPU.LimitSource != LimitSourceCgroup || sysDeref(d.CPU.QuotaCPUs) != 0.5 {
		t.Fatalf("cpu limit = %s %v; want the 0.5-CPU quota", d.CPU.LimitSource, d.CPU.QuotaCPUs)
	}
	// The figure is the cgroup's cores over its quota, not a share of the
	// host. How much CPU the loop gets depends on the machine's load (it
	// can be far below the quota on a busy 2-core machine), so only the
	// semantics are asserted: measured, relative to the quota, never above
	// it by more than a burst.
	cores := sysDeref(d.CPU.ContainerCores)
	if u := r.Figures["cpu_usage"]; cores <= 0.01 || math.Abs(u-cores/0.5) > 1e-9 || cores > 0.5*1.3 {
		t.Errorf("cpu_usage = %.3f, container cores %.3f; want cores ÷ 0.5, the loop measured and held to its quota", u, cores)
	}
	if d.CPU.HostUsageFraction == nil || sysDeref(d.CPU.NrPeriods) == 0 {
		t.Errorf("host cpu %v, nr_periods %v; want host CPU measured and the quota's CFS periods counted",
			d.CPU.HostUsageFraction, sysDeref(d.CPU.NrPeriods))
	}
}
