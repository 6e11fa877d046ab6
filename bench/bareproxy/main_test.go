package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestForwardsAndDoesNotTrustClientForwardingHeaders(t *testing.T) {
	var gotXFF, gotPath string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotXFF, gotPath = r.Header.Get("X-Forwarded-For"), r.URL.Path
		_, _ = io.WriteString(w, "from upstream")
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	rp := newProxy(target, 16, time.Second)
	defer rp.Transport.(*http.Transport).CloseIdleConnections()
	px := httptest.NewServer(rp)
	defer px.Close()

	req, _ := http.NewRequest(http.MethodGet, px.URL+"/a/b", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := px.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "from upstream" || gotPath != "/a/b" {
		t.Fatalf("status %d body %q path %q", resp.StatusCode, body, gotPath)
	}
	if gotXFF != "127.0.0.1" {
		t.Fatalf("X-Forwarded-For %q: want the socket peer only, not the client-sent value", gotXFF)
	}
}
