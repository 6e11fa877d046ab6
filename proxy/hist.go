package proxy

import (
	"sync/atomic"
	"time"

	"github.com/pulsegate/pulsegate/latency"
)

// The latency histogram's buckets are latency's log-linear geometry
// (±1.6 % at the midpoint), shared with the fleet rollups and the release
// comparison.
const histNumBuckets = latency.Buckets

func histIndex(d time.Duration) int { return latency.Index(d) }

func histValue(i int) float64 { return latency.Value(i) }

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
