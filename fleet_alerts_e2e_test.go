package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/alerts"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/internal/fleettest"
	"github.com/pulsegate/pulsegate/test/chaos"
)

// fleetAlertDoc is an alert of the instance or the fleet answer.
type fleetAlertDoc struct {
	ID             string  `json:"id"`
	Key            string  `json:"key"`
	State          string  `json:"state"`
	AcknowledgedBy string  `json:"acknowledged_by"`
	AckNote        string  `json:"ack_note"`
	AcknowledgedAt *string `json:"acknowledged_at"`
	Instances      []struct {
		Instance   string  `json:"instance"`
		Since      *string `json:"since"`
		LastSeen   string  `json:"last_seen"`
		ResolvedAt *string `json:"resolved_at"`
	} `json:"instances"`
}

type alertsDoc struct {
	Scope  string          `json:"scope"`
	Alerts []fleetAlertDoc `json:"alerts"`
}

func (d alertsDoc) find(key string) (fleetAlertDoc, bool) {
	for _, a := range d.Alerts {
		if a.Key == key {
			return a, true
		}
	}
	return fleetAlertDoc{}, false
}

func (m *fleetMember) post(t *testing.T, path string, body any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", "http://"+m.admin+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+fleetToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", m.name, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// Two in-process sidecars sharing one real store (MariaDB and PostgreSQL),
// both probing an app database that is down: the probe_down alert fires
// on both and is one fleet alert with one id; acknowledged on #2, #1's
// API and #1's Alertmanager push show the acknowledgement; when the
// database is back the fleet alert resolves.
func TestFleetAlertsAcrossSidecars(t *testing.T) {
	if testing.Short() {
		t.Skip("real databases")
	}
	eachFleetDB(t, testFleetAlertsAcross)
}

func testFleetAlertsAcross(t *testing.T, d fleettest.DB) {
	leaks := goleak.IgnoreCurrent()
	dbName := d.Private(t, "pulsegate_i11alerts")
	// The app's database, probed by both sidecars through a switch: reset
	// (down) first, passed through later.
	appDB, err := chaos.New("127.0.0.1:3306")
	if err != nil {
		t.Fatal(err)
	}
	defer appDB.Close()
	appDB.Set(chaos.Fault{Mode: chaos.Reset, Bytes: 0})
	// The shared store, behind a switch of its own (cut later).
	storeSw, err := chaos.New(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer storeSw.Close()

	var amMu sync.Mutex
	var pushed []alerts.AlertmanagerAlert
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var as []alerts.AlertmanagerAlert
		if json.NewDecoder(r.Body).Decode(&as) == nil {
			amMu.Lock()
			pushed = append(pushed, as...)
			amMu.Unlock()
		}
	}))
	defer am.Close()
	pushedAck := func(instance, id, by string) bool {
		amMu.Lock()
		defer amMu.Unlock()
		for _, a := range pushed {
			if a.Labels["instance"] == instance && a.Annotations["alert_id"] == id && a.Annotations["acknowledged_by"] == by && a.Annotations["ack_note"] == "looking" {
				return true
			}
		}
		return false
	}

	fleet := "i11alerts-" + d.Name
	var members []*fleetMember
	for _, name := range []string{"i11alerts-a", "i11alerts-b"} {
		cfg := config.Defaults()
		cfg.Proxy.UpstreamURL = "http://127.0.0.1:1"
		cfg.Proxy.ListenAddr, cfg.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Proxy.DrainDelay = 0
		cfg.Admin.Token = config.Secret(fleetToken)
		cfg.DataDir = t.TempDir()
		cfg.Responsiveness.MonitoringInterval = 1
		cfg.Store.DSN = config.Secret(d.DSN(storeSw.Addr(), dbName))
		cfg.Instance, cfg.Fleet = name, fleet
		cfg.Database.DSN = config.Secret("mysql://root@" + appDB.Addr() + "/test")
		cfg.Alerts.AlertmanagerURL = config.Secret(am.URL)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		a, err := build(cfg, zap.NewNop(), zap.NewAtomicLevel(), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		m := &fleetMember{a: a, name: name, proxy: a.proxyLn.Addr().String(), admin: a.adminLn.Addr().String(),
			cancel: cancel, done: make(chan int, 1)}
		go func() { m.done <- a.serve(ctx, nil) }()
		members = append(members, m)
	}
	defer func() {
		for _, m := range members {
			m.stop(t)
		}
		am.Close()
		appDB.Close()
		storeSw.Close()
		goleak.VerifyNone(t, leaks, goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
	}()
	const key = "probe_down:database_manager"
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Fires on both: one fleet alert, both instances, one id.
	var fdoc alertsDoc
	wait("one fleet alert seen by both instances", func() bool {
		if members[0].get(t, "/admin/api/alerts/responsiveness?scope=fleet&state=active", &fdoc) != 200 {
			return false
		}
		a, ok := fdoc.find(key)
		return ok && len(a.Instances) == 2 && a.Instances[0].ResolvedAt == nil && a.Instances[1].ResolvedAt == nil
	})
	fa, _ := fdoc.find(key)
	if fdoc.Scope != "fleet" || fa.Instances[0].Since == nil {
		t.Errorf("fleet answer: %+v", fdoc)
	}
	id := fa.ID
	// Each sidecar's own answer shows the fleet's id (from its next poll on).
	for _, m := range members {
		wait(m.name+" serving the fleet id", func() bool {
			var own alertsDoc
			m.get(t, "/admin/api/alerts/responsiveness?state=active", &own)
			a, ok := own.find(key)
			return ok && a.ID == id
		})
	}

	var onB alertsDoc
	// Acknowledged on b with the fleet id → a shows it, and a's push carries it.
	if code, body := members[1].post(t, "/admin/api/alerts/responsiveness/acknowledge", map[string]any{"alert_ids": []string{id}, "note": "looking"}); code != 200 {
		t.Fatalf("ack on b: %d %s", code, body)
	}
	var onA alertsDoc
	wait("a shows the alert acknowledged", func() bool {
		members[0].get(t, "/admin/api/alerts/responsiveness?state=active", &onA)
		a, ok := onA.find(key)
		return ok && a.State == "acknowledged" && a.AckNote == "looking" && a.AcknowledgedBy != "" && a.AcknowledgedAt != nil
	})
	a, _ := onA.find(key)
	wait("a's Alertmanager push with the acknowledgement", func() bool { return pushedAck("i11alerts-a", a.ID, a.AcknowledgedBy) })
	wait("the fleet answer acknowledged", func() bool {
		members[0].get(t, "/admin/api/alerts/responsiveness?scope=fleet&state=acknowledged", &fdoc)
		f, ok := fdoc.find(key)
		return ok && f.ID == id && f.AckNote == "looking"
	})

	// The database is back: resolved on both, so resolved for the fleet.
	appDB.Set(chaos.Fault{Mode: chaos.Pass})
	wait("the fleet alert resolved", func() bool {
		members[1].get(t, "/admin/api/alerts/responsiveness?scope=fleet&state=resolved", &fdoc)
		f, ok := fdoc.find(key)
		return ok && f.ID == id && len(f.Instances) == 2 && f.Instances[0].ResolvedAt != nil && f.Instances[1].ResolvedAt != nil
	})

	// Down again: a new occurrence on both. Then the store is cut: the ack
	// on b answers at once and shows on b; when the store is back it is
	// in the store and a shows it.
	appDB.Set(chaos.Fault{Mode: chaos.Reset, Bytes: 0})
	var id2 string
	wait("a new fleet occurrence on both", func() bool {
		if members[0].get(t, "/admin/api/alerts/responsiveness?scope=fleet&state=firing", &fdoc) != 200 {
			return false
		}
		f, ok := fdoc.find(key)
		id2 = f.ID
		return ok && f.ID != id && len(f.Instances) == 2 && f.Instances[0].ResolvedAt == nil && f.Instances[1].ResolvedAt == nil
	})
	// b knows the id from its poll (an id created on another sidecar less
	// than an interval ago is not known yet: 404, retry).
	wait("b serving the new fleet id", func() bool {
		var own alertsDoc
		members[1].get(t, "/admin/api/alerts/responsiveness?state=active", &own)
		a, ok := own.find(key)
		return ok && a.ID == id2
	})
	storeSw.Set(chaos.Fault{Mode: chaos.Blackhole})
	storeSw.ResetAll()
	if code, body := members[1].post(t, "/admin/api/alerts/responsiveness/acknowledge", map[string]any{"alert_ids": []string{id2}, "note": "store down"}); code != 200 {
		t.Fatalf("ack on b while the store is cut: %d %s", code, body)
	}
	members[1].get(t, "/admin/api/alerts/responsiveness?state=active", &onB)
	if b, ok := onB.find(key); !ok || b.State != "acknowledged" || b.AckNote != "store down" {
		t.Errorf("b right after its ack with the store cut: %+v", onB)
	}
	storeSw.Set(chaos.Fault{Mode: chaos.Pass})
	wait("a shows the ack made while the store was cut", func() bool {
		members[0].get(t, "/admin/api/alerts/responsiveness?state=active", &onA)
		a, ok := onA.find(key)
		return ok && a.ID == id2 && a.State == "acknowledged" && a.AckNote == "store down"
	})
	wait("the fleet answer has the replayed ack", func() bool {
		members[0].get(t, "/admin/api/alerts/responsiveness?scope=fleet&state=acknowledged", &fdoc)
		f, ok := fdoc.find(key)
		return ok && f.ID == id2 && f.AckNote == "store down"
	})
}
