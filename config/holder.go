package config

import (
	"errors"
	"sync"
	"sync/atomic"
)

// ErrStaleVersion is returned by Holder.Update when the caller's version is
// not the current one (someone else changed the configuration since the
// caller read it). The admin API answers 409.
var ErrStaleVersion = errors.New("configuration changed since it was read (stale version)")

// snapshot is one published configuration and its version.
type snapshot struct {
	cfg     *Config
	version uint64
}

// Holder publishes the live configuration. Readers call Get (lock-free, an
// atomic pointer load) on every use; writers call Update with the version
// they read. Published configs are shared and must not be mutated: build a
// new one (Patch does) and Update.
type Holder struct {
	cur atomic.Pointer[snapshot]
	// started is the configuration the process started with: settings that
	// need a restart keep its values until then.
	started *Config

	mu         sync.Mutex // serialises Update and guards the fields below
	subs       []func(*Config)
	pending    []snapshot // swapped but not yet delivered to subscribers
	delivering bool       // a goroutine is running subscribers
}

// NewHolder publishes c as version 1.
func NewHolder(c *Config) *Holder {
	h := &Holder{started: c}
	h.cur.Store(&snapshot{cfg: c, version: 1})
	return h
}

// Get returns the current configuration and its version. It never blocks.
func (h *Holder) Get() (*Config, uint64) {
	s := h.cur.Load()
	return s.cfg, s.version
}

// PendingRestart lists the settings changed since start that take effect
// only after a restart (RestartKeys), empty when there are none.
func (h *Holder) PendingRestart() []string {
	cur, _ := h.Get()
	return RestartRequired(h.started, cur)
}

// Update publishes next if fromVersion is the current version (fromVersion
// 0 skips the check: last writer wins) and returns the new version. It
// returns ErrStaleVersion, changing nothing, when another update came
// first. next must already be valid (Load and Patch validate); a nil next
// is refused.
//
// Subscribers then run synchronously on the calling goroutine, outside any
// lock, once per published version, in version order. If another goroutine
// is already running subscribers (a concurrent Update, or an Update called
// from inside a subscriber), that goroutine delivers this version too, right
// after the ones before it, and this Update returns without waiting.
func (h *Holder) Update(fromVersion uint64, next *Config) (uint64, error) {
	if next == nil {
		return 0, errors.New("updating configuration: nil config")
	}
	h.mu.Lock()
	cur := h.cur.Load()
	if fromVersion != 0 && fromVersion != cur.version {
		h.mu.Unlock()
		return 0, ErrStaleVersion
	}
	s := snapshot{cfg: next, version: cur.version + 1}
	h.cur.Store(&s)
	h.pending = append(h.pending, s)
	if h.delivering {
		h.mu.Unlock()
		return s.version, nil
	}
	h.delivering = true
	h.deliver() // unlocks h.mu
	return s.version, nil
}

// deliver runs subscribers for every pending snapshot, in order, without
// holding h.mu while they run. Called with h.mu held; returns with it
// released. A panicking subscriber's panic propagates to the caller of
// Update; the rest of that batch is not delivered, and delivery resumes with
// the next Update.
func (h *Holder) deliver() {
	locked := true
	defer func() {
		if !locked {
			h.mu.Lock()
		}
		h.delivering = false
		h.mu.Unlock()
	}()
	for len(h.pending) > 0 {
		batch := h.pending
		h.pending = nil
		subs := h.subs // Subscribe replaces the slice; this one is never written
		h.mu.Unlock()
		locked = false
		for _, s := range batch {
			for _, fn := range subs {
				fn(s.cfg)
			}
		}
		h.mu.Lock()
		locked = true
	}
}

// Subscribe registers fn to run after each successful Update with the new
// configuration (see Update for when and where it runs). fn must not block
// for long: it delays the next subscriber and the updater. It is not called
// for the configuration current at the time of subscribing; call Get for that.
func (h *Holder) Subscribe(fn func(*Config)) {
	if fn == nil {
		return
	}
	h.mu.Lock()
	subs := make([]func(*Config), len(h.subs), len(h.subs)+1)
	copy(subs, h.subs)
	h.subs = append(subs, fn)
	h.mu.Unlock()
}
