package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/internal/fleettest"
	"github.com/pulsegate/pulsegate/test/chaos"
)

// cfgDoc is the part of the config GET the fleet tests read.
type cfgDoc struct {
	Version        int64 `json:"version"`
	Responsiveness struct {
		SlowRequestThreshold float64 `json:"slow_request_threshold"`
	} `json:"responsiveness"`
	Alerts struct {
		HistorySize int `json:"history_size"`
	} `json:"alerts"`
	Fleet *struct {
		Version           int64   `json:"version"`
		UpdatedAt         *string `json:"updated_at"`
		UpdatedByInstance string  `json:"updated_by_instance"`
		Actor             string  `json:"actor"`
		Instance          string  `json:"instance"`
		RunningVersion    int64   `json:"running_version"`
		Invalid           *string `json:"invalid"`
		StoreError        *string `json:"store_error"`
		Instances         []struct {
			Instance      string `json:"instance"`
			ConfigVersion int64  `json:"config_version"`
			Stale         bool   `json:"stale"`
		} `json:"instances"`
	} `json:"fleet"`
}

// cfgMember is one in-process sidecar of the fleet config test.
type cfgMember struct {
	*fleetMember
	logs *observer.ObservedLogs
}

// call sends one admin request and decodes a JSON answer of any status.
func (m *cfgMember) call(t *testing.T, method, path, body string, into any) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+m.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+fleetToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s %s: %v", m.name, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s %s %s: %d %v: %s", m.name, method, path, resp.StatusCode, err, b)
		}
	}
	return resp.StatusCode
}

func (m *cfgMember) config(t *testing.T) cfgDoc {
	t.Helper()
	var d cfgDoc
	if code := m.call(t, "GET", "/admin/api/config/responsiveness", "", &d); code != 200 {
		t.Fatalf("%s config GET: %d", m.name, code)
	}
	return d
}

// errDoc is an error answer.
type errDoc struct {
	Error   string   `json:"error"`
	Details []string `json:"details"`
}

func (e errDoc) text() string { return e.Error + " " + strings.Join(e.Details, " ") }

// TestFleetConfigLive: two and then three in-process sidecars share one
// real MariaDB and one real PostgreSQL database. A POST on #1 is stored
// as the fleet's next version and #2 runs it within one monitoring
// interval; a stale version is a 409; a bad value or a secret is a 400
// naming the field; a restarted sidecar starts from the stored version; an
// invalid stored version is refused (logged) and the sidecars keep theirs;
// deleting the stored row returns every sidecar to its files; a sidecar
// whose store is unreachable at start starts on its files, answers a POST
// with 503 and changes nothing, and runs the fleet's newer version once
// the store is back.
func TestFleetConfigLive(t *testing.T) {
	if testing.Short() {
		t.Skip("real databases")
	}
	eachFleetDB(t, testFleetConfig)
}

func testFleetConfig(t *testing.T, d fleettest.DB) {
	leaks := goleak.IgnoreCurrent()
	dbName := d.Private(t, "pulsegate_i11cfg")
	// sw carries #1 and #2 to the store; sw3 carries #3, cut at its start.
	sw, err := chaos.New(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	sw3, err := chaos.New(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sw3.Close()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	defer upstream.Close()

	const interval = time.Second
	fleet := "i11cfg-" + d.Name
	start := func(name, storeAddr string) *cfgMember {
		t.Helper()
		cfg := config.Defaults()
		cfg.Proxy.UpstreamURL = upstream.URL
		cfg.Proxy.ListenAddr, cfg.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Proxy.DrainDelay = 0
		cfg.Admin.Token = config.Secret(fleetToken)
		cfg.DataDir = t.TempDir()
		cfg.Responsiveness.MonitoringInterval = config.Seconds(interval.Seconds())
		cfg.Store.DSN = config.Secret(d.DSN(storeAddr, dbName))
		cfg.Instance, cfg.Fleet = name, fleet
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		core, logs := observer.New(zapcore.InfoLevel)
		a, err := build(cfg, zap.New(core), zap.NewAtomicLevel(), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		m := &cfgMember{fleetMember: &fleetMember{a: a, name: name, proxy: a.proxyLn.Addr().String(),
			admin: a.adminLn.Addr().String(), cancel: cancel, done: make(chan int, 1)}, logs: logs}
		go func() { m.done <- a.serve(ctx, nil) }()
		return m
	}
	var members []*cfgMember
	stopped := map[*cfgMember]bool{}
	defer func() {
		for _, m := range members {
			if !stopped[m] {
				m.stop(t)
			}
		}
		upstream.Close()
		sw.Close()
		sw3.Close()
		goleak.VerifyNone(t, leaks, goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
	}()
	m1 := start("i11cfg-a", sw.Addr())
	m2 := start("i11cfg-b", sw.Addr())
	members = append(members, m1, m2)

	// waitFor polls m's config GET until ok, for at most within.
	waitFor := func(m *cfgMember, within time.Duration, what string, ok func(cfgDoc) bool) (cfgDoc, time.Duration) {
		t.Helper()
		begin := time.Now()
		for {
			doc := m.config(t)
			if ok(doc) {
				return doc, time.Since(begin)
			}
			if time.Since(begin) > within {
				t.Fatalf("%s: %s not seen within %s: %+v (fleet %+v)", m.name, what, within, doc, doc.Fleet)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Nothing stored yet: version 0, every sidecar on its files.
	doc := m1.config(t)
	if doc.Version != 0 || doc.Fleet == nil || doc.Fleet.Version != 0 || doc.Fleet.UpdatedAt != nil || doc.Fleet.Instance != "i11cfg-a" ||
		doc.Responsiveness.SlowRequestThreshold != 5 {
		t.Fatalf("before any change: %+v fleet %+v", doc, doc.Fleet)
	}

	// POST on #1: stored as version 1 and applied there at once...
	var post struct {
		Version         int64    `json:"version"`
		RestartRequired []string `json:"restart_required"`
		Changes         []struct {
			Key, Old, New string
		} `json:"changes"`
	}
	if code := m1.call(t, "POST", "/admin/api/config/responsiveness",
		`{"version": 0, "responsiveness": {"slow_request_threshold": 0.3}}`, &post); code != 200 || post.Version != 1 {
		t.Fatalf("POST on #1: %d %+v", code, post)
	}
	if len(post.Changes) != 1 || post.Changes[0].Key != "responsiveness.slow_request_threshold" {
		t.Errorf("changes %+v", post.Changes)
	}
	if c, _ := m1.a.holder.Get(); c.Responsiveness.SlowRequestThreshold != 0.3 {
		t.Errorf("#1 runs %v after its own POST", c.Responsiveness.SlowRequestThreshold)
	}
	// ... and #2 runs it within one monitoring interval.
	doc, took := waitFor(m2, interval, "version 1", func(d cfgDoc) bool {
		return d.Version == 1 && d.Responsiveness.SlowRequestThreshold == 0.3
	})
	t.Logf("%s: #2 ran the version posted on #1 after %s (interval %s)", d.Name, took.Round(time.Millisecond), interval)
	if f := doc.Fleet; f.UpdatedByInstance != "i11cfg-a" || !strings.HasPrefix(f.Actor, "token:") || f.UpdatedAt == nil || f.RunningVersion != 1 {
		t.Errorf("#2 fleet object %+v", f)
	}
	// Both heartbeats report version 1 (GET's instances come from them).
	waitFor(m1, 5*interval, "both instances on version 1", func(d cfgDoc) bool {
		n := 0
		for _, in := range d.Fleet.Instances {
			if in.ConfigVersion == 1 && !in.Stale {
				n++
			}
		}
		return n == 2
	})

	// The audit log (shared) names the instance that took the change and the caller.
	var audit struct {
		Entries []struct {
			Actor, Action, Outcome, Target, Instance string
		} `json:"entries"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m2.call(t, "GET", "/admin/api/config/responsiveness/audit", "", &audit)
		i := slices.IndexFunc(audit.Entries, func(e struct{ Actor, Action, Outcome, Target, Instance string }) bool {
			return e.Action == "config.update" && e.Target == "fleet version 1"
		})
		if i >= 0 {
			if e := audit.Entries[i]; e.Instance != "i11cfg-a" || !strings.HasPrefix(e.Actor, "token:") || e.Outcome != "ok" {
				t.Errorf("audit entry %+v", e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit entry for fleet version 1 in %+v", audit.Entries)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A stale version: 409, nothing changes; a valid one on #2 moves on.
	var e errDoc
	if code := m2.call(t, "POST", "/admin/api/config/responsiveness", `{"version": 7, "alerts": {"history_size": 50}}`, &e); code != 409 ||
		!strings.Contains(e.Error, "version 1") {
		t.Fatalf("stale POST: %d %+v", code, e)
	}
	if code := m2.call(t, "POST", "/admin/api/config/responsiveness", `{"version": 1, "alerts": {"history_size": 50}}`, &post); code != 200 || post.Version != 2 {
		t.Fatalf("POST on #2: %d %+v", code, post)
	}
	if code := m1.call(t, "POST", "/admin/api/config/responsiveness", `{"version": 1, "alerts": {"history_size": 60}}`, &e); code != 409 {
		t.Fatalf("POST on #1 with the version #2 already moved past: %d %+v", code, e)
	}
	// Bad input: one clear error naming the field, nothing stored.
	for body, field := range map[string]string{
		`{"responsiveness": {"slow_request_threshold": -1}}`: "responsiveness.slow_request_threshold",
		`{"admin": {"token": "another-token-123"}}`:          "admin.token",
		`{"instance": "renamed"}`:                            "instance",
	} {
		e = errDoc{}
		if code := m1.call(t, "POST", "/admin/api/config/responsiveness", body, &e); code != 400 || !strings.Contains(e.text(), field) {
			t.Errorf("POST %s: %d %+v; want 400 naming %s", body, code, e, field)
		}
	}
	doc, _ = waitFor(m1, 2*interval, "version 2", func(d cfgDoc) bool { return d.Version == 2 && d.Alerts.HistorySize == 50 })
	if doc.Responsiveness.SlowRequestThreshold != 0.3 {
		t.Errorf("version 2 lost version 1's change: %+v", doc)
	}

	// A setting read at start is stored too and reported as restart_required.
	if code := m1.call(t, "POST", "/admin/api/config/responsiveness", `{"proxy": {"max_header_bytes": 32768}}`, &post); code != 200 ||
		post.Version != 3 || !slices.Contains(post.RestartRequired, "proxy.max_header_bytes") {
		t.Fatalf("POST of a restart setting: %d %+v", code, post)
	}

	// Restart #2: it starts from the stored version (before it serves).
	m2.stop(t)
	stopped[m2] = true
	m2b := start("i11cfg-b", sw.Addr())
	members = append(members, m2b)
	if c, _ := m2b.a.holder.Get(); c.Responsiveness.SlowRequestThreshold != 0.3 || c.Alerts.HistorySize != 50 || c.Proxy.MaxHeaderBytes != 32768 ||
		m2b.a.proxySrv.MaxHeaderBytes != 32768 || m2b.a.configVersion() != 3 {
		t.Fatalf("restarted #2 starts with slow %v history %d max_header_bytes %d (server %d) version %d; want version 3's",
			c.Responsiveness.SlowRequestThreshold, c.Alerts.HistorySize, c.Proxy.MaxHeaderBytes, m2b.a.proxySrv.MaxHeaderBytes, m2b.a.configVersion())
	}
	if doc := m2b.config(t); doc.Version != 3 || doc.Fleet.RunningVersion != 3 {
		t.Fatalf("restarted #2 GET %+v", doc.Fleet)
	}

	// An invalid stored version (written by hand): refused and logged on
	// every sidecar, each keeps running version 3.
	db, err := sql.Open(d.Driver, d.Open(dbName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := func(s string) string {
		if d.Driver == "pgx" {
			return strings.NewReplacer("?1", "$1", "?2", "$2").Replace(s)
		}
		return strings.NewReplacer("?1", "?", "?2", "?").Replace(s)
	}
	if _, err := db.Exec(q(`UPDATE pulsegate_fleet_config SET version = 4, doc = ?1 WHERE fleet = ?2`),
		`{"responsiveness": {"memory_warning_threshold": 2}}`, fleet); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*cfgMember{m1, m2b} {
		doc, _ := waitFor(m, 2*interval, "version 4 refused", func(d cfgDoc) bool { return d.Version == 4 && d.Fleet.Invalid != nil })
		if doc.Fleet.RunningVersion != 3 || doc.Responsiveness.SlowRequestThreshold != 0.3 || !strings.Contains(*doc.Fleet.Invalid, "memory_warning_threshold") {
			t.Errorf("%s with an invalid stored version: %+v", m.name, doc.Fleet)
		}
		logged := m.logs.FilterMessage("fleet_config_invalid").All()
		if len(logged) != 1 || !slices.Contains(logged[0].ContextMap()["fields"].([]any), any("responsiveness.memory_warning_threshold")) {
			t.Errorf("%s logged %v; want one fleet_config_invalid naming the field", m.name, logged)
		}
	}

	// Delete the stored row: every sidecar is back on its files.
	if _, err := db.Exec(q(`DELETE FROM pulsegate_fleet_config WHERE fleet = ?1`), fleet); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*cfgMember{m1, m2b} {
		doc, _ := waitFor(m, 2*interval, "the files", func(d cfgDoc) bool {
			return d.Version == 0 && d.Fleet.RunningVersion == 0 && d.Responsiveness.SlowRequestThreshold == 5 && d.Alerts.HistorySize == 1000
		})
		if doc.Fleet.Invalid != nil {
			t.Errorf("%s: still invalid: %s", m.name, *doc.Fleet.Invalid)
		}
	}

	// #3 starts while its store is unreachable: on its files, serving; a
	// POST there is a 503 and changes nothing.
	sw3.Set(chaos.Fault{Mode: chaos.Reset, Bytes: 0})
	m3 := start("i11cfg-c", sw3.Addr())
	members = append(members, m3)
	doc = m3.config(t)
	if doc.Version != 0 || doc.Fleet.StoreError == nil {
		t.Fatalf("#3 with its store down: %+v", doc.Fleet)
	}
	e = errDoc{}
	if code := m3.call(t, "POST", "/admin/api/config/responsiveness", `{"responsiveness": {"slow_request_threshold": 0.7}}`, &e); code != 503 ||
		!strings.Contains(e.Error, "cannot be changed while the shared store is unreachable") {
		t.Fatalf("POST with the store down: %d %+v", code, e)
	}
	if c, _ := m3.a.holder.Get(); c.Responsiveness.SlowRequestThreshold != 5 {
		t.Fatalf("the refused POST changed #3: %v", c.Responsiveness.SlowRequestThreshold)
	}
	// Meanwhile the fleet moves on (a row recreated: version 1 again).
	if code := m1.call(t, "POST", "/admin/api/config/responsiveness", `{"version": 0, "responsiveness": {"slow_request_threshold": 0.9}}`, &post); code != 200 || post.Version != 1 {
		t.Fatalf("POST on #1: %d %+v", code, post)
	}
	waitFor(m2b, interval, "the recreated version 1", func(d cfgDoc) bool { return d.Version == 1 && d.Responsiveness.SlowRequestThreshold == 0.9 })
	// The store is back for #3: the fleet's version wins over its files.
	sw3.Set(chaos.Fault{Mode: chaos.Pass})
	back := time.Now()
	waitFor(m3, 10*time.Second, "the fleet's version once the store is back", func(d cfgDoc) bool {
		return d.Version == 1 && d.Fleet.RunningVersion == 1 && d.Responsiveness.SlowRequestThreshold == 0.9
	})
	t.Logf("%s: #3 ran the fleet's version %s after its store came back", d.Name, time.Since(back).Round(time.Millisecond))
}
