package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procFS reads the few /proc figures the benchmark needs. root is normally
// "/proc"; tests point it at a fake tree.
type procFS struct {
	root string
}

// statFields parses /proc/PID/stat: the fields after the parenthesised
// command name (which may itself hold spaces and parentheses). fields[0] is
// the state (field 3 of proc(5)).
func (p procFS) statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(p.root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, fmt.Errorf("reading stat of pid %d: %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("parsing stat of pid %d: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return nil, fmt.Errorf("parsing stat of pid %d: %d fields after the command name, want ≥ 13", pid, len(f))
	}
	return f, nil
}

// cpuTicks is utime+stime of pid (all its threads, live and exited), in
// clock ticks.
func (p procFS) cpuTicks(pid int) (uint64, error) {
	f, err := p.statFields(pid)
	if err != nil {
		return 0, err
	}
	// proc(5): utime is field 14, stime field 15; f[0] is field 3.
	ut, err1 := strconv.ParseUint(f[14-3], 10, 64)
	st, err2 := strconv.ParseUint(f[15-3], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing utime/stime of pid %d: %q %q", pid, f[14-3], f[15-3])
	}
	return ut + st, nil
}

// tree returns pid and all its live descendants (nginx's workers are
// children of its master).
func (p procFS) tree(pid int) []int {
	entries, err := os.ReadDir(p.root)
	if err != nil {
		return []int{pid}
	}
	children := map[int][]int{}
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := p.statFields(c)
		if err != nil {
			continue // exited meanwhile
		}
		pp, err := strconv.Atoi(f[1]) // field 4: ppid
		if err != nil {
			continue
		}
		children[pp] = append(children[pp], c)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// treeTicks sums cpuTicks over pid's process tree. Processes that exit
// between listing and reading are skipped.
func (p procFS) treeTicks(pid int) (uint64, error) {
	var sum uint64
	for i, q := range p.tree(pid) {
		t, err := p.cpuTicks(q)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue
		}
		sum += t
	}
	return sum, nil
}

// statusKB reads a "Key:   N kB" line of /proc/PID/status.
func (p procFS) statusKB(pid int, key string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(p.root, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("reading status of pid %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parsing %s of pid %d: %q", key, pid, line)
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing %s of pid %d: %w", key, pid, err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("reading status of pid %d: no %s line", pid, key)
}

// treeKB sums a status figure (VmHWM, VmRSS) over pid's process tree. For
// multi-process servers (nginx) shared pages are counted once per process,
// which overstates them slightly; the benchmark says so.
func (p procFS) treeKB(pid int, key string) (uint64, error) {
	var sum uint64
	for i, q := range p.tree(pid) {
		v, err := p.statusKB(q, key)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue
		}
		sum += v
	}
	return sum, nil
}

// parseCPUList reads a taskset CPU list ("0", "0,2", "0-3").
func parseCPUList(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(f), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("CPU list %q: %q is not a CPU number", s, f)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: %q is not a range", s, f)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// cpuTimes sums the /proc/stat counters of cpus: busy (user, nice, system
// and steal: time processes ran or the hypervisor took the CPU) and total
// ticks. Interrupt and softirq time is left out of busy: it holds the
// kernel's loopback packet processing of the benchmark's own traffic, which
// no process is charged for.
func (p procFS) cpuTimes(cpus []int) (busy, total uint64, err error) {
	b, err := os.ReadFile(filepath.Join(p.root, "stat"))
	if err != nil {
		return 0, 0, fmt.Errorf("reading /proc/stat: %w", err)
	}
	want := map[string]bool{}
	for _, c := range cpus {
		want["cpu"+strconv.Itoa(c)] = true
	}
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !want[f[0]] {
			continue
		}
		found++
		for i, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("parsing /proc/stat %s: %w", f[0], err)
			}
			// user nice system idle iowait irq softirq steal guest guest_nice;
			// guest time is already counted in user/nice.
			if i >= 8 {
				break
			}
			total += n
			if i == 0 || i == 1 || i == 2 || i == 7 {
				busy += n
			}
		}
	}
	if found != len(want) {
		return 0, 0, fmt.Errorf("reading /proc/stat: found %d of the CPUs %v", found, cpus)
	}
	return busy, total, nil
}
