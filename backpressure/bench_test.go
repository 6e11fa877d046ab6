package backpressure

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// nopWriter is a ResponseWriter that allocates nothing.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

var nopHandler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

func benchChain(b *testing.B, mod func(*configT)) *Chain {
	b.Helper()
	cfg := baseConfig()
	if mod != nil {
		mod(cfg)
	}
	c, err := New(cfg, zap.NewNop(), prometheus.NewRegistry(), nopHandler)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func runParallel(b *testing.B, c *Chain, peers int) {
	b.ReportAllocs()
	var id atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		n := id.Add(1)
		req := httptest.NewRequest("GET", "/api/items", nil)
		req.RemoteAddr = "10.0.0." + strconv.Itoa(int(n%int64(peers))) + ":1234"
		w := &nopWriter{h: http.Header{}}
		for pb.Next() {
			c.ServeHTTP(w, req)
		}
	})
}

// Everything off: the cost of passing through the Chain.
func BenchmarkChainOff(b *testing.B) { runParallel(b, benchChain(b, nil), 1) }

// Defaults: shedding armed (no pressure), no limits.
func BenchmarkChainDefaults(b *testing.B) {
	cfg := func(c *configT) { c.Backpressure.SheddingEnabled = true }
	runParallel(b, benchChain(b, cfg), 1)
}

// A concurrency limit that is never reached (uncontended admit/release).
func BenchmarkChainLimitUncontended(b *testing.B) {
	runParallel(b, benchChain(b, func(c *configT) { c.Backpressure.MaxConcurrency = 1 << 20 }), 1)
}

// Per-client rate limiting with a large budget (one bucket per goroutine).
func BenchmarkChainPerClientRate(b *testing.B) {
	runParallel(b, benchChain(b, func(c *configT) {
		c.Backpressure.PerClientRPS = 1e12
		c.Backpressure.PerClientBurst = 1 << 30
	}), 64)
}

// Global rate limiting with a large budget (one shared bucket).
func BenchmarkChainGlobalRate(b *testing.B) {
	runParallel(b, benchChain(b, func(c *configT) {
		c.Backpressure.RateLimitRPS = 1e12
		c.Backpressure.RateLimitBurst = 1 << 30
	}), 1)
}

// Adaptive limiting (samples every request under one short mutex).
func BenchmarkChainAdaptive(b *testing.B) {
	runParallel(b, benchChain(b, func(c *configT) {
		c.Backpressure.Adaptive.Enabled = true
		c.Backpressure.Adaptive.MinLimit = 1 << 20
		c.Backpressure.Adaptive.MaxLimit = 1 << 20
	}), 1)
}

// Contended: limit 1, every request queues behind another (the slow path).
func BenchmarkChainLimitContended(b *testing.B) {
	runParallel(b, benchChain(b, func(c *configT) {
		c.Backpressure.MaxConcurrency = 1
		c.Backpressure.QueueSize = 1 << 20
	}), 1)
}
