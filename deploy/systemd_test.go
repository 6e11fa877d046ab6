package deploy

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unitFile is a systemd unit: section → key → values (in order; a key may
// repeat).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, data []byte) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	var cont strings.Builder
	scanLines(data, func(n int, line string) {
		line = strings.TrimSpace(line)
		if cont.Len() > 0 {
			line = cont.String() + line
			cont.Reset()
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			return
		}
		if strings.HasSuffix(line, `\`) {
			cont.WriteString(strings.TrimSuffix(line, `\`) + " ")
			return
		}
		if line[0] == '[' {
			section = strings.Trim(line, "[]")
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			return
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("unit line %d: %q is not key=value inside a section", n, line)
		}
		u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
	})
	return u
}

func (u unitFile) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// envFileLine matches NAME=value lines of an environment file, commented
// out or not.
var envFileLine = regexp.MustCompile(`^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$`)

// envFile returns the active assignments of deploy/systemd/pulsegate.env
// and checks every name, active or commented out, is a real variable.
func envFile(t *testing.T) []string {
	t.Helper()
	vars := envVarsByName()
	var active []string
	scanLines(readFile(t, deployPath(t, "systemd", "pulsegate.env")), func(n int, line string) {
		m := envFileLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				t.Errorf("pulsegate.env:%d: %q is not NAME=value", n, line)
			}
			return
		}
		commented, name, value := m[1] != "", m[2], m[3]
		v, ok := vars[name]
		if !ok {
			t.Errorf("pulsegate.env:%d: %s is not a pulsegate variable (config.EnvVars)", n, name)
			return
		}
		if commented {
			return
		}
		if v.Secret && value != "" {
			t.Errorf("pulsegate.env:%d: %s is a secret; the example must not set one (leave it commented)", n, name)
		}
		active = append(active, name+"="+value)
	})
	return active
}

// TestSystemdUnit checks the unit: the binary's real subcommand and
// --config flag, the environment file, SIGTERM with a stop timeout longer
// than the drain delay plus shutdown timeout, restart on failure, the data
// dir in the unit's StateDirectory, and the hardening the brief lists.
// The unit's configuration (config.example.yaml as /etc/pulsegate/config.yaml,
// plus Environment= and the example environment file) must be accepted by
// the real binary's check-config.
func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, readFile(t, deployPath(t, "systemd", "pulsegate.service")))
	svc := u["Service"]
	if svc == nil || u["Unit"] == nil || u["Install"] == nil {
		t.Fatal("want [Unit], [Service] and [Install] sections")
	}
	exec := strings.Fields(u.last("Service", "ExecStart"))
	if len(exec) < 2 || exec[0] != "/usr/local/bin/pulsegate" || exec[1] != "serve" {
		t.Fatalf("ExecStart %q: want /usr/local/bin/pulsegate serve ...", exec)
	}
	cfgPath := ""
	for i, a := range exec {
		if a == "--config" && i+1 < len(exec) {
			cfgPath = exec[i+1]
		}
	}
	if cfgPath != "/etc/pulsegate/config.yaml" {
		t.Errorf("ExecStart --config %q, want /etc/pulsegate/config.yaml", cfgPath)
	}
	if got := u.last("Service", "EnvironmentFile"); strings.TrimPrefix(got, "-") != "/etc/pulsegate/pulsegate.env" {
		t.Errorf("EnvironmentFile=%q", got)
	}
	for key, want := range map[string]string{
		"Type": "simple", "KillSignal": "SIGTERM", "Restart": "on-failure",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
		"ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
		"StateDirectory": "pulsegate", "CapabilityBoundingSet": "",
	} {
		if got, ok := svc[key]; !ok || got[len(got)-1] != want {
			t.Errorf("%s=%q, want %q", key, u.last("Service", key), want)
		}
	}
	if u.last("Service", "DynamicUser") != "yes" {
		if user := u.last("Service", "User"); user == "" || user == "root" || user == "0" {
			t.Error("run as DynamicUser=yes or a dedicated User=, never root")
		}
	}
	// Nothing that hides /proc/meminfo, /proc/stat or the app's processes
	// from the system probe.
	if v := u.last("Service", "ProcSubset"); v == "pid" {
		t.Error("ProcSubset=pid hides /proc/meminfo and /proc/stat from the system probe")
	}

	// Environment= names and the data dir.
	var env []string
	for _, e := range svc["Environment"] {
		for _, kv := range strings.Fields(e) {
			env = append(env, strings.Trim(kv, `"`))
		}
	}
	vars := envVarsByName()
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := vars[name]; !ok {
			t.Errorf("Environment=%s: not a pulsegate variable", kv)
		}
	}
	env = append(env, envFile(t)...)

	// The unit's configuration, through the real binary and the real loader.
	example := filepath.Join(repoRoot(t), "config.example.yaml")
	if _, err := os.Stat(example); err != nil {
		t.Fatalf("config.example.yaml (installed as %s): %v", cfgPath, err)
	}
	if out, code := runBinary(t, env, "check-config", "--config", example); code != 0 {
		t.Fatalf("pulsegate check-config with the unit's environment exited %d:\n%s", code, out)
	}
	cfg := loadConfig(t, example, env)
	if want := "/var/lib/" + u.last("Service", "StateDirectory"); cfg.DataDir != want {
		t.Errorf("data_dir %q: ProtectSystem=strict makes everything but %s read-only", cfg.DataDir, want)
	}
	if host, _, _ := net.SplitHostPort(cfg.Admin.Addr); !cfg.Admin.Token.IsSet() && host != "127.0.0.1" && host != "localhost" && host != "::1" {
		t.Errorf("admin.addr %s without a token: keep the example on loopback", cfg.Admin.Addr)
	}

	v := u.last("Service", "TimeoutStopSec")
	if _, err := strconv.Atoi(v); err == nil {
		v += "s" // a bare number is seconds
	}
	stop, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("TimeoutStopSec=%q: %v", u.last("Service", "TimeoutStopSec"), err)
	}
	need := cfg.Proxy.DrainDelay.Duration() + cfg.Proxy.ShutdownTimeout.Duration()
	if stop < need+3*time.Second {
		t.Errorf("TimeoutStopSec %s must exceed drain delay %s + shutdown timeout %s + a few seconds", stop, cfg.Proxy.DrainDelay.Duration(), cfg.Proxy.ShutdownTimeout.Duration())
	}
	t.Logf("TimeoutStopSec %s, drain %s + shutdown %s", stop, cfg.Proxy.DrainDelay.Duration(), cfg.Proxy.ShutdownTimeout.Duration())
}

// TestSystemdAnalyze runs systemd's own checks where systemd-analyze is
// installed: verify (unit syntax, with ExecStart pointed at the built
// binary since /usr/local/bin/pulsegate is not installed here) and the
// offline security assessment, whose exposure score must stay "OK" (≤ 2).
func TestSystemdAnalyze(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	unit := string(readFile(t, deployPath(t, "systemd", "pulsegate.service")))
	dir := t.TempDir()
	tmp := filepath.Join(dir, "pulsegate.service")
	if err := os.WriteFile(tmp, []byte(strings.Replace(unit, "ExecStart=/usr/local/bin/pulsegate ", "ExecStart="+pulsegateBinary(t)+" ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", tmp).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "pulsegate.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	out, err = exec.Command(sa, "security", "--offline=true", "--no-pager", tmp).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Overall exposure level") {
		t.Skipf("systemd-analyze security --offline is not supported here: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("systemd-analyze security exposure: %.1f", score)
	if score > 2.0 {
		var worst []string
		for line := range strings.SplitSeq(string(out), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "✗") {
				worst = append(worst, strings.TrimSpace(line))
			}
		}
		t.Errorf("exposure %.1f > 2.0; open items:\n%s", score, strings.Join(slices.Clip(worst), "\n"))
	}
}
