package backpressure

import (
	"math"
	"slices"
	"time"
)

// GradientConfig configures a Gradient limiter.
type GradientConfig struct {
	// MinLimit and MaxLimit bound the computed limit (MinLimit ≥ 1).
	MinLimit, MaxLimit int
	// Headroom is the latency tolerated above the minimum RTT before the
	// limit shrinks, as a fraction of the minimum RTT (0.1 = 10 %).
	Headroom float64
	// MinRTTInterval is the mean time between two minimum-RTT measurements.
	MinRTTInterval time.Duration
	// Jitter spreads MinRTTInterval by ± this fraction so that a fleet of
	// sidecars does not pin their limits at the same moment. Zero means 0.15.
	Jitter float64
	// Window is how long samples are gathered before the limit is
	// recomputed. Zero means one second.
	Window time.Duration
	// MinRTTSamples is how many samples one minimum-RTT measurement needs.
	// Zero means 20.
	MinRTTSamples int
}

// Defaults for the zero values of GradientConfig.
const (
	defaultJitter        = 0.15
	defaultWindow        = time.Second
	defaultMinRTTSamples = 20
	sampleCap            = 256 // samples kept per window (reservoir beyond)
	minGradient          = 0.5
	maxGradient          = 2.0
)

// Gradient phases.
const (
	PhaseMinRTT = "min_rtt" // limit pinned to MinLimit while the minimum RTT is measured
	PhaseNormal = "normal"  // limit follows the gradient
)

// Gradient is a concurrency limit in the spirit of Envoy's adaptive
// concurrency filter. It alternates between two phases:
//
//   - min_rtt: the limit is pinned to MinLimit and MinRTTSamples successful
//     requests are timed; their median becomes the minimum RTT, the latency
//     the app shows when it is not queueing.
//   - normal: every Window the median RTT of that window's successful
//     requests is compared with it:
//     gradient = clamp(minRTT·(1+Headroom) / sampleRTT, 0.5, 2),
//     limit = clamp(gradient·limit + √limit, MinLimit, MaxLimit).
//     While fewer than half the slots were used in the window the limit is
//     not raised (an idle limit proves nothing).
//
// A new measurement starts every MinRTTInterval ± Jitter. Dropped samples
// (the request failed or its client left) carry no latency information and
// are only counted.
//
// Gradient is pure: time is passed in and jitter comes from the rnd function
// given to NewGradient. It is not safe for concurrent use; the Chain
// serialises calls.
type Gradient struct {
	cfg GradientConfig
	rnd func() float64

	limit      float64
	savedLimit float64
	phase      string
	minRTT     time.Duration
	nextMinRTT time.Time

	windowStart time.Time
	samples     [sampleCap]time.Duration
	seen        int // samples offered in this window / measurement
	maxInFlight int

	lastSampleRTT time.Duration
	lastGradient  float64
	lastUpdate    time.Time
	updates       uint64
	dropped       uint64
	measurements  uint64
}

// GradientState is a JSON-ready snapshot of a Gradient.
type GradientState struct {
	Limit             int     `json:"limit"`
	Phase             string  `json:"phase"`
	MinRTTSeconds     float64 `json:"min_rtt_seconds"`
	SampleRTTSeconds  float64 `json:"sample_rtt_seconds"`
	Gradient          float64 `json:"gradient"`
	MinLimit          int     `json:"min_limit"`
	MaxLimit          int     `json:"max_limit"`
	Headroom          float64 `json:"headroom"`
	NextMinRTT        string  `json:"next_min_rtt,omitempty"`
	LastUpdate        string  `json:"last_update,omitempty"`
	Updates           uint64  `json:"updates"`
	MinRTTMeasurement uint64  `json:"min_rtt_measurements"`
	DroppedSamples    uint64  `json:"dropped_samples"`
}

// NewGradient returns a limiter that starts measuring the minimum RTT at
// now. rnd returns numbers in [0,1) for jitter (nil = no jitter).
func NewGradient(cfg GradientConfig, now time.Time, rnd func() float64) *Gradient {
	g := &Gradient{rnd: rnd}
	g.Reconfigure(cfg)
	g.limit = float64(g.cfg.MinLimit)
	g.savedLimit = g.limit
	g.startMinRTT(now)
	return g
}

// Reconfigure changes the bounds and tuning without losing the measured
// minimum RTT; the limit is re-clamped to the new bounds.
func (g *Gradient) Reconfigure(cfg GradientConfig) {
	if cfg.MinLimit < 1 {
		cfg.MinLimit = 1
	}
	if cfg.MaxLimit < cfg.MinLimit {
		cfg.MaxLimit = cfg.MinLimit
	}
	if cfg.Jitter <= 0 || cfg.Jitter >= 1 {
		cfg.Jitter = defaultJitter
	}
	if cfg.Window <= 0 {
		cfg.Window = defaultWindow
	}
	if cfg.MinRTTSamples <= 0 {
		cfg.MinRTTSamples = defaultMinRTTSamples
	}
	if cfg.MinRTTSamples > sampleCap {
		cfg.MinRTTSamples = sampleCap
	}
	g.cfg = cfg
	g.limit = g.clamp(g.limit)
	g.savedLimit = g.clamp(g.savedLimit)
}

func (g *Gradient) clamp(l float64) float64 {
	return math.Max(float64(g.cfg.MinLimit), math.Min(float64(g.cfg.MaxLimit), l))
}

// Limit returns the current concurrency limit.
func (g *Gradient) Limit() int {
	if g.phase == PhaseMinRTT {
		return g.cfg.MinLimit
	}
	return int(g.limit)
}

func (g *Gradient) startMinRTT(now time.Time) {
	if g.phase == PhaseNormal {
		g.savedLimit = g.limit
	}
	g.phase = PhaseMinRTT
	g.seen = 0
	g.windowStart = now
}

func (g *Gradient) scheduleNext(now time.Time) {
	iv := float64(g.cfg.MinRTTInterval)
	if g.rnd != nil {
		iv *= 1 + g.cfg.Jitter*(2*g.rnd()-1)
	}
	if iv < float64(g.cfg.Window) {
		iv = float64(g.cfg.Window)
	}
	g.nextMinRTT = now.Add(time.Duration(iv))
}

// record keeps a sample; beyond sampleCap the oldest slots are overwritten
// round-robin (deterministic), which still yields a fair median.
func (g *Gradient) record(rtt time.Duration) {
	g.samples[g.seen%sampleCap] = rtt
	g.seen++
}

func (g *Gradient) median() time.Duration {
	n := min(g.seen, sampleCap)
	var buf [sampleCap]time.Duration
	s := buf[:n]
	copy(s, g.samples[:n])
	slices.Sort(s)
	return s[n/2]
}

// OnSample feeds one completed request: its RTT (slot held from admission to
// the end of the response), the number of requests in flight when it
// finished, and whether it was dropped (failed or abandoned: no latency
// information).
func (g *Gradient) OnSample(now time.Time, rtt time.Duration, inFlight int, dropped bool) {
	// Close a finished window (or start a due measurement) first, so this
	// sample lands in the window it belongs to.
	g.Tick(now)
	if dropped {
		g.dropped++
		return
	}
	if inFlight > g.maxInFlight {
		g.maxInFlight = inFlight
	}
	g.record(rtt)
	if g.phase == PhaseMinRTT {
		if g.seen >= g.cfg.MinRTTSamples {
			g.minRTT = g.median()
			g.measurements++
			g.phase = PhaseNormal
			g.limit = g.savedLimit
			g.resetWindow(now)
			g.scheduleNext(now)
		}
	}
}

func (g *Gradient) resetWindow(now time.Time) {
	g.windowStart = now
	g.seen = 0
	g.maxInFlight = 0
}

// Tick advances the limiter by time alone: it closes a finished window and
// starts a due minimum-RTT measurement. The Chain calls it periodically so
// that the limit moves even when requests stop completing.
func (g *Gradient) Tick(now time.Time) {
	if g.phase != PhaseNormal {
		return
	}
	if now.Sub(g.windowStart) >= g.cfg.Window {
		if g.seen > 0 {
			g.update(now)
		}
		g.resetWindow(now)
	}
	if !now.Before(g.nextMinRTT) {
		g.startMinRTT(now)
	}
}

func (g *Gradient) update(now time.Time) {
	sample := g.median()
	g.lastSampleRTT = sample
	grad := maxGradient
	if sample > 0 {
		grad = float64(g.minRTT) * (1 + g.cfg.Headroom) / float64(sample)
	}
	grad = math.Max(minGradient, math.Min(maxGradient, grad))
	next := grad*g.limit + math.Sqrt(g.limit)
	if next > g.limit && float64(g.maxInFlight)*2 < g.limit {
		next = g.limit // under-used: no evidence the app can take more
	}
	g.lastGradient = grad
	g.limit = g.clamp(math.Floor(next))
	g.lastUpdate = now
	g.updates++
}

// State returns a snapshot for the admin API.
func (g *Gradient) State() GradientState {
	st := GradientState{
		Limit:             g.Limit(),
		Phase:             g.phase,
		MinRTTSeconds:     g.minRTT.Seconds(),
		SampleRTTSeconds:  g.lastSampleRTT.Seconds(),
		Gradient:          g.lastGradient,
		MinLimit:          g.cfg.MinLimit,
		MaxLimit:          g.cfg.MaxLimit,
		Headroom:          g.cfg.Headroom,
		Updates:           g.updates,
		MinRTTMeasurement: g.measurements,
		DroppedSamples:    g.dropped,
	}
	if !g.nextMinRTT.IsZero() && g.phase == PhaseNormal {
		st.NextMinRTT = g.nextMinRTT.UTC().Format(time.RFC3339Nano)
	}
	if !g.lastUpdate.IsZero() {
		st.LastUpdate = g.lastUpdate.UTC().Format(time.RFC3339Nano)
	}
	return st
}
