package adminapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/proxy"
	"github.com/pulsegate/pulsegate/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testToken = "s3cr3t-token-value"

type env struct {
	api    *API
	holder *config.Holder
	st     *store.Store
	app    *httptest.Server // what the proxy port would forward to
	appHit chan string
}

func newEnv(t *testing.T, token string) *env {
	t.Helper()
	cfg := config.Defaults()
	cfg.Admin.Token = config.Secret(token)
	h := config.NewHolder(cfg)
	st, err := store.Open(t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	p, err := proxy.New(cfg, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{holder: h, st: st, appHit: make(chan string, 100)}
	e.api = New(Deps{Config: h, Gatherer: reg, Requests: p.Stats(), Audit: st,
		Resources: func() Resources { return Resources{} },
		Alerts:    &fakeAlerts{ids: map[string]bool{"a1": true}},
	})
	return e
}

type fakeAlerts struct {
	mu   sync.Mutex
	ids  map[string]bool
	acks int
}

func (f *fakeAlerts) List(state, severity string, limit int) any { return []string{} }
func (f *fakeAlerts) Acknowledge(ids []string, note, actor string) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		if !f.ids[id] {
			return nil, ErrUnknownAlert
		}
	}
	f.acks++
	return ids, nil
}

type call struct {
	method, path, body string
	hdr                map[string]string
	peer               string
	host               string
}

func (e *env) do(t *testing.T, h http.Handler, c call) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	r := httptest.NewRequest(c.method, c.path, body)
	r.RemoteAddr = "127.0.0.1:5555"
	if c.peer != "" {
		r.RemoteAddr = c.peer
	}
	if c.host != "" {
		r.Host = c.host
	} else {
		r.Host = "127.0.0.1:9901"
	}
	for k, v := range c.hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestIsAdminPath(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"/admin/api/performance/responsiveness", true},
		{"/admin/api/config/responsiveness/", true},
		{"//admin/api/config/responsiveness", true},
		{"/admin/./api/health/responsiveness", true},
		{"/admin/api/alerts/responsiveness/acknowledge", true},
		{"/admin/api/report/responsiveness", true},
		{"/admin/api/releases/responsiveness", true},
		{"/admin/responsiveness/", true},
		{"/admin/responsiveness", true},
		{"/admin/users", false},
		{"/admin/api/users", false},
		{"/ADMIN/api/config/responsiveness", false},
		{"/admin/api/configx/responsiveness", false},
		{"/admin/api/config/responsivenessx", false},
		{"/", false},
	}
	for _, tc := range tests {
		if got := IsAdminPath(tc.path); got != tc.want {
			t.Errorf("IsAdminPath(%q) = %v; want %v", tc.path, got, tc.want)
		}
	}
}

func TestAuthMatrix(t *testing.T) {
	perf := "/admin/api/performance/responsiveness"
	tests := []struct {
		desc   string
		token  string
		c      call
		status int
	}{
		{"no token, loopback read", "", call{method: "GET", path: perf}, 200},
		{"no token, remote read", "", call{method: "GET", path: perf, peer: "10.1.2.3:4444"}, 403},
		{"no token, spoofed XFF does not help", "", call{method: "GET", path: perf, peer: "10.1.2.3:4444", hdr: map[string]string{"X-Forwarded-For": "127.0.0.1"}}, 403},
		{"no token, write refused", "", call{method: "POST", path: "/admin/api/config/responsiveness", body: `{}`, hdr: map[string]string{"Content-Type": "application/json"}}, 403},
		{"token, none sent", testToken, call{method: "GET", path: perf}, 401},
		{"token, wrong", testToken, call{method: "GET", path: perf, hdr: map[string]string{"Authorization": "Bearer nope"}}, 401},
		{"token, wrong length", testToken, call{method: "GET", path: perf, hdr: map[string]string{"Authorization": "Bearer " + testToken + "x"}}, 401},
		{"token in query ignored", testToken, call{method: "GET", path: perf + "?token=" + testToken}, 401},
		{"token, right", testToken, call{method: "GET", path: perf, hdr: map[string]string{"Authorization": "Bearer " + testToken}}, 200},
		{"token, right, remote peer", testToken, call{method: "GET", path: perf, peer: "10.1.2.3:4444", hdr: map[string]string{"Authorization": "Bearer " + testToken}}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			e := newEnv(t, tc.token)
			for name, h := range map[string]http.Handler{"admin": e.api.AdminHandler("127.0.0.1:9901"), "proxy": e.api.ProxyHandler(http.NotFoundHandler())} {
				w := e.do(t, h, tc.c)
				if w.Code != tc.status {
					t.Errorf("%s listener: %s %s = %d %s; want %d", name, tc.c.method, tc.c.path, w.Code, w.Body, tc.status)
				}
				if w.Code == 403 && tc.c.method == "POST" && !strings.Contains(w.Body.String(), "RESPONSIVENESS_ADMIN_TOKEN") {
					t.Errorf("403 for a write must name RESPONSIVENESS_ADMIN_TOKEN: %s", w.Body)
				}
			}
		})
	}
}

func TestProbesAndMetricsNeedNoAuth(t *testing.T) {
	e := newEnv(t, testToken)
	h := e.api.AdminHandler("127.0.0.1:9901")
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if w := e.do(t, h, call{method: "GET", path: p, peer: "10.0.0.9:1", host: "10.0.0.2:9901"}); w.Code != 200 {
			t.Errorf("GET %s = %d; want 200 without a token", p, w.Code)
		}
	}
}

func TestHostCheckAgainstDNSRebinding(t *testing.T) {
	e := newEnv(t, "")
	h := e.api.AdminHandler("127.0.0.1:9901")
	perf := "/admin/api/performance/responsiveness"
	if w := e.do(t, h, call{method: "GET", path: perf, host: "rebind.example:9901"}); w.Code != 403 {
		t.Fatalf("foreign Host = %d; want 403", w.Code)
	}
	for _, host := range []string{"localhost:9901", "127.0.0.1:9901", "[::1]:9901"} {
		if w := e.do(t, h, call{method: "GET", path: perf, host: host}); w.Code != 200 {
			t.Errorf("Host %s = %d; want 200", host, w.Code)
		}
	}
}

func TestProxyPortForwardsEverythingElse(t *testing.T) {
	e := newEnv(t, "")
	var got []string
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = append(got, r.URL.Path) })
	h := e.api.ProxyHandler(app)
	for _, p := range []string{"/admin/users", "/ADMIN/api/config/responsiveness", "/admin/api/other", "/"} {
		e.do(t, h, call{method: "GET", path: p})
	}
	if len(got) != 4 {
		t.Fatalf("app saw %v; want all 4 non-pulsegate paths", got)
	}
	if w := e.do(t, h, call{method: "GET", path: "//admin/api/performance/responsiveness", peer: "10.0.0.1:1"}); w.Code != 403 || len(got) != 4 {
		t.Fatalf("unclean admin path: %d and app saw %v; want auth applied, never forwarded", w.Code, got)
	}
}

func TestCSRFAndContentType(t *testing.T) {
	e := newEnv(t, testToken)
	h := e.api.ProxyHandler(http.NotFoundHandler())
	auth := "Bearer " + testToken
	post := func(hdr map[string]string) int {
		hdr["Authorization"] = auth
		return e.do(t, h, call{method: "POST", path: "/admin/api/config/responsiveness", body: `{"responsiveness":{"slow_request_threshold":1}}`, hdr: hdr}).Code
	}
	if c := post(map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}); c != 403 {
		t.Errorf("cross-site fetch = %d; want 403", c)
	}
	if c := post(map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}); c != 403 {
		t.Errorf("foreign Origin = %d; want 403", c)
	}
	if c := post(map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); c != 415 {
		t.Errorf("form body = %d; want 415", c)
	}
	if c := post(map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}); c != 200 {
		t.Errorf("same-origin JSON = %d; want 200", c)
	}
}

func TestConfigPostMatrix(t *testing.T) {
	e := newEnv(t, testToken)
	h := e.api.AdminHandler("127.0.0.1:9901")
	hdr := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}
	post := func(body string) *httptest.ResponseRecorder {
		return e.do(t, h, call{method: "POST", path: "/admin/api/config/responsiveness", body: body, hdr: hdr})
	}
	_, v0 := e.holder.Get()
	tests := []struct {
		desc, body string
		status     int
		mention    string
	}{
		{"unknown key", `{"responsiveness":{"slow_request_treshold":1}}`, 400, "slow_request_treshold"},
		{"wrong type", `{"responsiveness":{"slow_request_threshold":"abc"}}`, 400, "slow_request_threshold"},
		{"warning above critical", `{"responsiveness":{"memory_warning_threshold":0.95}}`, 400, "memory_warning_threshold"},
		{"out of range", `{"responsiveness":{"cpu_critical_threshold":1.5}}`, 400, "cpu_critical_threshold"},
		{"trailing garbage", `{"responsiveness":{}} x`, 400, ""},
		{"stale version", `{"version": 999, "responsiveness":{"slow_request_threshold":1}}`, 409, "version"},
		{"too large", `{"responsiveness":{"slow_request_threshold":1}, "pad":"` + strings.Repeat("x", 70<<10) + `"}`, 413, ""},
	}
	for _, tc := range tests {
		w := post(tc.body)
		if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.mention) {
			t.Errorf("%s: %d %s; want %d mentioning %q", tc.desc, w.Code, w.Body, tc.status, tc.mention)
		}
		if _, v := e.holder.Get(); v != v0 {
			t.Fatalf("%s changed the config (version %d → %d)", tc.desc, v0, v)
		}
	}
	w := post(`{"version": ` + strconv.FormatUint(v0, 10) + `, "responsiveness":{"slow_request_threshold":0.3}}`)
	if w.Code != 200 {
		t.Fatalf("valid change = %d %s", w.Code, w.Body)
	}
	cfg, v1 := e.holder.Get()
	if cfg.Responsiveness.SlowRequestThreshold != 0.3 || v1 == v0 {
		t.Fatalf("change not applied: %v v%d", cfg.Responsiveness.SlowRequestThreshold, v1)
	}
	entries, err := e.st.Audit(100, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var ok, refused int
	for _, en := range entries {
		switch en.Outcome {
		case store.OutcomeOK:
			ok++
			if !strings.HasPrefix(en.Actor, "token:") || strings.Contains(en.Actor, testToken) {
				t.Errorf("actor %q; want a token fingerprint", en.Actor)
			}
		case store.OutcomeRejected:
			refused++
		}
	}
	if ok != 1 || refused != len(tests) {
		t.Fatalf("audit has %d ok, %d refused; want 1 and %d", ok, refused, len(tests))
	}
}

func TestConfigGetRedactsAndRoundTrips(t *testing.T) {
	e := newEnv(t, testToken)
	h := e.api.AdminHandler("127.0.0.1:9901")
	hdr := map[string]string{"Authorization": "Bearer " + testToken}
	w := e.do(t, h, call{method: "GET", path: "/admin/api/config/responsiveness", hdr: hdr})
	if w.Code != 200 || strings.Contains(w.Body.String(), testToken) {
		t.Fatalf("GET config = %d, token leaked: %v", w.Code, strings.Contains(w.Body.String(), testToken))
	}
	// The GET document posted back unchanged is accepted and changes nothing.
	hdr["Content-Type"] = "application/json"
	w2 := e.do(t, h, call{method: "POST", path: "/admin/api/config/responsiveness", body: w.Body.String(), hdr: hdr})
	if w2.Code != 200 {
		t.Fatalf("posting the GET document back = %d %s", w2.Code, w2.Body)
	}
	cfg, _ := e.holder.Get()
	if cfg.Admin.Token.Reveal() != testToken {
		t.Fatal("posting the redacted token changed the token")
	}
}

func TestAcknowledge(t *testing.T) {
	e := newEnv(t, testToken)
	h := e.api.AdminHandler("127.0.0.1:9901")
	hdr := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}
	ack := func(body string) int {
		return e.do(t, h, call{method: "POST", path: "/admin/api/alerts/responsiveness/acknowledge", body: body, hdr: hdr}).Code
	}
	if c := ack(`{"alert_ids":["a1"],"note":"looking"}`); c != 200 {
		t.Errorf("ack = %d", c)
	}
	if c := ack(`{"alert_id":"a1"}`); c != 200 {
		t.Errorf("single alert_id = %d", c)
	}
	if c := ack(`{"alert_ids":["nope"]}`); c != 404 {
		t.Errorf("unknown id = %d; want 404", c)
	}
	if c := ack(`{"alert_ids":[]}`); c != 400 {
		t.Errorf("no ids = %d; want 400", c)
	}
	if c := ack(`{"alert_ids":["a1"],"bogus":1}`); c != 400 {
		t.Errorf("unknown field = %d; want 400", c)
	}
}

func TestSessionCookieLogin(t *testing.T) {
	e := newEnv(t, testToken)
	h := e.api.ProxyHandler(http.NotFoundHandler())
	w := e.do(t, h, call{method: "POST", path: "/admin/responsiveness/login", body: `{"token":"` + testToken + `"}`,
		hdr: map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}})
	if w.Code != 200 {
		t.Fatalf("login = %d %s", w.Code, w.Body)
	}
	c := w.Result().Cookies()
	if len(c) != 1 || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || strings.Contains(c[0].Value, testToken) {
		t.Fatalf("cookie %+v; want HttpOnly, SameSite=Strict, no token inside", c)
	}
	r := call{method: "GET", path: "/admin/api/performance/responsiveness", peer: "10.0.0.7:1", hdr: map[string]string{"Cookie": c[0].Name + "=" + c[0].Value}}
	if w := e.do(t, h, r); w.Code != 200 {
		t.Fatalf("read with session = %d", w.Code)
	}
	r.hdr["Cookie"] = c[0].Name + "=" + c[0].Value + "x"
	if w := e.do(t, h, r); w.Code != 401 {
		t.Fatalf("tampered session = %d; want 401", w.Code)
	}
	bad := e.do(t, h, call{method: "POST", path: "/admin/responsiveness/login", body: `{"token":"wrong"}`, hdr: map[string]string{"Content-Type": "application/json"}})
	if bad.Code != 401 {
		t.Fatalf("wrong token login = %d", bad.Code)
	}
}

func TestBrowserIsSentToLogin(t *testing.T) {
	e := newEnv(t, testToken)
	h := e.api.ProxyHandler(http.NotFoundHandler())
	w := e.do(t, h, call{method: "GET", path: "/admin/responsiveness/health", hdr: map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admin/responsiveness/login?next=%2Fadmin%2Fresponsiveness%2Fhealth" {
		t.Fatalf("navigation = %d → %q; want 303 to the login page", w.Code, w.Header().Get("Location"))
	}
	if w := e.do(t, h, call{method: "GET", path: "/admin/responsiveness/api/history", hdr: map[string]string{"Sec-Fetch-Mode": "cors"}}); w.Code != 401 {
		t.Fatalf("fetch = %d; want 401", w.Code)
	}
	if w := e.do(t, h, call{method: "GET", path: "/admin/api/health/responsiveness", hdr: map[string]string{"Accept": "text/html"}}); w.Code != 401 {
		t.Fatalf("API route = %d; want 401, never a redirect", w.Code)
	}
}

func TestPerformanceShape(t *testing.T) {
	e := newEnv(t, "")
	w := e.do(t, e.api.AdminHandler("127.0.0.1:9901"), call{method: "GET", path: "/admin/api/performance/responsiveness"})
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	rm := doc["resource_metrics"].(map[string]any)
	for _, k := range []string{"memory_usage_percent", "cpu_usage_percent", "connection_pool_utilization"} {
		if v, ok := rm[k]; !ok || v != nil {
			t.Errorf("resource_metrics.%s = %v; want present and null before any probe ran", k, v)
		}
	}
	if rm["active_threads"] != float64(0) {
		t.Errorf("active_threads = %v", rm["active_threads"])
	}
	pm := doc["performance_metrics"].(map[string]any)
	for _, k := range []string{"avg_response_time", "slow_request_count", "error_rate", "throughput_rps"} {
		if _, ok := pm[k]; !ok {
			t.Errorf("performance_metrics.%s missing", k)
		}
	}
	if _, err := time.Parse(time.RFC3339, doc["timestamp"].(string)); err != nil {
		t.Errorf("timestamp %v", doc["timestamp"])
	}
}

// Delegated auth (case 57): allow only on 2xx, fail closed on anything else
// and on a timeout; the check gets cookies and the path, never the body.
func TestDelegatedAuth(t *testing.T) {
	var mu sync.Mutex
	var seenBody, seenURI []string
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seenBody = append(seenBody, string(b))
		seenURI = append(seenURI, r.Header.Get("X-Original-URI"))
		mu.Unlock()
		switch r.Header.Get("Cookie") {
		case "s=good":
			w.WriteHeader(204)
		case "s=denied":
			w.WriteHeader(401)
		case "s=broken":
			w.WriteHeader(500)
		case "s=slow":
			<-release
		}
	}))
	defer app.Close()
	defer close(release)
	e := newEnv(t, testToken)
	cfg, _ := e.holder.Get()
	next := cfg.Clone()
	next.Admin.AuthURL = app.URL + "/internal/auth-check"
	next.Admin.AuthTimeout = 0.3
	if _, err := e.holder.Update(0, next); err != nil {
		t.Fatal(err)
	}
	h := e.api.ProxyHandler(http.NotFoundHandler())
	for _, tc := range []struct {
		cookie string
		want   int
	}{{"s=good", 200}, {"s=denied", 401}, {"s=broken", 401}, {"s=slow", 401}} {
		start := time.Now()
		w := e.do(t, h, call{method: "GET", path: "/admin/api/performance/responsiveness", peer: "10.0.0.5:1", hdr: map[string]string{"Cookie": tc.cookie}})
		if w.Code != tc.want {
			t.Errorf("cookie %s: %d; want %d", tc.cookie, w.Code, tc.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("cookie %s took %v: the check must give up at its timeout", tc.cookie, d)
		}
	}
	// A write with a good session: the body never reaches the auth check.
	w := e.do(t, h, call{method: "POST", path: "/admin/api/alerts/responsiveness/acknowledge", body: `{"alert_ids":["a1"],"note":"SECRET-BODY"}`,
		peer: "10.0.0.5:1", hdr: map[string]string{"Cookie": "s=good", "Content-Type": "application/json"}})
	if w.Code != 200 {
		t.Fatalf("write with delegated session = %d %s", w.Code, w.Body)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, b := range seenBody {
		if b != "" {
			t.Fatalf("auth check received a body %q", b)
		}
	}
	if len(seenURI) == 0 || seenURI[0] != "/admin/api/performance/responsiveness" {
		t.Fatalf("X-Original-URI = %v", seenURI)
	}
}
