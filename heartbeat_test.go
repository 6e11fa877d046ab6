package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
)

// TestHeartbeatCapacity: a heartbeat's backpressure figures are the span's
// own: the rate limiter's rejections since the previous heartbeat (by
// cause), the peak in flight since then and the limit in force; the next
// heartbeat, with nothing rejected, counts none.
func TestHeartbeatCapacity(t *testing.T) {
	cfg := config.Defaults()
	cfg.Backpressure.RateLimitRPS, cfg.Backpressure.RateLimitBurst = 0.001, 1
	cfg.Backpressure.MaxConcurrency = 7
	chain, err := backpressure.New(cfg, zap.NewNop(), prometheus.NewRegistry(),
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	if err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	for range 3 {
		w := httptest.NewRecorder()
		chain.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		codes[w.Code]++
	}
	if codes[200] != 1 || codes[429] != 2 {
		t.Fatalf("answers %v; want one 200 and two 429", codes)
	}
	a := &app{chain: chain}
	st := chain.State()
	if got, want := *a.capacity(&st), (store.CapacityFigures{Rejections: 2, RejectedRateLimit: 2, PeakInFlight: 1, ConcurrencyLimit: 7}); got != want {
		t.Errorf("first heartbeat %+v; want %+v", got, want)
	}
	st = chain.State()
	if got, want := *a.capacity(&st), (store.CapacityFigures{ConcurrencyLimit: 7}); got != want {
		t.Errorf("second heartbeat %+v; want %+v", got, want)
	}
}
