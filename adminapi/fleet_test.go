package adminapi

import (
	"encoding/json"
	"strings"
	"testing"
)

// ?scope= is checked before anything is read: a bad value is a 400 naming
// the parameter; fleet without a shared store a 409 naming the variable;
// instance (and no scope) is today's answer.
func TestScopeParameter(t *testing.T) {
	e := newEnv(t, "")
	h := e.api.AdminHandler("127.0.0.1:9901")
	for _, p := range []string{"/admin/api/performance/responsiveness", "/admin/api/health/responsiveness", "/admin/api/alerts/responsiveness"} {
		for _, tc := range []struct {
			q    string
			code int
			want string
		}{
			{"?scope=bogus", 400, `scope: want instance or fleet, got \"bogus\"`},
			{"?scope=fleet", 409, "RESPONSIVENESS_STORE_DSN"},
			{"?scope=instance", 200, ""},
			{"", 200, ""},
		} {
			w := e.do(t, h, call{method: "GET", path: p + tc.q})
			if tc.code == 200 && strings.Contains(p, "health") {
				tc.code = 503 // this env has no verdict: the instance answer as before
			}
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
				t.Errorf("%s%s: %d %s; want %d naming %q", p, tc.q, w.Code, w.Body.String(), tc.code, tc.want)
			}
			if w.Code == 200 {
				var doc map[string]any
				if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
					t.Fatal(err)
				}
				if _, ok := doc["scope"]; ok {
					t.Errorf("%s%s: the instance answer gained a scope field", p, tc.q)
				}
			}
		}
	}
}
