package test

// Fault suite, host and container resources (RELIABILITY.md §3 D): memory
// percent judged against the container's limit, not the host's RAM.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cgroupV1Memory creates a child memory cgroup with limit bytes, removed in
// t.Cleanup (after its processes have exited). Skips when the machine has
// no writable cgroup v1 memory controller.
func cgroupV1Memory(t *testing.T, limit int64) string {
	t.Helper()
	root := "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(root, "memory.limit_in_bytes")); err != nil {
		t.Skipf("no cgroup v1 memory controller at %s (cgroup v2 is covered by the probes package's fixture tests)", root)
	}
	dir := filepath.Join(root, fmt.Sprintf("pulsegate-e2e-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		t.Skipf("cannot create a memory cgroup (need root): %v", err)
	}
	t.Cleanup(func() {
		// rmdir succeeds once the cgroup has no processes left.
		for range 50 {
			if err := syscall.Rmdir(dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove %s", dir)
	})
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		t.Fatalf("setting the memory limit: %v", err)
	}
	return dir
}

// workingSet reads (usage − total_inactive_file) ÷ limit from a v1 cgroup.
func workingSet(t *testing.T, dir string) float64 {
	t.Helper()
	read := func(name string) float64 {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		return v
	}
	usage, limit := read("memory.usage_in_bytes"), read("memory.limit_in_bytes")
	f, err := os.Open(filepath.Join(dir, "memory.stat"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var inactive float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == "total_inactive_file" {
			inactive, _ = strconv.ParseFloat(v, 64)
		}
	}
	return (usage - inactive) / limit
}

// TestCase37_MemoryAgainstContainerLimit: pulsegate and a 300 MiB
// allocation share a 512 MiB memory cgroup. Expect memory usage = working
// set ÷ 512 MiB within one point, not used ÷ the host's RAM.
func TestCase37_MemoryAgainstContainerLimit(t *testing.T) {
	t.Parallel()
	needBinary(t)
	const limit = 512 << 20
	dir := cgroupV1Memory(t, limit)
	procs := filepath.Join(dir, "cgroup.procs")

	// A sibling process in the same cgroup holds 300 MiB of touched memory.
	hog := exec.Command("python3", "-c", `
import sys, time
sys.stdin.readline()
x = bytearray(300 << 20)
for i in range(0, len(x), 4096):
    x[i] = 1
print("allocated", flush=True)
time.sleep(300)
`)
	stdin, _ := hog.StdinPipe()
	stdout, _ := hog.StdoutPipe()
	if err := hog.Start(); err != nil {
		t.Fatalf("starting the allocator: %v", err)
	}
	hogDone := make(chan struct{})
	t.Cleanup(func() { hog.Process.Kill(); <-hogDone })
	if err := os.WriteFile(procs, []byte(strconv.Itoa(hog.Process.Pid)), 0o644); err != nil {
		t.Fatalf("moving the allocator into the cgroup: %v", err)
	}
	stdin.Write([]byte("go\n"))
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	go func() { hog.Wait(); close(hogDone) }()
	if !strings.HasPrefix(line, "allocated") {
		t.Fatalf("allocator said %q", line)
	}

	p := startPulsegate(t, map[string]string{
		"RESPONSIVENESS_UPSTREAM_URL":        "http://127.0.0.1:9",
		"RESPONSIVENESS_MONITORING_INTERVAL": "1",
	}, []string{"sh", "-c", `echo $$ > "$0" && exec "$@"`, procs})

	var reported, measured float64
	eventually(t, 30*time.Second, "memory_usage reported within 1 point of the cgroup working set", func() bool {
		h := p.health(t)
		v, ok := num(h, "metrics.memory_usage")
		if !ok {
			return false
		}
		reported, measured = v, workingSet(t, dir)
		d := reported - measured
		return d < 0.01 && d > -0.01
	})
	perf := p.perf(t)
	pctv, _ := num(perf, "resource_metrics.memory_usage_percent")
	report(t, "37", "memory usage vs cgroup working set ÷ 512 MiB limit (v1)", fmt.Sprintf("reported %.2f%%, kernel %.2f%% (performance JSON %.2f%%)", reported*100, measured*100, pctv), "within 1 point")
	if reported < 0.55 {
		t.Errorf("memory_usage %.3f: 300 MiB of a 512 MiB limit is over 0.55; judged against the host?", reported)
	}
	if pctv != 0 && (pctv < reported*100-1 || pctv > reported*100+1) {
		t.Errorf("performance memory_usage_percent %.2f disagrees with health memory_usage %.4f", pctv, reported)
	}
}
