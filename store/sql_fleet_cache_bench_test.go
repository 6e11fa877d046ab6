package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/zap"
)

// BenchmarkFleetRead: what `?scope=fleet` runs on a sidecar (Instances and
// the last minute merged) over 200 instances at a 10 s interval (1 400
// rows), on a real MariaDB and PostgreSQL: "cold" decodes every row (the
// first answer, or every answer before the row cache), "warm" an answer
// after another with nothing new written (each fetches only the keys).
func BenchmarkFleetRead(b *testing.B) {
	for _, sv := range []*server{mariadb, postgres} {
		b.Run(sv.name, func(b *testing.B) {
			sv.once.Do(func() { sv.err = sv.createDB(testDB) })
			if sv.err != nil {
				b.Skipf("%s unreachable: %v", sv.name, sv.err)
			}
			ctx := context.Background()
			f := fmt.Sprintf("bench_fleet_read_%d", time.Now().UnixNano()%1e9)
			s, err := OpenSQL(ctx, sv.storeDSN(sv.adminUser(), "", testDB), zap.NewNop(), WithInstance(f, "web-000"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			now := time.Now()
			var batch []Heartbeat
			for i := range 200 {
				for j := range 7 {
					h := Hist{}
					for range 400 {
						h.Record(time.Duration(0.03 * math.Exp(rng.NormFloat64()*0.7) * float64(time.Second)))
					}
					r := Rollup{Seconds: 10, Requests: map[string]uint64{"2xx": 397, "5xx": 3}, Errors: map[string]uint64{"app_5xx": 3}, Latency: h,
						Timing: map[string]float64{"app": 12, "upstream_wait": 12.5, "queue": 0}, CPU: fp(0.4), Memory: fp(0.5)}
					at := now.Add(-time.Duration(j)*10*time.Second - time.Duration(i)*40*time.Millisecond)
					batch = append(batch, hb(f, fmt.Sprintf("web-%03d", i), at, "ok", r))
				}
			}
			for len(batch) > 0 {
				n := min(100, len(batch))
				if err := s.WriteHeartbeats(ctx, batch[:n]); err != nil {
					b.Fatal(err)
				}
				batch = batch[n:]
			}
			read := func() {
				insts, err := s.Instances(ctx, f, now)
				if err != nil || len(insts) != 200 {
					b.Fatalf("instances: %d, %v", len(insts), err)
				}
				m, err := s.MergedRollup(ctx, f, now.Add(-time.Minute), now)
				if err != nil || m.Rows != 1200 {
					b.Fatalf("merged: %d rows, %v", m.Rows, err)
				}
			}
			b.Run("cold", func(b *testing.B) {
				for range b.N {
					s.rowCache() // the Once has run: the cache is s.rows
					s.rows = newRowCache()
					read()
				}
			})
			b.Run("warm", func(b *testing.B) {
				read()
				b.ResetTimer()
				for range b.N {
					read()
				}
			})
			b.StopTimer()
			_, _ = s.db.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_heartbeats WHERE fleet = ?`), f)
			_, _ = s.db.ExecContext(ctx, s.rebind(`DELETE FROM pulsegate_instances WHERE fleet = ?`), f)
		})
	}
}
