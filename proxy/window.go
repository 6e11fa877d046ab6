package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// outcome classes of a request, as counted in windows.
const (
	class1xx = iota // includes 101 upgrades
	class2xx
	class3xx
	class4xx
	class5xx
	classClientClosed // the client went away before the answer was complete
	classRejected     // backpressure answered 429/503 itself
	numClasses
)

var classNames = [numClasses]string{"1xx", "2xx", "3xx", "4xx", "5xx", "client_closed", "rejected"}

// sample is one finished request as the windows see it.
type sample struct {
	class     int
	isError   bool // counts toward error_rate (see README: app 5xx + proxy 502/504)
	timed     bool // counts toward latency figures (forwarded, answered, not a stream)
	slow      bool
	total     time.Duration
	ttfb      time.Duration
	transfer  time.Duration
	queueWait time.Duration
	bytes     int64
}

// slot holds one time slice of a window. Writers only add atomically;
// a slot is zeroed, under window.mu, by the first writer of a new epoch
// before that epoch is published, so no add is ever lost to a reset.
type slot struct {
	epoch      atomic.Int64
	count      atomic.Uint64 // every finished request
	timed      atomic.Uint64 // requests in the latency figures
	errors     atomic.Uint64
	slow       atomic.Uint64
	satisfied  atomic.Uint64 // Apdex: timed and ≤ T
	tolerating atomic.Uint64 // Apdex: timed and ≤ 4T
	sumUS      atomic.Uint64 // total time of timed requests, µs
	ttfbUS     atomic.Uint64
	transferUS atomic.Uint64
	queueUS    atomic.Uint64
	bytes      atomic.Uint64
	classes    [numClasses]atomic.Uint64
	h          hist
}

func (s *slot) zero() {
	s.count.Store(0)
	s.timed.Store(0)
	s.errors.Store(0)
	s.slow.Store(0)
	s.satisfied.Store(0)
	s.tolerating.Store(0)
	s.sumUS.Store(0)
	s.ttfbUS.Store(0)
	s.transferUS.Store(0)
	s.queueUS.Store(0)
	s.bytes.Store(0)
	for i := range s.classes {
		s.classes[i].Store(0)
	}
	s.h.reset()
}

// window is a ring of slots of equal width covering a rolling period.
type window struct {
	width int64 // slot width, seconds
	slots []slot
	mu    sync.Mutex // only taken when a slot turns over
}

func newWindow(width time.Duration, n int) *window {
	return &window{width: int64(width / time.Second), slots: make([]slot, n)}
}

func (w *window) slotFor(now time.Time) *slot {
	ep := now.Unix() / w.width
	s := &w.slots[ep%int64(len(w.slots))]
	if s.epoch.Load() != ep {
		w.mu.Lock()
		if s.epoch.Load() != ep {
			s.zero()
			s.epoch.Store(ep)
		}
		w.mu.Unlock()
	}
	return s
}

// record adds one request. apdexT is Apdex T.
func (w *window) record(now time.Time, x *sample, apdexT time.Duration) {
	s := w.slotFor(now)
	s.count.Add(1)
	s.classes[x.class].Add(1)
	if x.isError {
		s.errors.Add(1)
	}
	if x.slow {
		s.slow.Add(1)
	}
	if x.bytes > 0 {
		s.bytes.Add(uint64(x.bytes))
	}
	if !x.timed {
		return
	}
	s.timed.Add(1)
	s.sumUS.Add(uint64(x.total / time.Microsecond))
	s.ttfbUS.Add(uint64(x.ttfb / time.Microsecond))
	s.transferUS.Add(uint64(x.transfer / time.Microsecond))
	s.queueUS.Add(uint64(x.queueWait / time.Microsecond))
	if !x.isError {
		if x.total <= apdexT {
			s.satisfied.Add(1)
		} else if x.total <= 4*apdexT {
			s.tolerating.Add(1)
		}
	}
	s.h.record(x.total)
}

// agg is the sum of a window's slots over a period.
type agg struct {
	seconds                  float64 // period actually covered
	count, timed, errors     uint64
	slow, satisfied, tolerat uint64
	sumUS, ttfbUS, xferUS    uint64
	queueUS, bytes           uint64
	classes                  [numClasses]uint64
	h                        histCounts
}

// sum aggregates the slots of the last period (rounded to whole slots,
// the current partial one included), clipped to the time since start.
func (w *window) sum(now time.Time, period time.Duration, start time.Time) *agg {
	a := &agg{}
	cur := now.Unix() / w.width
	n := int64(period/time.Second) / w.width
	if n < 1 {
		n = 1
	}
	if n > int64(len(w.slots)) {
		n = int64(len(w.slots))
	}
	first := cur - n + 1
	for i := range w.slots {
		s := &w.slots[i]
		ep := s.epoch.Load()
		if ep < first || ep > cur {
			continue
		}
		a.count += s.count.Load()
		a.timed += s.timed.Load()
		a.errors += s.errors.Load()
		a.slow += s.slow.Load()
		a.satisfied += s.satisfied.Load()
		a.tolerat += s.tolerating.Load()
		a.sumUS += s.sumUS.Load()
		a.ttfbUS += s.ttfbUS.Load()
		a.xferUS += s.transferUS.Load()
		a.queueUS += s.queueUS.Load()
		a.bytes += s.bytes.Load()
		for c := range s.classes {
			a.classes[c] += s.classes[c].Load()
		}
		s.h.addTo(&a.h)
	}
	from := time.Unix(first*w.width, 0)
	if start.After(from) {
		from = start
	}
	a.seconds = now.Sub(from).Seconds()
	if a.seconds < 1 {
		a.seconds = 1
	}
	return a
}
