package history

import "time"

// points returns copies of the ring's points whose step is at least
// fromStep, oldest first (the archive's flush reads what is new).
func (h *History) points(fromStep int64) []point {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := int64(len(h.ring))
	lo := max(fromStep, h.last-n+1)
	var out []point
	for s := lo; s <= h.last; s++ {
		p := h.ring[((s%n)+n)%n]
		if p.step == s && p.ticks > 0 {
			out = append(out, p)
		}
	}
	return out
}

// restore puts points read back from the archive into the ring (a slot
// that already holds the same or a newer step is left alone).
func (h *History) restore(ps []point) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := int64(len(h.ring))
	for _, p := range ps {
		if p.step <= h.last-n || p.ticks == 0 {
			continue
		}
		slot := &h.ring[((p.step%n)+n)%n]
		if slot.step >= p.step {
			continue
		}
		*slot = p
		h.last = max(h.last, p.step)
	}
}

// QueryRange is Query over [from, to): the ring's steps whose start lies
// in the range, merged as Query merges them.
func (h *History) QueryRange(name string, from, to time.Time) View {
	resSec := int64(h.res / time.Second)
	fromStep := ceilDiv(from.Unix(), resSec)
	toStep := ceilDiv(to.Unix(), resSec) - 1
	return h.query(name, fromStep, toStep)
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }
