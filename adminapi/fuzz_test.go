package adminapi

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAdminPath: routing and auth agree. A path is pulsegate's exactly
// when its cleaned form is, and cleaning is idempotent.
func FuzzAdminPath(f *testing.F) {
	for _, s := range []string{"/admin/api/config/responsiveness", "//admin/api/health/responsiveness/", "/admin/./api/alerts/responsiveness/acknowledge",
		"/admin/users", "/ADMIN/api/config/responsiveness", "/admin/responsiveness", "/admin/api/../api/performance/responsiveness", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c := cleanPath(p)
		if cleanPath(c) != c {
			t.Fatalf("cleanPath not idempotent: %q → %q → %q", p, c, cleanPath(c))
		}
		if IsAdminPath(p) != IsAdminPath(c) {
			t.Fatalf("IsAdminPath(%q)=%v but IsAdminPath(%q)=%v", p, IsAdminPath(p), c, IsAdminPath(c))
		}
		if IsAdminPath(p) && !strings.HasPrefix(c, "/admin/") {
			t.Fatalf("%q claimed as admin path", p)
		}
	})
}

// FuzzBearer: header parsing never panics and never accepts a token the
// header does not carry.
func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc ", "Basic Zm9vOmJhcg==", "Bearer", "", "Bearer \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{h}
		tok, ok := bearer(r)
		if ok && !strings.Contains(h, tok) {
			t.Fatalf("bearer(%q) = %q", h, tok)
		}
		_ = acceptsJSONish(h)
	})
}

// acceptsJSONish exercises hostAllowed's Host parsing with fuzzed input.
func acceptsJSONish(host string) bool {
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = host
	return hostAllowed(r, "127.0.0.1:9901", []string{"example.test"})
}
