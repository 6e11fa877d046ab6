package test

// Issue 2 end-to-end tests: the built binary in front of the fixture Flask
// app under real gunicorn, once with sync workers (a new connection per
// request) and once with gthread workers (keep-alive 2 s).

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

var workerKinds = []string{"sync", "gthread"}

// eachWorkerKind runs fn as a parallel subtest per worker kind, with the
// app under a gunicorn of that kind (skipping when the binary is missing).
func eachWorkerKind(t *testing.T, fn func(t *testing.T, g *Gunicorn)) {
	t.Helper()
	for _, kind := range workerKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			needBinary(t)
			fn(t, StartGunicorn(t, kind))
		})
	}
}

// TestDataPath runs the transparency, streaming, upload and timing-split
// checks against one gunicorn and one pulsegate per worker kind.
func TestDataPath(t *testing.T) {
	eachWorkerKind(t, func(t *testing.T, g *Gunicorn) {
		p := StartPulsegate(t, map[string]string{
			"RESPONSIVENESS_UPSTREAM_URL":                g.URL(),
			"RESPONSIVENESS_SLOW_REQUEST_THRESHOLD":      "0.3",
			"RESPONSIVENESS_REQUEST_TIMEOUT_THRESHOLD":   "10",
			"RESPONSIVENESS_PROXY_UPSTREAM_IDLE_TIMEOUT": "1.5",
		})
		t.Run("Transparency", func(t *testing.T) { testTransparency(t, g, p) })
		t.Run("Case08_HopByHop", func(t *testing.T) { testHopByHop(t, p) })
		t.Run("Case09_XForwardedForSpoofing", func(t *testing.T) { testXFFSpoofing(t, p) })
		t.Run("Case04_StreamsNotBuffered", func(t *testing.T) { testStreaming(t, g, p) })
		t.Run("Upload50MiB", func(t *testing.T) { testUpload(t, p, 50<<20) })
		t.Run("TimingSplit", func(t *testing.T) { testTimingSplit(t, p) })
	})
}

func testTransparency(t *testing.T, g *Gunicorn, p *Pulsegate) {
	c := httpClient(t, 60*time.Second)
	for _, code := range []int{200, 201, 204, 301, 404, 418, 500, 503} {
		r := mustDo(t, c, "GET", fmt.Sprintf("%s/status/%d", p.ProxyURL(), code), nil, nil)
		if r.Status != code {
			t.Errorf("/status/%d through pulsegate: got %d", code, r.Status)
		}
		if code != 204 && code != 301 && !strings.Contains(string(r.Body), fmt.Sprintf(`"status": %d`, code)) {
			t.Errorf("/status/%d: app body not passed through: %q", code, r.Body)
		}
		if code >= 500 && r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("/status/%d: app's Content-Type replaced by %q", code, r.Header.Get("Content-Type"))
		}
	}

	// A body of known size arrives whole, byte for byte.
	r := mustDo(t, c, "GET", p.ProxyURL()+"/big?mb=5", nil, nil)
	if r.Status != 200 || len(r.Body) != 5<<20 || strings.Trim(string(r.Body), "x") != "" {
		t.Errorf("/big?mb=5: status %d, %d bytes", r.Status, len(r.Body))
	}

	// Two Set-Cookie headers stay two headers, in order.
	r = mustDo(t, c, "GET", p.ProxyURL()+"/cookie", nil, nil)
	cookies := r.Header.Values("Set-Cookie")
	if len(cookies) != 2 || !strings.HasPrefix(cookies[0], "a=1") || !strings.HasPrefix(cookies[1], "b=2") {
		t.Errorf("Set-Cookie through pulsegate: %q, want a=1 then b=2", cookies)
	}
	if !strings.Contains(cookies[len(cookies)-1], "HttpOnly") {
		t.Errorf("cookie attributes lost: %q", cookies)
	}

	// Request headers, method and path reach the app; Host is the client's.
	r = mustDo(t, c, "POST", p.ProxyURL()+"/hdr?x=1", strings.NewReader("body"), map[string]string{
		"Host": "app.example:8080", "X-Custom": "v1", "Accept": "application/json", "Content-Type": "text/plain",
	})
	h := hdrOf(t, r)
	if h.Method != "POST" || h.Path != "/hdr" {
		t.Errorf("app saw %s %s, want POST /hdr", h.Method, h.Path)
	}
	if got := h.Headers["X-Custom"]; got != "v1" {
		t.Errorf("X-Custom at the app: %q", got)
	}
	if got := h.Headers["Host"]; got != "app.example:8080" {
		t.Errorf("Host at the app: %q, want the client's app.example:8080", got)
	}
	if got := h.Headers["X-Forwarded-Host"]; got != "app.example:8080" {
		t.Errorf("X-Forwarded-Host at the app: %q, want app.example:8080", got)
	}
	if got := h.Headers["X-Forwarded-Proto"]; got != "http" {
		t.Errorf("X-Forwarded-Proto at the app: %q, want http", got)
	}
	if got := h.Headers["X-Forwarded-For"]; got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For at the app: %q, want 127.0.0.1", got)
	}

	// The app's own /admin pages are the app's: forwarded, not taken.
	before := g.AccessCount("/admin/users")
	r = mustDo(t, c, "GET", p.ProxyURL()+"/admin/users", nil, nil)
	if r.Status != 200 || !strings.Contains(string(r.Body), "own admin users page") {
		t.Errorf("/admin/users: %d %q, want the app's page", r.Status, r.Body)
	}
	eventually(t, 10*time.Second, "gunicorn logs /admin/users", func() bool { return g.AccessCount("/admin/users") > before })

	// HEAD has no body and keeps the status.
	r = mustDo(t, c, "HEAD", p.ProxyURL()+"/ok", nil, nil)
	if r.Status != 200 || len(r.Body) != 0 {
		t.Errorf("HEAD /ok: %d with %d body bytes", r.Status, len(r.Body))
	}
}

// hdrView is /hdr's answer.
type hdrView struct {
	Headers    map[string]string `json:"headers"`
	RemoteAddr string            `json:"remote_addr"`
	Method     string            `json:"method"`
	Path       string            `json:"path"`
}

func hdrOf(t testing.TB, r *Response) hdrView {
	t.Helper()
	var v hdrView
	if r.Status != 200 {
		t.Fatalf("/hdr: %d %.200s", r.Status, r.Body)
	}
	if err := jsonUnmarshal(r.Body, &v); err != nil {
		t.Fatalf("/hdr body: %v: %.200s", err, r.Body)
	}
	return v
}

// testHopByHop is RELIABILITY case 8: a client names the forwarding headers
// in Connection; with Director the proxy would delete what it had just set.
func testHopByHop(t *testing.T, p *Pulsegate) {
	c := httpClient(t, 30*time.Second)
	r := mustDo(t, c, "GET", p.ProxyURL()+"/hdr", nil, map[string]string{
		"Connection":        "keep-alive, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id, X-Custom-Hop",
		"X-Request-Id":      "client-chosen",
		"X-Custom-Hop":      "should-not-pass",
		"X-Forwarded-For":   "6.6.6.6",
		"X-Forwarded-Proto": "https",
	})
	h := hdrOf(t, r)
	if got := h.Headers["X-Forwarded-For"]; got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For at the app: %q, want pulsegate's 127.0.0.1 (hop-by-hop abuse must not remove it)", got)
	}
	if got := h.Headers["X-Forwarded-Proto"]; got != "http" {
		t.Errorf("X-Forwarded-Proto at the app: %q, want http", got)
	}
	if got := h.Headers["X-Forwarded-Host"]; got == "" {
		t.Errorf("X-Forwarded-Host missing at the app")
	}
	if got, ok := h.Headers["X-Custom-Hop"]; ok {
		t.Errorf("header named in Connection reached the app: X-Custom-Hop=%q", got)
	}
	if got := h.Headers["X-Request-Id"]; got == "client-chosen" {
		t.Errorf("X-Request-Id named in Connection reached the app unchanged")
	}
	if conn := h.Headers["Connection"]; strings.Contains(strings.ToLower(conn), "x-forwarded") {
		t.Errorf("client's Connection header forwarded: %q", conn)
	}
}

// testXFFSpoofing is RELIABILITY cases 9 and 10: forwarding headers are
// written by pulsegate from the socket peer, never taken from the client.
func testXFFSpoofing(t *testing.T, p *Pulsegate) {
	c := httpClient(t, 30*time.Second)
	r := mustDo(t, c, "GET", p.ProxyURL()+"/hdr", nil, map[string]string{
		"X-Forwarded-For":   "10.9.9.9",
		"X-Forwarded-Host":  "evil.example",
		"X-Forwarded-Proto": "https",
		"Forwarded":         "for=10.9.9.9;host=evil.example;proto=https",
		"X-Real-Ip":         "10.9.9.9",
	})
	h := hdrOf(t, r)
	if got := h.Headers["X-Forwarded-For"]; got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For at the app: %q, want only the real peer 127.0.0.1", got)
	}
	if got := h.Headers["X-Forwarded-Host"]; strings.Contains(got, "evil") {
		t.Errorf("client's X-Forwarded-Host reached the app: %q", got)
	}
	if got := h.Headers["X-Forwarded-Proto"]; got != "http" {
		t.Errorf("client's X-Forwarded-Proto reached the app: %q", got)
	}
	if got := h.Headers["Forwarded"]; strings.Contains(got, "10.9.9.9") {
		t.Errorf("client's Forwarded header reached the app: %q", got)
	}
	// ProxyFix(x_for=1) takes the rightmost X-Forwarded-For value: the real peer.
	if xff := h.Headers["X-Forwarded-For"]; strings.TrimSpace(xff[strings.LastIndex(xff, ",")+1:]) != "127.0.0.1" {
		t.Errorf("ProxyFix(x_for=1) would see %q", xff)
	}

	// An admin read on the proxy port from a loopback peer that claims to
	// be remote is judged by the socket, not by the header.
	hdr := map[string]string{"X-Forwarded-For": "10.9.9.9"}
	for k, v := range p.auth() {
		hdr[k] = v
	}
	r = mustDo(t, c, "GET", p.ProxyURL()+"/admin/api/performance/responsiveness", nil, hdr)
	if r.Status == 404 {
		skipOrFail(t, "needs adminapi: GET /admin/api/performance/responsiveness on the proxy port answers 404")
	}
	if r.Status != 200 {
		t.Errorf("admin read from loopback with a spoofed X-Forwarded-For: %d %.200s", r.Status, r.Body)
	}
}

// testStreaming is RELIABILITY case 4: SSE and chunked streams are flushed
// as they come, not buffered until the end.
func testStreaming(t *testing.T, g *Gunicorn, p *Pulsegate) {
	const n, interval = 4, 1.0
	streamEnd := time.Duration(n * interval * float64(time.Second))
	for _, path := range []string{"/sse", "/chunked"} {
		q := fmt.Sprintf("%s?n=%d&interval=%g", path, n, interval)
		// Direct and through pulsegate at the same time.
		var direct, via streamTiming
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); direct = firstChunk(t, g.URL()+q, path == "/sse") }()
		via = firstChunk(t, p.ProxyURL()+q, path == "/sse")
		wg.Wait()
		t.Logf("%s: first %s direct %v, through pulsegate %v; %d pieces through pulsegate", path,
			map[bool]string{true: "event", false: "line"}[path == "/sse"], direct.first, via.first, via.pieces)
		// Buffering would hold everything until the stream ends (n*interval);
		// the first piece must arrive well before that, like it does direct.
		if via.first >= streamEnd-500*time.Millisecond {
			t.Errorf("%s: first piece after %v through pulsegate (stream ends at %v): buffered", path, via.first, streamEnd)
		}
		if via.pieces != n {
			t.Errorf("%s: %d pieces through pulsegate, want %d arriving separately", path, via.pieces, n)
		}
		if path == "/sse" && g.Kind == "sync" {
			report(t, "4", "SSE first-event latency through pulsegate minus direct", fmt.Sprintf("%+d ms", (via.first-direct.first).Milliseconds()), "≤ 50 ms")
		}
	}
}

type streamTiming struct {
	first  time.Duration
	pieces int
}

// firstChunk reads a stream, timing the first event (SSE: a blank-line
// terminated block) or line, and counting how many arrived in separate
// reads spaced apart in time.
func firstChunk(t *testing.T, url string, sse bool) streamTiming {
	t.Helper()
	c := httpClient(t, 60*time.Second)
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return streamTiming{}
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET %s: %d", url, resp.StatusCode)
		return streamTiming{}
	}
	if sse && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Errorf("SSE Content-Type: %q", resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	var st streamTiming
	var last time.Time
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if (sse && line == "\n") || (!sse && strings.HasPrefix(line, "line ")) {
				now := time.Now()
				if st.first == 0 {
					st.first = now.Sub(start)
				}
				// Pieces that arrive together (buffered) are counted once.
				if last.IsZero() || now.Sub(last) > 300*time.Millisecond {
					st.pieces++
				}
				last = now
			}
		}
		if err != nil {
			if err != io.EOF {
				t.Errorf("reading %s: %v", url, err)
			}
			return st
		}
	}
}

// testUpload streams size random bytes to /upload and compares the app's
// sha256 and length with the client's.
func testUpload(t *testing.T, p *Pulsegate, size int64) {
	h := sha256.New()
	body := io.TeeReader(io.LimitReader(rand.Reader, size), h)
	c := httpClient(t, 5*time.Minute)
	req, _ := http.NewRequest("POST", p.ProxyURL()+"/upload", body)
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("uploading %d bytes: %v", size, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var got struct {
		SHA256 string `json:"sha256"`
		Length int64  `json:"length"`
	}
	if resp.StatusCode != 200 || jsonUnmarshal(b, &got) != nil {
		t.Fatalf("upload: %d %.200s", resp.StatusCode, b)
	}
	want := hex.EncodeToString(h.Sum(nil))
	if got.Length != size || got.SHA256 != want {
		t.Errorf("app received %d bytes sha256 %s; client sent %d bytes sha256 %s", got.Length, got.SHA256, size, want)
	}
	// Chunked (unknown length) uploads stream too.
	h2 := sha256.New()
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, io.TeeReader(io.LimitReader(rand.Reader, 3<<20), h2))
		pw.CloseWithError(err)
	}()
	req, _ = http.NewRequest("POST", p.ProxyURL()+"/upload", pr)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatalf("chunked upload: %v", err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || jsonUnmarshal(b, &got) != nil || got.Length != 3<<20 || got.SHA256 != hex.EncodeToString(h2.Sum(nil)) {
		t.Errorf("chunked upload: %d %.200s", resp.StatusCode, b)
	}
}

// testTimingSplit: a streamed response's total time splits into upstream
// time to first byte and body transfer, in the slow_request log line and
// in the performance API's recent slow requests.
func testTimingSplit(t *testing.T, p *Pulsegate) {
	c := httpClient(t, 60*time.Second)
	mark := p.Mark()
	// Headers and the first line after 0.5 s, two more lines 0.5 s apart.
	r := mustDo(t, c, "GET", p.ProxyURL()+"/chunked?n=3&interval=0.5&split=1", nil, nil)
	if r.Status != 200 {
		t.Fatalf("/chunked: %d", r.Status)
	}
	line := p.WaitLogAfter(t, mark, 30*time.Second, func(l LogLine) bool {
		return l.Str("msg") == "slow_request" && l.Str("path") == "/chunked"
	})
	ttfb, _ := line["upstream_ttfb"].(float64)
	dur, _ := line["duration"].(float64)
	transfer, hasTransfer := line["transfer"].(float64)
	t.Logf("slow_request: %v", line)
	for _, k := range []string{"method", "route", "path", "status", "duration", "upstream_ttfb"} {
		if _, ok := line[k]; !ok {
			t.Errorf("slow_request line lacks %q: %v", k, line)
		}
	}
	// Lower bounds only: the app slept that long for sure.
	if ttfb < 0.45 {
		t.Errorf("upstream_ttfb %.3f s, want ≥ 0.45 (the app sent nothing for 0.5 s)", ttfb)
	}
	if dur < 1.4 {
		t.Errorf("duration %.3f s, want ≥ 1.4", dur)
	}
	if dur+1e-6 < ttfb {
		t.Errorf("duration %.3f < upstream_ttfb %.3f", dur, ttfb)
	}
	if hasTransfer && transfer < 0.9 {
		t.Errorf("transfer %.3f s, want ≥ 0.9 (two lines 0.5 s apart after the first)", transfer)
	}

	perf := p.perf(t)
	ring, ok := findKey(perf, "recent_slow_requests")
	if !ok {
		t.Fatalf("performance JSON has no recent_slow_requests: %v", keys(perf))
	}
	found := false
	for _, e := range asList(ring) {
		m, _ := e.(map[string]any)
		if m["path"] == "/chunked" {
			found = true
			if v, _ := m["upstream_ttfb"].(float64); v < 0.45 {
				t.Errorf("ring entry upstream_ttfb %.3f", v)
			}
			if _, ok := m["in_flight_at_admission"]; !ok {
				t.Errorf("ring entry lacks in_flight_at_admission: %v", m)
			}
		}
	}
	if !found {
		t.Errorf("recent_slow_requests lacks /chunked: %v", ring)
	}
}

// ---------------------------------------------------------------- error classes

// TestErrorClasses: 502 with the app down (JSON when asked), 504 past the
// timeout, and a client that leaves counted as client_closed, not as an app
// error. Against both worker kinds.
func TestErrorClasses(t *testing.T) {
	eachWorkerKind(t, func(t *testing.T, g *Gunicorn) {
		p := StartPulsegate(t, map[string]string{
			"RESPONSIVENESS_UPSTREAM_URL":              g.URL(),
			"RESPONSIVENESS_REQUEST_TIMEOUT_THRESHOLD": "1",
		})
		c := httpClient(t, 60*time.Second)

		// 504: the app takes 4 s, the threshold is 1 s.
		r := mustDo(t, c, "GET", p.ProxyURL()+"/sleep?ms=4000", nil, map[string]string{"Accept": "application/json"})
		if r.Status != 504 {
			t.Errorf("/sleep?ms=4000 with a 1 s timeout: %d, want 504", r.Status)
		} else {
			m := r.JSON(t)
			if _, ok := m["error"]; !ok {
				t.Errorf("504 JSON body has no error field: %s", r.Body)
			}
		}
		r = mustDo(t, c, "GET", p.ProxyURL()+"/sleep?ms=4000", nil, nil)
		if r.Status != 504 || len(r.Body) == 0 || len(r.Body) > 512 {
			t.Errorf("504 text: %d %q, want a short clear body", r.Status, r.Body)
		}

		// Fast requests still pass.
		if r := mustDo(t, c, "GET", p.ProxyURL()+"/ok", nil, nil); r.Status != 200 {
			t.Errorf("/ok: %d", r.Status)
		}

		// 502: gunicorn stopped.
		g.Stop()
		r = mustDo(t, c, "GET", p.ProxyURL()+"/ok", nil, map[string]string{"Accept": "application/json"})
		if r.Status != 502 {
			t.Errorf("/ok with gunicorn stopped: %d, want 502", r.Status)
		} else if m := r.JSON(t); m["error"] == nil {
			t.Errorf("502 JSON body has no error field: %s", r.Body)
		}
		r = mustDo(t, c, "POST", p.ProxyURL()+"/upload", strings.NewReader("x"), nil)
		if r.Status != 502 || !strings.Contains(strings.ToLower(string(r.Body)), "502") {
			t.Errorf("POST with gunicorn stopped: %d %q, want 502 with a text body", r.Status, r.Body)
		}
		// The proxy's own endpoints stay up.
		if r := mustDo(t, c, "GET", p.AdminURL()+"/healthz", nil, nil); r.Status != 200 {
			t.Errorf("/healthz with the app down: %d", r.Status)
		}

		// Back up: traffic flows again.
		g.Restart(t)
		eventually(t, 30*time.Second, "proxy recovers after gunicorn restarts", func() bool {
			r, err := do(t, c, "GET", p.ProxyURL()+"/ok", nil, nil)
			return err == nil && r.Status == 200
		})

		m := p.Metrics(t)
		if v := sumMetric(m, "pulsegate_request_errors_total", `class="upstream_timeout"`); v != 2 {
			t.Errorf("upstream_timeout errors: %v, want 2", v)
		}
		if v := sumMetric(m, "pulsegate_request_errors_total", `class="upstream_refused"`); v != 2 {
			t.Errorf("upstream_refused errors: %v, want 2", v)
		}
	})
}

// ---------------------------------------------------------------- performance JSON

// TestPerformanceJSON checks the performance API against known traffic:
// 40 × /ok + 10 × /status/500 → error_rate 0.2 and exact counts; then a
// known number of slow requests → slow_request_count exact.
func TestPerformanceJSON(t *testing.T) {
	eachWorkerKind(t, func(t *testing.T, g *Gunicorn) {
		p := StartPulsegate(t, map[string]string{
			"RESPONSIVENESS_UPSTREAM_URL":           g.URL(),
			"RESPONSIVENESS_SLOW_REQUEST_THRESHOLD": "0.2",
		})
		p.needEndpoint(t, "GET", "/admin/api/performance/responsiveness", "adminapi performance endpoint")
		c := httpClient(t, 60*time.Second)
		var wg sync.WaitGroup
		errs := make(chan string, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				path, want := "/ok", 200
				if i%5 == 4 {
					path, want = "/status/500", 500
				}
				r, err := do(t, c, "GET", p.ProxyURL()+path, nil, nil)
				if err != nil || r.Status != want {
					errs <- fmt.Sprintf("%s: %v %v", path, r, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}

		perf := p.perf(t)
		t.Logf("performance JSON: %.2000s", mustJSON(perf))
		if v, ok := num(perf, "performance_metrics.error_rate"); !ok || !near(v, 0.2) {
			t.Errorf("performance_metrics.error_rate = %v (present %v), want 0.2", v, ok)
		}
		for _, k := range []string{"avg_response_time", "slow_request_count", "throughput_rps"} {
			if _, ok := lookup(perf, "performance_metrics."+k); !ok {
				t.Errorf("performance_metrics.%s missing", k)
			}
		}
		if v, ok := num(perf, "resource_metrics.active_threads"); !ok || v != 0 {
			t.Errorf("resource_metrics.active_threads = %v (present %v), want 0 requests in flight", v, ok)
		}
		if _, ok := lookup(perf, "timestamp"); !ok {
			t.Errorf("timestamp missing")
		}
		w1 := window1m(t, perf)
		if v, _ := num(w1, "requests"); v != 50 {
			t.Errorf("1m window requests = %v, want 50", v)
		}
		if v, _ := num(w1, "errors"); v != 10 {
			t.Errorf("1m window errors = %v, want 10", v)
		}
		if v, _ := num(w1, "status_classes.2xx"); v != 40 {
			t.Errorf("1m window 2xx = %v, want 40", v)
		}
		if v, _ := num(w1, "status_classes.5xx"); v != 10 {
			t.Errorf("1m window 5xx = %v, want 10", v)
		}
		for _, k := range []string{"p50", "p95", "p99", "apdex", "avg_response_time"} {
			if v, ok := num(w1, k); !ok || v < 0 {
				t.Errorf("1m window %s = %v (present %v)", k, v, ok)
			}
		}

		// Three known slow requests.
		for range 3 {
			if r := mustDo(t, c, "GET", p.ProxyURL()+"/sleep?ms=700", nil, nil); r.Status != 200 {
				t.Fatalf("/sleep: %d", r.Status)
			}
		}
		eventually(t, 10*time.Second, "3 slow_request lines for /sleep", func() bool {
			n := 0
			for _, l := range p.LogsWithMsg("slow_request") {
				if l.Str("path") == "/sleep" {
					n++
				}
			}
			return n == 3
		})
		perf = p.perf(t)
		// Any /ok that was itself slower than 0.2 s on a loaded machine is
		// a slow request too: the count must equal the logged ones.
		logged := len(p.LogsWithMsg("slow_request"))
		if v, _ := num(perf, "performance_metrics.slow_request_count"); int(v) != logged || v < 3 {
			t.Errorf("slow_request_count = %v, want %d (3 /sleep + %d others logged)", v, logged, logged-3)
		}
		if v, ok := num(perf, "performance_metrics.error_rate"); !ok || !near(v, 10.0/53) {
			t.Errorf("error_rate after 53 requests = %v, want %.4f", v, 10.0/53)
		}
		if v, _ := num(window1m(t, perf), "requests"); v != 53 {
			t.Errorf("1m window requests = %v, want 53", v)
		}
		m := p.Metrics(t)
		if v := sumMetric(m, "pulsegate_slow_requests_total"); int(v) != logged {
			t.Errorf("pulsegate_slow_requests_total = %v, want %d", v, logged)
		}
		if v := sumMetric(m, "pulsegate_requests_total"); v != 53 {
			t.Errorf("pulsegate_requests_total = %v, want 53 (each request counted once)", v)
		}
	})
}

// perf reads the performance JSON from the admin listener.
func (p *Pulsegate) perf(t testing.TB) map[string]any {
	t.Helper()
	p.needEndpoint(t, "GET", "/admin/api/performance/responsiveness", "adminapi performance endpoint")
	return p.getJSON(t, "/admin/api/performance/responsiveness")
}

// window1m finds the 1-minute window object wherever the API nests it.
func window1m(t testing.TB, perf map[string]any) map[string]any {
	t.Helper()
	w, ok := findKey(perf, "windows")
	if !ok {
		t.Fatalf("performance JSON has no windows: %v", keys(perf))
	}
	switch ws := w.(type) {
	case map[string]any:
		for _, k := range []string{"1m", "1min", "60s", "one_minute"} {
			if m, ok := ws[k].(map[string]any); ok {
				return m
			}
		}
	case []any:
		for _, e := range ws {
			if m, ok := e.(map[string]any); ok && (m["window"] == "1m" || m["seconds"] == 60.0) {
				return m
			}
		}
	}
	t.Fatalf("no 1-minute window in %v", w)
	return nil
}

// ---------------------------------------------------------------- small helpers

func near(a, b float64) bool { d := a - b; return d < 1e-6 && d > -1e-6 }

// findKey searches nested JSON breadth-first for key.
func findKey(m map[string]any, key string) (any, bool) {
	queue := []map[string]any{m}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if v, ok := cur[key]; ok {
			return v, true
		}
		for _, v := range cur {
			if sub, ok := v.(map[string]any); ok {
				queue = append(queue, sub)
			}
		}
	}
	return nil, false
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// dialRaw opens a raw TCP connection (for byte-exact requests).
func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
