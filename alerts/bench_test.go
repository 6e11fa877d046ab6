package alerts

import (
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
)

// steadyInput is a full tick's input with every figure known and nothing
// changing: the common case of a monitoring tick.
func steadyInput() Input {
	return Input{
		Figures: map[string]float64{
			"memory_usage": 0.85, "cpu_usage": 0.4, "disk_usage": 0.5, "connection_pool_utilization": 0.3,
			"db_latency": 0.002, "db_long_queries": 0, "db_leak_suspects": 0, "db_idle_in_transaction_oldest": 0,
			"job_queue_depth": 3, "queue_depth": 0, "app_error_rate": 0.01, "avg_response_time": 0.12,
			"redis_memory_usage": 0.2, "redis_evicted_per_sec": 0, "session_without_ttl": 0,
		},
		ProbeStatus: map[string]string{"system_optimizer": "warning", "database_manager": "ok", "session_monitoring": "ok"},
		Tasks:       map[string]string{"cleanup_hook": "ok", "session_ttl_repair": "ok"},
	}
}

// BenchmarkEvaluateSteady: one tick with one alert active and no transition
// (no store write).
func BenchmarkEvaluateSteady(b *testing.B) {
	m, err := New(config.Defaults(), zap.NewNop(), nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	in := steadyInput()
	now := time.Now()
	m.Evaluate(now, in)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Evaluate(now.Add(time.Duration(i)*time.Second), in)
	}
}

// BenchmarkEvaluateTransition: every tick fires or resolves one alert and
// writes it to a real bbolt store (fsync included).
func BenchmarkEvaluateTransition(b *testing.B) {
	st := openBenchStore(b)
	cfg := config.Defaults()
	cfg.Alerts.HistorySize = 100000
	m, err := New(cfg, zap.NewNop(), nil, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	hi, lo := steadyInput(), steadyInput()
	lo.Figures["memory_usage"] = 0.1
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		in := hi
		if i%2 == 1 {
			in = lo
		}
		m.Evaluate(now.Add(time.Duration(i)*time.Second), in)
	}
}

func openBenchStore(b *testing.B) *store.Store {
	st, err := store.Open(b.TempDir(), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}
