package proxy

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Latency histogram with log-linear buckets (HDR style): values are
// microseconds; below 32 µs each microsecond has its own bucket, above that
// every power of two is split into 32 equal sub-buckets. A bucket is at
// most 1/32 of its lower bound wide, so reporting its midpoint is within
// ±1.6 % of any value in it: the "≤ 2 % relative error" the API promises.
const (
	histSubBits    = 5
	histSub        = 1 << histSubBits // 32 sub-buckets per octave
	histMaxExp     = 26               // top octave: 2^31 µs ≈ 36 min; slower is clamped
	histNumBuckets = histSub + histMaxExp*histSub + histSub
)

// histIndex maps a duration to its bucket.
func histIndex(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if d < 0 {
		us = 0
	}
	if us < histSub {
		return int(us)
	}
	e := bits.Len64(us) - (histSubBits + 1) // us>>e has histSubBits+1 bits: in [32, 64)
	if e > histMaxExp {
		return histNumBuckets - 1
	}
	return histSub + e*histSub + int(us>>uint(e)) - histSub
}

// histValue returns the midpoint of bucket i, in seconds.
func histValue(i int) float64 {
	if i < histSub {
		return (float64(i) + 0.5) / 1e6
	}
	i -= histSub
	e := i / histSub
	m := uint64(i%histSub + histSub)
	lo := m << uint(e)
	width := uint64(1) << uint(e)
	return (float64(lo) + float64(width)/2) / 1e6
}

// hist is a concurrent latency histogram: Record is two atomic adds.
type hist struct {
	buckets [histNumBuckets]atomic.Uint32
}

func (h *hist) record(d time.Duration) { h.buckets[histIndex(d)].Add(1) }

func (h *hist) reset() {
	for i := range h.buckets {
		h.buckets[i].Store(0)
	}
}

// addTo adds h's counts into dst.
func (h *hist) addTo(dst *histCounts) {
	for i := range h.buckets {
		if v := h.buckets[i].Load(); v != 0 {
			dst[i] += uint64(v)
		}
	}
}

// histCounts is a merged, non-concurrent copy of one or more hists.
type histCounts [histNumBuckets]uint64

// quantile returns the q-quantile (0 < q ≤ 1) in seconds, or 0 if empty.
func (c *histCounts) quantile(q float64) float64 {
	var total uint64
	for _, v := range c {
		total += v
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > total {
		rank = total
	}
	var seen uint64
	for i, v := range c {
		seen += v
		if seen >= rank {
			return histValue(i)
		}
	}
	return histValue(histNumBuckets - 1)
}
