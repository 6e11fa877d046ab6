package backpressure

import (
	"time"
)

// State is the Chain's JSON-ready snapshot (for the performance JSON and
// the dashboard). Counters are totals since start.
type State struct {
	// Mode is off, enforcing, shedding or dry-run; Since is when it was
	// entered and Why explains it in one sentence.
	Mode  string    `json:"mode"`
	Since time.Time `json:"since"`
	Why   string    `json:"why"`
	// Limit is the effective concurrency limit (fixed, adaptive or the lower
	// of both); 0 = none. MaxConcurrency is the configured fixed limit.
	Limit          int `json:"limit"`
	MaxConcurrency int `json:"max_concurrency"`
	// InFlight holds a slot (forwarded to the app); Queued waits for one.
	InFlight int64 `json:"in_flight"`
	Queued   int64 `json:"queued"`
	// QueueLimit is the queue's bound (backpressure.queue_size),
	// QueueWarning the warning threshold.
	QueueLimit          int     `json:"queue_limit"`
	QueueWarning        int     `json:"queue_warning"`
	QueueTimeoutSeconds float64 `json:"queue_timeout_seconds"`
	// QueueAbandoned counts clients that left while queued (never forwarded).
	QueueAbandoned uint64 `json:"queue_abandoned"`
	// DrainPerSecond is the measured slot release rate (EWMA) behind Retry-After.
	DrainPerSecond float64 `json:"drain_per_second"`
	// ShedFraction is the fraction of new normal-priority requests being
	// shed now; ShedLowPriorityFraction the same for low-priority routes.
	ShedFraction            float64 `json:"shed_fraction"`
	ShedLowPriorityFraction float64 `json:"shed_low_priority_fraction"`
	// ShedReason is overload:<signal> while shedding.
	ShedReason string `json:"shed_reason,omitempty"`
	// Pressure is the last level reported for each signal.
	Pressure map[string]string `json:"pressure"`
	// DryRun mirrors backpressure.dry_run.
	DryRun bool `json:"dry_run"`
	// Rejections counts rejected requests by reason; DryRunWouldReject
	// counts what dry-run mode would have rejected.
	Rejections        map[string]uint64 `json:"rejections"`
	DryRunWouldReject map[string]uint64 `json:"dry_run_would_reject"`
	// RateLimit shows the rate limiter settings.
	RateLimit RateLimitState `json:"rate_limit"`
	// Adaptive is the adaptive limiter's state; null when it is off.
	Adaptive *GradientState `json:"adaptive"`
	// CriticalRoutes and LowPriorityRoutes are the configured prefixes.
	CriticalRoutes    []string `json:"critical_routes"`
	LowPriorityRoutes []string `json:"low_priority_routes"`
}

// RateLimitState describes the rate limiters.
type RateLimitState struct {
	// RPS and Burst are the global bucket (RPS 0 = off).
	RPS   float64 `json:"rps"`
	Burst int     `json:"burst"`
	// Tokens is the global bucket's current fill (null when off).
	Tokens *float64 `json:"tokens"`
	// PerClientRPS and PerClientBurst are each peer's bucket (0 = off).
	PerClientRPS   float64 `json:"per_client_rps"`
	PerClientBurst int     `json:"per_client_burst"`
	// Clients is how many peers are remembered, MaxClients the cap.
	Clients    int `json:"clients"`
	MaxClients int `json:"max_clients"`
}

// TakePeaks returns the most requests in flight (holding a slot) and
// queued at any moment since the previous call (or start), and restarts
// both from the current levels: one caller (the heartbeat) owns the span.
func (c *Chain) TakePeaks() (inFlight, queued int64) { return c.lim.takePeaks() }

// State returns a snapshot of the limiters.
func (c *Chain) State() State {
	s := c.cfg.Load()
	now := c.now()
	st := State{
		MaxConcurrency:      s.maxConcurrency,
		InFlight:            c.lim.inFlight.Load(),
		Queued:              c.lim.waiting.Load(),
		QueueLimit:          s.queueBound,
		QueueWarning:        s.queueWarning,
		QueueTimeoutSeconds: s.queueTimeout.Seconds(),
		QueueAbandoned:      c.abandoned.Load(),
		DrainPerSecond:      c.drain.perSecond(),
		DryRun:              s.dryRun,
		Pressure:            make(map[string]string, nSignals),
		Rejections:          make(map[string]uint64, nReasons),
		DryRunWouldReject:   make(map[string]uint64, nReasons),
		CriticalRoutes:      append([]string{}, s.criticalPaths...),
		LowPriorityRoutes:   append([]string{}, s.lowPaths...),
		RateLimit: RateLimitState{
			RPS:            s.rateRPS,
			Burst:          s.rateBurst,
			PerClientRPS:   s.clientRPS,
			PerClientBurst: s.clientBurst,
			MaxClients:     s.clientMax,
		},
	}
	st.Limit = int(c.lim.limit.Load())
	if s.dryRun {
		st.Limit = int(c.dryLimit.Load())
	}
	if s.rateRPS > 0 {
		t := c.global.TokensAt(now)
		st.RateLimit.Tokens = &t
	}
	if s.clientRPS > 0 {
		st.RateLimit.Clients = c.client.size()
	}
	if sh := c.shed.Load(); sh != nil {
		st.ShedFraction = sh.normalFraction
		st.ShedLowPriorityFraction = sh.lowFraction
		st.ShedReason = sh.reason.String()
	}
	for i, lv := range c.gov.current() {
		st.Pressure[signals[i]] = lv.String()
	}
	for i := range nReasons {
		st.Rejections[Reasons[i]] = c.rejections[i].Load()
		st.DryRunWouldReject[Reasons[i]] = c.dryRun[i].Load()
	}
	c.adMu.Lock()
	if c.gradient != nil {
		g := c.gradient.State()
		st.Adaptive = &g
	}
	c.adMu.Unlock()
	c.modeMu.Lock()
	st.Mode = modes[c.mode.Load()]
	st.Since = c.modeSince
	st.Why = c.modeWhy
	c.modeMu.Unlock()
	return st
}
