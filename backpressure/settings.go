package backpressure

import (
	"errors"
	"math"
	"strings"
	"time"

	"github.com/pulsegate/pulsegate/config"
)

// settings is the validated, derived form of the configuration the Chain
// reads on every request. It is immutable once built and swapped whole
// through an atomic pointer by Apply.
type settings struct {
	maxConcurrency int           // 0 = no fixed limit
	queueBound     int           // backpressure.queue_size: most requests waiting
	queueWarning   int           // thresholds.queue_warning (reported only)
	queueTimeout   time.Duration // longest wait for a slot

	rateRPS       float64 // 0 = off
	rateBurst     int     // effective (burst 0 resolved)
	clientRPS     float64 // 0 = off
	clientBurst   int
	clientMax     int
	adaptive      config.Adaptive
	shedding      bool
	shedFraction  float64
	shedHold      time.Duration
	dryRun        bool
	criticalPaths []string
	lowPaths      []string
}

// limitActive reports whether the concurrency limiter may hold requests.
func (s *settings) limitActive() bool { return s.maxConcurrency > 0 || s.adaptive.Enabled }

// anyLimiter reports whether any limiter is configured at all.
func (s *settings) anyLimiter() bool {
	return s.limitActive() || s.rateRPS > 0 || s.clientRPS > 0 || s.shedding
}

// needsRoute reports whether the request path must be classified
// (critical / low priority) before the limiters run.
func (s *settings) needsRoute() bool { return len(s.criticalPaths) > 0 || len(s.lowPaths) > 0 }

// effectiveBurst resolves the documented "burst 0" rule: with a positive
// rate, burst 0 means ceil(rps) (at least 1).
func effectiveBurst(rps float64, burst int) int {
	if burst > 0 || rps <= 0 {
		return burst
	}
	return int(math.Max(1, math.Ceil(rps)))
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// newSettings validates cfg's backpressure section (and the queue
// thresholds it uses) in one pass, naming every bad field, and derives the
// settings the hot path reads.
func newSettings(cfg *config.Config) (*settings, error) {
	if cfg == nil {
		return nil, errors.New("backpressure: configuration is nil")
	}
	b := cfg.Backpressure
	s := &settings{
		maxConcurrency: b.MaxConcurrency,
		queueBound:     b.QueueSize,
		queueWarning:   cfg.Thresholds.QueueWarning,
		queueTimeout:   b.QueueTimeout.Duration(),
		rateRPS:        b.RateLimitRPS,
		rateBurst:      effectiveBurst(b.RateLimitRPS, b.RateLimitBurst),
		clientRPS:      b.PerClientRPS,
		clientBurst:    effectiveBurst(b.PerClientRPS, b.PerClientBurst),
		clientMax:      b.PerClientMaxClients,
		adaptive:       b.Adaptive,
		shedding:       b.SheddingEnabled,
		shedFraction:   b.ShedFraction,
		shedHold:       b.ShedHold.Duration(),
		dryRun:         b.DryRun,
		criticalPaths:  append([]string(nil), b.CriticalRoutes...),
		lowPaths:       append([]string(nil), b.LowPriorityRoutes...),
	}
	return s, nil
}

// routeClass is a request's priority.
type routeClass uint8

const (
	classNormal   routeClass = iota
	classCritical            // never shed nor rate limited
	classLow                 // shed first (already at warning)
)

// matchPrefix reports whether path is under prefix, on a segment boundary:
// "/api" matches "/api" and "/api/x" but not "/apix"; a prefix ending in
// "/" matches anything below it.
func matchPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	if len(path) == len(prefix) || strings.HasSuffix(prefix, "/") {
		return true
	}
	return path[len(prefix)] == '/'
}

// classify returns the priority class of path; critical wins over low.
func (s *settings) classify(path string) routeClass {
	for _, p := range s.criticalPaths {
		if matchPrefix(path, p) {
			return classCritical
		}
	}
	for _, p := range s.lowPaths {
		if matchPrefix(path, p) {
			return classLow
		}
	}
	return classNormal
}
