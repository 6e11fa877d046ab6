package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// switchProxy forwards TCP to a real database server and can be cut (every
// connection closed, new ones refused) and restored on the same address:
// the store going down and coming back.
type switchProxy struct {
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	p := &switchProxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *switchProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[u] = true, true
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(u, c); u.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
}

// down closes the listener and every connection, and waits for the copiers.
func (p *switchProxy) down() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
	p.mu.Unlock()
	p.wg.Wait()
}

// up listens again on the same address.
func (p *switchProxy) up(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(ln)
}

// proxiedStore opens a store of its own fleet through a switchProxy.
func proxiedStore(t *testing.T, sv *server) (*SQL, *switchProxy) {
	target := mysqlHost
	if sv.driver != "mysql" {
		target = pgHost
	}
	p := newSwitchProxy(t, target)
	dsn := strings.Replace(sv.storeDSN(sv.adminUser(), "", testDB), target, p.addr, 1)
	return openSQLTest(t, dsn, WithInstance(fleetName(t), "web-1"), WithOpTimeout(3*time.Second)), p
}

// TestWriterKeepsWritesWhileTheStoreIsDown: with the store cut, enqueueing
// never blocks, heartbeats beyond the buffer drop oldest first (counted),
// audit entries and acknowledgements wait; the health says degraded with a
// reason; once the store is back everything waiting is written, in order.
func TestWriterKeepsWritesWhileTheStoreIsDown(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		s, p := proxiedStore(t, sv)
		ctx := context.Background()
		// A fleet alert to acknowledge while the store is down.
		fa, err := s.RaiseFleetAlert(ctx, s.fleet, "web-2", AlertRecord{Key: "memory_usage", FirstSeen: t0, LastSeen: t0})
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		core, logs := observer.New(zapcore.InfoLevel)
		w, err := NewWriter(s, zap.New(core), reg, WriterOptions{MaxHeartbeats: 4, BatchSize: 3})
		if err != nil {
			t.Fatal(err)
		}

		p.down()
		for i := range 10 {
			w.Heartbeat(hb(s.fleet, "web-1", t0.Add(time.Duration(i)*10*time.Second), "ok", Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": uint64(i)}}))
		}
		for i := range 3 {
			w.Audit(AuditEntry{Time: t0.Add(time.Duration(i) * time.Second), Action: ActionConfigUpdate, Outcome: OutcomeOK, Actor: fmt.Sprint("caller-", i)})
		}
		w.Acknowledge(s.fleet, fa.ID, Acknowledgement{AlertID: fa.ID, Time: t0.Add(time.Minute), By: "alice", Note: "while down"})

		if err := w.Flush(ctx); err == nil {
			t.Fatal("Flush with the store cut succeeded")
		}
		h := w.Health()
		if h.State != HealthDegraded || !strings.Contains(h.Reason, "store unreachable") || !strings.Contains(h.Reason, "store.dsn") {
			t.Errorf("health while down = %+v; want degraded naming the store", h)
		}
		if h.QueuedHeartbeats != 4 || h.DroppedHeartbeats != 6 || h.QueuedWrites != 4 {
			t.Errorf("queues while down = %+v; want 4 heartbeats kept, 6 dropped, 4 writes waiting", h)
		}
		if got := testutil.ToFloat64(w.metricUp); got != 0 {
			t.Errorf("pulsegate_store_up = %g while down", got)
		}
		if got := testutil.ToFloat64(w.metricDrop.WithLabelValues("heartbeat")); got != 6 {
			t.Errorf("pulsegate_store_dropped_total{kind=heartbeat} = %g; want 6", got)
		}
		if logs.FilterMessage("store_degraded").Len() != 1 {
			t.Errorf("want one store_degraded log line, got %d", logs.FilterMessage("store_degraded").Len())
		}

		p.up(t)
		if err := w.Flush(ctx); err != nil {
			t.Fatalf("Flush after the store came back: %v", err)
		}
		h = w.Health()
		if h.State != HealthOK || h.QueuedHeartbeats != 0 || h.QueuedWrites != 0 {
			t.Errorf("health after recovery = %+v", h)
		}
		audit, err := s.Audit(10, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(audit) != 3 || audit[0].Actor != "caller-2" || audit[2].Actor != "caller-0" || audit[0].Instance != "web-1" {
			t.Errorf("audit after replay = %+v; want the 3 entries made while down", audit)
		}
		got, _ := s.FleetAlerts(ctx, s.fleet, true)
		if len(got) != 1 || got[0].AcknowledgedBy != "alice" || got[0].State != StateAcknowledged {
			t.Errorf("fleet alert after replay = %+v; want acknowledged by alice", got)
		}
		m, err := s.MergedRollup(ctx, s.fleet, t0.Add(-time.Second), t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		// The newest four heartbeats (6..9 requests) made it; the oldest six dropped.
		if m.Rows != 4 || m.Answered != 6+7+8+9 {
			t.Errorf("heartbeats in the store: %d rows, %d answered; want the newest 4 (30 answered)", m.Rows, m.Answered)
		}
		if testutil.ToFloat64(w.metricUp) != 1 || testutil.ToFloat64(w.metricDone.WithLabelValues("audit")) != 3 {
			t.Error("metrics not updated after recovery")
		}
		if logs.FilterMessage("store_recovered").Len() != 1 {
			t.Error("no store_recovered log line")
		}
	})
}

// recordingSink fails while down is set and records what it wrote.
type recordingSink struct {
	mu     sync.Mutex
	down   bool
	hbs    []Heartbeat
	audit  []AuditEntry
	prunes int
}

func (r *recordingSink) WriteHeartbeats(_ context.Context, hbs []Heartbeat) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errors.New("down")
	}
	r.hbs = append(r.hbs, hbs...)
	return nil
}

func (r *recordingSink) AppendAuditContext(_ context.Context, e AuditEntry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errors.New("down")
	}
	r.audit = append(r.audit, e)
	return nil
}

func (r *recordingSink) PruneFleet(context.Context, string, time.Time, Retention) (PruneResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prunes++
	return PruneResult{Compacted: 1}, nil
}

func (r *recordingSink) AcknowledgeFleetAlert(context.Context, string, string, Acknowledgement) (FleetAlert, error) {
	return FleetAlert{}, fmt.Errorf("gone: %w", ErrNotFound)
}

// TestWriterAuditBeyondItsBoundIsLoggedWhole: past MaxWrites an audit entry
// is not kept, but it is logged whole at error level and counted.
func TestWriterAuditBeyondItsBoundIsLoggedWhole(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	sink := &recordingSink{down: true}
	w, err := NewWriter(sink, zap.New(core), prometheus.NewRegistry(), WriterOptions{MaxWrites: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		w.Audit(AuditEntry{Action: ActionConfigUpdate, Actor: fmt.Sprint("caller-", i)})
	}
	dropped := logs.FilterMessage("store_write_dropped").All()
	if len(dropped) != 1 || dropped[0].Level != zapcore.ErrorLevel {
		t.Fatalf("dropped log lines = %+v; want one at error level", dropped)
	}
	if a, ok := dropped[0].ContextMap()["audit"].(map[string]any); !ok || a["actor"] != "caller-2" {
		t.Errorf("the dropped entry is not in the log line: %+v", dropped[0].ContextMap())
	}
	if err := w.Audit(AuditEntry{Actor: "no action"}); err == nil {
		t.Error("an audit entry without an action was queued")
	}
	if h := w.Health(); h.DroppedWrites != 1 || h.QueuedWrites != 2 {
		t.Errorf("health = %+v", h)
	}
	// An acknowledgement of an alert resolved meanwhile is not retried forever.
	sink.down = false
	w.Acknowledge("f", "x", Acknowledgement{})
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h := w.Health(); h.QueuedWrites != 0 || len(sink.audit) != 2 {
		t.Errorf("after flush: %+v, %d audit written", h, len(sink.audit))
	}
}

// TestWriterRunFlushesAndStops: Run writes queued rows by itself and, when
// its context ends, makes a last flush and returns (goleak checks the rest).
func TestWriterRunFlushesAndStops(t *testing.T) {
	sink := &recordingSink{}
	w, err := NewWriter(sink, zap.NewNop(), nil, WriterOptions{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	w.Heartbeat(Heartbeat{Instance: "a", Time: t0})
	// The wake-up writes it without waiting for the hour-long interval.
	for w.Health().QueuedHeartbeats != 0 {
		time.Sleep(time.Millisecond)
	}
	sink.mu.Lock()
	sink.down = true
	sink.mu.Unlock()
	w.Audit(AuditEntry{Action: ActionConfigUpdate})
	sink.mu.Lock()
	sink.down = false
	sink.mu.Unlock()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.hbs) != 1 || len(sink.audit) != 1 {
		t.Errorf("written %d heartbeats, %d audit entries; want 1 and 1 (the last by the final flush)", len(sink.hbs), len(sink.audit))
	}
}

func TestWriterRegistersItsMetricsOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewWriter(&recordingSink{}, nil, reg, WriterOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWriter(&recordingSink{}, nil, reg, WriterOptions{}); err == nil {
		t.Error("a second writer on one registry registered its metrics again")
	}
}

// TestWriterRunPrunes: with PruneEvery set, Run prunes its fleet's tables.
func TestWriterRunPrunes(t *testing.T) {
	sink := &recordingSink{}
	w, err := NewWriter(sink, zap.NewNop(), nil, WriterOptions{PruneEvery: time.Millisecond, Fleet: "f"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for {
		sink.mu.Lock()
		n := sink.prunes
		sink.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWriterAlertBatches: an alert batch is written in order (history,
// raise, acknowledgement by key before the fleet id was known, resolve),
// replayed whole after the store was cut; a batch with an
// acknowledgement is refused with ErrQueueFull when the buffer is full;
// a sink that cannot store alerts is refused at once.
func TestWriterAlertBatches(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		s, p := proxiedStore(t, sv)
		ctx := context.Background()
		w, err := NewWriter(s, zap.NewNop(), nil, WriterOptions{MaxWrites: 2})
		if err != nil {
			t.Fatal(err)
		}
		rec := AlertRecord{ID: "a1", Key: "memory_usage", Rule: "memory_usage", Severity: SeverityWarning, State: StateFiring, FirstSeen: t0, LastSeen: t0}
		p.down()
		if err := w.Alerts(AlertWrite{Fleet: s.fleet, Instance: "web-1", Records: []AlertRecord{rec}, Raise: []AlertRecord{rec}}); err != nil {
			t.Fatal(err)
		}
		acked := rec
		at := t0.Add(time.Minute)
		acked.State, acked.AcknowledgedAt, acked.AcknowledgedBy = StateAcknowledged, &at, "bob"
		if err := w.Alerts(AlertWrite{Fleet: s.fleet, Instance: "web-1", Records: []AlertRecord{acked},
			Acks: []FleetAck{{Key: rec.Key, Ack: Acknowledgement{Time: at, By: "bob", Note: "down"}}}}); err != nil {
			t.Fatal(err)
		}
		err = w.Alerts(AlertWrite{Fleet: s.fleet, Instance: "web-1", Acks: []FleetAck{{ID: "a1", Ack: Acknowledgement{Time: at, By: "eve"}}}})
		if !errors.Is(err, ErrQueueFull) {
			t.Errorf("third batch into a buffer of 2: %v; want ErrQueueFull", err)
		}
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if w.Flush(fctx) == nil {
			t.Fatal("flush through a cut store succeeded")
		}
		cancel()
		p.up(t)
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		fas, err := s.FleetAlerts(ctx, s.fleet, true)
		if err != nil || len(fas) != 1 || fas[0].ID != "a1" || fas[0].AcknowledgedBy != "bob" || fas[0].AckNote != "down" ||
			len(fas[0].Instances) != 1 || fas[0].Instances[0].Instance != "web-1" {
			t.Fatalf("fleet alerts after the replay: %+v %v", fas, err)
		}
		hist, err := s.LoadAlerts()
		if err != nil || len(hist) != 1 || hist[0].State != StateAcknowledged {
			t.Errorf("history after the replay: %+v %v", hist, err)
		}
		res := acked
		rt := t0.Add(2 * time.Minute)
		res.State, res.ResolvedAt = StateResolved, &rt
		if err := w.Alerts(AlertWrite{Fleet: s.fleet, Instance: "web-1", Records: []AlertRecord{res}, Resolve: []AlertRecord{res}}); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		all, _ := s.FleetAlerts(ctx, s.fleet, false)
		if len(all) != 1 || all[0].State != StateResolved || all[0].ResolvedAt == nil || !all[0].ResolvedAt.Equal(rt) {
			t.Errorf("after the resolve: %+v", all)
		}
	})
	w, err := NewWriter(&recordingSink{}, zap.NewNop(), nil, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Alerts(AlertWrite{Records: []AlertRecord{{ID: "x"}}}); err == nil {
		t.Error("a sink without alert storage took an alert batch")
	}
}
