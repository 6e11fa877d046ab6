package proxy

import (
	"sync/atomic"
	"time"
)

// cumulative holds counters since start that never reset, so that a reader
// can take the exact difference between two readings (a heartbeat's
// interval) without depending on the windows' slot boundaries.
type cumulative struct {
	timed      atomic.Uint64
	sumUS      atomic.Uint64
	ttfbUS     atomic.Uint64
	transferUS atomic.Uint64
	queueUS    atomic.Uint64
	buckets    [histNumBuckets]atomic.Uint64
}

func (c *cumulative) record(x *sample) {
	if !x.timed {
		return
	}
	c.timed.Add(1)
	c.sumUS.Add(uint64(x.total / time.Microsecond))
	c.ttfbUS.Add(uint64(x.ttfb / time.Microsecond))
	c.transferUS.Add(uint64(x.transfer / time.Microsecond))
	c.queueUS.Add(uint64(x.queueWait / time.Microsecond))
	c.buckets[histIndex(x.total)].Add(1)
}

// Counters are the proxy's totals since start: requests by status class,
// failures by error class, and the latency histogram (the same log-linear
// buckets as the windows) of the timed requests with their timing sums.
// Two readings subtract exactly (Sub): a monitoring interval's rollup.
type Counters struct {
	// Classes counts finished requests by status class ("2xx", "5xx",
	// "client_closed", "rejected", ...).
	Classes map[string]uint64
	// Errors counts failures by error class ("app_error", "upstream_timeout", ...).
	Errors map[string]uint64
	// Timed is the number of requests in the latency figures.
	Timed uint64
	// Buckets is the sparse latency histogram: bucket index → count.
	Buckets map[int]uint64
	// Sums of the timed requests' total, upstream TTFB, transfer and queue wait, in µs.
	SumUS, TTFBUS, TransferUS, QueueUS uint64
}

// Counters reads the totals since start. Reads are atomic per counter, not
// across counters: a request finishing during the read may be counted in
// one field and not yet another; the next reading accounts for it.
func (s *Stats) Counters() Counters {
	c := Counters{Classes: make(map[string]uint64, numClasses), Errors: make(map[string]uint64, numErrClasses), Buckets: map[int]uint64{}}
	for i, n := range classNames {
		c.Classes[n] = s.totalByClass[i].Load()
	}
	for i, n := range errClassNames {
		if n != "" {
			c.Errors[n] = s.totalErrors[i].Load()
		}
	}
	t := &s.total
	c.Timed, c.SumUS, c.TTFBUS = t.timed.Load(), t.sumUS.Load(), t.ttfbUS.Load()
	c.TransferUS, c.QueueUS = t.transferUS.Load(), t.queueUS.Load()
	for i := range t.buckets {
		if v := t.buckets[i].Load(); v != 0 {
			c.Buckets[i] = v
		}
	}
	return c
}

// Sub returns c − prev (counts that did not grow are left out).
func (c Counters) Sub(prev Counters) Counters {
	d := Counters{Classes: map[string]uint64{}, Errors: map[string]uint64{}, Buckets: map[int]uint64{},
		Timed: c.Timed - prev.Timed, SumUS: c.SumUS - prev.SumUS, TTFBUS: c.TTFBUS - prev.TTFBUS,
		TransferUS: c.TransferUS - prev.TransferUS, QueueUS: c.QueueUS - prev.QueueUS}
	for k, v := range c.Classes {
		if v > prev.Classes[k] {
			d.Classes[k] = v - prev.Classes[k]
		}
	}
	for k, v := range c.Errors {
		if v > prev.Errors[k] {
			d.Errors[k] = v - prev.Errors[k]
		}
	}
	for k, v := range c.Buckets {
		if v > prev.Buckets[k] {
			d.Buckets[k] = v - prev.Buckets[k]
		}
	}
	return d
}
