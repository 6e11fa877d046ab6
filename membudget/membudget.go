// Package membudget sizes the Go runtime for a sidecar at start: a soft
// memory limit (runtime/debug.SetMemoryLimit) derived from the container's
// memory limit, in place of a fixed GOGC, and GOMAXPROCS when no CPU limit
// is set.
//
// Why a budget and not GOGC=50: GOGC=50 collects when the heap grows half
// past the live data, whatever memory is free, so it pays GC CPU at every
// rate for a footprint the pod does not need. A soft limit lets the heap
// grow at the default GOGC=100 while there is room and makes the collector
// work harder only near the budget; the budget is a share of the container
// limit (the rest is headroom for stacks, OS buffers and the runtime's own
// overhead, which the limit counts only in part). GCTuner (gctune.go)
// lowers GOGC only while the live heap and stacks are large, i.e. with
// many busy connections.
package membudget

import (
	"bufio"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// Settings are the configurable parts (config section runtime).
type Settings struct {
	// Share of the container memory limit that becomes the soft limit.
	Share float64
	// DefaultBytes is the soft limit outside a memory-limited container
	// (0 = none).
	DefaultBytes int64
	// MaxProcs is GOMAXPROCS when neither GOMAXPROCS nor a CPU limit is set
	// (capped at the CPUs available; 0 = the Go default, every CPU).
	MaxProcs int
}

// Budget is what was decided, for /metrics and the performance JSON.
type Budget struct {
	// LimitBytes is the soft memory limit in force (0 = none).
	LimitBytes int64 `json:"memory_budget_bytes"`
	// Source says where it came from: "GOMEMLIMIT" (the user's), "cgroup"
	// (share × the container limit), "default" (outside containers) or "none".
	Source string `json:"memory_budget_source"`
	// ContainerLimitBytes is the cgroup memory limit found (0 = none).
	ContainerLimitBytes int64 `json:"container_memory_limit_bytes"`
	// Share is the configured share of the container limit.
	Share float64 `json:"memory_limit_share"`
	// GOGC is the GC percent in force (-1 = off).
	GOGC int `json:"gogc"`
	// GOMAXPROCS in force, and where it came from: "GOMAXPROCS" (the
	// user's), "cgroup" (Go follows the CPU limit), "sidecar default".
	GOMAXPROCS       int    `json:"gomaxprocs"`
	GOMAXPROCSSource string `json:"gomaxprocs_source"`
	// MaxClientConnections is the cap on open client connections in force
	// (0 = none); see MaxConnections.
	MaxClientConnections int `json:"max_client_connections"`
}

// Per-connection cost and fixed base, measured (docs/performance.md): with
// every connection busy, pulsegate's resident memory grew by ~31 KiB per
// client connection from 512 to 4,096 connections (the upstream connection
// included), over ~16 MiB at rest. 48 KiB leaves room for what the
// memory cgroup also charges per socket.
const (
	perConnectionBytes = 48 << 10
	baseBytes          = 16 << 20
	minConnections     = 64
)

// MaxConnections is the cap on open client connections: setting when
// positive; none (0) when setting is negative, or when the budget does not
// come from a container's hard limit (outside containers going past the
// soft limit costs GC work, not a kill); else what fits in the budget.
func (b Budget) MaxConnections(setting int) int {
	switch {
	case setting > 0:
		return setting
	case setting < 0 || b.ContainerLimitBytes <= 0:
		return 0
	}
	budget := b.ContainerLimitBytes
	if b.LimitBytes > 0 && b.LimitBytes < budget {
		budget = b.LimitBytes
	}
	return max(minConnections, int((budget-baseBytes)/perConnectionBytes))
}

// Env is the part of the environment and the machine Decide reads.
type Env struct {
	Getenv func(string) string
	// ContainerLimit is the cgroup memory limit, 0 = none.
	ContainerLimit int64
	// CPULimited: a cgroup CPU quota is set (Go sizes GOMAXPROCS to it).
	CPULimited bool
	NumCPU     int
}

// Decide works out the budget without applying it. A user's GOMEMLIMIT,
// GOGC and GOMAXPROCS win (the runtime already applied them).
func Decide(e Env, s Settings) Budget {
	b := Budget{Share: s.Share, ContainerLimitBytes: e.ContainerLimit, GOGC: 100}
	if v := e.Getenv("GOGC"); v != "" {
		if strings.EqualFold(v, "off") {
			b.GOGC = -1
		} else if n, err := strconv.Atoi(v); err == nil {
			b.GOGC = n
		}
	}
	switch {
	case e.Getenv("GOMEMLIMIT") != "":
		b.Source = "GOMEMLIMIT"
		b.LimitBytes = -1 // the runtime's; Apply reads it back
	case e.ContainerLimit > 0 && s.Share > 0:
		b.Source = "cgroup"
		b.LimitBytes = int64(float64(e.ContainerLimit) * s.Share)
	case s.DefaultBytes > 0:
		b.Source = "default"
		b.LimitBytes = s.DefaultBytes
	default:
		b.Source = "none"
	}
	switch {
	case e.Getenv("GOMAXPROCS") != "":
		b.GOMAXPROCSSource = "GOMAXPROCS"
	case e.CPULimited:
		b.GOMAXPROCSSource = "cgroup"
	case s.MaxProcs > 0 && s.MaxProcs < e.NumCPU:
		b.GOMAXPROCSSource = "sidecar default"
		b.GOMAXPROCS = s.MaxProcs
	default:
		b.GOMAXPROCSSource = "every CPU"
	}
	return b
}

// Apply sets the soft memory limit and GOMAXPROCS as decided and fills in
// the figures the runtime holds.
func Apply(b Budget) Budget {
	switch b.Source {
	case "cgroup", "default":
		debug.SetMemoryLimit(b.LimitBytes)
	}
	if cur := debug.SetMemoryLimit(-1); cur != math.MaxInt64 {
		b.LimitBytes = cur
	} else {
		b.LimitBytes = 0
	}
	if b.GOMAXPROCSSource == "sidecar default" {
		runtime.GOMAXPROCS(b.GOMAXPROCS)
	}
	b.GOMAXPROCS = runtime.GOMAXPROCS(0)
	return b
}

// Probe reads the machine: the container's memory limit and whether a CPU
// limit is set, from /proc/self/cgroup and the cgroup mounts (v1 or v2).
func Probe(getenv func(string) string) Env {
	e := Env{Getenv: getenv, NumCPU: runtime.NumCPU()}
	fs := cgroupFS{proc: "/proc/self/cgroup", root: "/sys/fs/cgroup"}
	e.ContainerLimit = fs.memoryLimit()
	e.CPULimited = fs.cpuLimited()
	return e
}

// cgroupFS finds limits for the process whose /proc/<pid>/cgroup is proc,
// with the cgroup filesystems mounted under root.
type cgroupFS struct{ proc, root string }

// paths maps a v1 controller (or "" for v2) to this process's cgroup path.
func (c cgroupFS) paths() map[string]string {
	out := map[string]string{}
	f, err := os.Open(c.proc)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for ctl := range strings.SplitSeq(parts[1], ",") {
			out[ctl] = parts[2]
		}
	}
	return out
}

// minOverAncestors reads file in dir and each parent up to mount, and
// returns the smallest limit (the effective one); 0 = unlimited.
func minOverAncestors(mount, cgPath, file string) int64 {
	var best int64
	dir := filepath.Join(mount, cgPath)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, file)); err == nil {
			if v, ok := parseLimit(string(b)); ok && (best == 0 || v < best) {
				best = v
			}
		}
		if dir == mount || !strings.HasPrefix(dir, mount) {
			return best
		}
		dir = filepath.Dir(dir)
	}
}

// parseLimit reads a cgroup limit file: "max" (v2) and v1's huge sentinel
// (≥ 2^62) are unlimited.
func parseLimit(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "max" || s == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 || v >= 1<<62 {
		return 0, false
	}
	return int64(v), true
}

func (c cgroupFS) memoryLimit() int64 {
	p := c.paths()
	if v2, ok := p[""]; ok {
		if v := minOverAncestors(c.root, v2, "memory.max"); v > 0 {
			return v
		}
	}
	if v1, ok := p["memory"]; ok {
		return minOverAncestors(filepath.Join(c.root, "memory"), v1, "memory.limit_in_bytes")
	}
	return 0
}

func (c cgroupFS) cpuLimited() bool {
	p := c.paths()
	if v2, ok := p[""]; ok {
		dir := filepath.Join(c.root, v2)
		for strings.HasPrefix(dir, c.root) {
			if b, err := os.ReadFile(filepath.Join(dir, "cpu.max")); err == nil && !strings.HasPrefix(strings.TrimSpace(string(b)), "max") {
				return true
			}
			if dir == c.root {
				break
			}
			dir = filepath.Dir(dir)
		}
	}
	if v1, ok := p["cpu"]; ok {
		for _, mount := range []string{filepath.Join(c.root, "cpu"), filepath.Join(c.root, "cpu,cpuacct")} {
			dir := filepath.Join(mount, v1)
			for strings.HasPrefix(dir, mount) {
				if b, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us")); err == nil {
					if q, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && q > 0 {
						return true
					}
				}
				if dir == mount {
					break
				}
				dir = filepath.Dir(dir)
			}
		}
	}
	return false
}
