package latency

import (
	"math"
	"testing"
	"time"
)

// TestMidpointWithinPromisedError: every value reads back as its bucket's
// midpoint within 1.6 % (or half a microsecond below 32 µs), buckets are in
// order and contiguous, and values beyond the top octave are clamped.
func TestMidpointWithinPromisedError(t *testing.T) {
	for us := int64(0); us < 1<<31; us = us + 1 + us/7 {
		d := time.Duration(us) * time.Microsecond
		i := Index(d)
		lo, hi := Bounds(i)
		v := float64(us) / 1e6
		if v < lo-1e-12 || v >= hi+1e-12 {
			t.Fatalf("%v in bucket %d = [%g, %g)", d, i, lo, hi)
		}
		if us >= 32 && math.Abs(Value(i)-v)/v > 0.016 {
			t.Fatalf("%v reads %g s: more than 1.6 %% off", d, Value(i))
		}
	}
	for i := 1; i < Buckets; i++ {
		_, prevHi := Bounds(i - 1)
		lo, _ := Bounds(i)
		if math.Abs(lo-prevHi) > 1e-12 {
			t.Fatalf("bucket %d starts at %g, previous ends at %g", i, lo, prevHi)
		}
	}
	if got := Index(2 * time.Hour); got != Buckets-1 {
		t.Fatalf("two hours: bucket %d, want the last (%d)", got, Buckets-1)
	}
	if got := Index(-time.Second); got != 0 {
		t.Fatalf("a negative duration: bucket %d, want 0", got)
	}
}

// TestBucketsPinned pins the layout that stored rollups depend on: a
// sidecar of another version must read the same bucket for the same index.
func TestBucketsPinned(t *testing.T) {
	for _, c := range []struct {
		us   int64
		want int
	}{{0, 0}, {31, 31}, {32, 32}, {63, 63}, {64, 64}, {65, 64}, {66, 65}, {128, 96}, {1 << 40, Buckets - 1}} {
		if got := Index(time.Duration(c.us) * time.Microsecond); got != c.want {
			t.Errorf("Index(%d µs) = %d; want %d", c.us, got, c.want)
		}
	}
	if Buckets != 896 {
		t.Errorf("Buckets = %d; want 896", Buckets)
	}
}
