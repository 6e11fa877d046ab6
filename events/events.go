// Package events is a small in-process broadcaster for live updates (the
// dashboard's SSE stream): publishers never block, slow subscribers lose
// events (counted), and Close ends every subscription.
package events

import (
	"sync"
	"sync/atomic"
)

// Event is one live update.
type Event struct {
	// Type names the event, e.g. "snapshot", "alert.firing".
	Type string
	// Data is JSON-ready.
	Data any
}

// Hub fans events out to subscribers. The zero value is not usable; use New.
type Hub struct {
	mu      sync.Mutex
	subs    map[chan Event]struct{}
	closed  bool
	dropped atomic.Uint64
}

// New returns an empty Hub.
func New() *Hub { return &Hub{subs: map[chan Event]struct{}{}} }

// Subscribe returns a channel of events with room for buf, and a cancel
// function. The channel is closed by cancel or by Close.
func (h *Hub) Subscribe(buf int) (<-chan Event, func()) {
	ch := make(chan Event, buf)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		close(ch)
		return ch, func() {}
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			if _, ok := h.subs[ch]; ok {
				delete(h.subs, ch)
				close(ch)
			}
			h.mu.Unlock()
		})
	}
}

// Publish sends ev to every subscriber that has room; it never blocks.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default:
			h.dropped.Add(1)
		}
	}
}

// Subscribers is the number of live subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Dropped counts events lost to full subscriber buffers.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// Close ends every subscription; later Subscribes get a closed channel.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for ch := range h.subs {
		close(ch)
		delete(h.subs, ch)
	}
}
