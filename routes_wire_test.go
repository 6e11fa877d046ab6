package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

func adminGet(t *testing.T, a *app, path string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest("GET", "http://"+a.adminLn.Addr().String()+path, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Authorization", "Bearer "+histToken)
	rec := httptest.NewRecorder()
	a.adminSrv.Handler.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s: %d %s", path, rec.Code, rec.Body.String())
	}
	return rec.Code, out
}

// TestRouteHistoryAndReleasesThroughTheSidecar: requests proxied to an app
// that names its version in X-App-Version are counted per route and
// version, written to history.db by the archive's flush, and answered by
// the route history endpoint (series, versions, releases, comparison) and
// the releases endpoint; after a restart on the same data_dir the route's
// history is still there. Bad parameters are 400 naming the parameter.
func TestRouteHistoryAndReleasesThroughTheSidecar(t *testing.T) {
	var version atomic.Value
	version.Store("1.0.0")
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App-Version", version.Load().(string))
		if strings.HasSuffix(r.URL.Path, "/fail") {
			w.WriteHeader(500)
		}
	}))
	defer upstream.Close()
	dir := t.TempDir()
	cfg := historyConfig(t, dir, upstream.URL)
	cfg.App.VersionHeader = "X-App-Version"
	cfg.Proxy.RoutePatterns = []string{"/reports/<id>"}
	a, err := build(cfg, zap.NewNop(), zap.NewAtomicLevel(), dashboardHandler(cfg))
	if err != nil {
		t.Fatal(err)
	}
	send := func(path string) {
		rec := httptest.NewRecorder()
		a.proxySrv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "http://app"+path, nil))
		if got := rec.Header().Get("X-App-Version"); got != version.Load().(string) {
			t.Fatalf("the client got X-App-Version %q, the app sent %q", got, version.Load())
		}
	}
	for i := range 250 {
		send("/reports/" + string(rune('a'+i%26)))
	}
	if err := a.archive.Flush(dashboardRing(t, a), time.Now().Add(-2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	version.Store("1.1.0")
	for i := range 250 {
		send("/reports/" + string(rune('a'+i%26)))
	}
	send("/reports/x/fail")
	runAndStop(t, a) // the final flush writes the 1.1.0 requests

	b, err := build(cfg, zap.NewNop(), zap.NewAtomicLevel(), dashboardHandler(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer b.closeAll()
	code, v := adminGet(t, b, "/admin/responsiveness/api/history/route?route=/reports/<id>&range=1h")
	if code != http.StatusOK || v["route"] != "/reports/<id>" || v["tier"] != "1m" || v["step_seconds"] != 60.0 {
		t.Fatalf("route history after restart: %d %v", code, v)
	}
	var total float64
	for _, n := range v["series"].(map[string]any)["requests"].([]any) {
		total += n.(float64)
	}
	if total != 500 {
		t.Errorf("route history counts %v requests, want 500", total)
	}
	vers := v["versions"].([]any)
	if len(vers) != len(v["timestamps"].([]any)) || vers[0] != "1.0.0" || vers[len(vers)-1] != "1.1.0" {
		t.Errorf("versions %v", vers)
	}
	if p95 := v["series"].(map[string]any)["p95_response_time"].([]any); p95[0] == nil {
		t.Errorf("p95 null")
	}
	rels := v["releases"].([]any)
	if len(rels) != 2 || rels[0].(map[string]any)["version"] != "1.0.0" || rels[1].(map[string]any)["requests"] != 250.0 {
		t.Errorf("releases %v", rels)
	}
	cmp, _ := v["comparison"].(map[string]any)
	if cmp == nil || cmp["before_release"] != "1.0.0" || cmp["after_release"] != "1.1.0" || cmp["compared"] != true ||
		cmp["before_requests"] != 250.0 || cmp["after_requests"] != 250.0 {
		t.Errorf("comparison %v", cmp)
	}
	if _, ok := v["events"].([]any); !ok {
		t.Errorf("events missing: %v", v["events"])
	}

	code, all := adminGet(t, b, "/admin/responsiveness/api/history/route?route=*&range=24h")
	if code != http.StatusOK || len(all["timestamps"].([]any)) == 0 {
		t.Errorf("whole app: %d %v", code, all)
	}

	code, r := adminGet(t, b, "/admin/api/releases/responsiveness?since=24h")
	routes, _ := r["routes"].([]any)
	if code != http.StatusOK || r["since"] != "24h" || len(routes) < 2 {
		t.Fatalf("releases: %d %v", code, r)
	}
	first := routes[0].(map[string]any)
	if first["route"] != "*" || first["before"].(map[string]any)["version"] != "1.0.0" || first["after"].(map[string]any)["version"] != "1.1.0" ||
		first["comparison"].(map[string]any)["compared"] != true {
		t.Errorf("releases[0] %v", first)
	}
	second := routes[1].(map[string]any)
	if second["route"] != "/reports/<id>" || second["after"].(map[string]any)["requests"] != 250.0 {
		t.Errorf("releases[1] %v", second)
	}

	for _, c := range []struct{ path, param string }{
		{"/admin/responsiveness/api/history/route?range=1h", "route: "},
		{"/admin/responsiveness/api/history/route?route=/x&range=2w", "range: "},
		{"/admin/responsiveness/api/history/route?route=/x&from=yesterday", "from: "},
		{"/admin/api/releases/responsiveness?since=1y", "since: "},
	} {
		code, bad := adminGet(t, b, c.path)
		if msg, _ := bad["error"].(string); code != http.StatusBadRequest || !strings.HasPrefix(msg, c.param) {
			t.Errorf("%s: %d %v, want 400 naming %q", c.path, code, bad, c.param)
		}
	}
}
