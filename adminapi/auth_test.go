package adminapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// nameAlerts remembers who acknowledged.
type nameAlerts struct {
	mu sync.Mutex
	by []string
}

func (f *nameAlerts) List(state, severity string, limit int) any { return []string{} }
func (f *nameAlerts) Acknowledge(ids []string, note, actor string) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.by = append(f.by, actor)
	return ids, nil
}

func (f *nameAlerts) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.by) == 0 {
		return ""
	}
	return f.by[len(f.by)-1]
}

func whoami(t *testing.T, e *env, h http.Handler, c call) map[string]any {
	t.Helper()
	c.method, c.path = "GET", "/admin/responsiveness/api/whoami"
	w := e.do(t, h, c)
	if w.Code != 200 {
		t.Fatalf("whoami = %d %s", w.Code, w.Body)
	}
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func login(t *testing.T, e *env, h http.Handler, body string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	w := e.do(t, h, call{method: "POST", path: "/admin/responsiveness/login", body: body,
		hdr: map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}})
	for _, c := range w.Result().Cookies() {
		if c.Name == sessionCookie {
			return w, c.Name + "=" + c.Value
		}
	}
	return w, ""
}

// A name given at sign-in rides in the session and is what an
// acknowledgement records; whoami tells the page the viewer can write.
func TestSignInNameIsRecordedOnAcknowledgements(t *testing.T) {
	e := newEnv(t, testToken)
	alerts := &nameAlerts{}
	e.api.d.Alerts = alerts
	h := e.api.ProxyHandler(http.NotFoundHandler())

	w, cookie := login(t, e, h, `{"token":"`+testToken+`","name":"  alice  "}`)
	if w.Code != 200 || cookie == "" {
		t.Fatalf("login = %d %s", w.Code, w.Body)
	}
	if strings.Contains(cookie, testToken) {
		t.Fatal("the token is inside the cookie")
	}
	me := whoami(t, e, h, call{peer: "10.0.0.9:1", hdr: map[string]string{"Cookie": cookie}})
	if me["name"] != "alice" || me["can_write"] != true || me["signed_in"] != true || me["via"] != "session" {
		t.Fatalf("whoami with a session = %v", me)
	}
	ack := e.do(t, h, call{method: "POST", path: "/admin/api/alerts/responsiveness/acknowledge", body: `{"alert_ids":["a1"]}`,
		peer: "10.0.0.9:1", hdr: map[string]string{"Cookie": cookie, "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}})
	if ack.Code != 200 {
		t.Fatalf("acknowledge = %d %s", ack.Code, ack.Body)
	}
	if got := alerts.last(); got != "alice" {
		t.Fatalf("acknowledged by %q; want alice", got)
	}

	// A name cannot be swapped in the cookie: the MAC covers it.
	parts := strings.Split(strings.TrimPrefix(cookie, sessionCookie+"="), ".")
	forged := sessionCookie + "=" + parts[0] + ".bWFsbG9yeQ." + parts[2] // "mallory"
	if w := e.do(t, h, call{method: "GET", path: "/admin/api/health/responsiveness", peer: "10.0.0.9:1", hdr: map[string]string{"Cookie": forged}}); w.Code != 401 {
		t.Fatalf("session with a swapped name = %d; want 401", w.Code)
	}

	// A Bearer client has no name: the fingerprint, as before.
	e.do(t, h, call{method: "POST", path: "/admin/api/alerts/responsiveness/acknowledge", body: `{"alert_ids":["a1"]}`,
		hdr: map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}})
	if got := alerts.last(); !strings.HasPrefix(got, "token:") {
		t.Fatalf("bearer acknowledgement by %q; want token:…", got)
	}

	for _, bad := range []string{strings.Repeat("x", maxNameLen+1), "ali\u0007ce"} {
		b, _ := json.Marshal(map[string]string{"token": testToken, "name": bad})
		if w, c := login(t, e, h, string(b)); w.Code != 400 || c != "" || !strings.Contains(w.Body.String(), "name:") {
			t.Fatalf("login with name %q = %d %s (cookie %q); want 400 naming the field", bad, w.Code, w.Body, c)
		}
	}
}

// Without a token nobody can write, and the page is told so (and how to
// change it) before it offers any control; signed out with a token, the
// login page learns a token is configured.
func TestWhoamiTellsWhetherTheViewerCanWrite(t *testing.T) {
	open := newEnv(t, "")
	h := open.api.ProxyHandler(http.NotFoundHandler())
	me := whoami(t, open, h, call{})
	if me["can_write"] != false || me["can_read"] != true || me["token_configured"] != false || me["via"] != "loopback" {
		t.Fatalf("loopback without a token = %v", me)
	}
	if why, _ := me["why_read_only"].(string); !strings.Contains(why, "RESPONSIVENESS_ADMIN_TOKEN") {
		t.Fatalf("why_read_only = %q; want how to enable writes", why)
	}
	if w, _ := login(t, open, h, `{"token":"anything","name":"bob"}`); w.Code != 403 || !strings.Contains(w.Body.String(), "RESPONSIVENESS_ADMIN_TOKEN") {
		t.Fatalf("login without a configured token = %d %s", w.Code, w.Body)
	}

	locked := newEnv(t, testToken)
	h = locked.api.ProxyHandler(http.NotFoundHandler())
	me = whoami(t, locked, h, call{peer: "10.0.0.9:1"})
	if me["signed_in"] != false || me["can_read"] != false || me["token_configured"] != true {
		t.Fatalf("signed out with a token = %v", me)
	}
}

// With delegated auth, the name is the user the app's auth check names.
func TestDelegatedAuthName(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Cookie") == "s=carol" {
			w.Header().Set("X-Auth-Request-User", "carol")
			w.WriteHeader(204)
			return
		}
		w.WriteHeader(401)
	}))
	defer app.Close()
	e := newEnv(t, testToken)
	alerts := &nameAlerts{}
	e.api.d.Alerts = alerts
	cfg, _ := e.holder.Get()
	next := cfg.Clone()
	next.Admin.AuthURL = app.URL + "/auth"
	if _, err := e.holder.Update(0, next); err != nil {
		t.Fatal(err)
	}
	h := e.api.ProxyHandler(http.NotFoundHandler())
	me := whoami(t, e, h, call{peer: "10.0.0.5:1", hdr: map[string]string{"Cookie": "s=carol"}})
	if me["name"] != "carol" || me["via"] != "delegated" || me["can_write"] != true {
		t.Fatalf("whoami via delegated auth = %v", me)
	}
	w := e.do(t, h, call{method: "POST", path: "/admin/api/alerts/responsiveness/acknowledge", body: `{"alert_ids":["a1"]}`,
		peer: "10.0.0.5:1", hdr: map[string]string{"Cookie": "s=carol", "Content-Type": "application/json"}})
	if w.Code != 200 || alerts.last() != "carol" {
		t.Fatalf("acknowledge = %d, by %q; want carol", w.Code, alerts.last())
	}
}
