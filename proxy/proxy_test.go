package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	p        *Proxy
	reg      *prometheus.Registry
	logs     *observer.ObservedLogs
	frontend *httptest.Server
}

func newFixture(t *testing.T, upstream string, mod func(*config.Config)) *fixture {
	t.Helper()
	cfg := config.Defaults()
	cfg.Proxy.UpstreamURL = upstream
	if mod != nil {
		mod(cfg)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	p, err := New(cfg, zap.New(core), reg)
	if err != nil {
		t.Fatal(err)
	}
	fe := httptest.NewServer(p.Instrument(p.Forwarder()))
	t.Cleanup(func() {
		fe.Close()
		p.CloseIdleConnections()
	})
	return &fixture{p: p, reg: reg, logs: logs, frontend: fe}
}

func (f *fixture) get(t *testing.T, path string, hdr http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", f.frontend.URL+path, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := f.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// client does not add Accept-Encoding, so the app sees only what the test sends.
func (f *fixture) client() *http.Client {
	tr := f.frontend.Client().Transport.(*http.Transport).Clone()
	tr.DisableCompression = true
	return &http.Client{Transport: tr}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTransparency(t *testing.T) {
	var seen *http.Request
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Clone(context.Background())
		w.Header().Add("Set-Cookie", "a=1; Path=/")
		w.Header().Add("Set-Cookie", "b=2; Path=/")
		w.Header().Set("X-App", "yes")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "hello "+r.URL.RawQuery)
	}))
	defer up.Close()
	f := newFixture(t, up.URL, nil)

	resp := f.get(t, "/things/42?q=1", http.Header{
		"X-Forwarded-For": {"10.9.9.9"},
		"Forwarded":       {"for=10.9.9.9"},
		"X-Request-Id":    {"abc"},
		// hop-by-hop abuse (go#50580): naming our headers in Connection must not remove them
		"Connection": {"keep-alive, X-Forwarded-For, X-Forwarded-Proto, X-Request-Id"},
	})
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusCreated || body != "hello q=1" {
		t.Fatalf("got %d %q; want 201 %q", resp.StatusCode, body, "hello q=1")
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 2 {
		t.Errorf("Set-Cookie = %q; want both cookies", got)
	}
	if resp.Header.Get("X-App") != "yes" {
		t.Errorf("app header lost")
	}
	if got := seen.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q; want only the socket peer 127.0.0.1", got)
	}
	if seen.Header.Get("Forwarded") != "" {
		t.Errorf("client's Forwarded header reached the app")
	}
	if seen.Header.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("X-Forwarded-Proto = %q", seen.Header.Get("X-Forwarded-Proto"))
	}
	if seen.Host != strings.TrimPrefix(f.frontend.URL, "http://") {
		t.Errorf("Host = %q; want the client's %q", seen.Host, f.frontend.URL)
	}
	if seen.Header.Get("Accept-Encoding") != "" {
		t.Errorf("proxy added Accept-Encoding %q", seen.Header.Get("Accept-Encoding"))
	}
}

func TestTrustedProxyKeepsForwardedChain(t *testing.T) {
	var seen http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Clone() }))
	defer up.Close()
	hdr := http.Header{"X-Forwarded-For": {"203.0.113.9"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"shop.example"}}
	f := newFixture(t, up.URL, func(c *config.Config) { c.Proxy.TrustedProxies = []string{"127.0.0.0/8"} })
	readAll(t, f.get(t, "/", hdr))
	if got := seen.Get("X-Forwarded-For"); got != "203.0.113.9, 127.0.0.1" {
		t.Errorf("trusted peer: X-Forwarded-For = %q; want the ingress's chain plus the peer", got)
	}
	if seen.Get("X-Forwarded-Proto") != "https" || seen.Get("X-Forwarded-Host") != "shop.example" {
		t.Errorf("trusted peer: proto/host = %q/%q", seen.Get("X-Forwarded-Proto"), seen.Get("X-Forwarded-Host"))
	}
	g := newFixture(t, up.URL, func(c *config.Config) { c.Proxy.TrustedProxies = []string{"10.0.0.0/8"} })
	readAll(t, g.get(t, "/", hdr))
	if got := seen.Get("X-Forwarded-For"); got != "127.0.0.1" || seen.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("untrusted peer: X-Forwarded-For = %q, proto %q; want only what pulsegate saw", got, seen.Get("X-Forwarded-Proto"))
	}
}

func TestH2CUpgradeIsNotForwarded(t *testing.T) {
	var upgrade string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upgrade = r.Header.Get("Upgrade") + r.Header.Get("Http2-Settings")
	}))
	defer up.Close()
	f := newFixture(t, up.URL, nil)
	resp := f.get(t, "/ok", http.Header{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}, "Http2-Settings": {"AAMAAABkAAQCAAAAAAIAAAAA"}})
	readAll(t, resp)
	if upgrade != "" || resp.StatusCode != 200 {
		t.Fatalf("upstream saw %q (status %d); want no h2c upgrade", upgrade, resp.StatusCode)
	}
}

func TestStreamingIsNotBuffered(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n")
	}))
	defer up.Close()
	defer close(release)
	f := newFixture(t, up.URL, nil)
	resp := f.get(t, "/sse", nil)
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event = %q, %v; want it before the upstream finished", line, err)
	}
}

func TestChunkedStreamingIsNotBuffered(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "line one\n")
		w.(http.Flusher).Flush()
		<-release
	}))
	defer up.Close()
	defer close(release)
	f := newFixture(t, up.URL, nil)
	resp := f.get(t, "/chunked", nil)
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "line one\n" {
		t.Fatalf("first chunk = %q, %v", line, err)
	}
}

func TestUploadStreamsAndArrivesIntact(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		io.WriteString(w, hex.EncodeToString(h.Sum(nil))+" "+itoa(n))
	}))
	defer up.Close()
	f := newFixture(t, up.URL, nil)
	const size = 50 << 20
	src := io.LimitReader(&pattern{}, size)
	h := sha256.New()
	pr, pw := io.Pipe()
	go func() { _, err := io.Copy(io.MultiWriter(pw, h), src); pw.CloseWithError(err) }()
	req, _ := http.NewRequest("POST", f.frontend.URL+"/upload", pr)
	resp, err := f.frontend.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, resp)
	want := hex.EncodeToString(h.Sum(nil)) + " " + itoa(size)
	if got != want {
		t.Fatalf("app saw %q; want %q", got, want)
	}
}

type pattern struct{ i byte }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = p.i
		p.i = p.i*31 + 7
	}
	return len(b), nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// The tuned pool reuses connections: sequential and moderately concurrent
// requests do not open a connection each (Go's default keeps 2 idle per host).
func TestKeepAlivePoolAvoidsChurn(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	f := newFixture(t, up.URL, nil)
	for round := 0; round < 20; round++ {
		done := make(chan struct{})
		for i := 0; i < 16; i++ {
			go func() { defer func() { done <- struct{}{} }(); readAll(t, f.get(t, "/x", nil)) }()
		}
		for i := 0; i < 16; i++ {
			<-done
		}
	}
	if d := f.p.UpstreamDials(); d > 16 {
		t.Fatalf("%d upstream dials for 320 requests at concurrency 16; want ≤ 16 (pooled)", d)
	}
}

func TestUpstreamRefusedIs502(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	f := newFixture(t, "http://"+addr, nil)
	resp := f.get(t, "/x", http.Header{"Accept": {"application/json"}})
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d; want 502", resp.StatusCode)
	}
	var js map[string]any
	if err := json.Unmarshal([]byte(body), &js); err != nil || js["error"] != "upstream_refused" {
		t.Fatalf("body %q; want JSON with error upstream_refused", body)
	}
	resp = f.get(t, "/x", nil)
	if body := readAll(t, resp); !strings.HasPrefix(body, "pulsegate: 502 Bad Gateway") {
		t.Fatalf("plain body %q", body)
	}
	if v := testutil.ToFloat64(f.p.m.errors[errUpstreamRefused]); v != 2 {
		t.Fatalf("upstream_refused errors = %v; want 2", v)
	}
	snap := f.p.Stats().Snapshot(time.Now(), 5)
	if w := snap.Windows["1m"]; w.ErrorRate != 1 || w.Errors != 2 {
		t.Fatalf("1m window %+v; want 2 errors, rate 1", w)
	}
}

func TestSlowUpstreamIs504AtTimeout(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	defer close(release)
	f := newFixture(t, up.URL, func(c *config.Config) { c.Responsiveness.RequestTimeoutThreshold = 0.2 })
	resp := f.get(t, "/slow", nil)
	readAll(t, resp)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d; want 504", resp.StatusCode)
	}
	if v := testutil.ToFloat64(f.p.m.errors[errUpstreamTimeout]); v != 1 {
		t.Fatalf("upstream_timeout = %v", v)
	}
}

func TestClientCancelIsNotAnAppError(t *testing.T) {
	arrived := make(chan struct{}, 16)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done() // the upstream request is cancelled with the client's
	}))
	defer up.Close()
	f := newFixture(t, up.URL, nil)
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", f.frontend.URL+"/sleep", nil)
		go func() { <-arrived; cancel() }()
		if _, err := f.frontend.Client().Do(req); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v; want context.Canceled", err)
		}
	}
	waitFor(t, "in-flight back to 0", func() bool { return f.p.Stats().InFlight() == 0 })
	waitFor(t, "10 client_closed", func() bool { return testutil.ToFloat64(f.p.m.errors[errClientClosed]) == 10 })
	if v := testutil.ToFloat64(f.p.m.requests[class5xx]); v != 0 {
		t.Fatalf("5xx = %v; client cancels must not count as app errors", v)
	}
	if n := f.logs.FilterLevelExact(zapcore.ErrorLevel).Len() + f.logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 0 {
		t.Fatalf("%d warn/error lines for client cancels: %v", n, f.logs.All())
	}
	w := f.p.Stats().Snapshot(time.Now(), 5).Windows["1m"]
	if w.StatusClasses["client_closed"] != 10 || w.ErrorRate != 0 {
		t.Fatalf("window %+v", w)
	}
}

func TestUpstreamBreaksAfterHeaders(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.WriteHeader(200)
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		c, _, _ := http.NewResponseController(w).Hijack()
		c.Close()
	}))
	defer up.Close()
	f := newFixture(t, up.URL, nil)
	req, _ := http.NewRequest("GET", f.frontend.URL+"/big", nil)
	resp, err := f.frontend.Client().Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("client read a complete body; want the connection aborted, not a truncated 200 that looks complete")
	}
	waitFor(t, "upstream_reset counted", func() bool { return testutil.ToFloat64(f.p.m.errors[errUpstreamReset]) == 1 })
	if f.p.Stats().InFlight() != 0 {
		t.Fatal("in-flight not back to 0")
	}
}

func TestSlowRequestLoggedWithTimingSplit(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/users/") {
			time.Sleep(60 * time.Millisecond)
		}
		io.WriteString(w, "done")
	}))
	defer up.Close()
	f := newFixture(t, up.URL, func(c *config.Config) { c.Responsiveness.SlowRequestThreshold = 0.05 })
	readAll(t, f.get(t, "/users/7/report", nil))
	readAll(t, f.get(t, "/fast-enough?no", nil))
	waitFor(t, "slow_request line", func() bool { return f.logs.FilterMessage("slow_request").Len() >= 1 })
	e := f.logs.FilterMessage("slow_request").All()[0]
	fields := e.ContextMap()
	if e.Level != zapcore.WarnLevel || fields["route"] != "/users/:id/report" || fields["path"] != "/users/7/report" || fields["status"] != int64(200) {
		t.Fatalf("slow_request line = %v %v", e.Level, fields)
	}
	for _, k := range []string{"method", "duration", "upstream_ttfb", "queue_wait", "transfer"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("slow_request lacks key %q", k)
		}
	}
	ring := f.p.Stats().RecentSlow()
	if len(ring) < 1 || ring[0].UpstreamTTFB < 0.05 || ring[0].Route != "/users/:id/report" {
		t.Fatalf("slow ring %+v", ring)
	}
}

func TestMetricsAndKnownTraffic(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fail") {
			w.WriteHeader(500)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	f := newFixture(t, up.URL, nil)
	for i := 0; i < 40; i++ {
		readAll(t, f.get(t, "/items/"+itoa(int64(i)), nil))
	}
	for i := 0; i < 10; i++ {
		readAll(t, f.get(t, "/fail", nil))
	}
	snap := f.p.Stats().Snapshot(time.Now(), 5)
	w := snap.Windows["1m"]
	if w.Requests != 50 || w.Errors != 10 || w.ErrorRate != 0.2 {
		t.Fatalf("1m = %+v; want 50 requests, 10 errors, error_rate 0.2", w)
	}
	if w.P50 == nil || w.P99 == nil || *w.P99 < *w.P50 {
		t.Fatalf("percentiles %v %v", w.P50, w.P99)
	}
	if snap.RoutesTracked != 2 || snap.Routes.ByVolume[0].Route != "/items/:id" || snap.Routes.ByErrorRate[0].Route != "/fail" {
		t.Fatalf("routes %+v", snap.Routes)
	}
	if n := testutil.CollectAndCount(f.p.m.duration); n != 2 {
		t.Fatalf("duration series = %d; want 2 (templated routes)", n)
	}
	if v := testutil.ToFloat64(f.p.m.requests[class5xx]); v != 10 {
		t.Fatalf("5xx = %v", v)
	}
	if v := testutil.ToFloat64(f.p.m.errors[errAppError]); v != 10 {
		t.Fatalf("app_error = %v", v)
	}
}

func TestDistinctPathsStayBounded(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	f := newFixture(t, up.URL, func(c *config.Config) { c.Proxy.MaxRoutes = 20 })
	for i := 0; i < 300; i++ {
		readAll(t, f.get(t, "/word"+strings.Repeat("x", i%50)+"/y"+itoa(int64(i)), nil))
	}
	if n := len(*f.p.Stats().routes.Load()); n > 20 {
		t.Fatalf("%d routes tracked; cap 20", n)
	}
	if n := testutil.CollectAndCount(f.p.m.duration); n > 21 {
		t.Fatalf("%d duration series; want ≤ cap+1", n)
	}
}

func TestWebSocketPassesThrough(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	defer up.Close()
	f := newFixture(t, up.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.frontend.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		msg := "message " + itoa(int64(i))
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != msg {
			t.Fatalf("echo %q, %v; want %q", got, err, msg)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the upgrade counted once as 1xx", func() bool { return testutil.ToFloat64(f.p.m.requests[class1xx]) == 1 })
	waitFor(t, "in-flight 0 after close", func() bool { return f.p.Stats().InFlight() == 0 })
	if f.p.OpenUpgraded() != 0 {
		t.Fatalf("%d upgraded connections still tracked after close", f.p.OpenUpgraded())
	}
}

// An inner panic with http.ErrAbortHandler is counted and re-raised.
func TestInstrumentRepanicsAbortHandler(t *testing.T) {
	cfg := config.Defaults()
	p, err := New(cfg, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := p.Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		panic(http.ErrAbortHandler)
	}))
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Fatalf("recovered %v; want http.ErrAbortHandler re-raised", v)
		}
		if p.Stats().InFlight() != 0 || testutil.ToFloat64(p.m.errors[errUpstreamReset]) != 1 {
			t.Fatal("aborted request not counted once")
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
}

func TestUpstreamSeenByDialOrAnswer(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	f := newFixture(t, up.URL, nil)
	if f.p.UpstreamSeen() {
		t.Fatal("seen before anything happened")
	}
	if err := f.p.CheckUpstream(context.Background()); err != nil || !f.p.UpstreamSeen() {
		t.Fatalf("CheckUpstream = %v, seen %v", err, f.p.UpstreamSeen())
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	g := newFixture(t, "http://"+addr, nil)
	if err := g.p.CheckUpstream(context.Background()); err == nil || g.p.UpstreamSeen() {
		t.Fatalf("a closed port counted as seen")
	}
	for i := 0; i < 5; i++ {
		readAll(t, g.get(t, "/", nil))
	}
	if n := g.p.ConsecutiveUpstreamFailures(); n != 5 || !g.p.NeedsUpstreamCheck() {
		t.Fatalf("consecutive failures = %d; want 5 and a check needed", n)
	}
	// The app comes back on the same port: the active check alone (no
	// traffic) clears the failures, so readiness can recover.
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) })}
	go srv.Serve(l2)
	defer srv.Close()
	if err := g.p.CheckUpstream(context.Background()); err != nil || g.p.NeedsUpstreamCheck() {
		t.Fatalf("after recovery: err %v, still needs a check: %v", err, g.p.NeedsUpstreamCheck())
	}
}

// A client that pauses mid-body longer than client_body_timeout gets 408
// and frees its handler; a complete body followed by a slow answer is not
// affected (the deadline is cleared once the body is in).
func TestClientBodyTimeout(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/slow-answer" {
			time.Sleep(700 * time.Millisecond)
		}
		io.WriteString(w, "done")
	}))
	defer up.Close()
	f := newFixture(t, up.URL, func(c *config.Config) { c.Proxy.ClientBodyTimeout = 0.3 })

	// Complete body, answer slower than the body timeout: 200.
	req, _ := http.NewRequest("POST", f.frontend.URL+"/slow-answer", strings.NewReader(strings.Repeat("x", 100000)))
	resp, err := f.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 || body != "done" {
		t.Fatalf("complete body, slow answer: %d %q; want 200", resp.StatusCode, body)
	}

	// Body stalls: 408, handler released while the client stays connected.
	c, err := net.Dial("tcp", strings.TrimPrefix(f.frontend.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"+strings.Repeat("y", 1000))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(status, "408") {
		t.Fatalf("stalled body: %q, %v; want 408", status, err)
	}
	waitFor(t, "handler released", func() bool { return f.p.Stats().InFlight() == 0 })
	if v := testutil.ToFloat64(f.p.m.errors[errClientClosed]); v != 1 {
		t.Fatalf("client_closed = %v; want the stall counted as the client's, not the app's", v)
	}
}

// proxy.max_conns_per_host bounds connections (and concurrency) to the app;
// requests beyond it wait for a connection and still succeed.
func TestMaxConnsPerHost(t *testing.T) {
	var cur, peak atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond)
		cur.Add(-1)
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	f := newFixture(t, up.URL, func(c *config.Config) { c.Proxy.MaxConnsPerHost = 2 })
	done := make(chan int, 8)
	for i := 0; i < 8; i++ {
		go func() {
			resp := f.get(t, "/x", nil)
			readAll(t, resp)
			done <- resp.StatusCode
		}()
	}
	for i := 0; i < 8; i++ {
		if s := <-done; s != 200 {
			t.Fatalf("status %d", s)
		}
	}
	if p := peak.Load(); p > 2 {
		t.Fatalf("the app saw %d requests at once; want ≤ 2", p)
	}
	if d := f.p.UpstreamDials(); d > 2 {
		t.Fatalf("%d connections opened; want ≤ 2", d)
	}
}
