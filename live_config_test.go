package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/alerts"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/health"
	"github.com/pulsegate/pulsegate/probes"
)

const liveToken = "i10-live-token"

// liveApp builds the whole sidecar (as serve does, without starting its
// loops) in front of a slow app, with the real MariaDB and Redis probed.
func liveApp(t *testing.T) (*app, string, *observer.ObservedLogs) {
	t.Helper()
	for _, addr := range []string{"127.0.0.1:3306", "127.0.0.1:6379"} {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Skipf("needs %s: %v", addr, err)
		}
		c.Close()
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { rdb.Close() })
	const queueKey = "i10:live:queue"
	ctx := context.Background()
	rdb.Del(ctx, queueKey)
	rdb.RPush(ctx, queueKey, "a", "b", "c", "d", "e")
	t.Cleanup(func() { rdb.Del(context.Background(), queueKey) })

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(upstream.Close)

	cfg := config.Defaults()
	cfg.Proxy.UpstreamURL = upstream.URL
	cfg.Proxy.ListenAddr = "127.0.0.1:0"
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Admin.Token = config.Secret(liveToken)
	cfg.DataDir = t.TempDir()
	cfg.Database.DSN = "mysql://root@127.0.0.1:3306/test"
	cfg.Redis.URL = "redis://127.0.0.1:6379/0"
	cfg.Redis.SessionPrefix = "i10:live:session:"
	cfg.Redis.QueueKeys = []string{queueKey}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	a, err := build(cfg, zap.New(core), zap.NewAtomicLevel(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.closeAll)
	return a, a.adminLn.Addr().String(), logs
}

// adminCall sends one request to the admin handler, signed in.
func adminCall(t *testing.T, a *app, addr, method, path, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Authorization", "Bearer "+liveToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	a.adminSrv.Handler.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body.String())
	}
	return rec.Code, out
}

// TestLiveConfigReachesEveryJudge is the regression test of issue 10: after
// a configuration POST, the health verdict, the probes' reasons, the alert
// rules, shedding and the API judge with the new thresholds without a
// restart. Before the fix, the verdict and the probes kept the thresholds
// they were built with.
func TestLiveConfigReachesEveryJudge(t *testing.T) {
	a, addr, _ := liveApp(t)
	ctx := context.Background()
	for range 20 {
		rec := httptest.NewRecorder()
		a.proxySrv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "http://app/live", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("proxied request: %d", rec.Code)
		}
	}
	a.runner.RunOnce(ctx)
	before := a.monitor.Tick()
	if got := before.Verdict.Underlying[health.RequestPerformance]; got != health.Healthy {
		t.Fatalf("with the default thresholds, request_performance is %s, want healthy: %v", got, before.Verdict.Reasons)
	}

	// Every judged threshold moved so that what is measured now is critical.
	code, ans := adminCall(t, a, addr, "POST", "/admin/api/config/responsiveness", `{
		"responsiveness": {
			"memory_warning_threshold": 0.01, "memory_critical_threshold": 0.02,
			"cpu_warning_threshold": 0.0001, "cpu_critical_threshold": 0.0002,
			"db_connection_warning_threshold": 0.0001, "db_connection_critical_threshold": 0.0002
		},
		"thresholds": {
			"disk_warning": 0.01, "disk_critical": 0.02,
			"response_time_warning": 0.001, "response_time_critical": 0.002,
			"db_query_warning": 0.001, "db_query_critical": 0.002,
			"redis_latency_warning": 0.001, "redis_latency_critical": 0.002,
			"queue_warning": 1, "queue_critical": 2,
			"job_queue_warning": 1, "job_queue_critical": 2
		},
		"database": {"long_query_threshold": 0.5},
		"backpressure": {"queue_size": 3}
	}`)
	if code != http.StatusOK {
		t.Fatalf("POST: %d %v", code, ans)
	}
	if rr, _ := ans["restart_required"].([]any); len(rr) != 0 {
		t.Errorf("thresholds are live, but the POST answer says restart_required %v", rr)
	}

	a.runner.RunOnce(ctx) // the next run of each probe
	tick := a.monitor.Tick()
	v := tick.Verdict

	// The verdict: request_performance judged with the new response-time threshold.
	if got := v.Underlying[health.RequestPerformance]; got != health.Critical {
		t.Errorf("health: request_performance %s after the POST, want critical (new response_time_critical 0.002 s); reasons %v", got, v.Reasons)
	}
	if !anyContains(v.Reasons, "critical 0.002 s") {
		t.Errorf("health reasons do not name the new threshold 0.002 s: %v", v.Reasons)
	}

	// The probes' reasons: every probe judged with the new thresholds.
	snap := a.runner.Store().Snapshot()
	sys := snap[probes.SystemComponent]
	if sys.Status != probes.StatusCritical || !anyContains(sys.Reasons, "memory at") || !anyContains(sys.Reasons, "critical 2%") {
		t.Errorf("system probe: %s %v, want critical with memory ≥ critical 2%%", sys.Status, sys.Reasons)
	}
	if d, ok := sys.Details.(probes.SystemDetails); !ok || d.Thresholds.MemoryCrit != 0.02 || d.Thresholds.DiskCrit != 0.02 {
		t.Errorf("system probe echoes thresholds %+v, want the posted ones", sys.Details)
	}
	db := snap[probes.DatabaseProbeName]
	// (SELECT 1 and PING on this host take less than the least latency
	// threshold allowed, 1 ms: the pool and the job queue show the change.)
	if db.Status != probes.StatusCritical || !anyContains(db.Reasons, "connections in use") {
		t.Errorf("database probe reasons %v do not judge the pool with the new 0.02%% threshold", db.Reasons)
	}
	rd := snap[probes.RedisProbeName]
	if rd.Status != probes.StatusCritical || !anyContains(rd.Reasons, "i10:live:queue") {
		t.Errorf("redis probe reasons %v do not judge the job queue (5 jobs) with the new job_queue_critical 2", rd.Reasons)
	}

	// The alert rules.
	active := map[string]alerts.Alert{}
	for _, al := range a.alerts.Active() {
		active[al.Rule] = al
	}
	for _, rule := range []string{alerts.RuleMemoryUsage, alerts.RuleAvgResponseTime, alerts.RuleConnectionPool} {
		if al, ok := active[rule]; !ok || al.Severity != "critical" {
			t.Errorf("alert %s not critical after the POST: %+v", rule, al)
		}
	}

	// Shedding: memory and response_time are default shed signals.
	st := a.chain.State()
	if st.Pressure["memory"] != "critical" || st.Pressure["response_time"] != "critical" {
		t.Errorf("backpressure pressure %v, want memory and response_time critical", st.Pressure)
	}
	if st.QueueLimit != 3 || st.QueueWarning != 1 {
		t.Errorf("backpressure queue bound %d / warning %d, want 3 / 1", st.QueueLimit, st.QueueWarning)
	}

	// The API: the health endpoint serves the verdict judged with the new values.
	_, hv := adminCall(t, a, addr, "GET", "/admin/api/health/responsiveness", "")
	if hv["status"] != "critical" {
		t.Errorf("health API status %v, want critical", hv["status"])
	}
	// The dashboard's API: judgements carry the new thresholds and levels.
	_, perf := adminCall(t, a, addr, "GET", "/admin/api/performance/responsiveness", "")
	pm, _ := perf["performance_metrics"].(map[string]any)
	for _, k := range []string{"error_rate", "app_error_rate", "rejections"} {
		if _, ok := pm[k]; !ok {
			t.Errorf("performance_metrics lacks %s: %v", k, pm)
		}
	}
	js, _ := perf["judgements"].(map[string]any)
	for name, want := range map[string]float64{"job_queue_depth": 2, "memory_usage": 0.02, "disk_usage": 0.02, "avg_response_time": 0.002, "connection_pool_utilization": 0.0002} {
		j, _ := js[name].(map[string]any)
		if j["critical"] != want || j["level"] != "critical" {
			t.Errorf("judgements[%s] = %v, want level critical with critical threshold %v", name, j, want)
		}
	}
	if j := js["redis_latency"].(map[string]any); j["critical"] != 0.002 || j["warning"] != 0.001 {
		t.Errorf("judgements[redis_latency] = %v, want the posted 0.001/0.002", j)
	}
	// A threshold posted after the last tick shows in the API at once.
	adminCall(t, a, addr, "POST", "/admin/api/config/responsiveness", `{"thresholds": {"apdex_warning": 0.99, "apdex_critical": 0.98}}`)
	_, perf = adminCall(t, a, addr, "GET", "/admin/api/performance/responsiveness", "")
	if j := perf["judgements"].(map[string]any)["apdex"].(map[string]any); j["warning"] != 0.99 || j["critical"] != 0.98 || j["bad_when"] != "below" {
		t.Errorf("judgements[apdex] after the POST = %v", j)
	}
}

// TestLiveConfigNamesRestartSettings: a setting read only at start is
// accepted, and the POST answer says it needs a restart.
func TestLiveConfigNamesRestartSettings(t *testing.T) {
	a, addr, _ := liveApp(t)
	code, ans := adminCall(t, a, addr, "POST", "/admin/api/config/responsiveness",
		`{"proxy": {"listen_addr": "127.0.0.1:18080"}, "log": {"format": "console"}}`)
	if code != http.StatusOK {
		t.Fatalf("POST: %d %v", code, ans)
	}
	var got []string
	for _, k := range ans["restart_required"].([]any) {
		got = append(got, k.(string))
	}
	if want := []string{"proxy.listen_addr", "log.format"}; !slices.Equal(got, want) {
		t.Errorf("restart_required %v, want %v", got, want)
	}
	// A later, live change still reports what waits for the restart.
	_, ans = adminCall(t, a, addr, "POST", "/admin/api/config/responsiveness", `{"thresholds": {"disk_warning": 0.5}}`)
	if rr := ans["restart_required"].([]any); len(rr) != 2 {
		t.Errorf("restart_required after a later live change: %v, want the two pending settings", rr)
	}
}

func anyContains(list []string, sub string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, sub) })
}

// TestLiveConfigEveryField posts a change to every setting of the settings
// table, one at a time, through the admin API: each is accepted, every
// component's Apply takes it (no config_apply_failed), GET shows it, and
// restart_required names it exactly when it is read only at start.
func TestLiveConfigEveryField(t *testing.T) {
	a, addr, logs := liveApp(t)
	special := map[string]any{
		"proxy.upstream_url": "http://127.0.0.1:1/", "proxy.listen_addr": "127.0.0.1:18081",
		"proxy.route_patterns": []string{"/users/<id>"}, "proxy.trusted_proxies": []string{"10.0.0.0/8"},
		"admin.addr": "127.0.0.1:19902", "admin.allowed_hosts": []string{"pulsegate.internal"},
		"admin.auth_url": "http://127.0.0.1:1/auth", "database.dsn": "mysql://root@127.0.0.1:3306/mysql",
		"database.app_user": "app", "redis.url": "redis://127.0.0.1:6379/1", "redis.session_prefix": "i10:other:",
		"redis.queue_keys": []string{"i10:q2"}, "system.disk_paths": []string{"/", "/tmp"}, "system.cgroup_root": "/sys/fs/cgroup/",
		"system.proc_root": "/proc/", "system.app_process_names": []string{"gunicorn"}, "system.app_pid_file": "/tmp/i10-app.pid",
		"backpressure.critical_routes": []string{"/checkout"}, "backpressure.low_priority_routes": []string{"/reports"},
		"backpressure.shed_signals": []string{"memory"}, "alerts.email.from": "pulsegate@example.com",
		"alerts.email.to": []string{"ops@example.com"}, "alerts.email.min_severity": "warning", "alerts.email.username": "pulsegate", "alerts.email.password": "i10-pw",
		"alerts.webhook_url": "http://127.0.0.1:1/hook", "alerts.alertmanager_url": "http://127.0.0.1:1",
		"alerts.runbook_base_url": "https://runbooks.example.com", "actions.cleanup_url": "http://127.0.0.1:1/cleanup",
		"log.level": "debug", "log.format": "console", "data_dir": "/tmp/i10-other",
		"app.version": "2.0.1", "app.version_header": "X-App-Version",
	}
	for _, e := range config.EnvVars() {
		cur, _ := a.holder.Get()
		body, ok := changedBody(cur, e.Key, special)
		if !ok {
			t.Logf("%s: not posted here (admin.token signs these calls in; smtp_addr needs from/to, posted after it)", e.Key)
			continue
		}
		code, ans := adminCall(t, a, addr, "POST", "/admin/api/config/responsiveness", body)
		if code != http.StatusOK {
			t.Errorf("%s: POST %s: %d %v", e.Key, body, code, ans)
			continue
		}
		changed := false
		for _, c := range ans["changes"].([]any) {
			changed = changed || c.(map[string]any)["key"] == e.Key
		}
		if !changed {
			t.Errorf("%s: the answer does not list it as changed: %v", e.Key, ans["changes"])
		}
		inRestart := slices.Contains(toStrings(ans["restart_required"]), e.Key)
		if inRestart != config.NeedsRestart(e.Key) {
			t.Errorf("%s: restart_required lists it = %v, want %v", e.Key, inRestart, config.NeedsRestart(e.Key))
		}
		if n := logs.FilterMessage("config_apply_failed").Len(); n > 0 {
			t.Errorf("%s: a component refused it: %v", e.Key, logs.FilterMessage("config_apply_failed").All()[n-1].ContextMap())
			logs.TakeAll()
		}
	}
}

// changedBody is a POST body changing key alone to a value valid with
// the rest of cur: special's value, or for numbers and booleans the first
// candidate config.Patch accepts.
func changedBody(cur *config.Config, key string, special map[string]any) (string, bool) {
	var doc map[string]any
	b, _ := json.Marshal(cur)
	_ = json.Unmarshal(b, &doc)
	parts := strings.Split(key, ".")
	m := doc
	for _, p := range parts[:len(parts)-1] {
		m = m[p].(map[string]any)
	}
	old := m[parts[len(parts)-1]]
	var candidates []any
	if v, ok := special[key]; ok {
		candidates = []any{v}
	} else {
		switch v := old.(type) {
		case bool:
			candidates = []any{!v}
		case float64:
			candidates = []any{v * 2, v + 1, v / 2, v * 0.9, v - 1, 1.0, 0.5, 0.0}
		}
	}
	for _, c := range candidates {
		if reflectEqual(c, old) {
			continue
		}
		var body any = c
		for i := len(parts) - 1; i >= 0; i-- {
			body = map[string]any{parts[i]: body}
		}
		js, _ := json.Marshal(body)
		if _, err := config.Patch(cur, js); err == nil {
			return string(js), true
		}
	}
	return "", false
}

func reflectEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, x.(string))
	}
	return out
}
