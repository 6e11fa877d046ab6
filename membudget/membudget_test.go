package membudget

import (
	"os"
	"path/filepath"
	"testing"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestDecide(t *testing.T) {
	s := Settings{Share: 0.8, DefaultBytes: 64 << 20, MaxProcs: 2}
	cases := []struct {
		name        string
		e           Env
		limit       int64
		source      string
		procs       int
		procsSource string
		gogc        int
	}{
		{"container limit", Env{Getenv: env(nil), ContainerLimit: 256 << 20, NumCPU: 8}, 256 << 20 * 8 / 10, "cgroup", 2, "sidecar default", 100},
		{"outside containers", Env{Getenv: env(nil), NumCPU: 8}, 64 << 20, "default", 2, "sidecar default", 100},
		{"user GOMEMLIMIT wins", Env{Getenv: env(map[string]string{"GOMEMLIMIT": "100MiB"}), ContainerLimit: 256 << 20, NumCPU: 8}, -1, "GOMEMLIMIT", 2, "sidecar default", 100},
		{"user GOGC kept", Env{Getenv: env(map[string]string{"GOGC": "50"}), NumCPU: 1}, 64 << 20, "default", 0, "every CPU", 50},
		{"GOGC off", Env{Getenv: env(map[string]string{"GOGC": "off"}), NumCPU: 1}, 64 << 20, "default", 0, "every CPU", -1},
		{"CPU limit: Go follows it", Env{Getenv: env(nil), CPULimited: true, NumCPU: 8}, 64 << 20, "default", 0, "cgroup", 100},
		{"user GOMAXPROCS wins", Env{Getenv: env(map[string]string{"GOMAXPROCS": "6"}), NumCPU: 8}, 64 << 20, "default", 0, "GOMAXPROCS", 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := Decide(c.e, s)
			if b.LimitBytes != c.limit || b.Source != c.source || b.GOMAXPROCS != c.procs || b.GOMAXPROCSSource != c.procsSource || b.GOGC != c.gogc {
				t.Fatalf("Decide = %+v; want limit %d (%s), GOMAXPROCS %d (%s), GOGC %d", b, c.limit, c.source, c.procs, c.procsSource, c.gogc)
			}
		})
	}
	if b := Decide(Env{Getenv: env(nil), NumCPU: 4}, Settings{Share: 0.8}); b.Source != "none" || b.LimitBytes != 0 {
		t.Fatalf("no container, no default: %+v; want none", b)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCgroupV2(t *testing.T) {
	d := t.TempDir()
	write(t, filepath.Join(d, "proc"), "0::/kubepods/pod1/ctr\n")
	root := filepath.Join(d, "cg")
	write(t, filepath.Join(root, "kubepods/pod1/ctr/memory.max"), "max\n")
	write(t, filepath.Join(root, "kubepods/pod1/memory.max"), "134217728\n") // the pod's limit applies
	write(t, filepath.Join(root, "kubepods/memory.max"), "1073741824\n")
	write(t, filepath.Join(root, "kubepods/pod1/ctr/cpu.max"), "max 100000\n")
	write(t, filepath.Join(root, "kubepods/pod1/cpu.max"), "50000 100000\n")
	fs := cgroupFS{proc: filepath.Join(d, "proc"), root: root}
	if got := fs.memoryLimit(); got != 128<<20 {
		t.Fatalf("memory limit %d; want %d", got, 128<<20)
	}
	if !fs.cpuLimited() {
		t.Fatal("cpu.max 50000 100000 on the pod: want CPU limited")
	}
}

func TestCgroupV1Unlimited(t *testing.T) {
	d := t.TempDir()
	write(t, filepath.Join(d, "proc"), "4:memory:/a/b\n3:cpu,cpuacct:/a/b\n")
	root := filepath.Join(d, "cg")
	write(t, filepath.Join(root, "memory/a/b/memory.limit_in_bytes"), "9223372036854771712\n")
	write(t, filepath.Join(root, "cpu,cpuacct/a/b/cpu.cfs_quota_us"), "-1\n")
	fs := cgroupFS{proc: filepath.Join(d, "proc"), root: root}
	if got := fs.memoryLimit(); got != 0 {
		t.Fatalf("v1 sentinel: limit %d; want 0 (none)", got)
	}
	if fs.cpuLimited() {
		t.Fatal("cfs quota -1: want not limited")
	}
	write(t, filepath.Join(root, "memory/a/b/memory.limit_in_bytes"), "67108864\n")
	if got := fs.memoryLimit(); got != 64<<20 {
		t.Fatalf("limit %d; want 64 MiB", got)
	}
}

func TestMaxConnections(t *testing.T) {
	in64 := Budget{ContainerLimitBytes: 64 << 20, LimitBytes: 64 << 20 * 8 / 10, Source: "cgroup"}
	if got := in64.MaxConnections(0); got < 600 || got > 800 {
		t.Fatalf("64 MiB container: cap %d; want what fits in 51 MiB at 48 KiB each (~750)", got)
	}
	if got := in64.MaxConnections(5000); got != 5000 {
		t.Fatalf("explicit setting: %d; want 5000", got)
	}
	if got := in64.MaxConnections(-1); got != 0 {
		t.Fatalf("-1: %d; want no cap", got)
	}
	outside := Budget{LimitBytes: 64 << 20, Source: "default"}
	if got := outside.MaxConnections(0); got != 0 {
		t.Fatalf("outside containers: cap %d; want none (the soft limit is not a kill)", got)
	}
	tiny := Budget{ContainerLimitBytes: 16 << 20, LimitBytes: 12 << 20, Source: "cgroup"}
	if got := tiny.MaxConnections(0); got != minConnections {
		t.Fatalf("16 MiB container: cap %d; want the floor %d", got, minConnections)
	}
}
