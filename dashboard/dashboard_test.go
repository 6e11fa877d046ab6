package dashboard_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pulsegate/pulsegate/adminapi"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/dashboard"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/monitor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newDashboard(t *testing.T, o dashboard.Options) *dashboard.Dashboard {
	t.Helper()
	d, err := dashboard.New(o)
	if err != nil {
		t.Fatalf("dashboard.New: %v", err)
	}
	return d
}

func get(t *testing.T, h http.Handler, path string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var pagePaths = []string{
	"/admin/responsiveness/",
	"/admin/responsiveness/performance",
	"/admin/responsiveness/health",
	"/admin/responsiveness/monitoring",
	"/admin/responsiveness/route?route=%2Fapi%2Fitems%2F%3Aid",
	"/admin/responsiveness/login",
}

var (
	inlineScript = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>`)
	srcAttr      = regexp.MustCompile(`(?i)\s(?:src|href)="([^"]+)"`)
)

// Every page is an HTML shell with the strict CSP, no inline script or
// style, and only same-origin assets that exist.
func TestPagesRenderWithStrictCSP(t *testing.T) {
	d := newDashboard(t, dashboard.Options{})
	for _, p := range pagePaths {
		t.Run(p, func(t *testing.T) {
			r := get(t, d, p)
			b := body(t, r)
			if r.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", r.StatusCode, b)
			}
			if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			want := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
				"object-src 'none'; base-uri 'none'; frame-ancestors 'self'; form-action 'self'"
			if got := r.Header.Get("Content-Security-Policy"); got != want {
				t.Errorf("CSP\n got %q\nwant %q", got, want)
			}
			if r.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("missing X-Content-Type-Options: nosniff")
			}
			if r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", r.Header.Get("Cache-Control"))
			}
			for _, tag := range inlineScript.FindAllString(b, -1) {
				if !strings.Contains(tag, "src=") {
					t.Errorf("inline script tag %q (CSP forbids it)", tag)
				}
			}
			if strings.Contains(b, "<style") || strings.Contains(strings.ToLower(b), " style=") {
				t.Error("inline style in the page (CSP forbids it)")
			}
			for _, m := range srcAttr.FindAllStringSubmatch(b, -1) {
				u := m[1]
				if !strings.HasPrefix(u, "/admin/responsiveness/") {
					t.Errorf("asset or link %q is not under the dashboard prefix", u)
					continue
				}
				if strings.Contains(u, "/static/") {
					if r := get(t, d, u); r.StatusCode != http.StatusOK {
						t.Errorf("page references %s, which answers %d", u, r.StatusCode)
					}
				}
			}
		})
	}
}

// The login form's input has no name, so a form submitted without the
// script (e.g. JavaScript disabled) never puts the token in a URL or body.
func TestLoginFormNeverSubmitsTokenNatively(t *testing.T) {
	d := newDashboard(t, dashboard.Options{})
	b := body(t, get(t, d, "/admin/responsiveness/login"))
	input := regexp.MustCompile(`<input[^>]*id="token"[^>]*>`).FindString(b)
	if input == "" || strings.Contains(input, "name=") {
		t.Fatalf("token input %q: want one without a name attribute", input)
	}
	if !strings.Contains(b, `method="post"`) {
		t.Error("login form is not method=post")
	}
}

func TestStaticAssetsTypedWithETag(t *testing.T) {
	d := newDashboard(t, dashboard.Options{})
	types := map[string]string{
		"/admin/responsiveness/static/js/app.js":     "text/javascript; charset=utf-8",
		"/admin/responsiveness/static/js/widgets.js": "text/javascript; charset=utf-8",
		"/admin/responsiveness/static/widgets.css":   "text/css; charset=utf-8",
		"/admin/responsiveness/static/favicon.svg":   "image/svg+xml",
		"/admin/responsiveness/widget.js":            "text/javascript; charset=utf-8",
	}
	for path, ct := range types {
		r := get(t, d, path)
		b := body(t, r)
		if r.StatusCode != http.StatusOK || len(b) == 0 {
			t.Errorf("%s: status %d, %d bytes", path, r.StatusCode, len(b))
			continue
		}
		if got := r.Header.Get("Content-Type"); got != ct {
			t.Errorf("%s: Content-Type %q, want %q", path, got, ct)
		}
		if r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
		etag := r.Header.Get("ETag")
		if !regexp.MustCompile(`^"[0-9a-f]{24}"$`).MatchString(etag) {
			t.Errorf("%s: ETag %q", path, etag)
		}
		if cc := r.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("%s: Cache-Control %q, want no-cache (revalidate)", path, cc)
		}
		// A browser revalidating with the ETag gets 304 and no body.
		r2 := get(t, d, path, "If-None-Match", etag)
		if r2.StatusCode != http.StatusNotModified || body(t, r2) != "" {
			t.Errorf("%s: revalidation status %d, want 304", path, r2.StatusCode)
		}
	}
	for _, path := range []string{"/admin/responsiveness/static/nope.js", "/admin/responsiveness/static/../templates/layout.html", "/admin/responsiveness/static/"} {
		if r := get(t, d, path); r.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, r.StatusCode)
		}
	}
	// The two spellings of the widget script are the same file.
	a, b := get(t, d, "/admin/responsiveness/widget.js"), get(t, d, "/admin/responsiveness/static/widget.js")
	if a.Header.Get("ETag") != b.Header.Get("ETag") {
		t.Error("widget.js differs between its two paths")
	}
}

// Attacker-controlled text: a URL path with markup is shown as text on
// the 404 page, never as markup.
func TestNotFoundPageEscapesThePath(t *testing.T) {
	d := newDashboard(t, dashboard.Options{})
	for _, evil := range []string{
		"/admin/responsiveness/<script>alert(1)</script>",
		`/admin/responsiveness/"><img src=x onerror=alert(1)>`,
		"/admin/responsiveness/x' onmouseover='alert(1)",
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.Path = evil
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, req)
		r := rec.Result()
		b := body(t, r)
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("%q: status %d, want 404", evil, r.StatusCode)
		}
		if r.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%q: 404 page without CSP", evil)
		}
		for _, raw := range []string{"<script>alert", "<img src=x", "onerror=alert(1)>", "' onmouseover='"} {
			if strings.Contains(b, raw) {
				t.Errorf("%q: raw %q in the HTML", evil, raw)
			}
		}
		if !strings.Contains(b, `id="missing-path"`) || !strings.Contains(b, "alert(1)") {
			t.Errorf("%q: the escaped path is not shown", evil)
		}
	}
}

// The scripts never turn data into markup: no innerHTML and friends, so
// route names, paths and alert notes stay text in the browser too.
func TestScriptsUseNoHTMLSinks(t *testing.T) {
	d := newDashboard(t, dashboard.Options{})
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setAttribute\(['"]on|localStorage|sessionStorage|document\.cookie`)
	n := 0
	for _, name := range d.AssetNames() {
		if !strings.HasSuffix(name, ".js") {
			continue
		}
		n++
		b := body(t, get(t, d, "/admin/responsiveness/static/"+name))
		if name == "js/fleet.js" {
			// The one use of web storage: the scope switch remembers
			// "instance" or "fleet" under one key, never a credential.
			if !strings.Contains(b, "const KEY = 'pulsegate.scope';") {
				t.Errorf("%s: the scope is not kept under the key pulsegate.scope", name)
			}
			b = strings.NewReplacer("localStorage.getItem(KEY)", "", "localStorage.setItem(KEY, s)", "").Replace(b)
		}
		if m := sinks.FindString(b); m != "" {
			t.Errorf("%s uses %s", name, m)
		}
	}
	if n < 5 {
		t.Fatalf("checked %d scripts, expected the dashboard's modules", n)
	}
}

func TestOnlyGETAndHEAD(t *testing.T) {
	d := newDashboard(t, dashboard.Options{})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, httptest.NewRequest(m, "/admin/responsiveness/health", strings.NewReader("{}")))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d Allow %q", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/admin/responsiveness/health", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("HEAD: status %d, %d body bytes", rec.Code, rec.Body.Len())
	}
}

func TestHistoryEndpoint(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	d := newDashboard(t, dashboard.Options{Now: func() time.Time { return now }})
	for i := 0; i < 30; i++ {
		d.History().Record(&monitor.Tick{Time: now.Add(-time.Duration(i) * 10 * time.Second), Figures: map[string]float64{"cpu_usage": 0.5}})
	}
	r := get(t, d, "/admin/responsiveness/api/history?range=1h")
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	var v history.View
	if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.Range != "1h" || len(v.Time) != 30 || len(v.Series["cpu_usage"]) != 30 || *v.Series["cpu_usage"][0] != 0.5 {
		t.Errorf("got range %q, %d points, cpu %v", v.Range, len(v.Time), v.Series["cpu_usage"])
	}
	for _, bad := range []string{"2h", "15", "'><script>"} {
		r := get(t, d, "/admin/responsiveness/api/history?range="+strings.ReplaceAll(bad, "'", "%27"))
		b := body(t, r)
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(b, `"range: want 15m, 1h or 24h"`) {
			t.Errorf("range=%s: %d %s", bad, r.StatusCode, b)
		}
	}
}

// Through the admin API: the login page, assets and widget.js are public;
// pages and the history need auth; the CSP and asset caching survive the
// API's own headers.
func TestBehindAdminAPI(t *testing.T) {
	cfg := config.Defaults()
	cfg.Admin.Token = config.Secret("s3cret-token")
	d := newDashboard(t, dashboard.Options{})
	api := adminapi.New(adminapi.Deps{Config: config.NewHolder(cfg), Dashboard: d})
	h := api.Routes()
	for path, want := range map[string]int{
		"/admin/responsiveness/login":              200,
		"/admin/responsiveness/widget.js":          200,
		"/admin/responsiveness/static/widgets.css": 200,
		"/admin/responsiveness/":                   401,
		"/admin/responsiveness/health":             401,
		"/admin/responsiveness/api/history":        401,
	} {
		r := get(t, h, path)
		if r.StatusCode != want {
			t.Errorf("%s without a token: %d, want %d", path, r.StatusCode, want)
		}
	}
	r := get(t, h, "/admin/responsiveness/monitoring", "Authorization", "Bearer s3cret-token")
	if r.StatusCode != 200 || r.Header.Get("Content-Security-Policy") != dashboard.ContentSecurityPolicy {
		t.Errorf("page with token: %d, CSP %q", r.StatusCode, r.Header.Get("Content-Security-Policy"))
	}
	if strings.Contains(body(t, r), "s3cret-token") {
		t.Error("the token appears in the page")
	}
	r = get(t, h, "/admin/responsiveness/static/js/app.js")
	if r.Header.Get("Cache-Control") != "no-cache" || r.Header.Get("ETag") == "" {
		t.Errorf("asset through the API: Cache-Control %q ETag %q", r.Header.Get("Cache-Control"), r.Header.Get("ETag"))
	}
}

// The default day at 10 s is 8640 points of 80 bytes.
func TestDefaultHistorySize(t *testing.T) {
	d, err := dashboard.New(dashboard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c := d.History().Capacity(); c != 8640 {
		t.Errorf("capacity %d, want 8640", c)
	}
}
