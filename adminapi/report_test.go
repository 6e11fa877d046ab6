package adminapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/report/reporttest"
)

// TestReportEndpoint: GET /admin/api/report/responsiveness over a
// simulated fortnight (real history archive and bbolt store) answers the
// report in each format, refuses bad parameters naming them, needs the
// token like every admin route, and is never forwarded to the app.
func TestReportEndpoint(t *testing.T) {
	sim := reporttest.Simulate(t, t.TempDir(), reporttest.Plant{FillingDisk: true})
	cfg := config.Defaults()
	cfg.Admin.Token = config.Secret(testToken)
	cfg.Backpressure.MaxConcurrency = 8
	api := New(Deps{Config: config.NewHolder(cfg), History: sim.Reader, HistoryEvents: sim.Store,
		Backpressure: func() backpressure.State {
			return backpressure.State{Limit: 8, Rejections: map[string]uint64{"queue_full": 3}}
		},
		Now: func() time.Time { return reporttest.Now }})
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Errorf("forwarded to the app: %s", r.URL) })
	srv := httptest.NewServer(api.ProxyHandler(app))
	defer srv.Close()
	get := func(query string, auth bool) (int, string, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/admin/api/report/responsiveness"+query, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+testToken)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}

	code, ct, body := get("?since=7d", true)
	if code != 200 || ct != "application/json" {
		t.Fatalf("since=7d: %d %s %s", code, ct, body)
	}
	var r struct {
		Since    string `json:"since"`
		Findings []struct{ Kind, Subject string }
		Capacity struct {
			ConcurrencyLimit     *int              `json:"concurrency_limit"`
			RejectionsSinceStart map[string]uint64 `json:"rejections_since_start"`
		} `json:"capacity"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if r.Since != "7d" || len(r.Findings) != 1 || r.Findings[0].Kind != "resource_filling" || r.Findings[0].Subject != "disk_usage" {
		t.Errorf("report: since %q, findings %+v", r.Since, r.Findings)
	}
	if r.Capacity.ConcurrencyLimit == nil || *r.Capacity.ConcurrencyLimit != 8 || r.Capacity.RejectionsSinceStart["queue_full"] != 3 {
		t.Errorf("capacity: %+v", r.Capacity)
	}
	if code, ct, body := get("?since=30d&format=markdown", true); code != 200 || !strings.HasPrefix(ct, "text/markdown") || !strings.Contains(body, "## pulsegate report: last 30d") {
		t.Errorf("markdown: %d %s\n%s", code, ct, body)
	}
	for q, param := range map[string]string{"?since=2w": "since: ", "?since=7d&format=html": "format: ", "?since=7d&scope=galaxy": "scope: "} {
		if code, _, body := get(q, true); code != 400 || !strings.Contains(body, `"error": "`+param) {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
	if code, _, body := get("?since=7d&scope=fleet", true); code != 400 || !strings.Contains(body, "RESPONSIVENESS_STORE_DSN") {
		t.Errorf("fleet without a shared store: %d %s", code, body)
	}
	if code, _, _ := get("?since=7d", false); code != 401 {
		t.Errorf("without the token: %d", code)
	}
}
