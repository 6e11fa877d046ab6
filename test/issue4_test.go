package test

// Issue 4 end-to-end parts beyond case 23: queued clients that cancel (24),
// rate-limit edges and spoofed client keys (25, 9), and the alert lifecycle
// persisting across a restart with its audit trail.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startLimited starts pulsegate in front of g with a concurrency limit, a
// queue of 50 (warning 40) and a 60 s queue timeout, and skips (or fails
// under PULSEGATE_STRICT) if the binary has no backpressure metrics.
func startLimited(t *testing.T, g *Gunicorn, limit int) *Pulsegate {
	t.Helper()
	p := StartPulsegate(t, map[string]string{
		"RESPONSIVENESS_UPSTREAM_URL":               g.URL(),
		"RESPONSIVENESS_MAX_CONCURRENCY":            strconv.Itoa(limit),
		"RESPONSIVENESS_QUEUE_WARNING_THRESHOLD":    "40",
		"RESPONSIVENESS_QUEUE_CRITICAL_THRESHOLD":   "50",
		"RESPONSIVENESS_BACKPRESSURE_QUEUE_TIMEOUT": "60",
	})
	if _, ok := p.Metrics(t)["pulsegate_backpressure_queue_depth"]; !ok {
		skipOrFail(t, "needs backpressure wired into main: pulsegate_backpressure_queue_depth missing from /metrics")
	}
	return p
}

// TestCase24_QueuedClientsCancel: clients cancel at random while queued.
// Expect them gone from the queue at once, never forwarded, gauges never
// negative and 0 at the end.
func TestCase24_QueuedClientsCancel(t *testing.T) {
	needBinary(t)
	g := StartGunicorn(t, "gthread-wide")
	p := startLimited(t, g, 2)
	c := httpClient(t, 60*time.Second)
	// Two long requests hold both slots.
	var blockers sync.WaitGroup
	for range 2 {
		blockers.Add(1)
		go func() {
			defer blockers.Done()
			do(t, c, "GET", p.ProxyURL()+"/sleep?ms=12000", nil, nil)
		}()
	}
	eventually(t, 20*time.Second, "both slots taken", func() bool {
		return sumMetric(p.Metrics(t), "pulsegate_backpressure_in_flight") == 2
	})

	var minQ, minIn atomic.Int64
	stopSampler := sampleMetrics(t, c, p, func(m map[string]float64) {
		minQ.Store(min(minQ.Load(), int64(sumMetric(m, "pulsegate_backpressure_queue_depth"))))
		minIn.Store(min(minIn.Load(), int64(sumMetric(m, "pulsegate_requests_in_flight"))))
	})

	n := size(200, 10000)
	var wg sync.WaitGroup
	var cancelled, rejected, other atomic.Int64
	jobs := make(chan int)
	for w := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 24))
			for i := range jobs {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(20+rng.IntN(300))*time.Millisecond)
				req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/sleep?ms=1&queued=%d", p.ProxyURL(), i), nil)
				resp, err := c.Do(req)
				switch {
				case err != nil:
					cancelled.Add(1)
				case resp.StatusCode == 503:
					rejected.Add(1)
				default:
					other.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
				cancel()
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	eventually(t, 10*time.Second, "queue empty once the cancelled clients are gone", func() bool {
		return sumMetric(p.Metrics(t), "pulsegate_backpressure_queue_depth") == 0
	})
	blockers.Wait()
	eventually(t, 20*time.Second, "gauges back to 0", func() bool {
		m := p.Metrics(t)
		return sumMetric(m, "pulsegate_requests_in_flight") == 0 && sumMetric(m, "pulsegate_backpressure_in_flight") == 0 &&
			sumMetric(m, "pulsegate_backpressure_queue_depth") == 0
	})
	stopSampler()
	t.Logf("%d requests: %d cancelled while queued, %d rejected (queue full), %d other", n, cancelled.Load(), rejected.Load(), other.Load())
	if other.Load() != 0 {
		t.Errorf("%d queued requests were answered while both slots were held", other.Load())
	}
	if minQ.Load() < 0 || minIn.Load() < 0 {
		t.Errorf("gauges went negative: queue %d, in-flight %d", minQ.Load(), minIn.Load())
	}
	time.Sleep(500 * time.Millisecond)
	if fwd := g.AccessCount("queued="); fwd != 0 {
		t.Errorf("%d cancelled queued requests reached the app", fwd)
	}
	m := p.Metrics(t)
	abandoned := sumMetric(m, "pulsegate_backpressure_queue_abandoned_total")
	report(t, "24", fmt.Sprintf("%d clients cancelling while queued: forwarded to the app / abandoned counter", n), fmt.Sprintf("0 / %.0f (of %d cancelled)", abandoned, cancelled.Load()), "0 forwarded; gauges never negative")
	// Every cancelled client pulsegate had queued is one abandonment (a
	// client_closed request); on a loaded machine a client with a 20 ms
	// deadline may give up before pulsegate has read its request at all.
	closed := sumMetric(m, "pulsegate_requests_total", `code_class="client_closed"`)
	if abandoned != closed {
		t.Errorf("queue_abandoned_total = %v, client_closed requests = %v: want one abandonment per cancelled queued request", abandoned, closed)
	}
	if abandoned < float64(cancelled.Load())*9/10 {
		t.Errorf("queue_abandoned_total = %v of %d clients cancelled while queued: want nearly all", abandoned, cancelled.Load())
	}
}

// TestCase25_RateLimitEdges: the global limit answers 429 with an integer
// Retry-After and its reason; per-client limits key on the socket peer, so
// rotating X-Forwarded-For neither escapes them nor grows the client map;
// invalid rate/burst combinations are refused by the config API.
func TestCase25_RateLimitEdges(t *testing.T) {
	t.Parallel()
	needBinary(t)
	g := StartGunicorn(t, "sync")
	token := randomToken(t)
	p := StartPulsegate(t, map[string]string{
		"RESPONSIVENESS_UPSTREAM_URL":                  g.URL(),
		"RESPONSIVENESS_ADMIN_TOKEN":                   token,
		"RESPONSIVENESS_BACKPRESSURE_PER_CLIENT_RPS":   "1",
		"RESPONSIVENESS_BACKPRESSURE_PER_CLIENT_BURST": "3",
	})
	c := httpClient(t, 30*time.Second)
	var ok, limited int
	for i := range 20 {
		r := mustDo(t, c, "GET", p.ProxyURL()+"/ok", nil, map[string]string{"X-Forwarded-For": fmt.Sprintf("10.0.%d.%d", i/250, i%250)})
		switch r.Status {
		case 200:
			ok++
		case 429:
			limited++
			if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 {
				t.Errorf("429 with Retry-After %q, want whole seconds ≥ 1", r.Header.Get("Retry-After"))
			}
			if reason := r.Header.Get("X-Pulsegate-Reject"); !strings.HasPrefix(reason, "rate") {
				t.Errorf("429 with X-Pulsegate-Reject %q", reason)
			}
		default:
			t.Errorf("status %d", r.Status)
		}
	}
	t.Logf("per-client 1 rps burst 3, 20 requests with rotating X-Forwarded-For: %d ok, %d limited", ok, limited)
	if ok > 5 || limited < 15 {
		t.Errorf("rotating X-Forwarded-For: %d ok, %d limited; the limiter must key on the socket peer", ok, limited)
	}
	if v, present := p.Metrics(t)["pulsegate_backpressure_rate_limit_clients"]; present && v > 1 {
		t.Errorf("per-client map holds %v clients after one peer rotated X-Forwarded-For", v)
	}

	hdr := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token}
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"backpressure":{"rate_limit_rps":0,"rate_limit_burst":5}}`, 400},
		{`{"backpressure":{"rate_limit_rps":-1}}`, 400},
		{`{"backpressure":{"rate_limit_rps":"NaN"}}`, 400},
		{`{"backpressure":{"rate_limit_rps":1e309}}`, 400},
		{`{"backpressure":{"rate_limit_rps":10,"rate_limit_burst":-2}}`, 400},
		{`{"backpressure":{"rate_limit_rps":10,"rate_limit_burst":0}}`, 200},
	} {
		r := mustDo(t, c, "POST", p.AdminURL()+configPath, strings.NewReader(tc.body), hdr)
		if r.Status != tc.want {
			t.Errorf("POST %s: %d %.200s, want %d", tc.body, r.Status, r.Body, tc.want)
		}
	}
}

// TestAlertLifecyclePersistsAcrossRestart: an error-rate alert fires from
// real traffic, is acknowledged through the API (unknown ids 404), and the
// alert with its acknowledgement and the audit entry survive a restart on
// the same data directory.
func TestAlertLifecyclePersistsAcrossRestart(t *testing.T) {
	t.Parallel()
	needBinary(t)
	g := StartGunicorn(t, "gthread")
	token := randomToken(t)
	dataDir := t.TempDir()
	env := map[string]string{
		"RESPONSIVENESS_UPSTREAM_URL":        g.URL(),
		"RESPONSIVENESS_ADMIN_TOKEN":         token,
		"RESPONSIVENESS_DATA_DIR":            dataDir,
		"RESPONSIVENESS_MONITORING_INTERVAL": "1",
	}
	p := StartPulsegate(t, env)
	p.needEndpoint(t, "GET", "/admin/api/alerts/responsiveness", "adminapi alerts endpoint")
	c := httpClient(t, 30*time.Second)
	for range 30 {
		mustDo(t, c, "GET", p.ProxyURL()+"/status/500", nil, nil)
	}
	var alert map[string]any
	eventually(t, 30*time.Second, "an error_rate alert fires", func() bool {
		alert = findAlert(t, p, "app_error_rate") // the error_rate rule reads app_error_rate
		return alert != nil
	})
	id, _ := alert["id"].(string)
	for _, k := range []string{"id", "severity", "state", "metric", "value", "threshold", "message", "recommendation", "first_seen", "last_seen"} {
		if _, ok := alert[k]; !ok {
			t.Errorf("alert lacks %q: %v", k, alert)
		}
	}
	hdr := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token}
	if r := mustDo(t, c, "POST", p.AdminURL()+"/admin/api/alerts/responsiveness/acknowledge", strings.NewReader(`{"alert_ids":["no-such-alert"]}`), hdr); r.Status != 404 {
		t.Errorf("acknowledge of an unknown id: %d, want 404", r.Status)
	}
	for range 2 { // idempotent
		r := mustDo(t, c, "POST", p.AdminURL()+"/admin/api/alerts/responsiveness/acknowledge", strings.NewReader(`{"alert_ids":["`+id+`"],"note":"e2e on call"}`), hdr)
		if r.Status != 200 {
			t.Fatalf("acknowledge: %d %.300s", r.Status, r.Body)
		}
	}
	if a := findAlert(t, p, "app_error_rate"); a == nil || a["state"] != "acknowledged" {
		t.Errorf("after acknowledge: %v", a)
	}

	p.Stop(t)
	p2 := StartPulsegate(t, env)
	a := findAlertByID(t, p2, id)
	if a == nil {
		t.Fatalf("alert %s gone after a restart on the same data dir", id)
	}
	if a["ack_note"] != "e2e on call" || a["acknowledged_at"] == nil {
		t.Errorf("acknowledgement lost across the restart: %v", a)
	}
	audit := p2.getJSON(t, configPath+"/audit")
	found := false
	for _, e := range asList(audit["entries"]) {
		m, _ := e.(map[string]any)
		if s, _ := m["action"].(string); strings.Contains(s, "acknowledge") && strings.Contains(fmt.Sprint(m["target"]), id) {
			found = true
			if actor, _ := m["actor"].(string); strings.Contains(actor, token) {
				t.Errorf("audit actor reveals the token: %q", actor)
			}
		}
	}
	if !found {
		t.Errorf("no acknowledge entry for %s in the audit log after the restart: %.500s", id, mustJSON(audit))
	}
}

// findAlert returns the first active alert on metric, or nil.
func findAlert(t testing.TB, p *Pulsegate, metric string) map[string]any {
	t.Helper()
	l := p.getJSON(t, "/admin/api/alerts/responsiveness")
	for _, e := range asList(l["alerts"]) {
		if m, ok := e.(map[string]any); ok && m["metric"] == metric && m["state"] != "resolved" {
			return m
		}
	}
	return nil
}

// findAlertByID looks an alert up by id in every state.
func findAlertByID(t testing.TB, p *Pulsegate, id string) map[string]any {
	t.Helper()
	for _, q := range []string{"", "?state=acknowledged", "?state=firing", "?state=resolved"} {
		l := p.getJSON(t, "/admin/api/alerts/responsiveness"+q)
		for _, e := range asList(l["alerts"]) {
			if m, ok := e.(map[string]any); ok && m["id"] == id {
				return m
			}
		}
	}
	return nil
}
