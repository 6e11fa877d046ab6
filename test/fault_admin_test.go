package test

// Fault suite, admin surface and secrets (RELIABILITY.md §3 F, plus 22):
// authentication on both listeners, CSRF, the Host check, admin-path
// normalisation, and a canary password searched for in every output.

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const configPath = "/admin/api/config/responsiveness"

func randomToken(t testing.TB) string {
	b := make([]byte, 16)
	rand.Read(b)
	return "tok-" + hex.EncodeToString(b)
}

// slowThreshold reads responsiveness.slow_request_threshold from GET config.
func (p *Pulsegate) slowThreshold(t testing.TB) float64 {
	t.Helper()
	cfg := p.getJSON(t, configPath)
	v, ok := num(cfg, "responsiveness.slow_request_threshold")
	if !ok {
		if inner, ok2 := findKey(cfg, "responsiveness"); ok2 {
			if m, ok3 := inner.(map[string]any); ok3 {
				v, ok = num(m, "slow_request_threshold")
			}
		}
	}
	if !ok {
		t.Fatalf("GET config has no responsiveness.slow_request_threshold: %v", keys(cfg))
	}
	return v
}

// startWithToken starts the app under gunicorn (worker kind) and a
// pulsegate in front of it with a random admin token, skipping when the
// binary or the config endpoint is missing.
func startWithToken(t testing.TB, kind string) (*Gunicorn, *Pulsegate, string) {
	t.Helper()
	needBinary(t)
	g := StartGunicorn(t, kind)
	token := randomToken(t)
	p := StartPulsegate(t, map[string]string{"RESPONSIVENESS_UPSTREAM_URL": g.URL(), "RESPONSIVENESS_ADMIN_TOKEN": token})
	p.needEndpoint(t, "GET", configPath, "adminapi config endpoint")
	return g, p, token
}

func jsonHdr(extra map[string]string) map[string]string {
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// TestCase54_AuthBothListeners: with a token, every admin route on both
// listeners wants exactly "Bearer <token>"; without one, writes are refused
// with a message naming RESPONSIVENESS_ADMIN_TOKEN; the token never shows
// in logs; the admin listener defaults to loopback.
func TestCase54_AuthBothListeners(t *testing.T) {
	t.Parallel()
	g, p, token := startWithToken(t, "gthread")
	c := httpClient(t, 30*time.Second)
	body := `{"responsiveness":{"slow_request_threshold":0.3}}`
	before := p.slowThreshold(t)

	wrongSame := "tok-" + strings.Repeat("0", len(token)-4)
	variants := []struct {
		name  string
		hdr   map[string]string
		query string
	}{
		{"no token", nil, ""},
		{"wrong token, same length", map[string]string{"Authorization": "Bearer " + wrongSame}, ""},
		{"wrong token, other length", map[string]string{"Authorization": "Bearer short"}, ""},
		{"token prefix only", map[string]string{"Authorization": "Bearer " + token[:len(token)-1]}, ""},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}, ""},
		{"token as basic auth", map[string]string{"Authorization": "Basic " + token}, ""},
		{"token without scheme", map[string]string{"Authorization": token}, ""},
		{"token in query string", nil, "?token=" + token + "&access_token=" + token},
	}
	for _, base := range []struct{ name, url string }{{"admin listener", p.AdminURL()}, {"proxy listener", p.ProxyURL()}} {
		for _, v := range variants {
			r := mustDo(t, c, "POST", base.url+configPath+v.query, strings.NewReader(body), jsonHdr(v.hdr))
			if r.Status != 401 {
				t.Errorf("%s, POST config, %s: %d %.200s, want 401", base.name, v.name, r.Status, r.Body)
			}
			r = mustDo(t, c, "POST", base.url+"/admin/api/alerts/responsiveness/acknowledge"+v.query, strings.NewReader(`{"alert_id":"x"}`), jsonHdr(v.hdr))
			if r.Status != 401 {
				t.Errorf("%s, POST acknowledge, %s: %d, want 401", base.name, v.name, r.Status)
			}
			r = mustDo(t, c, "GET", base.url+"/admin/api/performance/responsiveness"+v.query, nil, v.hdr)
			if r.Status != 401 {
				t.Errorf("%s, GET performance, %s: %d, want 401", base.name, v.name, r.Status)
			}
		}
	}
	if after := p.slowThreshold(t); after != before {
		t.Fatalf("slow_request_threshold changed from %v to %v by refused requests", before, after)
	}
	// Health, readiness and metrics on the admin listener need no token.
	// (/readyz may be 503 until the app has answered once: not an auth refusal.)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := mustDo(t, c, "GET", p.AdminURL()+path, nil, nil); r.Status != 200 && !(path == "/readyz" && r.Status == 503) {
			t.Errorf("GET %s without token: %d", path, r.Status)
		}
	}
	// The right token works on both listeners (positive control).
	auth := map[string]string{"Authorization": "Bearer " + token}
	r := mustDo(t, c, "POST", p.ProxyURL()+configPath, strings.NewReader(body), jsonHdr(auth))
	if r.Status != 200 {
		t.Fatalf("POST config with the token on the proxy listener: %d %.300s", r.Status, r.Body)
	}
	if got := p.slowThreshold(t); got != 0.3 {
		t.Errorf("slow_request_threshold after an authorised POST: %v, want 0.3", got)
	}
	if r := mustDo(t, c, "GET", p.AdminURL()+"/admin/api/performance/responsiveness", nil, auth); r.Status != 200 {
		t.Errorf("GET performance with the token: %d", r.Status)
	}

	// The token never reaches a log line.
	leaks := 0
	for _, l := range p.Raw() {
		leaks += strings.Count(l, token) + strings.Count(l, token[4:])
	}
	report(t, "54", "admin token occurrences in logs (debug level) after 48 refused and 3 accepted calls", fmt.Sprint(leaks), "0")
	if leaks != 0 {
		t.Errorf("admin token appears %d times in pulsegate's logs", leaks)
	}

	// Without a token: loopback reads work, writes get 403 naming the variable.
	p2 := StartPulsegate(t, map[string]string{"RESPONSIVENESS_UPSTREAM_URL": g.URL()})
	for _, base := range []string{p2.AdminURL(), p2.ProxyURL()} {
		r := mustDo(t, c, "POST", base+configPath, strings.NewReader(body), jsonHdr(nil))
		if r.Status != 403 || !strings.Contains(string(r.Body), "RESPONSIVENESS_ADMIN_TOKEN") {
			t.Errorf("%s: POST config without a configured token: %d %.200s, want 403 naming RESPONSIVENESS_ADMIN_TOKEN", base, r.Status, r.Body)
		}
		if r := mustDo(t, c, "GET", base+"/admin/api/performance/responsiveness", nil, nil); r.Status != 200 {
			t.Errorf("%s: loopback read without a configured token: %d", base, r.Status)
		}
	}

	// The admin listener's default address is loopback only.
	out, err := exec.Command(binPath, "check-config").CombinedOutput()
	if err != nil {
		t.Fatalf("check-config with defaults: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "127.0.0.1:9901") {
		t.Errorf("check-config does not show the loopback admin default 127.0.0.1:9901:\n%.1000s", out)
	}
}

// TestCase55_CSRF: a browser page on another origin cannot change state,
// even when the request carries valid credentials; GETs change nothing.
// (The headless-Chromium variant belongs to test/browser.)
func TestCase55_CSRF(t *testing.T) {
	t.Parallel()
	_, p, token := startWithToken(t, "sync")
	c := httpClient(t, 30*time.Second)
	auth := "Bearer " + token
	body := `{"responsiveness":{"slow_request_threshold":0.3}}`
	before := p.slowThreshold(t)
	for _, base := range []string{p.ProxyURL(), p.AdminURL()} {
		for _, tc := range []struct {
			name string
			hdr  map[string]string
		}{
			{"fetch from another site", map[string]string{"Content-Type": "application/json", "Authorization": auth, "Origin": "http://127.0.0.2:7000", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}},
			{"same-site but cross-origin", map[string]string{"Content-Type": "application/json", "Authorization": auth, "Origin": "http://127.0.0.1:7000", "Sec-Fetch-Site": "same-site"}},
			{"old browser, foreign Origin only", map[string]string{"Content-Type": "application/json", "Authorization": auth, "Origin": "http://127.0.0.2:7000"}},
			{"HTML form post", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": auth}},
			{"text/plain simple request", map[string]string{"Content-Type": "text/plain", "Authorization": auth}},
		} {
			r := mustDo(t, c, "POST", base+configPath, strings.NewReader(body), tc.hdr)
			if r.Status < 400 || r.Status >= 500 {
				t.Errorf("%s %s: %d %.200s, want a 4xx refusal", base, tc.name, r.Status, r.Body)
			}
		}
		// GET with would-be parameters changes nothing.
		mustDo(t, c, "GET", base+configPath+"?slow_request_threshold=0.1&responsiveness.slow_request_threshold=0.1", nil, map[string]string{"Authorization": auth})
	}
	if after := p.slowThreshold(t); after != before {
		t.Fatalf("config changed from %v to %v by cross-site requests", before, after)
	}
	// Positive control: the dashboard's own same-origin fetch works.
	r := mustDo(t, c, "POST", p.ProxyURL()+configPath, strings.NewReader(body), map[string]string{
		"Content-Type": "application/json", "Authorization": auth, "Origin": p.ProxyURL(), "Sec-Fetch-Site": "same-origin",
	})
	if r.Status != 200 {
		t.Errorf("same-origin POST with token: %d %.200s", r.Status, r.Body)
	}
}

// TestCase56_HostCheck: DNS rebinding reaches 127.0.0.1 with a foreign Host;
// the admin listener refuses it.
func TestCase56_HostCheck(t *testing.T) {
	t.Parallel()
	needBinary(t)
	p := StartPulsegate(t, map[string]string{"RESPONSIVENESS_UPSTREAM_URL": "http://127.0.0.1:9"})
	p.needEndpoint(t, "GET", configPath, "adminapi config endpoint")
	c := httpClient(t, 30*time.Second)
	_, port, _ := strings.Cut(p.AdminAddr, ":")
	for _, host := range []string{"rebind.example:" + port, "rebind.example", "127.0.0.1.nip.io:" + port} {
		if r := mustDo(t, c, "GET", p.AdminURL()+configPath, nil, map[string]string{"Host": host}); r.Status != 403 {
			t.Errorf("Host %q on the admin listener: %d, want 403", host, r.Status)
		}
	}
	for _, host := range []string{"localhost:" + port, "127.0.0.1:" + port, "[::1]:" + port, "localhost"} {
		if r := mustDo(t, c, "GET", p.AdminURL()+configPath, nil, map[string]string{"Host": host}); r.Status != 200 {
			t.Errorf("Host %q on the admin listener: %d, want 200", host, r.Status)
		}
	}
}

// rawGet sends a byte-exact request line and returns the status and body.
func rawGet(t testing.TB, addr, target string, hdr string) (int, string) {
	t.Helper()
	c := dialRaw(t, addr)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", target, addr, hdr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCase22_AdminPathNormalisation: spellings of admin paths on the proxy
// port are either the admin handler with auth, or the app's; auth and
// routing never disagree, and the app's own /admin pages are the app's.
func TestCase22_AdminPathNormalisation(t *testing.T) {
	t.Parallel()
	g, p, _ := startWithToken(t, "gthread")
	for _, target := range []string{
		"/admin/api/config/responsiveness",
		"/admin/api/config/responsiveness/",
		"//admin/api/config/responsiveness",
		"/admin/api/%63onfig/responsiveness",
		"/admin/./api/config/responsiveness",
		"/admin/api/../api/config/responsiveness",
		"/ADMIN/api/config/responsiveness",
		"/admin/api/config/responsiveness?x=1",
		"/admin/api/config/responsiveness%2f",
	} {
		before := g.AccessCount("")
		status, body := rawGet(t, p.ProxyAddr, target, "")
		forwarded := false
		if status != 401 {
			time.Sleep(200 * time.Millisecond)
			forwarded = g.AccessCount("") > before
		}
		switch {
		case status == 401:
			// The admin handler, asking for the token.
		case forwarded && !strings.Contains(body, "slow_request_threshold"):
			// The app's (a Flask 404 or redirect): fine, nothing leaked.
		case status >= 300 && status < 400:
			// A redirect to the clean path, which then needs the token.
		case !forwarded && (status == 403 || status == 404):
			// pulsegate's admin router claimed the path and refused it
			// without content: nothing served, nothing forwarded.
			t.Logf("%s: pulsegate answered %d itself: %.120s", target, status, body)
		default:
			t.Errorf("%s without token: %d forwarded=%v %.200s: neither the admin handler with auth nor the app", target, status, forwarded, body)
		}
		if strings.Contains(body, "slow_request_threshold") {
			t.Errorf("%s without token served configuration", target)
		}
	}
	before := g.AccessCount("/admin/users")
	status, body := rawGet(t, p.ProxyAddr, "/admin/users", "")
	if status != 200 || !strings.Contains(body, "own admin users page") {
		t.Errorf("/admin/users: %d %.200s, want the app's page", status, body)
	}
	eventually(t, 10*time.Second, "/admin/users reaches the app", func() bool { return g.AccessCount("/admin/users") == before+1 })
}

// The canary password of case 58: every character naive redaction trips on.
const canary = "c@n#ry%P4ss:zz"

// canaryForms are the spellings the canary could leak in.
func canaryForms() []string {
	enc := url.QueryEscape(canary)                 // c%40n%23ry%25P4ss%3Azz
	user := url.UserPassword("u", canary).String() // u:c%40n%23ry%25P4ss%3Azz
	_, pathEnc, _ := strings.Cut(user, ":")
	return []string{canary, enc, strings.ToLower(enc), pathEnc, "c@n#ry", "P4ss:zz", "P4ss%3Azz", "P4ss%3azz", "n#ry%P4"}
}

// TestCase58_NoSecretLeaks: the canary in the MySQL, PostgreSQL and Redis
// URLs (wrong passwords: every probe fails with an auth error) and in the
// admin token; debug logging. Count the canary in logs, check-config, every
// API response, /metrics, the dashboard HTML and a refused start. Goal 0.
func TestCase58_NoSecretLeaks(t *testing.T) {
	t.Parallel()
	needBinary(t)
	g := StartGunicorn(t, "sync")
	enc := url.QueryEscape(canary)
	token := "adm-" + enc + "-tok"
	dsns := map[string]string{
		"mysql":    "mysql://canary:" + enc + "@127.0.0.1:3306/test",
		"postgres": "postgres://canary:" + enc + "@127.0.0.1:5432/test?sslmode=disable",
	}
	redisURL := "redis://canary:" + enc + "@127.0.0.1:6379/0"
	var outputs []struct{ where, text string }
	add := func(where, text string) { outputs = append(outputs, struct{ where, text string }{where, text}) }

	for _, db := range []string{"mysql", "postgres"} {
		env := map[string]string{
			"RESPONSIVENESS_UPSTREAM_URL":        g.URL(),
			"RESPONSIVENESS_DB_DSN":              dsns[db],
			"RESPONSIVENESS_REDIS_URL":           redisURL,
			"RESPONSIVENESS_ADMIN_TOKEN":         token,
			"RESPONSIVENESS_MONITORING_INTERVAL": "1",
			"RESPONSIVENESS_LOG_LEVEL":           "debug",
		}
		p := StartPulsegate(t, env)
		c := httpClient(t, 30*time.Second)
		auth := map[string]string{"Authorization": "Bearer " + token}
		// Some traffic, and time for several failing probe rounds.
		for range 5 {
			mustDo(t, c, "GET", p.ProxyURL()+"/ok", nil, nil)
			mustDo(t, c, "GET", p.ProxyURL()+"/status/500", nil, nil)
		}
		time.Sleep(4 * time.Second)
		for _, path := range []string{
			"/admin/api/health/responsiveness", "/admin/api/performance/responsiveness", configPath,
			configPath + "/audit", "/admin/api/alerts/responsiveness", "/admin/responsiveness/",
		} {
			for _, base := range []string{p.AdminURL(), p.ProxyURL()} {
				r, err := do(t, c, "GET", base+path, nil, auth)
				if err == nil {
					add(db+" GET "+path, string(r.Body)+fmt.Sprint(r.Header))
				}
			}
		}
		// A refused config POST echoes field errors: they must not echo secrets.
		r, err := do(t, c, "POST", p.AdminURL()+configPath, strings.NewReader(`{"database":{"dsn":"mysqlx://x:`+canary+`@h/db"}}`), jsonHdr(auth))
		if err == nil {
			add(db+" POST config (invalid DSN)", string(r.Body))
		}
		m := mustDo(t, c, "GET", p.AdminURL()+"/metrics", nil, nil)
		add(db+" /metrics", string(m.Body))
		// check-config with the same environment.
		cc := exec.Command(binPath, "check-config")
		cc.Env = p.Env
		out, _ := cc.CombinedOutput()
		add(db+" check-config", string(out))
		if !strings.Contains(string(out), "127.0.0.1") {
			t.Errorf("check-config output looks empty:\n%.500s", out)
		}
		p.Stop(t)
		add(db+" logs", strings.Join(p.Raw(), "\n")+p.Stdout())
		if len(p.Raw()) < 10 {
			t.Errorf("only %d log lines at debug level: the leak check saw little", len(p.Raw()))
		}
	}
	// A refused start prints its errors: not the secret.
	bad := exec.Command(binPath, "serve")
	bad.Env = envList(map[string]string{"RESPONSIVENESS_DB_DSN": "mysqlx://canary:" + enc + "@127.0.0.1/db", "RESPONSIVENESS_REDIS_URL": "redis://:" + enc + "@[bad", "RESPONSIVENESS_ADMIN_ADDR": "127.0.0.1:0", "RESPONSIVENESS_LISTEN_ADDR": "127.0.0.1:0"})
	out, err := bad.CombinedOutput()
	if err == nil {
		t.Errorf("serve with an invalid DSN exited 0")
	}
	add("refused start", string(out))

	total := 0
	for _, o := range outputs {
		for _, f := range canaryForms() {
			if n := strings.Count(o.text, f); n > 0 {
				total += n
				i := strings.Index(o.text, f)
				t.Errorf("canary form %q appears %d× in %s: …%s…", f, n, o.where, o.text[max(0, i-120):min(len(o.text), i+60)])
			}
		}
	}
	report(t, "58", fmt.Sprintf("canary password occurrences across %d outputs (logs at debug, check-config, API, /metrics, dashboard, refused start)", len(outputs)), fmt.Sprint(total), "0")
}
