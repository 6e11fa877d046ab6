package backpressure

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// admitResult is the outcome of limiter.acquire.
type admitResult uint8

const (
	admitted      admitResult = iota
	rejectedFull              // the wait queue is at its bound
	rejectedTime              // waited queue_timeout without a slot
	abandonedWait             // the client went away while queued
)

// waiter is one request queued for a slot. Waiters are pooled; each lives on
// an intrusive doubly linked FIFO list so a cancelled one leaves in O(1).
type waiter struct {
	prev, next *waiter
	ready      chan struct{} // receives one value when granted (cap 1)
	granted    bool          // set under limiter.mu when a slot was handed over
	queued     bool          // on the list (under limiter.mu)
	timer      *time.Timer
}

// limiter is the concurrency enforcer: at most limit requests hold a slot;
// the rest wait FIFO, at most bound of them, each at most the queue timeout.
//
// Fast path (no one queued, a slot free): one CAS on inFlight, no lock.
// The mutex is taken only to queue, to hand a slot to a waiter, or to
// leave the queue. A releaser decrements inFlight and then reads waiting;
// a queuer increments waiting (under mu) and then re-reads inFlight (under
// mu), so whichever runs second sees the other and no wake-up is lost.
type limiter struct {
	inFlight atomic.Int64
	limit    atomic.Int64 // 0 = unlimited
	waiting  atomic.Int64 // queue length
	releases atomic.Uint64
	bound    atomic.Int64 // most requests allowed to wait
	// peakInFlight and peakWaiting are the highest inFlight and waiting
	// since TakePeaks last read them.
	peakInFlight atomic.Int64
	peakWaiting  atomic.Int64

	mu         sync.Mutex
	head, tail *waiter
	pool       sync.Pool
}

func newLimiter() *limiter {
	l := &limiter{}
	l.pool.New = func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return &waiter{ready: make(chan struct{}, 1), timer: t}
	}
	return l
}

// tryFast takes a slot if one is free, without queueing, and returns the
// number in flight including this one (0 when no slot was free).
func (l *limiter) tryFast() int64 {
	for {
		lim := l.limit.Load()
		if lim <= 0 {
			n := l.inFlight.Add(1)
			raise(&l.peakInFlight, n)
			return n
		}
		n := l.inFlight.Load()
		if n >= lim {
			return 0
		}
		if l.inFlight.CompareAndSwap(n, n+1) {
			raise(&l.peakInFlight, n+1)
			return n + 1
		}
	}
}

// acquire takes a slot, waiting FIFO up to timeout. On admitted the caller
// must call release exactly once. wait is the time spent queued; n is the
// number in flight including this request when it was admitted without
// queueing (0 otherwise).
func (l *limiter) acquire(ctx context.Context, timeout time.Duration) (res admitResult, wait time.Duration, n int64) {
	if l.waiting.Load() == 0 {
		if n := l.tryFast(); n > 0 {
			return admitted, 0, n
		}
	}
	l.mu.Lock()
	if l.head == nil {
		if n := l.tryFast(); n > 0 {
			l.mu.Unlock()
			return admitted, 0, n
		}
	}
	if l.waiting.Load() >= l.bound.Load() {
		l.mu.Unlock()
		return rejectedFull, 0, 0
	}
	start := time.Now()
	w := l.pool.Get().(*waiter)
	w.granted = false
	l.pushLocked(w)
	l.dispatchLocked()
	l.mu.Unlock()

	w.timer.Reset(timeout)
	select {
	case <-w.ready:
		res = admitted
	case <-ctx.Done():
		res = abandonedWait
	case <-w.timer.C:
		res = rejectedTime
	}
	w.timer.Stop()
	if res != admitted {
		l.mu.Lock()
		granted := w.granted
		if !granted {
			l.removeLocked(w)
		}
		l.mu.Unlock()
		if granted {
			<-w.ready // sent under mu together with granted=true
			if res == rejectedTime {
				// The slot arrived at the deadline: use it rather than waste it.
				res = admitted
			} else {
				l.release()
			}
		}
	}
	l.pool.Put(w)
	return res, time.Since(start), 0
}

// release frees a slot and hands it to the oldest waiter, if any.
func (l *limiter) release() {
	l.inFlight.Add(-1)
	l.releases.Add(1)
	if l.waiting.Load() > 0 {
		l.mu.Lock()
		l.dispatchLocked()
		l.mu.Unlock()
	}
}

// dispatchLocked grants free slots to waiters in FIFO order.
func (l *limiter) dispatchLocked() {
	for l.head != nil {
		lim := l.limit.Load()
		n := l.inFlight.Load()
		if lim > 0 && n >= lim {
			return
		}
		if !l.inFlight.CompareAndSwap(n, n+1) {
			continue
		}
		raise(&l.peakInFlight, n+1)
		w := l.head
		l.removeLocked(w)
		w.granted = true
		w.ready <- struct{}{}
	}
}

func (l *limiter) pushLocked(w *waiter) {
	w.prev, w.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	w.queued = true
	raise(&l.peakWaiting, l.waiting.Add(1))
}

// raise sets *a to v when v is higher.
func raise(a *atomic.Int64, v int64) {
	for {
		p := a.Load()
		if v <= p || a.CompareAndSwap(p, v) {
			return
		}
	}
}

// takePeaks returns the highest in flight and waiting since the previous
// call (or start) and restarts both from the current levels.
func (l *limiter) takePeaks() (inFlight, waiting int64) {
	inFlight = max(l.peakInFlight.Swap(l.inFlight.Load()), l.inFlight.Load())
	waiting = max(l.peakWaiting.Swap(l.waiting.Load()), l.waiting.Load())
	return inFlight, waiting
}

func (l *limiter) removeLocked(w *waiter) {
	if !w.queued {
		return
	}
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	l.waiting.Add(-1)
}

// setLimit changes the limit (0 = unlimited) and admits waiters if it rose.
func (l *limiter) setLimit(n int) {
	if int64(n) == l.limit.Load() {
		return
	}
	l.limit.Store(int64(n))
	l.mu.Lock()
	l.dispatchLocked()
	l.mu.Unlock()
}

// setBound changes how many requests may wait. Requests already queued
// beyond a lowered bound keep their place.
func (l *limiter) setBound(n int) { l.bound.Store(int64(n)) }

// drainMeter estimates how fast slots are released (an EWMA of releases per
// second), to tell rejected clients when to retry. It is fed by the Chain's
// Run loop; tick is pure apart from its own fields.
type drainMeter struct {
	mu       sync.Mutex
	last     uint64
	lastTime time.Time
	rate     float64 // releases per second, EWMA
	primed   bool
	bits     atomic.Uint64 // rate as float64 bits, for lock-free reads
}

// drainAlpha weights the newest one-second reading in the EWMA.
const drainAlpha = 0.3

// tick folds the release counter's value at now into the EWMA.
func (d *drainMeter) tick(now time.Time, releases uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lastTime.IsZero() {
		d.last, d.lastTime = releases, now
		return
	}
	dt := now.Sub(d.lastTime).Seconds()
	if dt <= 0 {
		return
	}
	inst := float64(releases-d.last) / dt
	d.last, d.lastTime = releases, now
	if !d.primed {
		d.rate, d.primed = inst, true
	} else {
		d.rate = drainAlpha*inst + (1-drainAlpha)*d.rate
	}
	d.bits.Store(math.Float64bits(d.rate))
}

// perSecond returns the current drain-rate estimate (0 until measured).
func (d *drainMeter) perSecond() float64 { return math.Float64frombits(d.bits.Load()) }

// retryAfterSeconds estimates when a slot will be free for a client arriving
// now behind `ahead` queued requests: (ahead+1) ÷ drain rate, in whole
// seconds clamped to [1, 60]. With no measured drain yet it falls back to
// the queue timeout (the longest anyone waits), clamped the same way.
func retryAfterSeconds(ahead int64, drainPerSec float64, fallback time.Duration) int {
	var s float64
	if drainPerSec > 0.01 {
		s = math.Ceil(float64(ahead+1) / drainPerSec)
	} else {
		s = math.Ceil(fallback.Seconds())
	}
	return clampSeconds(s)
}

func clampSeconds(s float64) int {
	switch {
	case !(s >= 1): // also NaN
		return 1
	case s > 60:
		return 60
	}
	return int(s)
}
