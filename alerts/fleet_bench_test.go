package alerts

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
	"github.com/pulsegate/pulsegate/test/chaos"
)

// BenchmarkEvaluateTransitionsSQL: one tick with a transition (the alert
// fires or resolves), against a real MariaDB and PostgreSQL: "sync" saves
// in the tick as before (Backend.SaveAlerts), "queued" hands the change to
// the store's Writer (UseFleet); "queued-store-cut" is the latter with the
// store blackholed (the writer is not flushed: the tick never waits).
// Compare the ns/op of the three in one run (the machine is shared).
func BenchmarkEvaluateTransitionsSQL(b *testing.B) {
	for _, sv := range sqlServers {
		b.Run(sv.name, func(b *testing.B) {
			db := fmt.Sprintf("i11alerts_bench_%s_%d", sv.name, rand.IntN(1_000_000))
			exec := func(stmt string) {
				if err := benchExec(sv, stmt); err != nil {
					b.Skipf("%s: %v", sv.name, err)
				}
			}
			exec(sv.drop(db))
			exec(sv.create(db))
			defer exec(sv.drop(db))
			sw, err := chaos.New(sv.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer sw.Close()
			st, err := store.OpenSQL(context.Background(), sv.dsn(sw.Addr(), db), zap.NewNop(),
				store.WithInstance("bench", "web-1"), store.WithOpTimeout(2*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			cfg := config.Defaults()
			cfg.Alerts.MinDuration = 0
			in := []Input{figs("memory_usage", 0.85), figs("memory_usage", 0.5)}
			now := time.Now()
			run := func(b *testing.B, m *Manager) {
				for i := 0; b.Loop(); i++ {
					m.Evaluate(now.Add(time.Duration(i)*time.Second), in[i%2])
				}
			}
			for _, cut := range []bool{false, true} {
				name := "sync"
				if cut {
					name = "sync-store-cut"
				}
				b.Run(name, func(b *testing.B) {
					m, err := New(cfg, zap.NewNop(), nil, st, nil)
					if err != nil {
						b.Fatal(err)
					}
					if cut {
						sw.Set(chaos.Fault{Mode: chaos.Blackhole})
						sw.ResetAll()
						defer sw.Set(chaos.Fault{Mode: chaos.Pass})
					}
					run(b, m)
				})
			}
			for _, cut := range []bool{false, true} {
				name := "queued"
				if cut {
					name = "queued-store-cut"
				}
				b.Run(name, func(b *testing.B) {
					w, err := store.NewWriter(st, zap.NewNop(), nil, store.WriterOptions{MaxWrites: 1 << 30})
					if err != nil {
						b.Fatal(err)
					}
					m, err := New(cfg, zap.NewNop(), nil, st, nil)
					if err != nil {
						b.Fatal(err)
					}
					if err := m.UseFleet(FleetOptions{Fleet: "bench", Instance: "web-1", Queue: w, Source: func() FleetSource { return st }}); err != nil {
						b.Fatal(err)
					}
					if cut {
						sw.Set(chaos.Fault{Mode: chaos.Blackhole})
						sw.ResetAll()
						defer sw.Set(chaos.Fault{Mode: chaos.Pass})
					}
					run(b, m)
				})
			}
		})
	}
}

func benchExec(sv sqlServer, stmt string) error {
	db, err := sqlOpen(sv)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = db.ExecContext(ctx, stmt)
	return err
}
