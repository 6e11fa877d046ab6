package demo

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAppRoutes(t *testing.T) {
	a := NewApp()
	srv := httptest.NewServer(a)
	defer srv.Close()
	for path, want := range map[string]int{"/": 200, "/api/items/1": 200, "/api/search?q=x": 200, "/admin/users": 200, "/nope": 404} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d; want %d", path, resp.StatusCode, want)
		}
		if path == "/admin/users" && !strings.Contains(string(body), `<script src="/admin/responsiveness/widget.js">`) {
			t.Errorf("the app's admin page does not embed the widget")
		}
	}
	resp, err := http.Post(srv.URL+"/internal/cleanup", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if a.Cleanups() != 1 {
		t.Fatalf("cleanups = %d", a.Cleanups())
	}
}

// Traffic sends requests, bursts, and stops with every request finished.
func TestTrafficRunsAndStops(t *testing.T) {
	a := NewApp()
	srv := httptest.NewServer(a)
	defer srv.Close()
	tr := &Traffic{Base: srv.URL, App: a, RPS: 50, Period: 400 * time.Millisecond, BurstFor: 200 * time.Millisecond, Client: srv.Client()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	tr.Run(ctx)
	if tr.Sent() < 10 {
		t.Fatalf("sent %d requests in 1 s at 50 rps", tr.Sent())
	}
	if a.burst.Load() {
		t.Fatal("burst left on after Run returned")
	}
}

// The app names its release in X-App-Version (what pulsegate reads with
// RESPONSIVENESS_APP_VERSION_HEADER), none until one is set, and a rollout
// switches every following response to the new release.
func TestAppNamesItsRelease(t *testing.T) {
	a := NewApp()
	srv := httptest.NewServer(a)
	defer srv.Close()
	version := func() string {
		resp, err := http.Get(srv.URL + "/api/items/1")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get(VersionHeader)
	}
	if v := version(); v != "" {
		t.Fatalf("%s = %q before any release is set; want none", VersionHeader, v)
	}
	a.SetVersion(ReleaseOld)
	if v := version(); v != ReleaseOld {
		t.Fatalf("%s = %q; want %q", VersionHeader, v, ReleaseOld)
	}
	a.SetVersion(ReleaseNew)
	if v := version(); v != ReleaseNew {
		t.Fatalf("%s = %q after the rollout; want %q", VersionHeader, v, ReleaseNew)
	}
}
