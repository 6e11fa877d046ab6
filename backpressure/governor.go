package backpressure

import (
	"sync"
	"time"

	"github.com/pulsegate/pulsegate/config"
)

// Pressure signals SetPressure accepts: config's shed signals.
const (
	SignalMemory        = config.ShedMemory
	SignalCPU           = config.ShedCPU
	SignalDBConnections = config.ShedDBConnections
	SignalRedisEvicting = config.ShedRedisEvicting
	SignalErrorRate     = config.ShedErrorRate
	SignalResponseTime  = config.ShedResponseTime
)

// signals lists the pressure signals in their fixed order (the order also
// breaks ties when several are critical at once): config.ShedSignals.
var signals = config.ShedSignals()

const nSignals = config.NumShedSignals

func signalIndex(name string) int {
	for i, s := range signals {
		if s == name {
			return i
		}
	}
	return -1
}

// level is a pressure level.
type level uint8

const (
	levelOK level = iota
	levelWarning
	levelCritical
)

func (l level) String() string {
	switch l {
	case levelWarning:
		return "warning"
	case levelCritical:
		return "critical"
	}
	return "ok"
}

// parseLevel maps a probe/health level to a pressure level. "down",
// "disabled" and "" carry no pressure (a probe that cannot see its target
// has no evidence of load); anything else unknown is reported as !ok.
func parseLevel(s string) (level, bool) {
	switch s {
	case "ok", "", "down", "disabled", "unknown":
		return levelOK, true
	case "warning":
		return levelWarning, true
	case "critical":
		return levelCritical, true
	}
	return levelOK, false
}

// governor turns per-signal pressure levels into an effective level with
// hysteresis, in the spirit of Envoy's overload manager: the effective level
// rises at once when any signal rises, and falls only after every signal
// has stayed below it for hold. Time is passed in; it is safe for
// concurrent use.
type governor struct {
	mu           sync.Mutex
	levels       [nSignals]level
	leftCritical [nSignals]time.Time // when the signal last fell below critical
	leftWarning  [nSignals]time.Time // when the signal last fell below warning
	hold         time.Duration
}

// decision is the governor's verdict at one instant.
type decision struct {
	level level
	cause int // index into signals of the signal responsible; -1 when ok
	// clearAt is the earliest time the level can drop (only meaningful when
	// no signal is currently at that level: otherwise now+hold).
	clearAt time.Time
}

func (g *governor) setHold(d time.Duration) {
	g.mu.Lock()
	g.hold = d
	g.mu.Unlock()
}

// set records signal i at lv, observed at now.
func (g *governor) set(now time.Time, i int, lv level) {
	g.mu.Lock()
	defer g.mu.Unlock()
	prev := g.levels[i]
	g.levels[i] = lv
	if prev >= levelWarning && lv < levelWarning {
		g.leftWarning[i] = now
	}
	if prev == levelCritical && lv < levelCritical {
		g.leftCritical[i] = now
	}
}

// current returns the last reported level of each signal.
func (g *governor) current() [nSignals]level {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.levels
}

// eval computes the effective level at now.
func (g *governor) eval(now time.Time) decision {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d, ok := g.evalLevel(now, levelCritical, &g.leftCritical); ok {
		return d
	}
	if d, ok := g.evalLevel(now, levelWarning, &g.leftWarning); ok {
		return d
	}
	return decision{level: levelOK, cause: -1}
}

func (g *governor) evalLevel(now time.Time, lv level, left *[nSignals]time.Time) (decision, bool) {
	// A signal currently at (or above) lv holds the level.
	for i := range g.levels {
		if g.levels[i] >= lv {
			return decision{level: lv, cause: i, clearAt: now.Add(g.hold)}, true
		}
	}
	// Otherwise the one that fell below it most recently, within hold, does.
	cause := -1
	var latest time.Time
	for i, t := range left {
		if t.IsZero() {
			continue
		}
		if cause < 0 || t.After(latest) {
			cause, latest = i, t
		}
	}
	if cause >= 0 && now.Sub(latest) < g.hold {
		return decision{level: lv, cause: cause, clearAt: latest.Add(g.hold)}, true
	}
	return decision{}, false
}

// shedState is what the hot path reads (through an atomic pointer) when the
// governor says to shed; nil means shed nothing.
type shedState struct {
	normalFraction float64 // of normal-priority requests
	lowFraction    float64 // of low-priority requests
	reason         reason  // overload:<signal>
	retryAfter     int     // whole seconds until shedding can end at the earliest
}

// shedPlan maps a decision to fractions: critical sheds shed_fraction of
// normal requests and every low-priority one; warning sheds shed_fraction of
// low-priority requests only.
func shedPlan(d decision, fraction float64, now time.Time) *shedState {
	var st shedState
	switch d.level {
	case levelCritical:
		st.normalFraction, st.lowFraction = fraction, 1
	case levelWarning:
		st.lowFraction = fraction
	default:
		return nil
	}
	if st.normalFraction == 0 && st.lowFraction == 0 {
		return nil
	}
	st.reason = overloadReason(d.cause)
	st.retryAfter = clampSeconds(d.clearAt.Sub(now).Seconds())
	return &st
}

// inFraction decides deterministically which requests of a stream fall in a
// fraction f: request k (1-based) is selected when ⌊k·f⌋ > ⌊(k−1)·f⌋, so
// exactly ⌊n·f⌋ of the first n are selected, evenly spread.
func inFraction(k uint64, f float64) bool {
	if f >= 1 {
		return true
	}
	if f <= 0 {
		return false
	}
	return uint64(float64(k)*f) != uint64(float64(k-1)*f)
}
