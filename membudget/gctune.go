package membudget

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// GCTuner bounds how far the heap grows between collections when
// pulsegate holds many connections, and leaves GOGC at its base when it
// holds few.
//
// Under GOGC=100 the heap may grow by the live heap plus the goroutine
// stacks (the scan set) before the next collection. At an everyday rate
// the scan set is small and that growth costs little memory, while a
// lower GOGC costs CPU on every request (GOGC 50: 1.16 × the CPU per
// request at 300 req/s in front of Flask, docs/performance.md). At
// hundreds of busy connections the scan set is mostly their buffers and
// stacks, and the same growth doubles them. GCTuner sets
// GOGC = base × headroom ÷ scan set, between Floor and base: GOGC stays at
// base while the scan set is below the headroom.
type GCTuner struct {
	headroom int64
	base     int
	set      func(int) int
	scan     func() int64
	cur      atomic.Int64
}

// Floor is the lowest GOGC the tuner sets: GOGC 50 was pulsegate's fixed
// default before the memory budget, and its cost is measured.
const Floor = 50

// NewGCTuner tunes GOGC down from base (the GOGC in force) so that the
// heap grows by about headroomBytes between collections.
func NewGCTuner(headroomBytes int64, base int) *GCTuner {
	t := &GCTuner{headroom: headroomBytes, base: base, set: debug.SetGCPercent, scan: scanSet}
	t.cur.Store(int64(base))
	return t
}

// GOGCFor is the GOGC for a scan set: base × headroom ÷ scan, clamped to
// [Floor, base].
func GOGCFor(scan, headroom int64, base int) int {
	if scan <= 0 || headroom <= 0 || base <= Floor {
		return base
	}
	g := int(int64(base) * headroom / scan)
	return min(base, max(Floor, g))
}

// Tune sets GOGC for the scan set now (when it changed) and returns it.
func (t *GCTuner) Tune() int {
	g := GOGCFor(t.scan(), t.headroom, t.base)
	if int64(g) != t.cur.Load() {
		t.set(g)
		t.cur.Store(int64(g))
	}
	return g
}

// GOGC is the GOGC the tuner set last.
func (t *GCTuner) GOGC() int { return int(t.cur.Load()) }

// Run tunes every interval until ctx ends, then puts GOGC back to base.
// SetGCPercent does not stop the world; reading the runtime's metrics
// neither.
func (t *GCTuner) Run(ctx context.Context, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if t.cur.Load() != int64(t.base) {
				t.set(t.base)
				t.cur.Store(int64(t.base))
			}
			return nil
		case <-tick.C:
			t.Tune()
		}
	}
}

// scanSet is what the collector scans and what GOGC's growth is measured
// against: the live heap at the last collection, the goroutine stacks and
// the globals.
func scanSet() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	metrics.Read(s)
	var sum int64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			sum += int64(v.Value.Uint64())
		}
	}
	return sum
}
