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
