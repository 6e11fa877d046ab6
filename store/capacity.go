package store

// CapacityFigures are backpressure's figures over a span. In a heartbeat's
// Rollup they are one sidecar's, measured over the heartbeat's span; in
// the fleet's merged rows and FleetStep they are the fleet's (the rules
// below). A nil *CapacityFigures is not measured: a row written before
// schema version 5, or a sidecar without backpressure counters.
type CapacityFigures struct {
	// Rejections counts pulsegate's own 429/503 answers in the span, and
	// by cause: RejectedRateLimit (reasons rate, rate_client),
	// RejectedQueue (queue_full, queue_timeout), RejectedShed
	// (overload:<signal>). Across instances: summed.
	Rejections        uint64 `json:"rejections"`
	RejectedRateLimit uint64 `json:"rejections_rate_limit"`
	RejectedQueue     uint64 `json:"rejections_queue"`
	RejectedShed      uint64 `json:"rejections_shed"`
	// PeakInFlight and PeakQueued are the most requests holding a
	// concurrency slot and waiting for one at any moment of the span. For
	// the fleet: the highest, over the span's minutes, of the sum of each
	// instance's peak in the minute: an upper bound of the fleet's peak
	// (the instances' peaks need not coincide within the minute).
	PeakInFlight int64 `json:"peak_in_flight"`
	PeakQueued   int64 `json:"peak_queued"`
	// ConcurrencyLimit is the effective concurrency limit in force at the
	// span's end (0 = none). For the fleet: the highest, over the span's
	// minutes, of the sum of the limits of the instances reporting one in
	// the minute (each instance's latest): the fleet's capacity.
	ConcurrencyLimit int64 `json:"concurrency_limit"`
}

// capacityColumns are the schema version 5 columns of the heartbeat,
// minute and hour rows: a row's CapacityFigures, NULL when not measured.
var capacityColumns = []string{"rejections", "rejections_rate_limit", "rejections_queue", "rejections_shed",
	"peak_in_flight", "peak_queued", "concurrency_limit"}

// capacityArgs are c's values for capacityColumns (NULLs for nil).
func capacityArgs(c *CapacityFigures) []any {
	if c == nil {
		return []any{nil, nil, nil, nil, nil, nil, nil}
	}
	return []any{int64(c.Rejections), int64(c.RejectedRateLimit), int64(c.RejectedQueue), int64(c.RejectedShed),
		c.PeakInFlight, c.PeakQueued, c.ConcurrencyLimit}
}

// mergeSpans merges two consecutive spans of one instance (b the later):
// counts summed, peaks the higher, the limit b's. A nil side is not
// measured: the other is kept.
func mergeSpans(a, b *CapacityFigures) *CapacityFigures {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	out := *b
	out.addCounts(a)
	return &out
}

// addCounts adds o's rejections to c's and keeps the higher peaks.
func (c *CapacityFigures) addCounts(o *CapacityFigures) {
	c.Rejections += o.Rejections
	c.RejectedRateLimit += o.RejectedRateLimit
	c.RejectedQueue += o.RejectedQueue
	c.RejectedShed += o.RejectedShed
	c.PeakInFlight, c.PeakQueued = max(c.PeakInFlight, o.PeakInFlight), max(c.PeakQueued, o.PeakQueued)
}

// foldFleet merges o, the fleet's figures of a later minute or hour, into
// *acc: counts summed, peaks and limit the higher (each already the sum
// over the instances within its minute).
func foldFleet(acc **CapacityFigures, o *CapacityFigures) {
	if o == nil {
		return
	}
	if *acc == nil {
		c := *o
		*acc = &c
		return
	}
	a := *acc
	a.addCounts(o)
	a.ConcurrencyLimit = max(a.ConcurrencyLimit, o.ConcurrencyLimit)
}

// capUnit gathers the heartbeat rows of one minute (or one series step
// shorter than a minute) into the fleet's figures: counts summed, each
// instance's peaks (its highest in the unit) and limit (its latest)
// summed over the instances.
type capUnit struct {
	start int64
	sum   *CapacityFigures
	inst  map[string]*CapacityFigures
}

func newCapUnit(start int64) *capUnit {
	return &capUnit{start: start, inst: map[string]*CapacityFigures{}}
}

// add merges one instance's row (rows in time order).
func (u *capUnit) add(instance string, c *CapacityFigures) {
	if c == nil {
		return
	}
	if u.sum == nil {
		u.sum = &CapacityFigures{}
	}
	s := u.sum
	s.Rejections += c.Rejections
	s.RejectedRateLimit += c.RejectedRateLimit
	s.RejectedQueue += c.RejectedQueue
	s.RejectedShed += c.RejectedShed
	in := u.inst[instance]
	if in == nil {
		in = &CapacityFigures{}
		u.inst[instance] = in
	}
	if c.PeakInFlight > in.PeakInFlight {
		s.PeakInFlight += c.PeakInFlight - in.PeakInFlight
		in.PeakInFlight = c.PeakInFlight
	}
	if c.PeakQueued > in.PeakQueued {
		s.PeakQueued += c.PeakQueued - in.PeakQueued
		in.PeakQueued = c.PeakQueued
	}
	s.ConcurrencyLimit += c.ConcurrencyLimit - in.ConcurrencyLimit
	in.ConcurrencyLimit = c.ConcurrencyLimit
}
