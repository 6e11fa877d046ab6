package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func runCmd(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, env, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckConfigReportsEveryProblem(t *testing.T) {
	code, _, stderr := runCmd(t, []string{
		"RESPONSIVENESS_MEMORY_WARNING_THRESHOLD=0.95",
		"RESPONSIVENESS_CPU_CRITICAL_THRESHOLD=abc",
		"RESPONSIVENESS_UPSTREAM_URL=ftp://x",
	}, "check-config")
	if code != 1 {
		t.Fatalf("exit %d; want 1", code)
	}
	for _, want := range []string{"RESPONSIVENESS_MEMORY_WARNING_THRESHOLD", "RESPONSIVENESS_CPU_CRITICAL_THRESHOLD", "RESPONSIVENESS_UPSTREAM_URL"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not name %s:\n%s", want, stderr)
		}
	}
}

func TestServeWithBadConfigExitsAtOnce(t *testing.T) {
	code, _, stderr := runCmd(t, []string{"RESPONSIVENESS_MONITORING_INTERVAL=-1"}, "serve")
	if code != 1 || !strings.Contains(stderr, "RESPONSIVENESS_MONITORING_INTERVAL") {
		t.Fatalf("exit %d, stderr %q; want 1 naming the variable", code, stderr)
	}
}

// The canary password must not appear, raw or URL-encoded, in check-config's output.
func TestCheckConfigRedactsSecrets(t *testing.T) {
	const canary = "c@n#ry%P4ss:zz"
	enc := url.QueryEscape(canary)
	code, stdout, stderr := runCmd(t, []string{
		"RESPONSIVENESS_DB_DSN=mysql://app:" + url.PathEscape(canary) + "@127.0.0.1:3306/test",
		"RESPONSIVENESS_REDIS_URL=redis://:" + url.PathEscape(canary) + "@127.0.0.1:6379/0",
		"RESPONSIVENESS_ADMIN_TOKEN=" + canary,
	}, "check-config")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, s := range []string{canary, enc, url.PathEscape(canary)} {
		if strings.Contains(stdout+stderr, s) {
			t.Fatalf("check-config output contains the secret %q:\n%s", s, stdout)
		}
	}
	if !strings.Contains(stdout, "dsn: mysql://app:xxxxx@127.0.0.1:3306/test") {
		t.Errorf("DSN not shown redacted:\n%s", stdout)
	}
}

func TestStatusExitCodes(t *testing.T) {
	for _, tc := range []struct {
		status string
		code   int
	}{{"healthy", 0}, {"warning", 1}, {"critical", 2}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer tok" {
				w.WriteHeader(401)
				return
			}
			w.Write([]byte(`{"status":"` + tc.status + `","components":{"system_optimizer":"` + tc.status + `"},
			"metrics":{"memory_usage":0.5,"connection_pool_utilization":null},"reasons":["x is y"],"last_check":"2026-01-01T00:00:00Z"}`))
		}))
		code, out, _ := runCmd(t, nil, "status", "--admin", srv.URL, "--token", "tok")
		srv.Close()
		if code != tc.code || !strings.Contains(out, "memory_usage") || !strings.Contains(out, "50.0%") || !strings.Contains(out, "not measured") {
			t.Errorf("%s: exit %d; want %d; output:\n%s", tc.status, code, tc.code, out)
		}
	}
	code, _, _ := runCmd(t, nil, "status", "--admin", "http://127.0.0.1:1", "--timeout", "1s")
	if code != 3 {
		t.Errorf("unreachable: exit %d; want 3", code)
	}
}

func TestUnknownCommand(t *testing.T) {
	if code, _, stderr := runCmd(t, nil, "bogus"); code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Fatalf("exit %d %q", code, stderr)
	}
	if code, out, _ := runCmd(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "pulsegate ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestCheckConfigNamesDeprecatedSettings(t *testing.T) {
	code, out, errOut := runCmd(t, []string{"RESPONSIVENESS_QUEUE_CRITICAL_THRESHOLD=150"}, "check-config")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "deprecated: thresholds.queue_critical (RESPONSIVENESS_QUEUE_CRITICAL_THRESHOLD) no longer sets thresholds.job_queue_critical and backpressure.queue_size") {
		t.Errorf("check-config stderr lacks the deprecation line:\n%s", errOut)
	}
	if !strings.Contains(out, "queue_size: 150") {
		t.Errorf("the carried value is not in the effective configuration:\n%s", out)
	}
}
