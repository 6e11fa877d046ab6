package main

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/adminapi"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/report/reporttest"
)

// reportSidecar serves the admin API of a simulated sidecar (real history
// archive and bbolt store, see report/reporttest) behind a token.
func reportSidecar(t *testing.T, plant reporttest.Plant) *httptest.Server {
	t.Helper()
	sim := reporttest.Simulate(t, t.TempDir(), plant)
	cfg := config.Defaults()
	cfg.Admin.Token = config.Secret("report-token")
	api := adminapi.New(adminapi.Deps{Config: config.NewHolder(cfg), History: sim.Reader, HistoryEvents: sim.Store,
		Now: func() time.Time { return reporttest.Now }})
	srv := httptest.NewServer(api.Routes())
	t.Cleanup(srv.Close)
	return srv
}

// TestReportCommandNamesPlantedProblems: `pulsegate report --since 7d
// --format json` against a sidecar whose week has a slow release, a
// flapping threshold and a filling disk names all three; against a
// steady week it names none.
func TestReportCommandNamesPlantedProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant reporttest.Plant
		want  []string
	}{
		{"planted", reporttest.Plant{FillingDisk: true, FlappingCPU: true, SlowRelease: true},
			[]string{"flapping_rule cpu_usage", "resource_filling disk_usage", "release_regression " + reporttest.SlowRoute}},
		{"steady", reporttest.Plant{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := reportSidecar(t, tc.plant)
			code, out, stderr := runCmd(t, nil, "report", "--since", "7d", "--format", "json", "--admin", srv.URL, "--token", "report-token")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var r struct {
				Since    string `json:"since"`
				Findings []struct {
					Kind, Subject, Release, Message string
				} `json:"findings"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			got := map[string]string{}
			for _, f := range r.Findings {
				got[f.Kind+" "+f.Subject] = f.Release
			}
			for _, w := range tc.want {
				if _, ok := got[w]; !ok {
					t.Errorf("finding %q missing; findings: %+v", w, r.Findings)
				}
			}
			if rel, ok := got["release_regression "+reporttest.SlowRoute]; ok && rel != reporttest.SlowRelease {
				t.Errorf("the slow release is named %q, want %q", rel, reporttest.SlowRelease)
			}
			if tc.want == nil && len(r.Findings) != 0 {
				t.Errorf("a steady week has findings: %+v", r.Findings)
			}
		})
	}
}

// TestReportCommandFormats: text and markdown render the sidecar's report;
// a bad --since or --format is refused naming the flag, before any request.
func TestReportCommandFormats(t *testing.T) {
	srv := reportSidecar(t, reporttest.Plant{FillingDisk: true})
	for format, want := range map[string]string{"text": "THRESHOLD EFFECTIVENESS", "markdown": "### Threshold effectiveness"} {
		code, out, stderr := runCmd(t, nil, "report", "--since", "24h", "--format", format, "--admin", srv.URL, "--token", "report-token")
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "last 24h") {
			t.Errorf("%s: exit %d (%s):\n%s", format, code, stderr, out)
		}
	}
	for _, args := range [][]string{{"--since", "2w"}, {"--format", "html"}} {
		code, _, stderr := runCmd(t, nil, append([]string{"report", "--admin", "http://127.0.0.1:1"}, args...)...)
		if code != 2 || !strings.Contains(stderr, args[0]+":") {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming %s", args, code, stderr, args[0])
		}
	}
	// Like `pulsegate status`, the admin address and token default to the
	// sidecar's own environment.
	env := []string{"RESPONSIVENESS_ADMIN_ADDR=" + strings.TrimPrefix(srv.URL, "http://"), "RESPONSIVENESS_ADMIN_TOKEN=report-token"}
	if code, out, stderr := runCmd(t, env, "report", "--since", "7d"); code != 0 || !strings.Contains(out, "last 7d") {
		t.Errorf("from the environment: exit %d (%s):\n%s", code, stderr, out)
	}
	// Without the token the sidecar refuses, and the command says so.
	code, _, stderr := runCmd(t, nil, "report", "--admin", srv.URL)
	if code != 1 || !strings.Contains(stderr, "401") {
		t.Errorf("no token: exit %d, %q", code, stderr)
	}
	// No fleet without a shared store.
	code, _, stderr = runCmd(t, nil, "report", "--fleet", "--admin", srv.URL, "--token", "report-token")
	if code != 1 || !strings.Contains(stderr, "RESPONSIVENESS_STORE_DSN") {
		t.Errorf("--fleet: exit %d, %q", code, stderr)
	}
}
