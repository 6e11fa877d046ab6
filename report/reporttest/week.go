// Package reporttest simulates two weeks of a sidecar's life for the
// report's tests: monitor ticks written through the real history archive
// (history.Archive, on a simulated clock) and alerts in the real bbolt
// store, with optional planted problems.
package reporttest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/latency"
	"github.com/pulsegate/pulsegate/monitor"
	"github.com/pulsegate/pulsegate/proxy"
	"github.com/pulsegate/pulsegate/store"
)

// Now is the end of every simulation: the report's "now".
var Now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// Days is how long a simulation runs (the week reported on and the week before).
const Days = 14

// Plant chooses the problems planted in the simulated weeks.
type Plant struct {
	// FillingDisk: disk usage rises linearly, 2.5 points a day (40 % two
	// weeks ago, 75 % now, full in about 10 days).
	FillingDisk bool
	// FlappingCPU: on the third day before Now, cpu_usage crosses its
	// warning threshold (0.8) every 10 minutes for two hours, and the
	// cpu_usage rule fires and resolves 12 times, never acknowledged.
	FlappingCPU bool
	// SlowRelease: release SlowRelease (deployed in both kinds of week,
	// ReleaseAt) makes SlowRoute's requests 60 % slower; without it the
	// release changes nothing.
	SlowRelease bool
	// RejectionBurst: for 45 minutes from RejectionBurstAt pulsegate
	// rejects 380 requests a minute (300 rate, 60 queue_full, 20
	// overload:cpu): 15 200 in the hour from 14:00, 1900 in the next,
	// 17 100 in all. Without it nothing is ever rejected.
	RejectionBurst bool
}

// RejectionBurstAt is when the planted burst of rejections begins: two
// days before Now, at 14:20.
var RejectionBurstAt = Now.Add(-2 * 24 * time.Hour).Truncate(24 * time.Hour).Add(14*time.Hour + 20*time.Minute)

// The planted burst's rejections per minute, by backpressure reason.
var burstPerMinute = map[string]uint64{"rate": 300, "queue_full": 60, "overload:cpu": 20}

// The routes of the simulated app and their requests per hour; SlowRoute
// is the one the planted release slows down.
const (
	SlowRoute   = "/reports/:id"
	SlowRelease = "v2"
)

var routes = []struct {
	name   string
	perHr  int
	median float64 // seconds
}{{"/api/items", 1200, 0.05}, {SlowRoute, 300, 0.2}, {"/login", 150, 0.1}}

// ReleaseAt is when v2 replaces v1: three and a half days before Now.
var ReleaseAt = Now.Add(-84 * time.Hour)

// FlapStart is when the planted flapping begins.
var FlapStart = Now.Add(-3 * 24 * time.Hour).Truncate(24 * time.Hour).Add(9 * time.Hour)

// Sim is a simulated sidecar's stores, open; Close them with t.Cleanup.
type Sim struct {
	Ring    *history.History
	Archive *history.Archive
	Store   *store.Store
	Reader  *history.Reader
}

// Simulate writes Days of one tick a minute (steady traffic with a daily
// cycle and a little noise, plus the planted problems) into dir, flushed
// every simulated hour with that hour's per-route requests (the route
// rows of an hour land in one minute of the 1 min tier, as a sidecar
// flushing hourly would write them).
func Simulate(t testing.TB, dir string, p Plant) *Sim {
	t.Helper()
	ring, err := history.New(10*time.Second, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ar, err := history.OpenArchive(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, nil)
	if err != nil {
		ar.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { ar.Close(); st.Close() })
	rng := rand.New(rand.NewPCG(12, 2026))
	counters := map[[2]string]*history.RouteCounter{}
	ar.SetRouteSource(func() []history.RouteCounter {
		out := make([]history.RouteCounter, 0, len(counters))
		for _, c := range counters {
			cc := *c
			cc.Buckets = append([]uint64(nil), c.Buckets...)
			out = append(out, cc)
		}
		return out
	}, 0)
	// traffic adds an hour of every route's requests (lognormal latencies
	// around the route's median, 0.4 % errors) to the proxy's counters.
	traffic := func(at time.Time) {
		version := "v1"
		if !at.Before(ReleaseAt) {
			version = SlowRelease
		}
		for _, r := range routes {
			k := [2]string{r.name, version}
			c := counters[k]
			if c == nil {
				c = &history.RouteCounter{Route: r.name, Version: version, Buckets: make([]uint64, latency.Buckets)}
				counters[k] = c
			}
			median := r.median
			if p.SlowRelease && version == SlowRelease && r.name == SlowRoute {
				median *= 1.6
			}
			for range r.perHr {
				d := time.Duration(median * math.Exp(0.5*rng.NormFloat64()) * float64(time.Second))
				c.Requests++
				c.Buckets[latency.Index(d)]++
				c.SumUS += uint64(d / time.Microsecond)
				if rng.Float64() < 0.004 {
					c.Errors++
					c.AppErrors++
				}
			}
		}
	}
	start := Now.Add(-Days * 24 * time.Hour)
	flapEnd := FlapStart.Add(2 * time.Hour)
	// backpressure's cumulative rejection counters, as State reports them.
	rejections := map[string]uint64{}
	for _, r := range backpressure.Reasons {
		rejections[r] = 0
	}
	burstEnd := RejectionBurstAt.Add(45 * time.Minute)
	for at := start; at.Before(Now); at = at.Add(time.Minute) {
		day := at.Sub(start).Hours() / 24
		cycle := math.Sin(2 * math.Pi * float64(at.Unix()%86400) / 86400)
		noise := func(s float64) float64 { return rng.NormFloat64() * s }
		rps := 20 + 8*cycle + noise(0.5)
		p50, p95, p99 := 0.08+noise(0.002), 0.3+noise(0.01), 0.6+noise(0.02)
		cpu := 0.35 + 0.1*cycle + noise(0.01)
		disk := 0.42 + noise(0.002)
		if p.FillingDisk {
			disk = 0.40 + 0.025*day + noise(0.002)
		}
		if p.FlappingCPU && !at.Before(FlapStart) && at.Before(flapEnd) && int(at.Sub(FlapStart).Minutes())%10 < 5 {
			cpu = 0.85 + noise(0.005)
		}
		if p.RejectionBurst && !at.Before(RejectionBurstAt) && at.Before(burstEnd) {
			for r, n := range burstPerMinute {
				rejections[r] += n // rejected in the minute up to this tick
			}
		}
		bp := &backpressure.State{InFlight: int64(2 + rps/10), Rejections: map[string]uint64{}}
		for r, n := range rejections {
			bp.Rejections[r] = n
		}
		tick := &monitor.Tick{Time: at,
			Figures: map[string]float64{"cpu_usage": cpu, "memory_usage": 0.5 + 0.05*cycle + noise(0.005), "disk_usage": disk},
			Requests: proxy.WindowStats{Window: "1m", Seconds: 60, Requests: uint64(rps * 60), ThroughputRPS: rps,
				ErrorRate: math.Max(0, 0.004+noise(0.001)), P50: &p50, P95: &p95, P99: &p99, Apdex: ptr(0.97 + noise(0.005))},
			Backpressure: bp,
		}
		ring.Record(tick)
		if at.Sub(start)%time.Hour == time.Hour-time.Minute {
			traffic(at)
			if err := ar.Flush(ring, at.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := ar.Flush(ring, Now); err != nil {
		t.Fatal(err)
	}
	if p.FlappingCPU {
		for i := range 12 {
			fired := FlapStart.Add(time.Duration(i) * 10 * time.Minute)
			resolved := fired.Add(5 * time.Minute)
			if err := st.SaveAlert(store.AlertRecord{ID: fmt.Sprintf("cpu-%02d", i), Key: "cpu_usage", Rule: "cpu_usage", Metric: "cpu_usage",
				Severity: store.SeverityWarning, PeakSeverity: store.SeverityWarning, State: store.StateResolved, Value: 0.85, Threshold: 0.8,
				Message: "CPU usage at 85%", FirstSeen: fired, LastSeen: resolved, ResolvedAt: &resolved}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// One ordinary, acknowledged alert in both kinds of week: not a finding.
	fired := Now.Add(-5 * 24 * time.Hour)
	acked, resolved := fired.Add(4*time.Minute), fired.Add(20*time.Minute)
	if err := st.SaveAlert(store.AlertRecord{ID: "mem-1", Key: "memory_usage", Rule: "memory_usage", Metric: "memory_usage",
		Severity: store.SeverityWarning, PeakSeverity: store.SeverityWarning, State: store.StateResolved, Value: 0.81, Threshold: 0.8,
		Message: "Memory usage at 81%", FirstSeen: fired, LastSeen: resolved, ResolvedAt: &resolved,
		AcknowledgedAt: &acked, AcknowledgedBy: "token:ab12cd", AckNote: "batch import"}); err != nil {
		t.Fatal(err)
	}
	return &Sim{Ring: ring, Archive: ar, Store: st, Reader: &history.Reader{Ring: ring, Archive: ar, Now: func() time.Time { return Now }}}
}

func ptr(x float64) *float64 { return &x }
