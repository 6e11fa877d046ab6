package dashboard_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/pulsegate/pulsegate/dashboard"
)

// The login page asks for a name (acknowledgements carry it) and the
// token, and the token field has no name attribute, so even a native form
// submission never sends it; the pages load uPlot's stylesheet; the
// not-found page shows no connection state that would never resolve.
func TestLoginAndNotFoundPages(t *testing.T) {
	d := newDashboard(t, dashboard.Options{})
	login := body(t, get(t, d, "/admin/responsiveness/login"))
	if !regexp.MustCompile(`<input id="name"[^>]*required`).MatchString(login) {
		t.Error("login page: no required name field")
	}
	tok := regexp.MustCompile(`<input id="token"[^>]*>`).FindString(login)
	if tok == "" || strings.Contains(tok, "name=") {
		t.Errorf("login page token field %q: want one, without a name attribute", tok)
	}
	if !strings.Contains(login, `id="login-notice"`) {
		t.Error("login page: no place to say up front that no token is configured")
	}
	over := body(t, get(t, d, "/admin/responsiveness/"))
	if !strings.Contains(over, "static/vendor/uplot/uPlot.min.css") || !strings.Contains(over, `id="viewer"`) {
		t.Error("overview: no uPlot stylesheet or viewer slot")
	}
	nf := get(t, d, "/admin/responsiveness/nope")
	if b := body(t, nf); nf.StatusCode != 404 || strings.Contains(b, "connecting") || strings.Contains(b, `id="conn"`) {
		t.Errorf("not-found page: status %d, connection state shown: %v", nf.StatusCode, strings.Contains(b, "connecting"))
	}
}

// The route page names its route (from ?route=, escaped like any text),
// holds the two route cards that js/route.js fills, and links back to the
// performance page; it is not in the navigation.
func TestRoutePage(t *testing.T) {
	d := newDashboard(t, dashboard.Options{})
	r := get(t, d, "/admin/responsiveness/route?route=%2Freports%2F%3Cscript%3Ealert(1)%3C%2Fscript%3E")
	b := body(t, r)
	if r.StatusCode != 200 {
		t.Fatalf("route page: status %d", r.StatusCode)
	}
	if strings.Contains(b, "<script>alert(1)") {
		t.Fatal("route page: the route name reached the page as markup")
	}
	if !strings.Contains(b, "/reports/&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("route page: the route name is not shown as text:\n%s", b)
	}
	for _, want := range []string{`data-page="route"`, `data-widget="route-trends"`, `data-widget="route-releases"`, `href="/admin/responsiveness/performance"`} {
		if !strings.Contains(b, want) {
			t.Errorf("route page: no %s", want)
		}
	}
	if regexp.MustCompile(`href="/admin/responsiveness/route"`).MatchString(b) {
		t.Error("route page: listed in the navigation; only the routes table links it")
	}
	none := body(t, get(t, d, "/admin/responsiveness/route"))
	if !strings.Contains(none, "(none chosen)") {
		t.Error("route page without ?route=: does not say no route is chosen")
	}
}
