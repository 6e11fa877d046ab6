// Package test is pulsegate's end-to-end and fault suite: the built binary
// in front of a real Flask app under gunicorn, with the real MariaDB,
// PostgreSQL and Redis, and the chaos proxy (test/chaos) in between where a
// fault is needed. Run it with `bash test/run.sh` or `go test ./test/`.
//
// Tests that need a feature the binary does not have yet skip with
// "needs <feature>: <what is missing>"; PULSEGATE_STRICT=1 turns those skips
// into failures. PULSEGATE_LONG=1 (or -long) runs the catalogue's full-size
// figures instead of the bounded defaults. PULSEGATE_BIN=/path tests a
// prebuilt binary instead of building the repo's.
package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pulsegate/pulsegate/test/chaos"
)

var longFlag = flag.Bool("long", false, "run the fault cases at the catalogue's full size (also PULSEGATE_LONG=1)")

// binPath is the pulsegate binary built once by TestMain.
var binPath string

// repoRoot is the module root (the parent of test/).
var repoRoot string

func long() bool { return *longFlag || os.Getenv("PULSEGATE_LONG") == "1" }

// size picks the bounded or the full-size figure.
func size(short, full int) int {
	if long() {
		return full
	}
	return short
}

func TestMain(m *testing.M) {
	flag.Parse()
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "test: getwd:", err)
		os.Exit(2)
	}
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "pulsegate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "test: tempdir:", err)
		os.Exit(2)
	}
	binPath = filepath.Join(dir, "pulsegate")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if prebuilt := os.Getenv("PULSEGATE_BIN"); prebuilt != "" {
		// Test a binary built elsewhere (e.g. a release artifact).
		binPath = prebuilt
	} else if err := build.Run(); err != nil {
		// Without a binary every end-to-end test skips with this reason.
		binPath = ""
		buildErr = fmt.Sprintf("go build -o pulsegate . failed: %v", err)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	// Only a whole-suite run replaces the figures file; a -run subset
	// writes figures-partial.md so it cannot clobber the full table.
	name := "figures.md"
	if f := flag.Lookup("test.run"); f != nil && f.Value.String() != "" {
		name = "figures-partial.md"
	}
	if err := writeFigures(filepath.Join(wd, "artifacts", name)); err != nil {
		fmt.Fprintln(os.Stderr, "test: writing figures:", err)
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

var buildErr string

// needBinary skips when the binary could not be built.
func needBinary(t testing.TB) {
	t.Helper()
	if binPath == "" {
		skipOrFail(t, "needs the pulsegate binary: "+buildErr)
	}
}

// skipOrFail skips with reason, or fails under PULSEGATE_STRICT=1.
func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("PULSEGATE_STRICT") == "1" {
		t.Fatal(reason)
	}
	t.Skip(reason)
}

// ---------------------------------------------------------------- figures

// figure is one measured value for test/artifacts/figures.md.
type figure struct {
	Case, Name, Value, Goal string
}

var (
	figuresMu sync.Mutex
	figures   []figure
)

// report logs a measured figure and keeps it for the figures file.
func report(t testing.TB, caseName, name, value, goal string) {
	t.Helper()
	t.Logf("FIGURE %s: %s = %s (goal %s)", caseName, name, value, goal)
	figuresMu.Lock()
	figures = append(figures, figure{caseName, name, value, goal})
	figuresMu.Unlock()
}

func writeFigures(path string) error {
	figuresMu.Lock()
	defer figuresMu.Unlock()
	if len(figures) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Figures measured by the fault suite\n\n")
	fmt.Fprintf(&b, "Run: %s, %s, %s/%s, %d CPUs, long=%v.\n\n", time.Now().UTC().Format(time.RFC3339),
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), long())
	fmt.Fprintf(&b, "| case | figure | measured | goal |\n|---|---|---|---|\n")
	for _, f := range figures {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", f.Case, f.Name, f.Value, f.Goal)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// ---------------------------------------------------------------- gunicorn

// Gunicorn is the fixture Flask app under a real gunicorn master and workers.
type Gunicorn struct {
	// Kind is "sync" or "gthread".
	Kind string
	// Addr is 127.0.0.1:port.
	Addr string
	// AccessLog counts "requests the app saw", one line per request.
	AccessLog string
	// StateDir holds the app's shared counters (cleanup calls).
	StateDir string
	errorLog string
	env      []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func gunicornPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/gunicorn", "/usr/local/bin/gunicorn"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("gunicorn"); err == nil {
		return p
	}
	t.Fatal("gunicorn not found: run `bash test/run.sh` (installs python3-flask gunicorn with apt)")
	return ""
}

// newChaos starts a chaos proxy in front of target (passing traffic
// through until a fault is set), closed when the test ends.
func newChaos(t testing.TB, target string) *chaos.Proxy {
	t.Helper()
	ch, err := chaos.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

// freeAddr returns a loopback address nothing listens on right now, for a
// server a test starts (or restarts) later. The port comes from below the
// kernel's ephemeral range (ip_local_port_range, 32768 on Linux by default):
// a port from ":0" is an ephemeral one, which any outgoing connection on
// the machine may take as its local port before the test binds it
// ("address already in use"). Ports are never handed out twice in one run.
func freeAddr(t testing.TB) string {
	t.Helper()
	freePorts.Lock()
	defer freePorts.Unlock()
	if freePorts.given == nil {
		freePorts.given = map[int]bool{}
	}
	for range 1000 {
		port := freePortLow + rand.IntN(freePortHigh-freePortLow)
		if freePorts.given[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		freePorts.given[port] = true
		return addr
	}
	t.Fatalf("no free loopback port in [%d, %d)", freePortLow, freePortHigh)
	return ""
}

// freePortLow and freePortHigh bound freeAddr's ports: above the
// well-known services, below the ephemeral range.
const freePortLow, freePortHigh = 20000, 32768

var freePorts struct {
	sync.Mutex
	given map[int]bool
}

// StartGunicorn starts the fixture app with worker class kind ("sync": 4
// workers; "gthread": 2 workers × 4 threads; "gthread-wide": 3 × 8),
// --keep-alive 2, and stops it
// (process group: SIGTERM, then SIGKILL) in t.Cleanup.
func StartGunicorn(t testing.TB, kind string, env ...string) *Gunicorn {
	t.Helper()
	dir := t.TempDir()
	g := &Gunicorn{
		Kind:      kind,
		Addr:      freeAddr(t),
		AccessLog: filepath.Join(dir, "access.log"),
		errorLog:  filepath.Join(dir, "error.log"),
		StateDir:  dir,
		env:       env,
	}
	g.start(t)
	t.Cleanup(g.Stop)
	return g
}

func (g *Gunicorn) start(t testing.TB) {
	t.Helper()
	args := []string{"--bind", g.Addr, "--keep-alive", "2", "--chdir", filepath.Join(repoRoot, "test", "flaskapp"),
		"--access-logfile", g.AccessLog, "--error-logfile", g.errorLog, "--graceful-timeout", "5", "--timeout", "120"}
	switch g.Kind {
	case "sync":
		args = append(args, "-k", "sync", "-w", "4")
	case "gthread":
		args = append(args, "-k", "gthread", "--threads", "4", "-w", "2")
	case "gthread-wide":
		// More threads than any concurrency limit under test, so gunicorn is
		// never the bottleneck the test measures.
		args = append(args, "-k", "gthread", "--threads", "8", "-w", "3")
	default:
		t.Fatalf("unknown gunicorn kind %q", g.Kind)
	}
	args = append(args, "app:app")
	cmd := exec.Command(gunicornPath(t), args...)
	cmd.Env = append(os.Environ(), "FIXTURE_STATE_DIR="+g.StateDir, "PYTHONUNBUFFERED=1")
	cmd.Env = append(cmd.Env, g.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting gunicorn: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	g.mu.Lock()
	g.cmd, g.exited = cmd, exited
	g.mu.Unlock()

	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := c.Get(g.URL() + "/ok")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(g.errorLog)
			t.Fatalf("gunicorn exited during startup:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			g.Stop()
			log, _ := os.ReadFile(g.errorLog)
			t.Fatalf("gunicorn did not answer /ok within 60s:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is the app's direct base URL (bypassing pulsegate).
func (g *Gunicorn) URL() string { return "http://" + g.Addr }

// Signal sends sig to the whole process group (master and workers).
func (g *Gunicorn) Signal(sig syscall.Signal) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd != nil && g.cmd.Process != nil {
		syscall.Kill(-g.cmd.Process.Pid, sig)
	}
}

// Stop terminates gunicorn (SIGCONT in case it was stopped, SIGTERM, then
// SIGKILL after 10 s) and waits for the master to exit. Idempotent.
func (g *Gunicorn) Stop() {
	g.mu.Lock()
	cmd, exited := g.cmd, g.exited
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGCONT)
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
	// Workers left behind by a killed master.
	syscall.Kill(-pgid, syscall.SIGKILL)
	g.mu.Lock()
	g.cmd = nil
	g.mu.Unlock()
}

// Restart starts gunicorn again on the same address.
func (g *Gunicorn) Restart(t testing.TB) {
	t.Helper()
	g.Stop()
	g.start(t)
}

// MasterPID is the gunicorn master's pid (0 when stopped).
func (g *Gunicorn) MasterPID() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil {
		return 0
	}
	return g.cmd.Process.Pid
}

// WorkerPIDs lists the master's children.
func (g *Gunicorn) WorkerPIDs() []int {
	master := g.MasterPID()
	if master == 0 {
		return nil
	}
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(master) {
			out = append(out, pid)
		}
	}
	return out
}

// AccessLines returns the access log's lines (requests the app answered).
func (g *Gunicorn) AccessLines() []string {
	b, err := os.ReadFile(g.AccessLog)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// AccessCount counts access-log lines containing substr ("" = all).
func (g *Gunicorn) AccessCount(substr string) int {
	n := 0
	for _, l := range g.AccessLines() {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------- pulsegate

// LogLine is one zap JSON line from pulsegate's stderr.
type LogLine map[string]any

// Str returns a string field ("" if absent).
func (l LogLine) Str(k string) string {
	s, _ := l[k].(string)
	return s
}

// Pulsegate is a running pulsegate binary.
type Pulsegate struct {
	// ProxyAddr and AdminAddr come from the "listening" log line.
	ProxyAddr, AdminAddr string
	// Token is RESPONSIVENESS_ADMIN_TOKEN when the test set one.
	Token string
	// Env is the environment it was started with.
	Env []string

	cmd    *exec.Cmd
	stdout lockedBuffer

	mu       sync.Mutex
	lines    []LogLine
	raw      []string
	notify   chan struct{} // closed and replaced on every new line
	exited   chan struct{}
	exitedAt time.Time
	exitCode int
	stopped  bool
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// baseEnv is the environment every test starts from: the process env
// without RESPONSIVENESS_*, loopback listeners on free ports, a private
// data dir, no drain delay, debug logs. Pressure-driven shedding is off:
// these tests produce 5xx on purpose, and a handful of them in a young
// 1-minute window is a critical error rate that would shed the test's own
// requests; the shedding tests turn it back on.
func baseEnv(t testing.TB) map[string]string {
	return map[string]string{
		"RESPONSIVENESS_LISTEN_ADDR":                   "127.0.0.1:0",
		"RESPONSIVENESS_ADMIN_ADDR":                    "127.0.0.1:0",
		"RESPONSIVENESS_DATA_DIR":                      t.TempDir(),
		"RESPONSIVENESS_PROXY_DRAIN_DELAY":             "0",
		"RESPONSIVENESS_LOG_LEVEL":                     "debug",
		"RESPONSIVENESS_BACKPRESSURE_SHEDDING_ENABLED": "false",
	}
}

func envList(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RESPONSIVENESS_") {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// StartPulsegate runs `pulsegate serve` with baseEnv overlaid by env (an
// empty value removes a key), waits for the "listening" line and stops it in
// t.Cleanup, asserting exit code 0.
func StartPulsegate(t testing.TB, env map[string]string) *Pulsegate {
	t.Helper()
	return startPulsegate(t, env, nil)
}

// startPulsegate is StartPulsegate with an optional wrapper command that
// ends by exec'ing its arguments (the binary and "serve"), e.g. a shell that
// first moves itself into a cgroup.
func startPulsegate(t testing.TB, env map[string]string, wrap []string) *Pulsegate {
	t.Helper()
	needBinary(t)
	full := baseEnv(t)
	for k, v := range env {
		if v == "" {
			delete(full, k)
			continue
		}
		full[k] = v
	}
	p := &Pulsegate{Token: full["RESPONSIVENESS_ADMIN_TOKEN"], Env: envList(full), notify: make(chan struct{}), exited: make(chan struct{})}
	if len(wrap) > 0 {
		p.cmd = exec.Command(wrap[0], append(wrap[1:], binPath, "serve")...)
	} else {
		p.cmd = exec.Command(binPath, "serve")
	}
	p.cmd.Env = p.Env
	p.cmd.Stdout = &p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting pulsegate: %v", err)
	}
	go p.readLogs(stderr)

	line, err := p.waitLine(30*time.Second, func(l LogLine) bool { return l.Str("msg") == "listening" })
	if err != nil {
		p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("pulsegate did not log \"listening\": %v\nstderr:\n%s", err, strings.Join(p.Raw(), "\n"))
	}
	p.ProxyAddr, p.AdminAddr = line.Str("proxy_addr"), line.Str("admin_addr")
	if p.ProxyAddr == "" || p.AdminAddr == "" {
		p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("listening line without proxy_addr/admin_addr: %v", line)
	}
	t.Cleanup(func() { p.Stop(t) })
	return p
}

func (p *Pulsegate) readLogs(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		text := sc.Text()
		var l LogLine
		if json.Unmarshal([]byte(text), &l) != nil {
			l = LogLine{"msg": "", "raw": text}
		}
		p.mu.Lock()
		p.raw = append(p.raw, text)
		p.lines = append(p.lines, l)
		close(p.notify)
		p.notify = make(chan struct{})
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r)
	code := 0
	if err := p.cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		} else {
			code = -1
		}
	}
	p.mu.Lock()
	p.exitCode = code
	p.exitedAt = time.Now()
	p.mu.Unlock()
	close(p.exited)
}

// waitLine waits until a log line matches.
func (p *Pulsegate) waitLine(timeout time.Duration, match func(LogLine) bool) (LogLine, error) {
	return p.waitLineFrom(0, timeout, match)
}

// Mark is the number of log lines so far; pass it to WaitLogAfter to look
// only at lines written after this point.
func (p *Pulsegate) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// WaitLogAfter is WaitLog over the lines after mark.
func (p *Pulsegate) WaitLogAfter(t testing.TB, mark int, timeout time.Duration, match func(LogLine) bool) LogLine {
	t.Helper()
	l, err := p.waitLineFrom(mark, timeout, match)
	if err != nil {
		t.Fatalf("waiting for a log line: %v", err)
	}
	return l
}

func (p *Pulsegate) waitLineFrom(seen int, timeout time.Duration, match func(LogLine) bool) (LogLine, error) {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		lines, notify := p.lines, p.notify
		p.mu.Unlock()
		for ; seen < len(lines); seen++ {
			if match(lines[seen]) {
				return lines[seen], nil
			}
		}
		select {
		case <-notify:
		case <-p.exited:
			// Drain what was read before exit.
			p.mu.Lock()
			lines = p.lines
			p.mu.Unlock()
			for ; seen < len(lines); seen++ {
				if match(lines[seen]) {
					return lines[seen], nil
				}
			}
			return nil, fmt.Errorf("pulsegate exited with code %d", p.ExitCode())
		case <-deadline:
			return nil, fmt.Errorf("no matching log line within %v", timeout)
		}
	}
}

// WaitLog waits (generously) for a log line with msg and fails the test if
// none comes.
func (p *Pulsegate) WaitLog(t testing.TB, timeout time.Duration, match func(LogLine) bool) LogLine {
	t.Helper()
	l, err := p.waitLine(timeout, match)
	if err != nil {
		t.Fatalf("waiting for a log line: %v", err)
	}
	return l
}

// Logs returns a copy of the parsed log lines so far.
func (p *Pulsegate) Logs() []LogLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]LogLine(nil), p.lines...)
}

// Raw returns the raw stderr lines so far.
func (p *Pulsegate) Raw() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.raw...)
}

// Stdout is what the process wrote on stdout.
func (p *Pulsegate) Stdout() string { return p.stdout.String() }

// LogsWithMsg returns the lines whose msg is msg.
func (p *Pulsegate) LogsWithMsg(msg string) []LogLine {
	var out []LogLine
	for _, l := range p.Logs() {
		if l.Str("msg") == msg {
			out = append(out, l)
		}
	}
	return out
}

// ExitCode is the exit status (valid after exit).
func (p *Pulsegate) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitCode
}

// ExitedAt is when the process was seen to exit (zero before).
func (p *Pulsegate) ExitedAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitedAt
}

// Exited is closed when the process has exited.
func (p *Pulsegate) Exited() <-chan struct{} { return p.exited }

// PID is the process id.
func (p *Pulsegate) PID() int { return p.cmd.Process.Pid }

// Signal sends sig to pulsegate.
func (p *Pulsegate) Signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM, waits up to a minute and asserts exit code 0.
// Idempotent; a test that already stopped it is not checked twice.
func (p *Pulsegate) Stop(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	select {
	case <-p.exited:
		if c := p.ExitCode(); c != 0 {
			t.Errorf("pulsegate had exited with code %d before the test stopped it", c)
		}
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("pulsegate did not exit within 60s of SIGTERM")
		return
	}
	if c := p.ExitCode(); c != 0 {
		t.Errorf("pulsegate exited with code %d after SIGTERM, want 0; last log lines:\n%s", c, tail(p.Raw(), 20))
	}
}

// Kill ends the process at once (for tests that restart it).
func (p *Pulsegate) Kill() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cmd.Process.Kill()
	<-p.exited
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ProxyURL is the proxy listener's base URL.
func (p *Pulsegate) ProxyURL() string { return "http://" + p.ProxyAddr }

// AdminURL is the admin listener's base URL.
func (p *Pulsegate) AdminURL() string { return "http://" + p.AdminAddr }

// FDs counts the process's open file descriptors.
func (p *Pulsegate) FDs() int { return countFDs(p.PID()) }

func countFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// RSS is the resident set size in bytes (VmRSS).
func (p *Pulsegate) RSS() int64 { return rssOf(p.PID()) }

func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return -1
}

// ---------------------------------------------------------------- HTTP helpers

// httpClient is a client with its own pool, closed in t.Cleanup.
func httpClient(t testing.TB, timeout time.Duration) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// Response is a fully read HTTP response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic map.
func (r *Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object (%v): %.300s", err, r.Body)
	}
	return m
}

// do sends a request and reads the whole answer.
func do(t testing.TB, c *http.Client, method, url string, body io.Reader, hdr map[string]string) (*Response, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// mustDo is do that fails the test on a transport error.
func mustDo(t testing.TB, c *http.Client, method, url string, body io.Reader, hdr map[string]string) *Response {
	t.Helper()
	r, err := do(t, c, method, url, body, hdr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// auth returns the Authorization header for p's token (nil without one).
func (p *Pulsegate) auth() map[string]string {
	if p.Token == "" {
		return nil
	}
	return map[string]string{"Authorization": "Bearer " + p.Token}
}

// getJSON GETs an admin path on the admin listener with p's token.
func (p *Pulsegate) getJSON(t testing.TB, path string) map[string]any {
	t.Helper()
	r := mustDo(t, httpClient(t, 30*time.Second), "GET", p.AdminURL()+path, nil, p.auth())
	if r.Status != 200 {
		t.Fatalf("GET %s: %d %.300s", path, r.Status, r.Body)
	}
	return r.JSON(t)
}

// needEndpoint skips (or fails under PULSEGATE_STRICT) when path answers 404
// or 405 on the admin listener: the feature has not landed yet.
func (p *Pulsegate) needEndpoint(t testing.TB, method, path, feature string) {
	t.Helper()
	r, err := do(t, httpClient(t, 30*time.Second), method, p.AdminURL()+path, nil, p.auth())
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status == 404 || r.Status == 405 || r.Status == 501 {
		skipOrFail(t, fmt.Sprintf("needs %s: %s %s answers %d", feature, method, path, r.Status))
	}
}

// Metrics scrapes /metrics into series → value ("name{labels}" as written).
func (p *Pulsegate) Metrics(t testing.TB) map[string]float64 {
	t.Helper()
	r := mustDo(t, httpClient(t, 30*time.Second), "GET", p.AdminURL()+"/metrics", nil, nil)
	if r.Status != 200 {
		t.Fatalf("GET /metrics: %d", r.Status)
	}
	return parseMetrics(string(r.Body))
}

// sampleMetrics scrapes p's /metrics through c every 20 ms and hands each
// scrape to fn (a failed scrape is passed over) until stop is called; stop
// returns once the sampler has ended, so fn is not called after it.
func sampleMetrics(t testing.TB, c *http.Client, p *Pulsegate, fn func(m map[string]float64)) (stop func()) {
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			r, err := do(t, c, "GET", p.AdminURL()+"/metrics", nil, nil)
			if err != nil {
				continue
			}
			fn(parseMetrics(string(r.Body)))
		}
	}()
	return func() {
		close(done)
		sampler.Wait()
	}
}

func parseMetrics(text string) map[string]float64 {
	out := make(map[string]float64)
	for _, l := range strings.Split(text, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		series, val := l[:i], l[i+1:]
		// A timestamp may follow the value.
		if j := strings.LastIndexByte(series, ' '); j > 0 && !strings.Contains(series[j:], "}") {
			if _, err := strconv.ParseFloat(series[j+1:], 64); err == nil && !strings.HasSuffix(series, "}") {
				val = series[j+1:]
				series = series[:j]
			}
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		out[series] = v
	}
	return out
}

// sumMetric adds every series of family name whose labels contain all of
// the given label pairs (e.g. `code="5xx"`).
func sumMetric(m map[string]float64, name string, labels ...string) float64 {
	var s float64
	for series, v := range m {
		fam := series
		if i := strings.IndexByte(series, '{'); i >= 0 {
			fam = series[:i]
		}
		if fam != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(series, l) {
				ok = false
				break
			}
		}
		if ok {
			s += v
		}
	}
	return s
}

// eventually polls cond every 50 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// num reads a number at a dotted path in decoded JSON ("a.b.c"); ok false
// when missing or not a number.
func num(m map[string]any, path string) (float64, bool) {
	v, ok := lookup(m, path)
	if !ok {
		return 0, false
	}
	f, ok := v.(float64)
	return f, ok
}

// lookup walks a dotted path through nested JSON objects.
func lookup(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = obj[k]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

// ctxTimeout is context.WithTimeout bound to t.Cleanup.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// mustJSON renders v for logs.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
