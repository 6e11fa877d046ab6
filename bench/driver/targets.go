package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Target names, in the order tables list them.
const (
	tDirect     = "direct"
	tPulsegate  = "pulsegate"
	tPulseNoMon = "pulsegate-nomon"
	tBare       = "bare"
	tNginx      = "nginx"
	tHAProxy    = "haproxy"
	tCaddy      = "caddy"
	// tPulseDefaults is pulsegate with only the settings it needs to run:
	// what a user gets out of the box (monitoring on, no probes configured).
	tPulseDefaults = "pulsegate-defaults"
	// tPulseBase is the same, from the binary bench/lib.sh built at BASE_REF
	// (an A/B of two versions in one run).
	tPulseBase = "pulsegate-base"
)

// allTargets lists every target the benchmark knows, in table order.
var allTargets = []string{tDirect, tPulsegate, tPulseNoMon, tPulseDefaults, tPulseBase, tBare, tNginx, tHAProxy, tCaddy}

// targetLabel is how tables name a target.
var targetLabel = map[string]string{
	tDirect:        "direct (no proxy)",
	tPulsegate:     "pulsegate (full)",
	tPulseNoMon:    "pulsegate (monitoring off)",
	tBare:          "bare ReverseProxy",
	tNginx:         "nginx",
	tHAProxy:       "HAProxy",
	tCaddy:         "Caddy",
	tPulseDefaults: "pulsegate (shipped defaults)",
	tPulseBase:     "pulsegate at BASE_REF (defaults)",
}

// splitTarget splits a target name into its kind and extra environment:
// "pulsegate-defaults/GOMAXPROCS=1/GOGC=100" runs pulsegate-defaults with
// GOMAXPROCS=1 and GOGC=100 (Go proxies only; variants of one binary in one run).
func splitTarget(t string) (kind string, extraEnv []string) {
	parts := strings.Split(t, "/")
	return parts[0], parts[1:]
}

// label is how tables name a target (with its variant settings).
func label(t string) string {
	kind, extra := splitTarget(t)
	l := targetLabel[kind]
	if len(extra) > 0 {
		l += ", " + strings.Join(extra, " ")
	}
	return l
}

// env is what starting targets needs to know about the machine.
type env struct {
	binDir   string // pulsegate, upstream, bareproxy, loadgen
	workDir  string // configs, logs, data dirs
	upstream string // host:port of the shared upstream
	proxyCPU string // taskset CPU list for proxies and the upstream
	loadCPU  string // taskset CPU list for load generators
	// nice is the niceness of every process under test and of the load
	// generators (negative: favoured over unrelated work on a shared machine).
	nice int
	// dbDSN and redisURL configure pulsegate (full)'s probes.
	dbDSN, redisURL string
}

// running is a started target.
type running struct {
	name      string
	url       string // base URL load goes to, no trailing slash
	adminURL  string // pulsegate's admin listener base URL, else ""
	cmd       *exec.Cmd
	logPath   string
	exited    chan struct{}
	procStart time.Time
}

// pid is the target's root process, 0 for direct.
func (r *running) pid() int {
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// freePort asks the kernel for an unused loopback port.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// pinnedArgv is the argv that runs bin on cpus at niceness nice (0 = as
// is; cpus "" = unpinned). nice and taskset both exec, so the PID is the program's own.
func pinnedArgv(nice int, cpus, bin string, args ...string) []string {
	argv := []string{bin}
	if cpus != "" {
		argv = []string{"taskset", "-c", cpus, bin}
	}
	if nice != 0 {
		argv = append([]string{"nice", "-n", strconv.Itoa(nice)}, argv...)
	}
	return append(argv, args...)
}

// pinned builds a command running bin on cpus at niceness nice, in its own
// process group (so that stop can reach nginx's workers).
func pinned(nice int, cpus, bin string, args ...string) *exec.Cmd {
	argv := pinnedArgv(nice, cpus, bin, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// available reports why a target cannot run here, or "" when it can.
func (e env) available(name string) string {
	name, _ = splitTarget(name)
	need := map[string]string{
		tPulseDefaults: filepath.Join(e.binDir, "pulsegate"),
		tPulseBase:     filepath.Join(e.binDir, "pulsegate-base"),
		tPulsegate:     filepath.Join(e.binDir, "pulsegate"),
		tPulseNoMon:    filepath.Join(e.binDir, "pulsegate"),
		tBare:          filepath.Join(e.binDir, "bareproxy"),
	}
	if p, ok := need[name]; ok {
		if _, err := os.Stat(p); err != nil {
			return fmt.Sprintf("%s not built (%v)", p, err)
		}
		return ""
	}
	switch name {
	case tNginx, tHAProxy, tCaddy:
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Sprintf("%s is not installed (apt-get install %s)", name, name)
		}
	case tDirect:
	default:
		return "unknown target"
	}
	return ""
}

// start launches target name pinned to the proxy CPU and waits until a
// GET / through it answers 200.
func (e env) start(ctx context.Context, target string, round int) (*running, error) {
	name, extraEnv := splitTarget(target)
	if name == tDirect {
		return &running{name: name, url: "http://" + e.upstream}, nil
	}
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(e.workDir, fmt.Sprintf("%s-r%d-", name, round))
	if err != nil {
		return nil, fmt.Errorf("creating a directory for %s: %w", name, err)
	}
	r := &running{name: name, url: "http://" + listen, logPath: filepath.Join(dir, "output.log")}
	var cmd *exec.Cmd
	switch name {
	case tBare:
		cmd = pinned(e.nice, e.proxyCPU, filepath.Join(e.binDir, "bareproxy"),
			"-listen", listen, "-upstream", "http://"+e.upstream, "-max-idle-per-host", "1024")
	case tPulsegate, tPulseNoMon, tPulseDefaults, tPulseBase:
		admin, err := freePort()
		if err != nil {
			return nil, err
		}
		r.adminURL = "http://" + admin
		bin := "pulsegate"
		if name == tPulseBase {
			bin = "pulsegate-base"
		}
		cmd = pinned(e.nice, e.proxyCPU, filepath.Join(e.binDir, bin), "serve")
		cmd.Env = append(os.Environ(), pulsegateEnv(name, "http://"+e.upstream, listen, admin, filepath.Join(dir, "data"), e.dbDSN, e.redisURL)...)
	case tNginx:
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(nginxConf(dir, listen, e.upstream)), 0o644); err != nil {
			return nil, fmt.Errorf("writing nginx config: %w", err)
		}
		cmd = pinned(e.nice, e.proxyCPU, "nginx", "-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	case tHAProxy:
		conf := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(conf, []byte(haproxyConf(listen, e.upstream)), 0o644); err != nil {
			return nil, fmt.Errorf("writing haproxy config: %w", err)
		}
		cmd = pinned(e.nice, e.proxyCPU, "haproxy", "-db", "-f", conf)
	case tCaddy:
		conf := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(conf, []byte(caddyConf(listen, e.upstream)), 0o644); err != nil {
			return nil, fmt.Errorf("writing caddy config: %w", err)
		}
		cmd = pinned(e.nice, e.proxyCPU, "caddy", "run", "--config", conf, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	default:
		return nil, fmt.Errorf("starting %s: unknown target", name)
	}
	if len(extraEnv) > 0 {
		if cmd.Env == nil {
			cmd.Env = os.Environ()
		}
		cmd.Env = append(cmd.Env, extraEnv...)
	}
	logf, err := os.Create(r.logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", r.logPath, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	r.cmd, r.exited, r.procStart = cmd, make(chan struct{}), time.Now()
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(r.exited)
	}()
	if err := waitReady(ctx, r, 30*time.Second); err != nil {
		r.stop()
		return nil, fmt.Errorf("starting %s: %w\n%s", name, err, tail(r.logPath, 20))
	}
	return r, nil
}

// pulsegateEnv configures pulsegate for the two variants. Full: monitoring on
// with the local MariaDB and Redis probes, and the limiters on but sized far
// above the load so they run on every request without rejecting any; load
// shedding stays armed on signals a benchmark does not trip (the proxy core is
// saturated on purpose, so the cpu signal would shed the benchmark itself).
func pulsegateEnv(name, upstream, listen, admin, dataDir, dsn, redisURL string) []string {
	env := []string{
		"RESPONSIVENESS_UPSTREAM_URL=" + upstream,
		"RESPONSIVENESS_LISTEN_ADDR=" + listen,
		"RESPONSIVENESS_ADMIN_ADDR=" + admin,
		"RESPONSIVENESS_DATA_DIR=" + dataDir,
		"RESPONSIVENESS_PROXY_DRAIN_DELAY=0",
	}
	switch name {
	case tPulseNoMon:
		return append(env, "RESPONSIVENESS_MONITORING_ENABLED=false")
	case tPulseDefaults, tPulseBase:
		return env
	}
	env = append(env,
		"RESPONSIVENESS_MONITORING_ENABLED=true",
		"RESPONSIVENESS_MAX_CONCURRENCY=8192", // above the 4096 connections of the scale curve
		"RESPONSIVENESS_RATE_LIMIT_RPS=1000000",
		"RESPONSIVENESS_RATE_LIMIT_BURST=1000000",
		"RESPONSIVENESS_BACKPRESSURE_SHEDDING_ENABLED=true",
		"RESPONSIVENESS_BACKPRESSURE_SHED_SIGNALS=error_rate,db_connections",
	)
	if dsn != "" {
		env = append(env, "RESPONSIVENESS_DB_DSN="+dsn)
	}
	if redisURL != "" {
		env = append(env, "RESPONSIVENESS_REDIS_URL="+redisURL)
	}
	return env
}

// nginxConf is a minimal nginx reverse proxy: one worker (the proxy core),
// keep-alive to the upstream, no access log.
func nginxConf(dir, listen, upstream string) string {
	return fmt.Sprintf(`# generated by pulsegate bench/driver
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 65536;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    upstream app {
        server %[3]s;
        keepalive 1024;
        keepalive_requests 1000000;
        keepalive_timeout 90s;
    }
    server {
        listen %[2]s;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
}
`, dir, listen, upstream)
}

// haproxyConf is a minimal HAProxy reverse proxy: one thread, connection
// reuse to the upstream, X-Forwarded-For, no logging.
func haproxyConf(listen, upstream string) string {
	return fmt.Sprintf(`# generated by pulsegate bench/driver
global
    nbthread 1
    maxconn 9000
defaults
    mode http
    option forwardfor
    http-reuse always
    timeout connect 5s
    timeout client 120s
    timeout server 60s
    timeout http-keep-alive 120s
frontend bench
    bind %s
    default_backend app
backend app
    server app1 %s
`, listen, upstream)
}

// caddyConf is a minimal Caddy reverse proxy: no admin endpoint, no automatic
// HTTPS, bound to the loopback address only (no Host matcher), keep-alive
// to the upstream with an idle pool sized like the bare
// proxy's.
func caddyConf(listen, upstream string) string {
	host, port, _ := net.SplitHostPort(listen)
	return fmt.Sprintf(`# generated by pulsegate bench/driver
{
    admin off
    auto_https off
}
http://:%s {
    bind %s
    reverse_proxy %s {
        transport http {
            keepalive 90s
            keepalive_idle_conns 1024
            keepalive_idle_conns_per_host 1024
        }
    }
}
`, port, host, upstream)
}

// waitReady polls GET / through r until it answers 200, r exits, or the
// timeout passes.
func waitReady(ctx context.Context, r *running, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			return fmt.Errorf("exited before answering (exit status %v)", r.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := client.Get(r.url + "/")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET / answered %d", resp.StatusCode)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", timeout, last)
}

// stop ends the target: SIGTERM; a second SIGTERM after 2 s (pulsegate
// drains for a while on the first and exits at once on the second); SIGKILL
// to its process group 10 s later.
func (r *running) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(2 * time.Second):
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			<-r.exited
		}
	}
	// nginx workers exit with their master; make sure nothing of the group lingers.
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
}

// tail returns the last n lines of a log file, for error messages.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	if len(lines) == 0 {
		return "(no output)"
	}
	return "  | " + strings.Join(lines, "\n  | ")
}
