package probes

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/common"
	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/process"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/figures"
)

// SystemComponent is the system probe's name: the product's SystemOptimizer.
const SystemComponent = "system_optimizer"

// maxAppProcesses bounds how many app processes one tick reports.
const maxAppProcesses = 64

// Limit sources in SystemDetails.
const (
	LimitSourceCgroup = "cgroup"
	LimitSourceHost   = "host"
)

// SystemDetails is the system probe's Details: everything it read, JSON-ready.
// Numbers it could not measure are null.
type SystemDetails struct {
	// CgroupVersion is 1 or 2 (0: none found).
	CgroupVersion int                `json:"cgroup_version"`
	Memory        SystemMemory       `json:"memory"`
	CPU           SystemCPU          `json:"cpu"`
	Disks         []SystemDisk       `json:"disks"`
	Load          *SystemLoad        `json:"load"`
	Pressure      map[string]any     `json:"pressure,omitempty"`
	Sidecar       SystemSidecar      `json:"sidecar"`
	AppProcesses  []SystemAppProcess `json:"app_processes,omitempty"`
	Degraded      []string           `json:"degraded,omitempty"`
	Thresholds    SystemThresholds   `json:"thresholds"`
}

// SystemMemory is the memory reading.
type SystemMemory struct {
	// UsageFraction is the memory_usage figure: working set ÷ cgroup limit, or
	// host (total − available) ÷ total when LimitSource is "host".
	UsageFraction *float64 `json:"usage_fraction"`
	// LimitSource is "cgroup" or "host".
	LimitSource string `json:"limit_source"`
	// LimitBytes is the limit used (cgroup limit, or host total).
	LimitBytes *uint64 `json:"limit_bytes"`
	// LimitCgroup is the cgroup directory that set the limit.
	LimitCgroup string `json:"limit_cgroup,omitempty"`
	// Cgroup usage: usage, inactive file cache and working set (usage − inactive_file).
	UsageBytes        *uint64 `json:"usage_bytes"`
	InactiveFileBytes *uint64 `json:"inactive_file_bytes"`
	WorkingSetBytes   *uint64 `json:"working_set_bytes"`
	// Host memory (gopsutil: /proc/meminfo).
	HostTotalBytes     *uint64  `json:"host_total_bytes"`
	HostAvailableBytes *uint64  `json:"host_available_bytes"`
	HostUsageFraction  *float64 `json:"host_usage_fraction"`
	// Note explains a fallback.
	Note string `json:"note,omitempty"`
}

// SystemCPU is the CPU reading (rates over the time since the previous probe run).
type SystemCPU struct {
	// UsageFraction is the cpu_usage figure: container CPU ÷ quota, or host
	// CPU when LimitSource is "host". Null until two samples exist.
	UsageFraction *float64 `json:"usage_fraction"`
	// WarmingUp: only one sample so far.
	WarmingUp bool `json:"warming_up,omitempty"`
	// LimitSource is "cgroup" (a quota is set) or "host".
	LimitSource string `json:"limit_source"`
	// QuotaCPUs is the effective quota in CPUs; QuotaCgroup the cgroup that set it.
	QuotaCPUs   *float64 `json:"quota_cpus"`
	QuotaCgroup string   `json:"quota_cgroup,omitempty"`
	// ContainerCores is the cgroup's CPU use in cores.
	ContainerCores *float64 `json:"container_cores"`
	// HostUsageFraction is host CPU busy ÷ all CPUs; HostCPUs the CPU count.
	HostUsageFraction *float64 `json:"host_usage_fraction"`
	HostCPUs          int      `json:"host_cpus"`
	// GOMAXPROCS is the sidecar's own setting (Go ≥ 1.25 derives it from the quota, but not from an ancestor's).
	GOMAXPROCS int `json:"gomaxprocs"`
	// Throttling: cumulative counters and the throttled fraction of periods since the previous sample.
	NrPeriods         *uint64  `json:"nr_periods"`
	NrThrottled       *uint64  `json:"nr_throttled"`
	ThrottledSeconds  *float64 `json:"throttled_seconds"`
	ThrottledFraction *float64 `json:"throttled_fraction"`
	// SampleSeconds is the wall time the rates cover.
	SampleSeconds *float64 `json:"sample_seconds"`
}

// SystemDisk is one configured path's usage.
type SystemDisk struct {
	Path               string   `json:"path"`
	TotalBytes         uint64   `json:"total_bytes"`
	UsedBytes          uint64   `json:"used_bytes"`
	FreeBytes          uint64   `json:"free_bytes"`
	UsedFraction       float64  `json:"used_fraction"`
	InodesUsedFraction *float64 `json:"inodes_used_fraction"`
}

// SystemSidecar is pulsegate's own process.
type SystemSidecar struct {
	Goroutines int      `json:"goroutines"`
	HeapBytes  uint64   `json:"heap_bytes"`
	OpenFDs    *int     `json:"open_fds"`
	RSSBytes   *uint64  `json:"rss_bytes"`
	Uptime     *float64 `json:"uptime_seconds,omitempty"`
}

// SystemAppProcess is one app process (matched by name or PID file).
type SystemAppProcess struct {
	PID  int32  `json:"pid"`
	Name string `json:"name"`
	// Role is "master" for the PID file's process, "worker" for its children, "" for a name match.
	Role          string  `json:"role,omitempty"`
	RSSBytes      uint64  `json:"rss_bytes"`
	FirstRSSBytes uint64  `json:"first_rss_bytes"`
	GrowthBytes   int64   `json:"rss_growth_bytes"`
	SeenSeconds   float64 `json:"seen_for_seconds"`
}

// SystemThresholds echoes the thresholds the status was judged against.
type SystemThresholds struct {
	MemoryWarning float64 `json:"memory_warning"`
	MemoryCrit    float64 `json:"memory_critical"`
	CPUWarning    float64 `json:"cpu_warning"`
	CPUCrit       float64 `json:"cpu_critical"`
	DiskWarning   float64 `json:"disk_warning"`
	DiskCrit      float64 `json:"disk_critical"`
}

type cpuSample struct {
	at        time.Time
	cg        *cgroupCPU
	hostBusy  float64
	hostTotal float64
	hostOK    bool
}

type procSeen struct {
	created  int64
	firstRSS uint64
	first    time.Time
}

// SystemProbe is system_optimizer: memory against the container (cgroup v1
// or v2) limit or the host, CPU against the quota or the host, disk usage
// of configured paths, load, PSI, the sidecar's own process and optionally
// the app's processes. It keeps the previous CPU sample between runs, so
// CPU figures appear from the second run on. Safe for concurrent use (runs
// are serialised).
type SystemProbe struct {
	log   *zap.Logger
	now   func() time.Time
	start time.Time

	mu  sync.Mutex
	cfg config.System
	thr SystemThresholds
	// mem, cpu and disk judge through figures.Compare (see figureLimits).
	mem, cpu, disk figureLimits
	prev           *cpuSample
	seen           map[int32]procSeen
	cgFS           cgroupFS
	hostCPUs       int
}

// NewSystemProbe returns the system probe for cfg (System section and the
// memory/cpu/disk thresholds). now may be nil (time.Now).
func NewSystemProbe(cfg *config.Config, log *zap.Logger, now func() time.Time) *SystemProbe {
	if log == nil {
		log = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	s := &SystemProbe{log: log, now: now, start: now(), seen: map[int32]procSeen{}, hostCPUs: runtime.NumCPU()}
	s.Apply(cfg)
	return s
}

// Apply takes new paths and thresholds. Changing the cgroup or proc root
// restarts CPU sampling.
func (s *SystemProbe) Apply(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sys := cfg.System
	sys.DiskPaths = slices.Clone(sys.DiskPaths)
	sys.AppProcessNames = slices.Clone(sys.AppProcessNames)
	if sys.CgroupRoot == "" {
		sys.CgroupRoot = "/sys/fs/cgroup"
	}
	if sys.ProcRoot == "" {
		sys.ProcRoot = "/proc"
	}
	if sys.CgroupRoot != s.cfg.CgroupRoot || sys.ProcRoot != s.cfg.ProcRoot {
		s.prev = nil
	}
	s.cfg = sys
	s.cgFS = cgroupFS{root: sys.CgroupRoot, procRoot: sys.ProcRoot}
	r, t := cfg.Responsiveness, cfg.Thresholds
	s.thr = SystemThresholds{
		MemoryWarning: r.MemoryWarningThreshold, MemoryCrit: r.MemoryCriticalThreshold,
		CPUWarning: r.CPUWarningThreshold, CPUCrit: r.CPUCriticalThreshold,
		DiskWarning: t.DiskWarning, DiskCrit: t.DiskCritical,
	}
	s.mem, s.cpu, s.disk = limitsOf(cfg, figures.MemoryUsage), limitsOf(cfg, figures.CPUUsage), limitsOf(cfg, figures.DiskUsage)
}

// Name returns "system_optimizer".
func (s *SystemProbe) Name() string { return SystemComponent }

// Close releases nothing (the probe holds no connections).
func (s *SystemProbe) Close() error { return nil }

// Probe reads everything once. Unreadable sources make the result warning
// ("degraded: …" with the path) and never fail the whole probe.
func (s *SystemProbe) Probe(ctx context.Context) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	envCtx := context.WithValue(ctx, common.EnvKey, common.EnvMap{common.HostProcEnvKey: s.cfg.ProcRoot})
	d := SystemDetails{Thresholds: s.thr, Disks: []SystemDisk{}}
	degrade := func(format string, a ...any) {
		d.Degraded = append(d.Degraded, fmt.Sprintf(format, a...))
	}

	layout, lerr := s.cgFS.layout()
	d.CgroupVersion = layout.Version
	if lerr != nil {
		degrade("cgroup: %v", lerr)
	}

	// Host memory first: it is the fallback.
	var hostMem *mem.VirtualMemoryStat
	if vm, err := mem.VirtualMemoryWithContext(envCtx); err != nil {
		degrade("host memory: reading %s: %v", filepath.Join(s.cfg.ProcRoot, "meminfo"), err)
	} else if vm.Total > 0 {
		hostMem = vm
		d.Memory.HostTotalBytes, d.Memory.HostAvailableBytes = sysPtr(vm.Total), sysPtr(vm.Available)
		d.Memory.HostUsageFraction = sysPtr(float64(vm.Total-min(vm.Available, vm.Total)) / float64(vm.Total))
	}
	s.readMemory(layout, hostMem, &d, degrade)
	s.readCPU(envCtx, layout, now, &d, degrade)
	s.readDisks(ctx, &d, degrade)
	s.readHostExtras(&d, degrade)
	s.readSidecar(envCtx, now, &d)
	if len(s.cfg.AppProcessNames) > 0 || s.cfg.AppPIDFile != "" {
		s.readApps(envCtx, now, &d, degrade)
	}

	res := Result{Probe: SystemComponent, Status: StatusOK, Figures: map[string]float64{}, Details: d}
	judge := func(v float64, l figureLimits, what string) {
		if lvl, thr := l.judge(v); lvl != StatusOK {
			res.Status = sysWorse(res.Status, lvl)
			res.Reasons = append(res.Reasons, fmt.Sprintf("%s ≥ %s %s", what, lvl, sysPct(thr)))
		}
	}
	if m := d.Memory; m.UsageFraction != nil {
		res.Figures[string(figures.MemoryUsage)] = *m.UsageFraction
		what := fmt.Sprintf("memory at %s of host memory (%s)", sysPct(*m.UsageFraction), sysBytes(sysDeref(m.LimitBytes)))
		if m.LimitSource == LimitSourceCgroup {
			what = fmt.Sprintf("memory at %s of the %s cgroup limit (working set %s)",
				sysPct(*m.UsageFraction), sysBytes(sysDeref(m.LimitBytes)), sysBytes(sysDeref(m.WorkingSetBytes)))
		}
		judge(*m.UsageFraction, s.mem, what)
	}
	if m := d.Memory.HostUsageFraction; m != nil {
		res.Figures["host_memory_usage"] = *m
	}
	if c := d.CPU; c.UsageFraction != nil {
		res.Figures[string(figures.CPUUsage)] = *c.UsageFraction
		what := fmt.Sprintf("cpu at %s of %d host CPUs", sysPct(*c.UsageFraction), c.HostCPUs)
		if c.LimitSource == LimitSourceCgroup {
			what = fmt.Sprintf("cpu at %s of a %.2f-CPU quota", sysPct(*c.UsageFraction), sysDeref(c.QuotaCPUs))
		}
		judge(*c.UsageFraction, s.cpu, what)
	}
	if c := d.CPU.HostUsageFraction; c != nil {
		res.Figures["host_cpu_usage"] = *c
	}
	if c := d.CPU.ThrottledFraction; c != nil {
		res.Figures["cpu_throttled"] = *c
	}
	if len(d.Disks) > 0 {
		worst := 0.0
		for _, dk := range d.Disks {
			worst = max(worst, dk.UsedFraction)
			judge(dk.UsedFraction, s.disk, fmt.Sprintf("disk %s %s used (%s free of %s)",
				dk.Path, sysPct(dk.UsedFraction), sysBytes(dk.FreeBytes), sysBytes(dk.TotalBytes)))
		}
		res.Figures[string(figures.DiskUsage)] = worst
	}
	if len(d.Degraded) > 0 {
		res.Status = sysWorse(res.Status, StatusWarning)
		for _, msg := range d.Degraded {
			res.Reasons = append(res.Reasons, "degraded: "+msg)
		}
	}
	res.Details = d
	return res
}

func (s *SystemProbe) readMemory(l cgroupLayout, host *mem.VirtualMemoryStat, d *SystemDetails, degrade func(string, ...any)) {
	useHost := func(note string) {
		d.Memory.LimitSource = LimitSourceHost
		d.Memory.Note = note
		if host != nil {
			d.Memory.LimitBytes = sysPtr(host.Total)
			d.Memory.UsageFraction = d.Memory.HostUsageFraction
		}
	}
	if l.Version == 0 {
		useHost("no cgroup found: host memory")
		return
	}
	m, err := s.cgFS.readMemory(l)
	if err != nil {
		degrade("memory: %v", err)
		useHost("cgroup memory unreadable: host memory")
		return
	}
	if m.AtRoot {
		useHost("root cgroup: host memory")
		return
	}
	d.Memory.UsageBytes, d.Memory.InactiveFileBytes, d.Memory.WorkingSetBytes = sysPtr(m.UsageBytes), sysPtr(m.InactiveFileBytes), sysPtr(m.WorkingSetBytes)
	switch {
	case m.LimitBytes == 0:
		useHost("no cgroup memory limit: host memory")
	case host != nil && m.LimitBytes >= host.Total:
		useHost(fmt.Sprintf("cgroup limit %s is not below host memory: host memory", sysBytes(m.LimitBytes)))
	default:
		d.Memory.LimitSource = LimitSourceCgroup
		d.Memory.LimitBytes = sysPtr(m.LimitBytes)
		d.Memory.LimitCgroup = s.cgroupName(l.MemoryMount, m.LimitDir)
		d.Memory.UsageFraction = sysPtr(float64(m.WorkingSetBytes) / float64(m.LimitBytes))
	}
}

// cgroupName turns a directory under mount into its cgroup path ("/a/b").
func (s *SystemProbe) cgroupName(mount, dir string) string {
	rel, err := filepath.Rel(mount, dir)
	if err != nil || rel == "." {
		return "/"
	}
	return "/" + filepath.ToSlash(rel)
}

func (s *SystemProbe) readCPU(ctx context.Context, l cgroupLayout, now time.Time, d *SystemDetails, degrade func(string, ...any)) {
	d.CPU.HostCPUs = s.hostCPUs
	d.CPU.GOMAXPROCS = runtime.GOMAXPROCS(0)
	cur := &cpuSample{at: now}
	if l.Version != 0 {
		cg, err := s.cgFS.readCPU(l)
		if err != nil {
			degrade("cpu: %v", err)
		} else {
			cur.cg = &cg
			d.CPU.NrPeriods, d.CPU.NrThrottled, d.CPU.ThrottledSeconds = sysPtr(cg.NrPeriods), sysPtr(cg.NrThrottled), sysPtr(cg.ThrottledSeconds)
			if cg.QuotaCPUs > 0 {
				d.CPU.QuotaCPUs = sysPtr(cg.QuotaCPUs)
				d.CPU.QuotaCgroup = s.cgroupName(l.CPUMount, cg.QuotaDir)
			}
		}
	}
	if d.CPU.QuotaCPUs != nil {
		d.CPU.LimitSource = LimitSourceCgroup
	} else {
		d.CPU.LimitSource = LimitSourceHost
	}
	if ts, err := cpu.TimesWithContext(ctx, false); err != nil || len(ts) == 0 {
		degrade("host cpu: reading %s: %v", filepath.Join(s.cfg.ProcRoot, "stat"), err)
	} else {
		t := ts[0]
		// guest time is already inside user time in /proc/stat.
		total := t.User + t.Nice + t.System + t.Idle + t.Iowait + t.Irq + t.Softirq + t.Steal
		cur.hostTotal, cur.hostBusy, cur.hostOK = total, total-t.Idle-t.Iowait, true
	}
	prev := s.prev
	s.prev = cur
	if prev == nil {
		d.CPU.WarmingUp = true
		return
	}
	wall := cur.at.Sub(prev.at).Seconds()
	if wall <= 0 {
		d.CPU.WarmingUp = true
		s.prev = prev // keep the older sample: no time has passed
		return
	}
	d.CPU.SampleSeconds = sysPtr(wall)
	if cur.hostOK && prev.hostOK && cur.hostTotal > prev.hostTotal && cur.hostBusy >= prev.hostBusy {
		d.CPU.HostUsageFraction = sysPtr(sysClamp01((cur.hostBusy - prev.hostBusy) / (cur.hostTotal - prev.hostTotal)))
	}
	if cur.cg != nil && prev.cg != nil && cur.cg.UsageSeconds >= prev.cg.UsageSeconds {
		cores := (cur.cg.UsageSeconds - prev.cg.UsageSeconds) / wall
		d.CPU.ContainerCores = sysPtr(cores)
		if dp := cur.cg.NrPeriods - prev.cg.NrPeriods; cur.cg.NrPeriods > prev.cg.NrPeriods && cur.cg.NrThrottled >= prev.cg.NrThrottled {
			d.CPU.ThrottledFraction = sysPtr(float64(cur.cg.NrThrottled-prev.cg.NrThrottled) / float64(dp))
		}
		if d.CPU.QuotaCPUs != nil {
			// Not clamped: a reading above 1 means bursting past the quota.
			d.CPU.UsageFraction = sysPtr(cores / *d.CPU.QuotaCPUs)
			return
		}
	}
	d.CPU.UsageFraction = d.CPU.HostUsageFraction
}

func (s *SystemProbe) readDisks(ctx context.Context, d *SystemDetails, degrade func(string, ...any)) {
	for _, p := range s.cfg.DiskPaths {
		u, err := disk.UsageWithContext(ctx, p)
		if err != nil {
			degrade("disk %s: %v", p, err)
			continue
		}
		dk := SystemDisk{Path: p, TotalBytes: u.Total, UsedBytes: u.Used, FreeBytes: u.Free}
		if u.Used+u.Free > 0 {
			// Like df: used ÷ (used + available to unprivileged users).
			dk.UsedFraction = float64(u.Used) / float64(u.Used+u.Free)
		}
		if u.InodesTotal > 0 {
			dk.InodesUsedFraction = sysPtr(float64(u.InodesUsed) / float64(u.InodesTotal))
		}
		d.Disks = append(d.Disks, dk)
	}
}

func (s *SystemProbe) readHostExtras(d *SystemDetails, degrade func(string, ...any)) {
	p := filepath.Join(s.cfg.ProcRoot, "loadavg")
	if b, err := os.ReadFile(p); err != nil {
		degrade("load average: %v", err)
	} else if la, err := parseLoadAvg(string(b)); err != nil {
		degrade("load average %s: %v", p, err)
	} else {
		d.Load = &la
	}
	// PSI exists only on kernels with CONFIG_PSI (and psi=1): absent is not degraded.
	for _, res := range []string{"cpu", "memory", "io"} {
		p := filepath.Join(s.cfg.ProcRoot, "pressure", res)
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		ps, err := parsePSI(string(b))
		if err != nil {
			degrade("pressure %s: %v", p, err)
			continue
		}
		if d.Pressure == nil {
			d.Pressure = map[string]any{}
		}
		d.Pressure[res] = ps
	}
}

func (s *SystemProbe) readSidecar(ctx context.Context, now time.Time, d *SystemDetails) {
	d.Sidecar.Goroutines = runtime.NumGoroutine()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		d.Sidecar.HeapBytes = sample[0].Value.Uint64()
	}
	if ents, err := os.ReadDir(filepath.Join(s.cfg.ProcRoot, "self", "fd")); err == nil {
		d.Sidecar.OpenFDs = sysPtr(len(ents))
	}
	if p, err := process.NewProcessWithContext(ctx, int32(os.Getpid())); err == nil {
		if mi, err := p.MemoryInfoWithContext(ctx); err == nil {
			d.Sidecar.RSSBytes = sysPtr(mi.RSS)
		}
	}
	d.Sidecar.Uptime = sysPtr(now.Sub(s.start).Seconds())
}

// readApps reports the app's processes: those named in app_process_names,
// and the PID file's process with its children.
func (s *SystemProbe) readApps(ctx context.Context, now time.Time, d *SystemDetails, degrade func(string, ...any)) {
	master := int32(-1)
	if s.cfg.AppPIDFile != "" {
		b, err := os.ReadFile(s.cfg.AppPIDFile)
		if err != nil {
			degrade("app pid file: %v", err)
		} else if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 32); err != nil || n <= 0 {
			degrade("app pid file %s: %q is not a PID", s.cfg.AppPIDFile, strings.TrimSpace(string(b)))
		} else {
			master = int32(n)
		}
	}
	pids, err := process.PidsWithContext(ctx)
	if err != nil {
		degrade("app processes: listing %s: %v", s.cfg.ProcRoot, err)
		return
	}
	alive := map[int32]bool{}
	for _, pid := range pids {
		if ctx.Err() != nil || len(d.AppProcesses) >= maxAppProcesses {
			break
		}
		p, err := process.NewProcessWithContext(ctx, pid)
		if err != nil {
			continue
		}
		name, err := p.NameWithContext(ctx)
		if err != nil {
			continue
		}
		role := ""
		switch {
		case pid == master:
			role = "master"
		case master > 0:
			if pp, err := p.PpidWithContext(ctx); err == nil && pp == master {
				role = "worker"
			}
		}
		if role == "" && !slices.Contains(s.cfg.AppProcessNames, name) {
			continue
		}
		mi, err := p.MemoryInfoWithContext(ctx)
		if err != nil {
			continue
		}
		created, _ := p.CreateTimeWithContext(ctx)
		seen, ok := s.seen[pid]
		if !ok || seen.created != created {
			seen = procSeen{created: created, firstRSS: mi.RSS, first: now}
			s.seen[pid] = seen
		}
		alive[pid] = true
		d.AppProcesses = append(d.AppProcesses, SystemAppProcess{
			PID: pid, Name: name, Role: role, RSSBytes: mi.RSS, FirstRSSBytes: seen.firstRSS,
			GrowthBytes: int64(mi.RSS) - int64(seen.firstRSS), SeenSeconds: now.Sub(seen.first).Seconds(),
		})
	}
	for pid := range s.seen {
		if !alive[pid] {
			delete(s.seen, pid)
		}
	}
	if master > 0 && !alive[master] {
		degrade("app pid file %s: process %d not found", s.cfg.AppPIDFile, master)
	}
}

// worse returns the more severe of two statuses among ok < warning < critical.
func sysWorse(a, b Status) Status {
	rank := func(s Status) int {
		switch s {
		case StatusWarning:
			return 1
		case StatusCritical:
			return 2
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

func sysPtr[T any](v T) *T { return &v }

func sysDeref[T any](p *T) T {
	if p == nil {
		var z T
		return z
	}
	return *p
}

func sysClamp01(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	return min(v, 1)
}

func sysPct(f float64) string {
	return strconv.FormatFloat(math.Round(f*1000)/10, 'f', -1, 64) + "%"
}

func sysBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit && exp < 5; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
