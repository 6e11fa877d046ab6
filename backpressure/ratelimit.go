package backpressure

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// rateDelay returns how long until lim has one token at now (0 if it has).
// Unlike ReserveN it neither allocates nor changes the limiter.
func rateDelay(lim *rate.Limiter, now time.Time) time.Duration {
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	r := float64(lim.Limit())
	if r <= 0 || math.IsInf(r, 0) {
		return time.Second
	}
	return time.Duration((1 - tokens) / r * float64(time.Second))
}

// retryAfterRate turns a token-bucket delay into whole seconds, at least 1.
func retryAfterRate(d time.Duration) int {
	return clampSecondsMin1(math.Ceil(d.Seconds()))
}

func clampSecondsMin1(s float64) int {
	if !(s >= 1) {
		return 1
	}
	if s > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(s)
}

// clientShards splits the per-client map so that clients do not share one
// lock; each shard holds an LRU list bounded to its share of the cap.
const clientShards = 32

// clientEntry is one client's bucket, on its shard's LRU list.
type clientEntry struct {
	key        netip.Addr
	lim        *rate.Limiter
	prev, next *clientEntry
}

type clientShard struct {
	mu         sync.Mutex
	m          map[netip.Addr]*clientEntry
	head, tail *clientEntry // head = most recently used
	capacity   int
}

// clientLimiter rate-limits each socket peer address separately, with a
// bounded number of remembered peers (least recently seen evicted first).
// An evicted peer starts again with a full bucket, which is the documented
// price of bounded memory.
type clientLimiter struct {
	shards [clientShards]clientShard
	mu     sync.Mutex // serialises reconfigure
	params atomic.Pointer[clientParams]
}

// clientParams are the bucket settings new entries get.
type clientParams struct {
	rps   rate.Limit
	burst int
}

func newClientLimiter(rps float64, burst, maxClients int) *clientLimiter {
	c := &clientLimiter{}
	c.reconfigure(rps, burst, maxClients)
	return c
}

// reconfigure applies new settings to every remembered client at once and
// re-caps the shards (evicting the least recent if the cap shrank).
func (c *clientLimiter) reconfigure(rps float64, burst, maxClients int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.params.Store(&clientParams{rps: rate.Limit(rps), burst: burst})
	per := (maxClients + clientShards - 1) / clientShards
	if per < 1 {
		per = 1
	}
	now := time.Now()
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		if sh.m == nil {
			sh.m = make(map[netip.Addr]*clientEntry)
		}
		sh.capacity = per
		for e := sh.head; e != nil; e = e.next {
			e.lim.SetLimitAt(now, rate.Limit(rps))
			e.lim.SetBurstAt(now, burst)
		}
		for len(sh.m) > sh.capacity {
			sh.evictLocked()
		}
		sh.mu.Unlock()
	}
}

// reset forgets every client.
func (c *clientLimiter) reset() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.head, sh.tail = nil, nil
		sh.mu.Unlock()
	}
}

// size returns how many clients are remembered.
func (c *clientLimiter) size() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func shardOf(a netip.Addr) int {
	b := a.As16()
	// FNV-1a over the address bytes.
	h := uint32(2166136261)
	for _, x := range b {
		h ^= uint32(x)
		h *= 16777619
	}
	return int(h % clientShards)
}

// allow takes one token from addr's bucket at now; if none, it returns the
// delay until one is available.
func (c *clientLimiter) allow(addr netip.Addr, now time.Time) (bool, time.Duration) {
	sh := &c.shards[shardOf(addr)]
	sh.mu.Lock()
	e := sh.m[addr]
	if e == nil {
		e = c.newEntryLocked(sh, addr)
	} else if sh.head != e {
		sh.unlinkLocked(e)
		sh.pushFrontLocked(e)
	}
	ok := e.lim.AllowN(now, 1)
	var d time.Duration
	if !ok {
		d = rateDelay(e.lim, now)
	}
	sh.mu.Unlock()
	return ok, d
}

// newEntryLocked makes room (evicting the least recently seen client when
// the shard is full) and inserts addr with a full bucket.
func (c *clientLimiter) newEntryLocked(sh *clientShard, addr netip.Addr) *clientEntry {
	p := c.params.Load()
	if len(sh.m) >= sh.capacity {
		sh.evictLocked()
	}
	e := &clientEntry{key: addr, lim: rate.NewLimiter(p.rps, p.burst)}
	sh.m[addr] = e
	sh.pushFrontLocked(e)
	return e
}

func (sh *clientShard) evictLocked() {
	e := sh.tail
	if e == nil {
		return
	}
	sh.unlinkLocked(e)
	delete(sh.m, e.key)
}

func (sh *clientShard) unlinkLocked(e *clientEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		sh.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (sh *clientShard) pushFrontLocked(e *clientEntry) {
	e.prev, e.next = nil, sh.head
	if sh.head != nil {
		sh.head.prev = e
	} else {
		sh.tail = e
	}
	sh.head = e
}

// peerAddr extracts the socket peer's IP from r.RemoteAddr ("ip:port" as
// net/http sets it). Client-sent headers are never consulted. IPv4-mapped
// IPv6 addresses are unmapped so one client has one key.
func peerAddr(remote string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}
