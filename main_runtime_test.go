package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeAppliesTheMemoryBudget: serve sets Go's soft memory limit from
// the configuration (no container limit here: the absolute default), and
// shows it with the heap in /metrics and in the performance JSON; GOGC is
// no longer forced to 50.
func TestServeAppliesTheMemoryBudget(t *testing.T) {
	prevLimit, prevProcs, prevGC := debug.SetMemoryLimit(-1), runtime.GOMAXPROCS(0), debug.SetGCPercent(-1)
	debug.SetGCPercent(prevGC)
	t.Cleanup(func() { debug.SetMemoryLimit(prevLimit); runtime.GOMAXPROCS(prevProcs); debug.SetGCPercent(prevGC) })

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	admin := freeAddr(t)
	env := []string{
		"RESPONSIVENESS_UPSTREAM_URL=" + up.URL,
		"RESPONSIVENESS_LISTEN_ADDR=" + freeAddr(t),
		"RESPONSIVENESS_ADMIN_ADDR=" + admin,
		"RESPONSIVENESS_DATA_DIR=" + t.TempDir(),
		"RESPONSIVENESS_MONITORING_ENABLED=false",
		"RESPONSIVENESS_PROXY_DRAIN_DELAY=0",
		"RESPONSIVENESS_RUNTIME_MEMORY_LIMIT_DEFAULT_MIB=48",
		"RESPONSIVENESS_RUNTIME_MAX_PROCS=1",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- cmdServe(ctx, nil, env, io.Discard, io.Discard) }()
	defer func() {
		cancel()
		<-done
	}()

	get := func(path string) (string, bool) {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			return "", false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.StatusCode == 200
	}
	var metrics string
	for deadline := time.Now().Add(10 * time.Second); ; {
		var ok bool
		if metrics, ok = get("/metrics"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("admin listener did not answer /metrics")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := debug.SetMemoryLimit(-1); got != 48<<20 {
		t.Errorf("soft memory limit %d; want 48 MiB (runtime.memory_limit_default_mib outside containers)", got)
	}
	if gc := debug.SetGCPercent(prevGC); gc != prevGC {
		t.Errorf("GOGC changed to %d; the fixed GOGC=50 is gone", gc)
	}
	if !strings.Contains(metrics, `pulsegate_memory_budget_bytes{source="default"} 5.0331648e+07`) {
		t.Errorf("/metrics lacks the budget:\n%s", grepLines(metrics, "pulsegate_memory"))
	}
	if !strings.Contains(metrics, "pulsegate_heap_bytes ") {
		t.Error("/metrics lacks pulsegate_heap_bytes")
	}
	body, ok := get("/admin/api/performance/responsiveness")
	if !ok {
		t.Fatalf("performance JSON: %s", body)
	}
	var doc struct {
		Runtime map[string]any `json:"runtime"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	r := doc.Runtime
	if r["memory_budget_bytes"] != float64(48<<20) || r["memory_budget_source"] != "default" || r["gomaxprocs"] == nil {
		t.Errorf("runtime section %v", r)
	}
	// The GC tuner runs (runtime.gc_headroom_mib 8 by default) and leaves
	// GOGC alone while the heap and stacks are small.
	if r["gogc"] != float64(prevGC) {
		t.Errorf("gogc %v with no traffic; want %d", r["gogc"], prevGC)
	}
	if h, _ := r["heap_bytes"].(float64); h <= 0 {
		t.Errorf("heap_bytes %v; want the measured heap", r["heap_bytes"])
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
