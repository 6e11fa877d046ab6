package membudget

import (
	"context"
	"testing"
	"time"
)

func TestGOGCFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		scan, headroom int64
		base, want     int
	}{
		{4 * mib, 8 * mib, 100, 100},  // few connections: GOGC stays
		{8 * mib, 8 * mib, 100, 100},  // at the headroom
		{12 * mib, 8 * mib, 100, 66},  // above it: growth ≈ headroom
		{16 * mib, 8 * mib, 100, 50},  // 512 busy connections
		{120 * mib, 8 * mib, 100, 50}, // 4,096: not below the floor
		{16 * mib, 0, 100, 100},       // tuning off
		{16 * mib, 8 * mib, 40, 40},   // a base at or below the floor is kept
		{16 * mib, 8 * mib, 200, 100}, // from a higher base
		{0, 8 * mib, 100, 100},        // nothing measured yet
	} {
		if got := GOGCFor(tc.scan, tc.headroom, tc.base); got != tc.want {
			t.Errorf("GOGCFor(%d MiB, %d MiB, %d) = %d, want %d", tc.scan/mib, tc.headroom/mib, tc.base, got, tc.want)
		}
	}
}

// The tuner sets GOGC only when it changes, and follows the scan set down
// and back up.
func TestGCTunerFollowsTheScanSet(t *testing.T) {
	var sets []int
	scan := int64(4 << 20)
	tu := &GCTuner{headroom: 8 << 20, base: 100, set: func(g int) int { sets = append(sets, g); return 0 }, scan: func() int64 { return scan }}
	tu.cur.Store(100)
	tu.Tune()
	scan = 16 << 20
	tu.Tune()
	tu.Tune()
	scan = 2 << 20
	tu.Tune()
	if len(sets) != 2 || sets[0] != 50 || sets[1] != 100 || tu.GOGC() != 100 {
		t.Fatalf("sets %v, GOGC %d; want [50 100], 100", sets, tu.GOGC())
	}
}

// Run stops with its context and leaves GOGC at base.
func TestGCTunerRunStopsAndRestores(t *testing.T) {
	var last int
	tu := &GCTuner{headroom: 8 << 20, base: 100, set: func(g int) int { last = g; return 0 }, scan: func() int64 { return 64 << 20 }}
	tu.cur.Store(100)
	tu.Tune()
	if last != 50 {
		t.Fatalf("GOGC %d with a 64 MiB scan set; want 50", last)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- tu.Run(ctx, time.Hour) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if last != 100 || tu.GOGC() != 100 {
		t.Fatalf("after Run: GOGC %d (tuner says %d); want base 100", last, tu.GOGC())
	}
}

func TestScanSetReadsTheRuntime(t *testing.T) {
	if scanSet() <= 0 {
		t.Fatal("scan set 0: runtime/metrics names changed?")
	}
}
