package test

// Fault suite, further catalogue cases that fit the bench: upstream resets
// (3), client aborts mid-download (1) and mid-stream (5), h2c smuggling (7),
// big headers (16), request smuggling probes (19), delegated auth (57) and
// JSON body abuse (59).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/test/chaos"
)

// TestCase03_UpstreamResetBeforeAfterHeaders: a reset before the response
// headers is a 502 with a clear message; after them, the client's
// connection is aborted (never a truncated body that looks complete); both
// counted as upstream_reset.
func TestCase03_UpstreamResetBeforeAfterHeaders(t *testing.T) {
	t.Parallel()
	needBinary(t)
	g := StartGunicorn(t, "gthread")
	ch := newChaos(t, g.Addr)
	p := StartPulsegate(t, map[string]string{"RESPONSIVENESS_UPSTREAM_URL": "http://" + ch.Addr()})
	c := httpClient(t, 30*time.Second)

	ch.Set(chaos.Fault{Mode: chaos.Reset, Bytes: 0, Dir: chaos.ToClient})
	r := mustDo(t, c, "GET", p.ProxyURL()+"/ok", nil, map[string]string{"Accept": "application/json"})
	if r.Status != 502 || !strings.Contains(string(r.Body), "error") {
		t.Errorf("reset before headers: %d %q, want 502 with a JSON error", r.Status, r.Body)
	}

	ch.Set(chaos.Fault{Mode: chaos.Reset, Bytes: 10000, Dir: chaos.ToClient})
	resp, err := c.Get(p.ProxyURL() + "/big?mb=5")
	if err == nil {
		n, rerr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if rerr == nil {
			t.Errorf("reset after headers: body ended cleanly after %d of %d bytes (status %d): a truncated body looks complete", n, 5<<20, resp.StatusCode)
		}
	}
	ch.Set(chaos.Fault{Mode: chaos.Pass})
	eventually(t, 10*time.Second, "both resets counted", func() bool {
		m := p.Metrics(t)
		return sumMetric(m, "pulsegate_request_errors_total", `class="upstream_reset"`)+
			sumMetric(m, "pulsegate_request_errors_total", `class="upstream_error"`) >= 2
	})
	if r := mustDo(t, c, "GET", p.ProxyURL()+"/ok", nil, nil); r.Status != 200 {
		t.Errorf("after the resets: %d", r.Status)
	}
}

// TestCase01_05_ClientAbortsMidBody: clients that leave mid-download and
// mid-stream. Expect no error-level log lines, no 5xx counted, in-flight 0,
// goroutines and fds back to baseline.
func TestCase01_05_ClientAbortsMidBody(t *testing.T) {
	needBinary(t)
	g := StartGunicorn(t, "gthread-wide")
	p := StartPulsegate(t, map[string]string{"RESPONSIVENESS_UPSTREAM_URL": g.URL()})
	needGoCollector(t, p)
	c := httpClient(t, 60*time.Second)
	mustDo(t, c, "GET", p.ProxyURL()+"/ok", nil, nil)
	baseF, baseG := settle(t, p, c)
	mark := p.Mark()

	n := size(100, 1000)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			path := "/big?mb=200"
			if i%2 == 1 {
				path = "/sse?n=100&interval=0.1"
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", p.ProxyURL()+path, nil)
			resp, err := c.Do(req)
			if err != nil {
				return
			}
			// Read the first piece, then leave.
			io.ReadFull(resp.Body, make([]byte, 64))
			cancel()
			resp.Body.Close()
		}()
	}
	wg.Wait()
	eventually(t, 30*time.Second, "in-flight back to 0", func() bool {
		return sumMetric(p.Metrics(t), "pulsegate_requests_in_flight") == 0
	})
	f, gr, ok := backToBaseline(t, p, c, baseF, baseG, 5, 30*time.Second)
	report(t, "1+5", fmt.Sprintf("goroutines / fds after %d clients left mid-download or mid-stream", n), fmt.Sprintf("%.0f → %.0f / %d → %d", baseG, gr, baseF, f), "baseline ±5")
	if !ok {
		t.Errorf("goroutines %.0f (baseline %.0f), fds %d (baseline %d) not back within 30 s", gr, baseG, f, baseF)
	}
	for _, l := range p.Logs()[mark:] {
		if lv := l.Str("level"); lv == "error" || lv == "dpanic" || lv == "panic" {
			t.Errorf("error-level line after client aborts: %v", l)
		}
	}
	m := p.Metrics(t)
	if v := sumMetric(m, "pulsegate_requests_total", `code_class="5xx"`); v != 0 {
		t.Errorf("%v requests counted 5xx after client aborts", v)
	}
}

// TestCase07_H2CUpgradeStripped: an h2c upgrade attempt never reaches the
// app; the answer is plain HTTP/1.1.
func TestCase07_H2CUpgradeStripped(t *testing.T) {
	t.Parallel()
	needBinary(t)
	g := StartGunicorn(t, "sync")
	p := StartPulsegate(t, map[string]string{"RESPONSIVENESS_UPSTREAM_URL": g.URL()})
	conn := dialRaw(t, p.ProxyAddr)
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET /hdr HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode == 101 || resp.ProtoMajor != 1 {
		t.Fatalf("h2c upgrade answered %s %d", resp.Proto, resp.StatusCode)
	}
	low := strings.ToLower(string(b))
	if strings.Contains(low, `"upgrade"`) || strings.Contains(low, "h2c") || strings.Contains(low, "http2-settings") {
		t.Errorf("the app saw the upgrade headers: %s", b)
	}
}

// TestCase16_LargeHeaders: the app server's own 400 for a huge cookie
// passes through (not a 502); header blocks past MaxHeaderBytes get 431.
func TestCase16_LargeHeaders(t *testing.T) {
	t.Parallel()
	needBinary(t)
	g := StartGunicorn(t, "sync")
	p := StartPulsegate(t, map[string]string{"RESPONSIVENESS_UPSTREAM_URL": g.URL()})
	c := httpClient(t, 30*time.Second)
	r := mustDo(t, c, "GET", p.ProxyURL()+"/hdr", nil, map[string]string{"Cookie": "big=" + strings.Repeat("a", 16<<10)})
	if r.Status != 400 {
		t.Errorf("16 KB cookie (gunicorn caps a field at 8190 bytes): %d, want gunicorn's 400 passed through", r.Status)
	}
	hdr := map[string]string{}
	for i := range 120 {
		hdr[fmt.Sprintf("X-H%03d", i)] = "v"
	}
	r = mustDo(t, c, "GET", p.ProxyURL()+"/hdr", nil, hdr)
	if r.Status != 400 && r.Status != 200 {
		t.Errorf("120 headers: %d, want the app's answer (gunicorn allows 100 fields: 400)", r.Status)
	}
	// 2 MB of headers: refused by pulsegate itself.
	conn := dialRaw(t, p.ProxyAddr)
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		fmt.Fprintf(conn, "GET /hdr HTTP/1.1\r\nHost: x\r\n")
		for i := range 2048 {
			fmt.Fprintf(conn, "X-Big-%d: %s\r\n", i, strings.Repeat("b", 1000))
		}
		io.WriteString(conn, "\r\n")
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("2 MB of headers: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 431 {
		t.Errorf("2 MB of headers: %d, want 431", resp.StatusCode)
	}
}

// TestCase19_SmugglingProbes: ambiguous framing is refused or re-framed as
// one request; the app never sees a hidden second request.
func TestCase19_SmugglingProbes(t *testing.T) {
	t.Parallel()
	needBinary(t)
	g := StartGunicorn(t, "sync")
	p := StartPulsegate(t, map[string]string{"RESPONSIVENESS_UPSTREAM_URL": g.URL()})
	smuggled := "GET /status/418 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	probes := map[string]string{
		"CL+TE":                "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		"TE with tab":          "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\t\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + smuggled,
		"two CL":               "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n" + smuggled,
		"TE chunked, identity": "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled,
		"bare LF chunk size":   "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n" + smuggled,
		"obs-fold":             "GET /hdr HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n" + smuggled,
	}
	for name, raw := range probes {
		before418 := g.AccessCount("/status/418")
		conn := dialRaw(t, p.ProxyAddr)
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(conn, raw)
		br := bufio.NewReader(conn)
		var statuses []int
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				break
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses = append(statuses, resp.StatusCode)
			if resp.Close {
				break
			}
		}
		conn.Close()
		time.Sleep(300 * time.Millisecond)
		// A /status/418 that pulsegate framed as its own second request is
		// visible to the client as a second answer; hidden smuggling is the
		// app seeing more 418s than the client got answers for.
		answered418 := 0
		for _, s := range statuses {
			if s == 418 {
				answered418++
			}
		}
		if got := g.AccessCount("/status/418") - before418; got > answered418 {
			t.Errorf("%s: the app saw %d hidden /status/418 requests (client saw %v)", name, got-answered418, statuses)
		}
		t.Logf("%s: client saw %v", name, statuses)
	}
}

// TestCase57_DelegatedAuth: admin auth delegated to the app's
// /internal/auth-check: allow only on 2xx, deny on 401/500/timeout (fail
// closed, promptly), and the check never gets the POST body.
func TestCase57_DelegatedAuth(t *testing.T) {
	t.Parallel()
	needBinary(t)
	g := StartGunicorn(t, "gthread")
	p := StartPulsegate(t, map[string]string{
		"RESPONSIVENESS_UPSTREAM_URL":         g.URL(),
		"RESPONSIVENESS_ADMIN_AUTH_URL":       g.URL() + "/internal/auth-check",
		"RESPONSIVENESS_ADMIN_AUTH_TIMEOUT":   "1",
		"RESPONSIVENESS_ADMIN_AUTH_CACHE_TTL": "0",
	})
	p.needEndpoint(t, "GET", configPath, "adminapi config endpoint")
	c := httpClient(t, 30*time.Second)
	perf := p.ProxyURL() + "/admin/api/performance/responsiveness"
	for _, tc := range []struct {
		cookie string
		allow  bool
	}{{"auth=204", true}, {"auth=401", false}, {"auth=500", false}, {"auth=sleep5", false}} {
		start := time.Now()
		// From the proxy port with a session cookie, as the dashboard would.
		r := mustDo(t, c, "GET", perf, nil, map[string]string{"Cookie": tc.cookie})
		took := time.Since(start)
		if tc.allow && r.Status != 200 {
			t.Errorf("%s: %d, want 200 (the app said 2xx)", tc.cookie, r.Status)
		}
		if !tc.allow && r.Status < 400 {
			t.Errorf("%s: %d, want a refusal (fail closed)", tc.cookie, r.Status)
		}
		if tc.cookie == "auth=sleep5" {
			report(t, "57", "delegated auth: time to deny when the app's check hangs (timeout 1 s)", took.Round(10*time.Millisecond).String(), "≤ 1 s")
		}
	}
	// The POST body never goes to the auth check.
	before := g.AccessCount("/internal/auth-check")
	mustDo(t, c, "POST", p.ProxyURL()+configPath, strings.NewReader(`{"responsiveness":{"slow_request_threshold":0.4}}`),
		map[string]string{"Content-Type": "application/json", "Cookie": "auth=204", "Origin": p.ProxyURL(), "Sec-Fetch-Site": "same-origin"})
	time.Sleep(300 * time.Millisecond)
	for _, l := range g.AccessLines() {
		if strings.Contains(l, "/internal/auth-check") && strings.Contains(l, "POST") {
			t.Errorf("the auth check was sent as a POST (body forwarded?): %s", l)
		}
	}
	if g.AccessCount("/internal/auth-check") <= before {
		t.Logf("POST with a session cookie did not consult the auth check")
	}
}

// TestCase59_JSONBodyAbuse: oversized, deeply nested, duplicated, unknown
// and trailing-garbage config bodies are refused with one clear answer and
// change nothing.
func TestCase59_JSONBodyAbuse(t *testing.T) {
	t.Parallel()
	needBinary(t)
	token := randomToken(t)
	p := StartPulsegate(t, map[string]string{"RESPONSIVENESS_UPSTREAM_URL": "http://127.0.0.1:9", "RESPONSIVENESS_ADMIN_TOKEN": token})
	p.needEndpoint(t, "GET", configPath, "adminapi config endpoint")
	c := httpClient(t, 60*time.Second)
	before := p.slowThreshold(t)
	hdr := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token}
	cases := map[string]struct {
		body string
		want []int
	}{
		"10 MB":            {`{"responsiveness":{"slow_request_threshold":0.3},"pad":"` + strings.Repeat("x", 10<<20) + `"}`, []int{413}},
		"10000-deep":       {strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000), []int{400, 413}},
		"unknown field":    {`{"responsiveness":{"slow_request_thresholdd":0.3}}`, []int{400}},
		"wrong type":       {`{"responsiveness":{"slow_request_threshold":"abc"}}`, []int{400}},
		"trailing":         {`{"responsiveness":{"slow_request_threshold":0.3}} garbage`, []int{400}},
		"not an object":    {`[1,2,3]`, []int{400}},
		"warning≥critical": {`{"responsiveness":{"memory_warning_threshold":0.95,"memory_critical_threshold":0.9}}`, []int{400}},
	}
	for name, tc := range cases {
		r, err := do(t, c, "POST", p.AdminURL()+configPath, strings.NewReader(tc.body), hdr)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		ok := false
		for _, w := range tc.want {
			ok = ok || r.Status == w
		}
		if !ok {
			t.Errorf("%s: %d %.200s, want one of %v", name, r.Status, r.Body, tc.want)
		}
		if len(r.Body) > 4096 {
			t.Errorf("%s: %d-byte error answer, want a short one", name, len(r.Body))
		}
	}
	if after := p.slowThreshold(t); after != before {
		t.Errorf("config changed from %v to %v by refused bodies", before, after)
	}
}
