package alerts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
	"github.com/pulsegate/pulsegate/test/chaos"
)

// sqlServer is one real database server for the fleet alert tests: a
// private database (named with i11alerts) made per test and dropped after.
type sqlServer struct {
	name, driver, admin, addr string
	dsn                       func(addr, db string) string
	create, drop              func(db string) string
}

var sqlServers = []sqlServer{
	{name: "mariadb", driver: "mysql", admin: "root@tcp(127.0.0.1:3306)/", addr: "127.0.0.1:3306",
		dsn:    func(addr, db string) string { return "mysql://root@" + addr + "/" + db },
		create: func(db string) string { return "CREATE DATABASE " + db + " CHARACTER SET utf8mb4" },
		drop:   func(db string) string { return "DROP DATABASE IF EXISTS " + db }},
	{name: "postgres", driver: "pgx", admin: "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", addr: "127.0.0.1:5432",
		dsn:    func(addr, db string) string { return "postgres://postgres@" + addr + "/" + db + "?sslmode=disable" },
		create: func(db string) string { return "CREATE DATABASE " + db },
		drop:   func(db string) string { return "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)" }},
}

func sqlOpen(sv sqlServer) (*sql.DB, error) { return sql.Open(sv.driver, sv.admin) }

func (sv sqlServer) exec(t *testing.T, stmt string) {
	t.Helper()
	db, err := sqlOpen(sv)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		t.Skipf("%s not available (%s): %v", sv.name, stmt, err)
	}
}

// sidecar is one in-process sidecar's alert side: its manager, its
// writer to the shared store and the switch in front of its store.
type sidecar struct {
	name string
	m    *Manager
	w    *store.Writer
	st   *store.SQL
	sw   *chaos.Proxy
	logs *observer.ObservedLogs
}

func (s *sidecar) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.w.Flush(ctx); err != nil {
		t.Fatalf("%s: flush: %v", s.name, err)
	}
}

func (s *sidecar) sync(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.m.SyncFleet(ctx); err != nil {
		t.Fatalf("%s: sync: %v", s.name, err)
	}
}

// run starts the manager's Run (delivery workers and fleet poll) until the test ends.
func (s *sidecar) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s: Run did not stop", s.name)
		}
	})
}

// amRecorder is an Alertmanager that keeps every posted alert.
type amRecorder struct {
	mu    sync.Mutex
	posts []AlertmanagerAlert
}

func (r *amRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	var as []AlertmanagerAlert
	if json.Unmarshal(b, &as) == nil {
		r.mu.Lock()
		r.posts = append(r.posts, as...)
		r.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

func (r *amRecorder) find(instance, alertID, ackBy string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.posts {
		if a.Labels["instance"] == instance && a.Annotations["alert_id"] == alertID && a.Annotations["acknowledged_by"] == ackBy {
			return true
		}
	}
	return false
}

// Two sidecars sharing one SQL store (real MariaDB and PostgreSQL): the
// same rule firing on both is one fleet alert with both instances and one
// id; acknowledging on #2 acknowledges it on #1 (API and Alertmanager
// push); it resolves when both resolve; a store cut keeps the
// acknowledgement and replays it; a full queue refuses one.
func TestFleetAlertsSharedStore(t *testing.T) {
	for _, sv := range sqlServers {
		t.Run(sv.name, func(t *testing.T) { testFleetAlerts(t, sv) })
	}
}

func testFleetAlerts(t *testing.T, sv sqlServer) {
	db := fmt.Sprintf("i11alerts_%s_%d", sv.name, rand.IntN(1_000_000))
	sv.exec(t, sv.drop(db))
	sv.exec(t, sv.create(db))
	t.Cleanup(func() { sv.exec(t, sv.drop(db)) })

	am := &amRecorder{}
	amSrv := httptest.NewServer(am)
	defer amSrv.Close()
	cfg := config.Defaults()
	cfg.Alerts.AlertmanagerURL = config.Secret(amSrv.URL)
	cfg.Alerts.MinDuration = 0
	cfg.Responsiveness.MonitoringInterval = 3600 // the tests poll by hand (SyncFleet)
	clk := &clock{t: t0}
	const fleet = "shop"

	open := func(name string, maxWrites int) *sidecar {
		sw, err := chaos.New(sv.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sw.Close() })
		st, err := store.OpenSQL(context.Background(), sv.dsn(sw.Addr(), db), zap.NewNop(),
			store.WithInstance(fleet, name), store.WithOpTimeout(2*time.Second))
		if err != nil {
			t.Fatalf("%s: OpenSQL: %v", name, err)
		}
		t.Cleanup(func() { st.Close() })
		core, logs := observer.New(zapcore.InfoLevel)
		w, err := store.NewWriter(st, zap.New(core).Named("writer"), nil, store.WriterOptions{MaxWrites: maxWrites})
		if err != nil {
			t.Fatal(err)
		}
		m, err := New(cfg, zap.New(core), prometheus.NewRegistry(), st, clk.now)
		if err != nil {
			t.Fatal(err)
		}
		m.backoffBase = 10 * time.Millisecond
		if err := m.UseFleet(FleetOptions{Fleet: fleet, Instance: name, Queue: w,
			Source: func() FleetSource { return st }}); err != nil {
			t.Fatal(err)
		}
		return &sidecar{name: name, m: m, w: w, st: st, sw: sw, logs: logs}
	}
	s1, s2 := open("web-1", 0), open("web-2", 2)
	ctx := context.Background()

	// The rule fires on #1, then on #2: one fleet alert, two instances, one id.
	s1.m.Evaluate(t0, figs("memory_usage", 0.85))
	s1.flush(t)
	id := mustActive(t, s1.m, RuleMemoryUsage).ID
	s2.sync(t)
	s2.m.Evaluate(t0.Add(10*time.Second), figs("memory_usage", 0.95))
	s2.flush(t)
	if got := mustActive(t, s2.m, RuleMemoryUsage).ID; got != id {
		t.Errorf("web-2's alert id %s; want the fleet's %s on every sidecar", got, id)
	}
	fas, err := s1.st.FleetAlerts(ctx, fleet, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(fas) != 1 || fas[0].ID != id || len(fas[0].Instances) != 2 ||
		fas[0].Instances[0].Instance != "web-1" || fas[0].Instances[1].Instance != "web-2" ||
		fas[0].Instances[0].State != store.StateFiring || fas[0].Instances[1].Severity != store.SeverityCritical {
		t.Fatalf("fleet alerts after both fired: %+v", fas)
	}
	if !fas[0].Instances[0].LastSeen.Equal(t0) {
		t.Errorf("web-1's since (the instance row) = %v; want its first_seen %v", fas[0].Instances[0].LastSeen, t0)
	}

	// Acknowledged on #2 → #1's API and #1's Alertmanager push show it.
	clk.set(t0.Add(time.Minute))
	if _, err := s2.m.Acknowledge([]string{id}, "on it", "token:bob"); err != nil {
		t.Fatal(err)
	}
	s2.flush(t)
	s1.sync(t)
	a1 := mustActive(t, s1.m, RuleMemoryUsage)
	if a1.State != store.StateAcknowledged || a1.AcknowledgedBy != "token:bob" || a1.AckNote != "on it" ||
		a1.AcknowledgedAt == nil || !a1.AcknowledgedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("web-1 after the ack on web-2: %+v", a1)
	}
	if l := s1.logs.FilterMessage("alert_acknowledged_in_fleet").Len(); l != 1 {
		t.Errorf("alert_acknowledged_in_fleet logged %d times; want 1", l)
	}
	s1.run(t)
	eventually(t, "web-1's Alertmanager push with the acknowledgement", func() bool { return am.find("web-1", id, "token:bob") })

	// Resolves on #1: still active for the fleet, still acknowledged; then on #2: resolved.
	s1.m.Evaluate(t0.Add(2*time.Minute), figs("memory_usage", 0.5))
	s1.flush(t)
	fas, _ = s1.st.FleetAlerts(ctx, fleet, true)
	if len(fas) != 1 || fas[0].State != store.StateAcknowledged {
		t.Fatalf("after web-1 resolved: %+v; want still active and acknowledged", fas)
	}
	s2.m.Evaluate(t0.Add(2*time.Minute), figs("memory_usage", 0.5))
	s2.flush(t)
	all, err := s1.st.FleetAlerts(ctx, fleet, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].State != store.StateResolved || all[0].ResolvedAt == nil {
		t.Fatalf("after both resolved: %+v; want one resolved alert", all)
	}
	hist, err := s2.st.LoadAlerts()
	if err != nil || len(hist) != 1 || hist[0].State != store.StateResolved || hist[0].AcknowledgedBy != "token:bob" {
		t.Errorf("web-2's own history in the store: %+v %v", hist, err)
	}

	// A new occurrence on both; #2's store is cut; the ack on #2 answers at
	// once, waits in the queue and is replayed when the store is back.
	s1.m.Evaluate(t0.Add(3*time.Minute), figs("cpu_usage", 0.85))
	s1.flush(t)
	s2.sync(t)
	s2.m.Evaluate(t0.Add(3*time.Minute), figs("cpu_usage", 0.85))
	s2.flush(t)
	cpu := mustActive(t, s1.m, RuleCPUUsage).ID
	s2.sw.Set(chaos.Fault{Mode: chaos.Blackhole})
	s2.sw.ResetAll()
	clk.set(t0.Add(4 * time.Minute))
	if _, err := s2.m.Acknowledge([]string{cpu}, "store is down", "token:carol"); err != nil {
		t.Fatalf("ack while the store is down: %v", err)
	}
	if a := mustActive(t, s2.m, RuleCPUUsage); a.State != store.StateAcknowledged {
		t.Errorf("web-2's own alert is %s while the store is down; want acknowledged at once", a.State)
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := s2.w.Flush(fctx); err == nil {
		t.Fatal("flush through a cut store succeeded")
	}
	cancel()
	if h := s2.w.Health(); h.State != store.HealthDegraded || h.QueuedWrites != 1 {
		t.Errorf("writer health while cut: %+v; want degraded, the ack queued", h)
	}
	// The queue (2 writes) fills: a transition, then one more ack is refused and changes nothing.
	s2.m.Evaluate(t0.Add(4*time.Minute), figs("cpu_usage", 0.85, "disk_usage", 0.9))
	disk := mustActive(t, s2.m, RuleDiskUsage).ID
	_, err = s2.m.Acknowledge([]string{disk}, "", "token:carol")
	if !errors.Is(err, store.ErrQueueFull) {
		t.Errorf("ack with a full queue: %v; want ErrQueueFull", err)
	}
	if a := mustActive(t, s2.m, RuleDiskUsage); a.State != store.StateFiring {
		t.Errorf("refused ack changed the alert: %+v", a)
	}
	s2.sw.Set(chaos.Fault{Mode: chaos.Pass})
	s2.flush(t)
	fas, _ = s1.st.FleetAlerts(ctx, fleet, true)
	var gotCPU, gotDisk bool
	for _, fa := range fas {
		switch fa.Key {
		case RuleCPUUsage:
			gotCPU = fa.State == store.StateAcknowledged && fa.AcknowledgedBy == "token:carol" && fa.AckNote == "store is down"
		case RuleDiskUsage:
			gotDisk = fa.State == store.StateFiring && len(fa.Instances) == 1
		}
	}
	if !gotCPU || !gotDisk {
		t.Fatalf("after the store came back: %+v; want the cpu ack replayed and the disk alert raised", fas)
	}
	s1.sync(t)
	if a := mustActive(t, s1.m, RuleCPUUsage); a.AcknowledgedBy != "token:carol" {
		t.Errorf("web-1 did not adopt the replayed ack: %+v", a)
	}
	eventually(t, "web-1's push with the replayed ack", func() bool { return am.find("web-1", cpu, "token:carol") })

	// An id seen only in the fleet (the disk alert fires on #2 only) can be acknowledged on #1.
	if _, err := s1.m.Acknowledge([]string{disk}, "from web-1", "token:dan"); err != nil {
		t.Fatalf("ack on web-1 of web-2's alert: %v", err)
	}
	s1.flush(t)
	s2.sync(t)
	if a := mustActive(t, s2.m, RuleDiskUsage); a.AcknowledgedBy != "token:dan" || a.AckNote != "from web-1" {
		t.Errorf("web-2 after web-1 acknowledged its alert: %+v", a)
	}

	// Both fire in the same interval, before either has seen the other's:
	// after one poll both serve (and push) the fleet's id, and either id
	// can be acknowledged.
	s1.m.Evaluate(t0.Add(5*time.Minute), figs("cpu_usage", 0.85, "avg_response_time", 7.2))
	s2.m.Evaluate(t0.Add(5*time.Minute), figs("cpu_usage", 0.85, "disk_usage", 0.9, "avg_response_time", 7.2))
	local2 := mustActive(t, s2.m, RuleAvgResponseTime).ID
	s1.flush(t)
	s2.flush(t)
	s1.sync(t)
	s2.sync(t)
	fas, _ = s1.st.FleetAlerts(ctx, fleet, true)
	var avgID string
	for _, fa := range fas {
		if fa.Key == RuleAvgResponseTime {
			avgID = fa.ID
			if len(fa.Instances) != 2 {
				t.Errorf("avg_response_time fleet alert: %+v; want both instances", fa)
			}
		}
	}
	if a1, a2 := mustActive(t, s1.m, RuleAvgResponseTime), mustActive(t, s2.m, RuleAvgResponseTime); a1.ID != avgID || a2.ID != avgID {
		t.Errorf("ids after a simultaneous fire: web-1 %s web-2 %s; want the fleet's %s on both", a1.ID, a2.ID, avgID)
	}
	if local2 == avgID {
		t.Fatalf("web-2 fired with the fleet's id %s before it could know it", avgID)
	}
	{
		if _, err := s2.m.Acknowledge([]string{local2}, "by local id", "token:erin"); err != nil {
			t.Errorf("ack by web-2's own id: %v", err)
		}
		s2.flush(t)
		s1.sync(t)
		if a := mustActive(t, s1.m, RuleAvgResponseTime); a.AcknowledgedBy != "token:erin" {
			t.Errorf("web-1 after the ack by web-2's local id: %+v", a)
		}
	}

	// An instance that went stale (killed) no longer holds a fleet alert:
	// web-3's heartbeat is an hour old; its only alert resolves at it.
	last := t0.Add(-time.Hour)
	if err := s1.st.WriteHeartbeats(ctx, []store.Heartbeat{{Fleet: fleet, Instance: "web-3", Time: last, Interval: 10 * time.Second, Status: "healthy"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.st.RaiseFleetAlert(ctx, fleet, "web-3", store.AlertRecord{ID: "dead3", Key: "probe_down:redis", Rule: RuleProbeDown,
		Severity: store.SeverityCritical, FirstSeen: last, LastSeen: last}); err != nil {
		t.Fatal(err)
	}
	s1.sync(t)
	all, _ = s1.st.FleetAlerts(ctx, fleet, false)
	for _, fa := range all {
		if fa.ID == "dead3" && (fa.State != store.StateResolved || fa.ResolvedAt == nil || !fa.ResolvedAt.Equal(last)) {
			t.Errorf("stale web-3's alert: %+v; want resolved at its last heartbeat", fa)
		}
	}
	if s1.logs.FilterMessage("alert_fleet_instance_stale").Len() != 1 {
		t.Errorf("alert_fleet_instance_stale not logged once")
	}
}
