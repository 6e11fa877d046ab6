package reporttest

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/store"
)

// FleetStore is where SimulateFleet writes: the shared SQL store
// (*store.SQL, opened for one of the fleet's instances).
type FleetStore interface {
	WriteHeartbeats(ctx context.Context, hbs []store.Heartbeat) error
	RaiseFleetAlert(ctx context.Context, fleet, instance string, a store.AlertRecord) (store.FleetAlert, error)
	ResolveFleetAlert(ctx context.Context, fleet, instance, key string, at time.Time) (store.FleetAlert, error)
	AcknowledgeFleetAlert(ctx context.Context, fleet, id string, ack store.Acknowledgement) (store.FleetAlert, error)
	AppendAudit(e store.AuditEntry) error
}

// FleetHours is how long SimulateFleet runs: the day a 24h report covers
// and the day before.
const FleetHours = 48

// FleetPlant chooses the problems planted in a simulated fleet.
type FleetPlant struct {
	// SlowPeriod: from SlowFrom(end) for two hours every instance answers
	// in about 6 s (the mean response time's warning threshold is 5 s).
	SlowPeriod bool
	// FlappingRule: during the slow period's first hour the
	// avg_response_time rule fires on every instance and resolves, six
	// times (one fleet alert each, never acknowledged).
	FlappingRule bool
	// RejectionBurst: every row carries backpressure's figures (schema
	// version 5): a concurrency limit of FleetLimitPerInstance and a few
	// requests in flight; for FleetBurstMinutes from FleetBurstFrom(end)
	// each instance rejects FleetBurstRatePerMin (rate) and
	// FleetBurstQueuePerMin (queue_full) requests a minute with
	// FleetBurstInFlight in flight and 8 queued. Without it the rows carry
	// none (rows written before schema version 5).
	RejectionBurst bool
}

// The planted rejection burst, per instance.
const (
	FleetBurstMinutes     = 30
	FleetBurstRatePerMin  = 50
	FleetBurstQueuePerMin = 10
	FleetBurstInFlight    = 30
	FleetLimitPerInstance = 32
)

// FleetBurstFrom is when the planted rejection burst begins in a
// simulation ending at end (on a 5-minute boundary).
func FleetBurstFrom(end time.Time) time.Time {
	return end.Add(-6 * time.Hour).Truncate(time.Hour).Add(10 * time.Minute)
}

// SlowFrom is when the planted slow period begins in a simulation ending at end.
func SlowFrom(end time.Time) time.Time { return end.Add(-10 * time.Hour).Truncate(time.Hour) }

// SlowHours is the planted slow period's length.
const SlowHours = 2

// FlapCycles is how many times the planted flapping rule fires.
const FlapCycles = 6

// FleetAckAfter is how long after it fired the one ordinary fleet alert
// (memory_usage, in the reported day) is
// acknowledged.
const FleetAckAfter = 4 * time.Minute

// SimulateFleet writes FleetHours of heartbeat rows for every instance,
// one a minute (a 60 s monitoring interval) ending at end: steady traffic
// with a daily cycle and a little noise, latencies drawn per request into
// each row's histogram, CPU and memory gauges; then the fleet alerts and
// a configuration change in the audit log. The planted problems are p's.
func SimulateFleet(t testing.TB, st FleetStore, fleet string, instances []string, end time.Time, p FleetPlant) {
	t.Helper()
	ctx := context.Background()
	end = end.UTC().Truncate(time.Minute)
	start := end.Add(-FleetHours * time.Hour)
	slowFrom := SlowFrom(end)
	slowTo := slowFrom.Add(SlowHours * time.Hour)
	burstFrom := FleetBurstFrom(end)
	burstTo := burstFrom.Add(FleetBurstMinutes * time.Minute)
	rng := rand.New(rand.NewPCG(7, 2026))
	var batch []store.Heartbeat
	flush := func() {
		if err := st.WriteHeartbeats(ctx, batch); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	for at := start.Add(time.Minute); !at.After(end); at = at.Add(time.Minute) {
		cycle := math.Sin(2 * math.Pi * float64(at.Unix()%86400) / 86400)
		slow := p.SlowPeriod && at.After(slowFrom) && !at.After(slowTo)
		for i, in := range instances {
			rps := 10 + 4*cycle + rng.NormFloat64()*0.3
			n := int(rps * 60)
			median := 0.08
			if slow {
				median = 6
			}
			r := store.Rollup{Seconds: 60, Requests: map[string]uint64{}, Errors: map[string]uint64{}, Latency: store.Hist{}}
			var sum float64
			for range n {
				d := median * math.Exp(0.3*rng.NormFloat64())
				r.Latency.Record(time.Duration(d * float64(time.Second)))
				sum += d
				if rng.Float64() < 0.004 {
					r.Requests["5xx"]++
					r.Errors["app_5xx"]++
				} else {
					r.Requests["2xx"]++
				}
			}
			r.Timing = map[string]float64{"count": float64(n), "total": sum}
			cpu := 0.3 + 0.1*float64(i) + 0.1*cycle + rng.NormFloat64()*0.01
			mem := 0.5 + 0.05*cycle + rng.NormFloat64()*0.005
			r.CPU, r.Memory = &cpu, &mem
			status := "ok"
			if slow {
				status = "warning"
			}
			if p.RejectionBurst {
				r.Capacity = &store.CapacityFigures{PeakInFlight: 3, ConcurrencyLimit: FleetLimitPerInstance}
				if at.After(burstFrom) && !at.After(burstTo) {
					r.Capacity = &store.CapacityFigures{Rejections: FleetBurstRatePerMin + FleetBurstQueuePerMin,
						RejectedRateLimit: FleetBurstRatePerMin, RejectedQueue: FleetBurstQueuePerMin,
						PeakInFlight: FleetBurstInFlight, PeakQueued: 8, ConcurrencyLimit: FleetLimitPerInstance}
				}
			}
			batch = append(batch, store.Heartbeat{Fleet: fleet, Instance: in, Time: at, Interval: time.Minute, Status: status, Rollup: r})
		}
		if len(batch) >= 400 {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	raise := func(rule, metric string, first time.Time, value, threshold float64) string {
		var id string
		for _, in := range instances {
			fa, err := st.RaiseFleetAlert(ctx, fleet, in, store.AlertRecord{Key: rule, Rule: rule, Metric: metric,
				Severity: store.SeverityWarning, PeakSeverity: store.SeverityWarning, Value: value, Threshold: threshold,
				Message: metric + " above its warning threshold", FirstSeen: first, LastSeen: first})
			if err != nil {
				t.Fatal(err)
			}
			id = fa.ID
		}
		return id
	}
	resolve := func(rule string, at time.Time) {
		for _, in := range instances {
			if _, err := st.ResolveFleetAlert(ctx, fleet, in, rule, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	if p.FlappingRule {
		for i := range FlapCycles {
			fired := slowFrom.Add(time.Duration(i) * 10 * time.Minute)
			raise("avg_response_time", "avg_response_time", fired, 6, 5)
			resolve("avg_response_time", fired.Add(5*time.Minute))
		}
	}
	// One ordinary alert on every instance, acknowledged: not a finding.
	fired := end.Add(-5 * time.Hour)
	id := raise("memory_usage", "memory_usage", fired, 0.81, 0.8)
	if _, err := st.AcknowledgeFleetAlert(ctx, fleet, id, store.Acknowledgement{AlertID: id, Time: fired.Add(FleetAckAfter), By: "token:ab12cd", Note: "batch import"}); err != nil {
		t.Fatal(err)
	}
	resolve("memory_usage", fired.Add(20*time.Minute))
	if err := st.AppendAudit(store.AuditEntry{Time: end.Add(-3 * time.Hour), Actor: "token:ab12cd", Source: "admin_api", Action: store.ActionConfigUpdate,
		Outcome: store.OutcomeOK, Changes: []store.Change{{Key: "thresholds.response_time_warning", Old: "5", New: "6"}}}); err != nil {
		t.Fatal(err)
	}
}
