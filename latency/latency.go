// Package latency is the geometry of pulsegate's latency histogram, shared
// by the proxy's windows (which record into it), the shared store's fleet
// rollups (which merge it across sidecars) and the release comparison
// (which tests it). One layout, so buckets written by one are read by the
// others.
//
// Buckets are log-linear (HDR style): values are microseconds; below 32 µs
// each microsecond has its own bucket, above that every power of two is
// split into 32 equal sub-buckets. A bucket is at most 1/32 of its lower
// bound wide, so reporting its midpoint is within ±1.6 % of any value in it:
// the "≤ 2 % relative error" the API promises.
package latency

import (
	"math/bits"
	"time"
)

const (
	subBits = 5
	sub     = 1 << subBits // 32 sub-buckets per octave
	maxExp  = 26           // top octave: 2^31–2^32 µs (36–72 min); slower is clamped into its last bucket
	// Buckets is the number of buckets.
	Buckets = sub + maxExp*sub + sub
)

// Index maps a duration to its bucket.
func Index(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if d < 0 {
		us = 0
	}
	if us < sub {
		return int(us)
	}
	e := bits.Len64(us) - (subBits + 1) // us>>e has subBits+1 bits: in [32, 64)
	if e > maxExp {
		return Buckets - 1
	}
	return sub + e*sub + int(us>>uint(e)) - sub
}

// Bounds returns bucket i's range [lo, hi) in seconds.
func Bounds(i int) (lo, hi float64) {
	if i < sub {
		return float64(i) / 1e6, float64(i+1) / 1e6
	}
	i -= sub
	e := i / sub
	m := uint64(i%sub + sub)
	l := m << uint(e)
	w := uint64(1) << uint(e)
	return float64(l) / 1e6, float64(l+w) / 1e6
}

// Value returns the midpoint of bucket i, in seconds: the value reported for
// every sample in it.
func Value(i int) float64 {
	lo, hi := Bounds(i)
	return (lo + hi) / 2
}
