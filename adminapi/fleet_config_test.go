package adminapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
)

// fakeFleetConfig stands in for the shared store's fleet configuration:
// it keeps a version, checks expect like the compare-and-set, and applies
// changes to the holder.
type fakeFleetConfig struct {
	mu      sync.Mutex
	holder  *config.Holder
	version int64
	down    bool
	bodies  []string
}

func (f *fakeFleetConfig) State(context.Context) FleetConfigState {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := FleetConfigState{Fleet: "web", Instance: "web-1", Version: f.version, Running: f.version,
		Instances: []FleetConfigInstance{{Instance: "web-1", ConfigVersion: f.version}, {Instance: "web-2", ConfigVersion: f.version - 1, Stale: true}}}
	if f.version > 0 {
		st.UpdatedAt, st.UpdatedByInstance, st.Actor = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "web-1", "token:abc"
	}
	return st
}

func (f *fakeFleetConfig) Change(ctx context.Context, expect int64, body []byte, actor string) (FleetConfigChange, error) {
	f.mu.Lock()
	f.bodies = append(f.bodies, string(body))
	if f.down {
		f.mu.Unlock()
		return FleetConfigChange{}, fmt.Errorf("%w (store unreachable: connection refused)", ErrFleetStoreDown)
	}
	if expect != 0 && expect != f.version {
		f.mu.Unlock()
		return FleetConfigChange{}, fmt.Errorf("%w %d: the fleet configuration is at version %d", ErrFleetConfigStale, expect, f.version)
	}
	cur, _ := f.holder.Get()
	next, err := config.Patch(cur, body)
	if err != nil {
		f.mu.Unlock()
		return FleetConfigChange{}, err
	}
	f.holder.Update(0, next)
	f.version++
	v := f.version
	f.mu.Unlock()
	return FleetConfigChange{Version: v, Changes: config.Diff(cur, next), State: f.State(ctx)}, nil
}

// With a shared store the config routes answer for the fleet: GET carries
// the fleet's version and the "fleet" object (contract C1); POST maps a
// stale version to 409, an unreachable store to 503 and a bad value to
// 400, each changing nothing and audited; a change is audited with the
// instance that took it; the GET document posted back is accepted.
func TestFleetConfigRoutes(t *testing.T) {
	e := newEnv(t, testToken)
	f := &fakeFleetConfig{holder: e.holder}
	e.api.d.FleetConfig = f
	h := e.api.AdminHandler("127.0.0.1:9901")
	hdr := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}
	get := func() map[string]any {
		w := e.do(t, h, call{method: "GET", path: "/admin/api/config/responsiveness", hdr: hdr})
		var doc map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || w.Code != 200 {
			t.Fatalf("GET: %d %s", w.Code, w.Body)
		}
		return doc
	}
	post := func(body string) *httptest.ResponseRecorder {
		return e.do(t, h, call{method: "POST", path: "/admin/api/config/responsiveness", body: body, hdr: hdr})
	}
	doc := get()
	fl, _ := doc["fleet"].(map[string]any)
	if doc["version"] != 0.0 || fl == nil || fl["version"] != 0.0 || fl["updated_at"] != nil || fl["name"] != "web" || fl["instance"] != "web-1" {
		t.Fatalf("GET before any change: version %v fleet %v", doc["version"], fl)
	}

	w := post(`{"version": 0, "responsiveness": {"slow_request_threshold": 0.3}}`)
	var ans struct {
		Version int64 `json:"version"`
	}
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &ans) != nil || ans.Version != 1 {
		t.Fatalf("POST: %d %s", w.Code, w.Body)
	}
	doc = get()
	fl = doc["fleet"].(map[string]any)
	insts, _ := fl["instances"].([]any)
	if doc["version"] != 1.0 || fl["version"] != 1.0 || fl["updated_by_instance"] != "web-1" || fl["actor"] != "token:abc" ||
		fl["updated_at"] != "2026-01-02T03:04:05Z" || len(insts) != 2 {
		t.Fatalf("GET after a change: version %v fleet %v", doc["version"], fl)
	}
	if row := insts[1].(map[string]any); row["instance"] != "web-2" || row["config_version"] != 0.0 || row["stale"] != true {
		t.Errorf("instance row %v", row)
	}

	for _, tc := range []struct {
		desc, body string
		down       bool
		status     int
		mention    string
	}{
		{"stale", `{"version": 9, "responsiveness": {"slow_request_threshold": 0.4}}`, false, 409, "at version 1"},
		{"bad value", `{"responsiveness": {"slow_request_threshold": -1}}`, false, 400, "responsiveness.slow_request_threshold"},
		{"store down", `{"responsiveness": {"slow_request_threshold": 0.4}}`, true, 503, "cannot be changed while the shared store is unreachable"},
	} {
		f.mu.Lock()
		f.down = tc.down
		f.mu.Unlock()
		w := post(tc.body)
		if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.mention) || !strings.Contains(w.Body.String(), "nothing changed") {
			t.Errorf("%s: %d %s; want %d mentioning %q", tc.desc, w.Code, w.Body, tc.status, tc.mention)
		}
		if c, _ := e.holder.Get(); c.Responsiveness.SlowRequestThreshold != 0.3 {
			t.Fatalf("%s changed the configuration", tc.desc)
		}
	}
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()

	// What GET returned, posted back: the read-only "fleet" object is dropped.
	b, _ := json.Marshal(get())
	if w := post(string(b)); w.Code != 200 {
		t.Fatalf("posting the GET document back: %d %s", w.Code, w.Body)
	}
	if last := f.bodies[len(f.bodies)-1]; strings.Contains(last, `"updated_by_instance"`) {
		t.Errorf("the fleet object reached Change: %s", last)
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
			if en.Target == "fleet version 1" && (en.Instance != "web-1" || !strings.HasPrefix(en.Actor, "token:")) {
				t.Errorf("audit entry %+v; want the instance and the caller", en)
			}
		case store.OutcomeRejected:
			refused++
		}
	}
	if ok != 2 || refused != 3 {
		t.Errorf("audit: %d ok, %d refused; want 2 and 3", ok, refused)
	}
}
