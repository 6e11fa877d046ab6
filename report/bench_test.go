package report_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"testing"
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/latency"
	"github.com/pulsegate/pulsegate/monitor"
	"github.com/pulsegate/pulsegate/proxy"
	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/report/reporttest"
)

// benchArchive writes days of a sidecar flushing every minute, as serve
// does: 20 routes, every minute a 1 min row per route (the production
// shape, unlike the tests' hourly flushes), and a release half way.
func benchArchive(b *testing.B, days int) (*history.Reader, time.Time) {
	b.Helper()
	ring, _ := history.New(10*time.Second, 24*time.Hour)
	ar, err := history.OpenArchive(b.TempDir(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ar.Close() })
	rng := rand.New(rand.NewPCG(1, 2))
	counters := map[[2]string]*history.RouteCounter{}
	ar.SetRouteSource(func() []history.RouteCounter {
		out := []history.RouteCounter{}
		for _, c := range counters {
			cc := *c
			cc.Buckets = append([]uint64(nil), c.Buckets...)
			out = append(out, cc)
		}
		return out
	}, 0)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	start := now.Add(-time.Duration(days) * 24 * time.Hour)
	for at := start; at.Before(now); at = at.Add(time.Minute) {
		version := "v1"
		if at.After(start.Add(now.Sub(start) / 2)) {
			version = "v2"
		}
		for i := range 20 {
			k := [2]string{fmt.Sprintf("/r%d/:id", i), version}
			c := counters[k]
			if c == nil {
				c = &history.RouteCounter{Route: k[0], Version: version, Buckets: make([]uint64, latency.Buckets)}
				counters[k] = c
			}
			for range 20 {
				d := time.Duration(0.05 * math.Exp(0.7*rng.NormFloat64()) * float64(time.Second))
				c.Requests++
				c.Buckets[latency.Index(d)]++
			}
		}
		p95 := 0.3
		ring.Record(&monitor.Tick{Time: at, Figures: map[string]float64{"disk_usage": 0.5, "cpu_usage": 0.3},
			Requests: proxy.WindowStats{Window: "1m", ThroughputRPS: 7, P95: &p95}})
		if err := ar.Flush(ring, at.Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	return &history.Reader{Ring: ring, Archive: ar, Now: func() time.Time { return now }}, now
}

// BenchmarkReport compares a report with the history endpoint's answer
// for the same range (the baseline), on one archive of per-minute rows.
func BenchmarkReport(b *testing.B) {
	const days = 2
	rd, now := benchArchive(b, days)
	b.Run("history_view_24h_baseline", func(b *testing.B) {
		req, _ := history.ParseRequest(url.Values{"from": {now.Add(-24 * time.Hour).Format(time.RFC3339)}, "to": {now.Format(time.RFC3339)}}, now)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rd.View(req, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("report_24h", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := report.Build(report.Inputs{Since: "24h", Now: now, Config: config.Defaults(), Series: rd.Archive, Routes: report.HourlyRoutes(*rd)}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReport7d: the weekly report over the tests' simulated
// fortnight (3 routes, hourly route rows), against the history endpoint's
// range=7d answer on the same archive.
func BenchmarkReport7d(b *testing.B) {
	sim := reporttest.Simulate(b, b.TempDir(), reporttest.Plant{FillingDisk: true, FlappingCPU: true, SlowRelease: true})
	now := reporttest.Now
	b.Run("history_view_7d_baseline", func(b *testing.B) {
		req, _ := history.ParseRequest(url.Values{"range": {"7d"}}, now)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sim.Reader.View(req, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("report_7d", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := report.Build(report.Inputs{Since: "7d", Now: now, Config: config.Defaults(), Series: sim.Archive,
				Routes: report.HourlyRoutes(*sim.Reader), Alerts: sim.Store}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
