package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// post is what a POST does on a sidecar with base as its files and prev as
// the stored overlay: the new overlay, and what that sidecar then runs.
func post(t *testing.T, base *Config, prev, body string) (string, *Config) {
	t.Helper()
	cur, err := ApplyOverlay(base, []byte(prev))
	if err != nil {
		t.Fatal(err)
	}
	next, err := Patch(cur, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := MergeOverlay([]byte(prev), cur, next, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	run, err := ApplyOverlay(base, doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(doc), run
}

// The overlay holds only the keys changed live; every other setting of
// each sidecar stays its own files'.
func TestOverlayHoldsOnlyTheLiveChanges(t *testing.T) {
	base := withSecrets()
	doc, run := post(t, base, "", `{"responsiveness": {"slow_request_threshold": 0.3}, "log": {"level": "info"}}`)
	if doc != `{"responsiveness":{"slow_request_threshold":0.3}}` {
		t.Fatalf("overlay %s; want only the changed key (log.level was already info)", doc)
	}
	if run.Responsiveness.SlowRequestThreshold != 0.3 || run.Admin.Token != base.Admin.Token {
		t.Fatalf("ran %v, token kept %v", run.Responsiveness.SlowRequestThreshold, run.Admin.Token == base.Admin.Token)
	}
	doc, run = post(t, base, doc, `{"proxy": {"route_patterns": ["/a/<id>"]}, "alerts": {"history_size": 50}}`)
	if doc != `{"alerts":{"history_size":50},"proxy":{"route_patterns":["/a/<id>"]},"responsiveness":{"slow_request_threshold":0.3}}` {
		t.Fatalf("overlay %s; want the earlier key kept and the new ones added", doc)
	}
	// Another sidecar with other files: only the overlay's keys move.
	other := Defaults()
	other.Responsiveness.MemoryWarningThreshold = 0.5
	got, err := ApplyOverlay(other, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got.Responsiveness.MemoryWarningThreshold != 0.5 || got.Responsiveness.SlowRequestThreshold != 0.3 ||
		got.Alerts.HistorySize != 50 || !reflect.DeepEqual(got.Proxy.RoutePatterns, []string{"/a/<id>"}) {
		t.Fatalf("other sidecar runs %+v", got.Responsiveness)
	}
	// No overlay: the files.
	if c, err := ApplyOverlay(other, nil); err != nil || c != other {
		t.Fatalf("nil overlay: %v", err)
	}
	if c, err := ApplyOverlay(other, []byte("null")); err != nil || c != other {
		t.Fatalf("null overlay: %v", err)
	}
	_ = run
}

// Secrets, instance and fleet never enter the overlay: a POST changing one
// is refused naming it; a stored overlay naming one is refused.
func TestOverlayKeepsSidecarSettingsOut(t *testing.T) {
	base := withSecrets()
	for _, body := range []string{`{"admin": {"token": "new-token-456"}}`, `{"instance": "web-9"}`, `{"fleet": "other"}`} {
		next, err := Patch(base, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		_, err = MergeOverlay(nil, base, next, []byte(body))
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Errors) != 1 {
			t.Fatalf("%s: %v; want one field error", body, err)
		}
		if strings.Contains(err.Error(), "new-token-456") {
			t.Fatalf("the error repeats the secret: %v", err)
		}
		t.Logf("%s: %v", body, err)
	}
	for doc, key := range map[string]string{
		`{"admin": {"token": "x"}}`:                              "admin.token (RESPONSIVENESS_ADMIN_TOKEN)",
		`{"instance": "web-9"}`:                                  "instance (RESPONSIVENESS_INSTANCE)",
		`{"responsiveness": {"slow_request_threshold": -1}}`:     "responsiveness.slow_request_threshold",
		`{"responsiveness": {"no_such_setting": 1}}`:             "responsiveness.no_such_setting",
		`{"version": 3, "log": {"level": "debug"}}`:              "version",
		`{"responsiveness": {"memory_warning_threshold": 0.99}}`: "responsiveness.memory_warning_threshold",
	} {
		_, err := ApplyOverlay(base, []byte(doc))
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("overlay %s: %v; want an error naming %s", doc, err, key)
		}
	}
}

// A stored key that a POST names again is rewritten even when its value
// does not change here (so a POST can repair a stored value this sidecar
// never ran); unknown stored keys are kept as stored.
func TestOverlayRewritesNamedKeys(t *testing.T) {
	base := Defaults()
	prev := `{"alerts":{"history_size":0},"zzz":{"future_setting":true}}`
	body := `{"alerts": {"history_size": 1000}}`
	next, err := Patch(base, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := MergeOverlay([]byte(prev), base, next, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if string(doc) != `{"alerts":{"history_size":1000},"zzz":{"future_setting":true}}` {
		t.Fatalf("overlay %s", doc)
	}
}
