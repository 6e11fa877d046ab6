package probes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupUnlimitedV1 is the smallest value treated as "no limit" in cgroup
// v1 files: the kernel writes PAGE_COUNTER_MAX × page size, e.g.
// 9223372036854771712, not MaxInt64.
const cgroupUnlimitedV1 = uint64(1) << 62

// cgroupLayout says where this process's cgroups are.
type cgroupLayout struct {
	// Version is 1 or 2; 0 when no cgroup filesystem was found.
	Version int
	// MemoryMount/MemoryDir: the memory hierarchy's mount and this
	// process's directory in it (v2: both in the unified hierarchy).
	MemoryMount, MemoryDir string
	// CPUMount/CPUDir: quota and throttling (v1 cpu, v2 unified).
	CPUMount, CPUDir string
	// CPUAcctDir: v1 cpuacct usage (v2: same as CPUDir).
	CPUAcctDir string
	// MemoryPath and CPUPath are the cgroup paths as /proc/self/cgroup names them.
	MemoryPath, CPUPath string
}

// parseProcCgroup parses /proc/<pid>/cgroup ("id:controllers:path" lines)
// into controller → path for v1 hierarchies and the v2 ("0::") path.
func parseProcCgroup(s string) (v1 map[string]string, v2 string, hasV2 bool, err error) {
	v1 = map[string]string{}
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, "", false, fmt.Errorf("parsing cgroup line %q: want id:controllers:path", line)
		}
		if parts[0] == "0" && parts[1] == "" {
			v2, hasV2 = parts[2], true
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			if c != "" {
				v1[c] = parts[2]
			}
		}
	}
	return v1, v2, hasV2, nil
}

// parseCgroupValue parses a single-number cgroup file. "max" (v2) and
// values ≥ 2^62 (v1's sentinel) mean unlimited; so does -1 (v1 cfs quota).
func parseCgroupValue(s string) (v uint64, unlimited bool, err error) {
	s = strings.TrimSpace(s)
	switch s {
	case "max", "-1":
		return 0, true, nil
	case "":
		return 0, false, errors.New("empty value")
	}
	v, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("parsing %q: not a number or \"max\"", s)
	}
	return v, v >= cgroupUnlimitedV1, nil
}

// parseFlatKeyed parses "key value" lines (memory.stat, cpu.stat). A line
// whose value is not an unsigned integer is an error naming its key.
func parseFlatKeyed(s string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("parsing line %q: want \"key value\"", strings.TrimSpace(line))
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %q is not a number", f[0], f[1])
		}
		out[f[0]] = v
	}
	return out, nil
}

// parseCPUMax parses v2 cpu.max ("50000 100000" or "max 100000") into the
// quota in CPUs (0 = unlimited).
func parseCPUMax(s string) (cpus float64, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, fmt.Errorf("parsing cpu.max %q: want \"quota period\"", strings.TrimSpace(s))
	}
	period, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil || period == 0 {
		return 0, fmt.Errorf("parsing cpu.max period %q: not a positive number", f[1])
	}
	if f[0] == "max" {
		return 0, nil
	}
	quota, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing cpu.max quota %q: not a number or \"max\"", f[0])
	}
	return float64(quota) / float64(period), nil
}

// parseCFSQuota turns v1 cpu.cfs_quota_us and cpu.cfs_period_us into CPUs
// (0 = unlimited, quota -1).
func parseCFSQuota(quota, period string) (float64, error) {
	q, err := strconv.ParseInt(strings.TrimSpace(quota), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing cpu.cfs_quota_us %q: not a number", strings.TrimSpace(quota))
	}
	if q < 0 {
		return 0, nil
	}
	p, err := strconv.ParseUint(strings.TrimSpace(period), 10, 64)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("parsing cpu.cfs_period_us %q: not a positive number", strings.TrimSpace(period))
	}
	return float64(q) / float64(p), nil
}

// cgroupFS reads a cgroup filesystem mounted at root for the process whose
// /proc is procRoot.
type cgroupFS struct {
	root, procRoot string
}

func (c cgroupFS) read(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func cgExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// v1Mount finds the v1 mount holding controller: root/<controller> or a
// combined directory such as root/cpu,cpuacct.
func (c cgroupFS) v1Mount(controller string) string {
	if p := filepath.Join(c.root, controller); cgExists(p) {
		return p
	}
	entries, err := os.ReadDir(c.root)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		for name := range strings.SplitSeq(e.Name(), ",") {
			if name == controller {
				return filepath.Join(c.root, e.Name())
			}
		}
	}
	return ""
}

// resolve joins mount and the cgroup path, walking up to the nearest
// directory that exists (inside a container the mount is often the
// container's own cgroup while /proc/self/cgroup names the host path).
func resolveCgroupDir(mount, cgPath string) string {
	p := path.Clean("/" + cgPath)
	for {
		dir := filepath.Join(mount, filepath.FromSlash(p))
		if cgExists(dir) {
			return dir
		}
		if p == "/" {
			return mount
		}
		p = path.Dir(p)
	}
}

// layout finds this process's memory and cpu cgroups.
func (c cgroupFS) layout() (cgroupLayout, error) {
	selfPath := filepath.Join(c.procRoot, "self", "cgroup")
	s, err := c.read(selfPath)
	if err != nil {
		return cgroupLayout{}, fmt.Errorf("reading %s: %w", selfPath, err)
	}
	v1, v2, hasV2, err := parseProcCgroup(s)
	if err != nil {
		return cgroupLayout{}, fmt.Errorf("reading %s: %w", selfPath, err)
	}
	if cgExists(filepath.Join(c.root, "cgroup.controllers")) {
		if !hasV2 {
			v2 = "/"
		}
		dir := resolveCgroupDir(c.root, v2)
		return cgroupLayout{Version: 2, MemoryMount: c.root, MemoryDir: dir, CPUMount: c.root, CPUDir: dir,
			CPUAcctDir: dir, MemoryPath: v2, CPUPath: v2}, nil
	}
	l := cgroupLayout{Version: 1}
	var missing []string
	if m := c.v1Mount("memory"); m != "" {
		l.MemoryMount, l.MemoryPath = m, v1["memory"]
		l.MemoryDir = resolveCgroupDir(m, l.MemoryPath)
	} else {
		missing = append(missing, filepath.Join(c.root, "memory"))
	}
	if m := c.v1Mount("cpu"); m != "" {
		l.CPUMount, l.CPUPath = m, v1["cpu"]
		l.CPUDir = resolveCgroupDir(m, l.CPUPath)
	} else {
		missing = append(missing, filepath.Join(c.root, "cpu"))
	}
	if m := c.v1Mount("cpuacct"); m != "" {
		l.CPUAcctDir = resolveCgroupDir(m, v1["cpuacct"])
	} else {
		missing = append(missing, filepath.Join(c.root, "cpuacct"))
	}
	if len(missing) == 3 {
		return cgroupLayout{}, fmt.Errorf("finding cgroups under %s: no cgroup v2 (cgroup.controllers) and no v1 memory/cpu/cpuacct mounts", c.root)
	}
	if len(missing) > 0 {
		return l, fmt.Errorf("finding cgroup v1 controllers: missing %s", strings.Join(missing, ", "))
	}
	return l, nil
}

// ancestors returns dir and its parents up to and including mount.
func cgroupAncestors(mount, dir string) []string {
	var out []string
	mount = filepath.Clean(mount)
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		out = append(out, d)
		if d == mount || !strings.HasPrefix(d, mount) || d == filepath.Dir(d) {
			return out
		}
	}
}

// cgroupMemory is one reading of a memory cgroup.
type cgroupMemory struct {
	UsageBytes        uint64
	InactiveFileBytes uint64
	WorkingSetBytes   uint64
	// LimitBytes is the smallest limit on the cgroup or its ancestors; 0 = none.
	LimitBytes uint64
	// LimitDir is the directory whose file set the limit.
	LimitDir string
	// AtRoot: the process sits in the v2 root cgroup, which reports no
	// usage; the other fields are zero.
	AtRoot bool
}

// readMemory reads usage, inactive file cache and the effective limit.
func (c cgroupFS) readMemory(l cgroupLayout) (cgroupMemory, error) {
	var m cgroupMemory
	if l.MemoryDir == "" {
		return m, fmt.Errorf("reading cgroup memory: no memory controller under %s", c.root)
	}
	usageFile, limitFile, inactiveKey := "memory.current", "memory.max", "inactive_file"
	if l.Version == 1 {
		usageFile, limitFile, inactiveKey = "memory.usage_in_bytes", "memory.limit_in_bytes", "total_inactive_file"
	}
	p := filepath.Join(l.MemoryDir, usageFile)
	s, err := c.read(p)
	if err != nil {
		if l.Version == 2 && errors.Is(err, fs.ErrNotExist) && filepath.Clean(l.MemoryDir) == filepath.Clean(l.MemoryMount) {
			// The v2 root cgroup keeps no memory.current: the host is the limit.
			m.AtRoot = true
			return m, nil
		}
		return m, fmt.Errorf("reading cgroup memory usage: %w", err)
	}
	usage, _, err := parseCgroupValue(s)
	if err != nil {
		return m, fmt.Errorf("reading cgroup memory usage %s: %w", p, err)
	}
	m.UsageBytes = usage
	p = filepath.Join(l.MemoryDir, "memory.stat")
	s, err = c.read(p)
	if err != nil {
		return m, fmt.Errorf("reading cgroup memory stats: %w", err)
	}
	stat, err := parseFlatKeyed(s)
	if err != nil {
		return m, fmt.Errorf("reading cgroup memory stats %s: %w", p, err)
	}
	inactive, ok := stat[inactiveKey]
	if !ok && l.Version == 1 {
		inactive, ok = stat["inactive_file"]
	}
	if !ok {
		return m, fmt.Errorf("reading cgroup memory stats %s: no %s", p, inactiveKey)
	}
	m.InactiveFileBytes = inactive
	if inactive < usage {
		m.WorkingSetBytes = usage - inactive
	}
	for i, dir := range cgroupAncestors(l.MemoryMount, l.MemoryDir) {
		p := filepath.Join(dir, limitFile)
		s, err := c.read(p)
		if err != nil {
			// v2's root cgroup has no memory.max; any level above the leaf may lack it.
			if errors.Is(err, fs.ErrNotExist) && (i > 0 || dir == filepath.Clean(l.MemoryMount)) {
				continue
			}
			return m, fmt.Errorf("reading cgroup memory limit: %w", err)
		}
		v, unlimited, err := parseCgroupValue(s)
		if err != nil {
			return m, fmt.Errorf("reading cgroup memory limit %s: %w", p, err)
		}
		if !unlimited && (m.LimitBytes == 0 || v < m.LimitBytes) {
			m.LimitBytes, m.LimitDir = v, dir
		}
	}
	return m, nil
}

// cgroupCPU is one reading of a cpu cgroup.
type cgroupCPU struct {
	// UsageSeconds is cumulative CPU time of the cgroup.
	UsageSeconds float64
	// QuotaCPUs is the smallest quota on the cgroup or its ancestors; 0 = none.
	QuotaCPUs float64
	// QuotaDir is the directory whose file set the quota.
	QuotaDir string
	// Throttling counters (cumulative).
	NrPeriods, NrThrottled uint64
	ThrottledSeconds       float64
}

// readCPU reads cumulative usage, throttling and the effective quota.
func (c cgroupFS) readCPU(l cgroupLayout) (cgroupCPU, error) {
	var out cgroupCPU
	if l.Version == 2 {
		p := filepath.Join(l.CPUDir, "cpu.stat")
		s, err := c.read(p)
		if err != nil {
			return out, fmt.Errorf("reading cgroup cpu usage: %w", err)
		}
		st, err := parseFlatKeyed(s)
		if err != nil {
			return out, fmt.Errorf("reading cgroup cpu usage %s: %w", p, err)
		}
		u, ok := st["usage_usec"]
		if !ok {
			return out, fmt.Errorf("reading cgroup cpu usage %s: no usage_usec", p)
		}
		out.UsageSeconds = float64(u) / 1e6
		out.NrPeriods, out.NrThrottled = st["nr_periods"], st["nr_throttled"]
		out.ThrottledSeconds = float64(st["throttled_usec"]) / 1e6
		for i, dir := range cgroupAncestors(l.CPUMount, l.CPUDir) {
			p := filepath.Join(dir, "cpu.max")
			s, err := c.read(p)
			if err != nil {
				// The root cgroup (and a level whose parent does not delegate cpu) has no cpu.max.
				if errors.Is(err, fs.ErrNotExist) && (i > 0 || dir == filepath.Clean(l.CPUMount)) {
					continue
				}
				return out, fmt.Errorf("reading cgroup cpu quota: %w", err)
			}
			q, err := parseCPUMax(s)
			if err != nil {
				return out, fmt.Errorf("reading cgroup cpu quota %s: %w", p, err)
			}
			if q > 0 && (out.QuotaCPUs == 0 || q < out.QuotaCPUs) {
				out.QuotaCPUs, out.QuotaDir = q, dir
			}
		}
		return out, nil
	}
	if l.CPUAcctDir == "" {
		return out, fmt.Errorf("reading cgroup cpu usage: no cpuacct controller under %s", c.root)
	}
	p := filepath.Join(l.CPUAcctDir, "cpuacct.usage")
	s, err := c.read(p)
	if err != nil {
		return out, fmt.Errorf("reading cgroup cpu usage: %w", err)
	}
	ns, _, err := parseCgroupValue(s)
	if err != nil {
		return out, fmt.Errorf("reading cgroup cpu usage %s: %w", p, err)
	}
	out.UsageSeconds = float64(ns) / 1e9
	if l.CPUDir == "" {
		return out, fmt.Errorf("reading cgroup cpu quota: no cpu controller under %s", c.root)
	}
	p = filepath.Join(l.CPUDir, "cpu.stat")
	if s, err := c.read(p); err == nil {
		st, err := parseFlatKeyed(s)
		if err != nil {
			return out, fmt.Errorf("reading cgroup cpu throttling %s: %w", p, err)
		}
		out.NrPeriods, out.NrThrottled = st["nr_periods"], st["nr_throttled"]
		out.ThrottledSeconds = float64(st["throttled_time"]) / 1e9
	}
	for _, dir := range cgroupAncestors(l.CPUMount, l.CPUDir) {
		qp, pp := filepath.Join(dir, "cpu.cfs_quota_us"), filepath.Join(dir, "cpu.cfs_period_us")
		qs, err := c.read(qp)
		if err != nil {
			return out, fmt.Errorf("reading cgroup cpu quota: %w", err)
		}
		ps, err := c.read(pp)
		if err != nil {
			return out, fmt.Errorf("reading cgroup cpu quota: %w", err)
		}
		q, err := parseCFSQuota(qs, ps)
		if err != nil {
			return out, fmt.Errorf("reading cgroup cpu quota in %s: %w", dir, err)
		}
		if q > 0 && (out.QuotaCPUs == 0 || q < out.QuotaCPUs) {
			out.QuotaCPUs, out.QuotaDir = q, dir
		}
	}
	return out, nil
}

// psiLine is one "some"/"full" line of a pressure file.
type psiLine struct {
	Avg10  float64 `json:"avg10"`
	Avg60  float64 `json:"avg60"`
	Avg300 float64 `json:"avg300"`
	// TotalSeconds is the cumulative stall time.
	TotalSeconds float64 `json:"total_seconds"`
}

// SystemPressure is one resource's pressure stall information (percent of
// wall time some / all tasks were stalled).
type SystemPressure struct {
	Some *psiLine `json:"some,omitempty"`
	Full *psiLine `json:"full,omitempty"`
}

// parsePSI parses /proc/pressure/{cpu,memory,io}.
func parsePSI(s string) (SystemPressure, error) {
	var out SystemPressure
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var l psiLine
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return out, fmt.Errorf("parsing pressure field %q: want key=value", kv)
			}
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return out, fmt.Errorf("parsing pressure %s: %q is not a number", k, v)
			}
			switch k {
			case "avg10":
				l.Avg10 = x
			case "avg60":
				l.Avg60 = x
			case "avg300":
				l.Avg300 = x
			case "total":
				l.TotalSeconds = x / 1e6
			}
		}
		switch f[0] {
		case "some":
			out.Some = &l
		case "full":
			out.Full = &l
		default:
			return out, fmt.Errorf("parsing pressure line %q: want some or full", f[0])
		}
	}
	if out.Some == nil {
		return out, errors.New("parsing pressure: no \"some\" line")
	}
	return out, nil
}

// SystemLoad is the 1, 5 and 15 minute load average.
type SystemLoad struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
}

// parseLoadAvg parses /proc/loadavg.
func parseLoadAvg(s string) (SystemLoad, error) {
	f := strings.Fields(s)
	if len(f) < 3 {
		return SystemLoad{}, fmt.Errorf("parsing loadavg %q: want at least 3 fields", strings.TrimSpace(s))
	}
	var v [3]float64
	for i := range v {
		x, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return SystemLoad{}, fmt.Errorf("parsing loadavg field %d %q: not a number", i+1, f[i])
		}
		v[i] = x
	}
	return SystemLoad{Load1: v[0], Load5: v[1], Load15: v[2]}, nil
}
