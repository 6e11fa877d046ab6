// Package backpressure says no early, so the Flask app behind pulsegate
// keeps answering the requests it accepts. Its Chain runs, in this order:
//
//  1. shed: while the app's dependencies are under pressure (SetPressure),
//     a deterministic fraction of new requests is answered 503 at once;
//  2. rate limit: a global token bucket and an optional per-client one keyed
//     by the socket peer address (429);
//  3. concurrency: at most a fixed (or adaptive) number of requests in
//     flight to the app; the rest wait in a bounded FIFO queue with a
//     deadline (503 when it is full or the wait runs out);
//
// then hands the request to the next handler (the forwarder). Routes listed
// as critical skip steps 1 and 2; low-priority routes are shed first. In
// dry-run mode every step only counts what it would have rejected.
//
// Every rejection carries Retry-After and X-Pulsegate-Reject, a JSON or
// text body, a bounded reason label in the metrics, and is reported to
// proxy.Instrument's recorder through small interfaces declared here.
package backpressure

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/pulsegate/pulsegate/config"
)

// Modes the Chain reports.
const (
	ModeOff       = "off"       // no limiter configured
	ModeEnforcing = "enforcing" // limiters armed, nothing shed
	ModeShedding  = "shedding"  // pressure-driven shedding active
	ModeDryRun    = "dry-run"   // counting only
)

var modes = [...]string{ModeOff, ModeEnforcing, ModeShedding, ModeDryRun}

// Chain is the backpressure middleware. Build it with New; it is safe for
// concurrent use, and Apply and SetPressure may be called while it serves.
type Chain struct {
	next http.Handler
	log  *zap.Logger
	now  func() time.Time

	cfg    atomic.Pointer[settings]
	shed   atomic.Pointer[shedState]
	lim    *limiter
	global *rate.Limiter
	client *clientLimiter
	gov    governor
	drain  drainMeter

	dryLimit      atomic.Int64 // the limit dry-run mode compares against (0 = none)
	adaptiveLimit atomic.Int64 // last Gradient.Limit() (0 = adaptive off)
	adMu          sync.Mutex
	gradient      *Gradient // nil when adaptive is off
	limitMu       sync.Mutex

	shedNormal atomic.Uint64 // requests offered to the normal-priority gate
	shedLow    atomic.Uint64 // requests offered to the low-priority gate

	rejections [nReasons]atomic.Uint64
	dryRun     [nReasons]atomic.Uint64
	abandoned  atomic.Uint64

	applyMu sync.Mutex // serialises Apply

	modeMu    sync.Mutex
	mode      atomic.Int32 // index into modes
	modeSince time.Time
	modeWhy   string

	queueWait prometheus.Histogram
}

// New validates cfg and builds a Chain in front of next. Metrics are
// registered on reg; log is named "backpressure".
func New(cfg *config.Config, log *zap.Logger, reg prometheus.Registerer, next http.Handler) (*Chain, error) {
	if next == nil {
		return nil, fmt.Errorf("building backpressure chain: next handler is nil")
	}
	if log == nil {
		log = zap.NewNop()
	}
	s, err := newSettings(cfg)
	if err != nil {
		return nil, fmt.Errorf("building backpressure chain: %w", err)
	}
	c := &Chain{
		next:   next,
		log:    log,
		now:    time.Now,
		lim:    newLimiter(),
		global: rate.NewLimiter(rate.Limit(s.rateRPS), s.rateBurst),
		client: newClientLimiter(s.clientRPS, s.clientBurst, s.clientMax),
	}
	c.modeSince = c.now()
	c.mode.Store(-1)
	if err := c.registerMetrics(reg); err != nil {
		return nil, fmt.Errorf("building backpressure chain: registering metrics: %w", err)
	}
	c.install(s, c.now())
	return c, nil
}

// Apply switches to cfg's limits, rates, queue bounds, shedding settings and
// dry-run flag at once, without dropping requests: queued requests keep
// their place (and are admitted at once if the limit rose), token buckets
// keep their tokens (SetLimit/SetBurst). An invalid cfg changes nothing.
func (c *Chain) Apply(cfg *config.Config) error {
	s, err := newSettings(cfg)
	if err != nil {
		return fmt.Errorf("applying backpressure configuration: %w", err)
	}
	c.install(s, c.now())
	return nil
}

// install makes s the live settings.
func (c *Chain) install(s *settings, now time.Time) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	old := c.cfg.Load()

	c.global.SetLimitAt(now, rate.Limit(s.rateRPS))
	c.global.SetBurstAt(now, s.rateBurst)
	if s.clientRPS <= 0 {
		c.client.reset()
	}
	c.client.reconfigure(s.clientRPS, s.clientBurst, s.clientMax)

	c.adMu.Lock()
	if s.adaptive.Enabled {
		gc := gradientConfig(s.adaptive)
		if c.gradient == nil {
			c.gradient = NewGradient(gc, now, rand.Float64)
		} else {
			c.gradient.Reconfigure(gc)
		}
		c.adaptiveLimit.Store(int64(c.gradient.Limit()))
	} else {
		c.gradient = nil
		c.adaptiveLimit.Store(0)
	}
	c.adMu.Unlock()

	c.gov.setHold(s.shedHold)
	c.lim.setBound(s.queueBound)
	c.cfg.Store(s)
	c.applyLimit()
	c.refresh(now)
	if old != nil {
		c.log.Info("backpressure_applied",
			zap.Int("max_concurrency", s.maxConcurrency),
			zap.Int("queue_limit", s.queueBound),
			zap.Float64("rate_limit_rps", s.rateRPS),
			zap.Int("rate_limit_burst", s.rateBurst),
			zap.Float64("per_client_rps", s.clientRPS),
			zap.Bool("adaptive", s.adaptive.Enabled),
			zap.Bool("shedding_enabled", s.shedding),
			zap.Bool("dry_run", s.dryRun),
		)
	}
}

func gradientConfig(a config.Adaptive) GradientConfig {
	return GradientConfig{
		MinLimit:       a.MinLimit,
		MaxLimit:       a.MaxLimit,
		Headroom:       a.Headroom,
		MinRTTInterval: a.MinRTTInterval.Duration(),
	}
}

// applyLimit recomputes the effective concurrency limit: the fixed limit,
// the adaptive one, or the lower of both. In dry-run mode the limiter does
// not hold anyone and the limit is only compared against.
func (c *Chain) applyLimit() {
	c.limitMu.Lock()
	defer c.limitMu.Unlock()
	s := c.cfg.Load()
	lim := int64(s.maxConcurrency)
	if a := c.adaptiveLimit.Load(); a > 0 && (lim == 0 || a < lim) {
		lim = a
	}
	if s.dryRun {
		c.dryLimit.Store(lim)
		c.lim.setLimit(0)
		return
	}
	c.dryLimit.Store(0)
	c.lim.setLimit(int(lim))
}

// ServeHTTP runs shed → rate limit → concurrency/queue → next.
func (c *Chain) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := c.cfg.Load()
	class := classNormal
	if s.needsRoute() {
		class = s.classify(r.URL.Path)
	}
	if class != classCritical {
		if sh := c.shed.Load(); sh != nil && c.shouldShed(sh, class) {
			if !s.dryRun {
				c.reject(w, r, sh.reason, sh.retryAfter)
				return
			}
			c.wouldReject(r, sh.reason)
		}
		if s.rateRPS > 0 || s.clientRPS > 0 {
			if rs, after, limited := c.rateCheck(s, r); limited {
				if !s.dryRun {
					c.reject(w, r, rs, after)
					return
				}
				c.wouldReject(r, rs)
			}
		}
	}

	res, wait, n := c.lim.acquire(r.Context(), s.queueTimeout)
	if wait > 0 {
		if rec, ok := w.(queueWaitSetter); ok {
			rec.SetQueueWait(wait)
		}
	}
	switch res {
	case rejectedFull:
		c.reject(w, r, reasonQueueFull, retryAfterSeconds(c.lim.waiting.Load(), c.drain.perSecond(), s.queueTimeout))
		return
	case rejectedTime:
		c.queueWait.Observe(wait.Seconds())
		c.reject(w, r, reasonQueueTimeout, retryAfterSeconds(c.lim.waiting.Load(), c.drain.perSecond(), s.queueTimeout))
		return
	case abandonedWait:
		// The client left while queued: nothing is forwarded and nothing
		// written; the recorder sees the cancelled context.
		c.abandoned.Add(1)
		c.queueWait.Observe(wait.Seconds())
		return
	}
	if s.limitActive() && !s.dryRun {
		c.queueWait.Observe(wait.Seconds())
	}
	if dl := c.dryLimit.Load(); dl > 0 && s.dryRun && n-dl > int64(s.queueBound) {
		// Beyond the limit plus a full queue: this one would have been refused.
		c.wouldReject(r, reasonQueueFull)
	}
	c.serve(w, r, s.adaptive.Enabled)
}

// serve forwards an admitted request; the slot is released in a defer so a
// panic (including http.ErrAbortHandler from ReverseProxy, which is left to
// propagate) never leaks it.
func (c *Chain) serve(w http.ResponseWriter, r *http.Request, adaptive bool) {
	var start time.Time
	if adaptive {
		start = c.now()
	}
	completed := false
	defer c.finish(r, start, adaptive, &completed)
	c.next.ServeHTTP(w, r)
	completed = true
}

func (c *Chain) finish(r *http.Request, start time.Time, adaptive bool, completed *bool) {
	if adaptive {
		c.sample(start, *completed && r.Context().Err() == nil)
	}
	c.lim.release()
}

// sample feeds the adaptive limiter with one request's RTT.
func (c *Chain) sample(start time.Time, ok bool) {
	now := c.now()
	inFlight := int(c.lim.inFlight.Load())
	c.adMu.Lock()
	changed := false
	if c.gradient != nil {
		c.gradient.OnSample(now, now.Sub(start), inFlight, !ok)
		l := int64(c.gradient.Limit())
		changed = c.adaptiveLimit.Swap(l) != l
	}
	c.adMu.Unlock()
	if changed {
		c.applyLimit()
	}
}

// shouldShed applies the deterministic fraction for the request's class.
func (c *Chain) shouldShed(sh *shedState, class routeClass) bool {
	if class == classLow {
		if sh.lowFraction <= 0 {
			return false
		}
		return inFraction(c.shedLow.Add(1), sh.lowFraction)
	}
	if sh.normalFraction <= 0 {
		return false
	}
	return inFraction(c.shedNormal.Add(1), sh.normalFraction)
}

// rateCheck takes a token from the global and the per-client buckets.
func (c *Chain) rateCheck(s *settings, r *http.Request) (reason, int, bool) {
	now := c.now()
	if s.clientRPS > 0 {
		if addr, ok := peerAddr(r.RemoteAddr); ok {
			if allowed, d := c.client.allow(addr, now); !allowed {
				return reasonRateClient, retryAfterRate(d), true
			}
		}
	}
	if s.rateRPS > 0 && !c.global.AllowN(now, 1) {
		return reasonRate, retryAfterRate(rateDelay(c.global, now)), true
	}
	return 0, 0, false
}

// SetPressure records the level ("ok", "warning", "critical"; "down" and
// "disabled" count as ok) of one signal: memory, cpu, db_connections,
// redis_evicting, error_rate or response_time. Main calls it from probe
// results and request windows; shedding follows at once when the level
// rises, and stops only after every signal has stayed below critical
// (then warning) for shed_hold.
func (c *Chain) SetPressure(signal string, lvl string) {
	i := signalIndex(signal)
	if i < 0 {
		c.log.Warn("pressure_signal_unknown", zap.String("signal", signal), zap.Strings("known", signals[:]))
		return
	}
	lv, ok := parseLevel(lvl)
	if !ok {
		c.log.Warn("pressure_level_unknown", zap.String("signal", signal), zap.String("level", lvl))
	}
	now := c.now()
	prev := c.gov.current()[i]
	c.gov.set(now, i, lv)
	if prev != lv {
		c.log.Info("pressure_changed", zap.String("signal", signal), zap.String("from", prev.String()), zap.String("to", lv.String()))
	}
	c.refresh(now)
}

// refresh re-evaluates the governor at now, publishes the shedding plan and
// updates the reported mode.
func (c *Chain) refresh(now time.Time) {
	s := c.cfg.Load()
	var sh *shedState
	d := c.gov.eval(now)
	if s.shedding {
		sh = shedPlan(d, s.shedFraction, now)
	}
	c.shed.Store(sh)

	mode, why := c.describe(s, sh, d)
	c.modeMu.Lock()
	defer c.modeMu.Unlock()
	prev := c.mode.Load()
	idx := int32(0)
	for i, m := range modes {
		if m == mode {
			idx = int32(i)
		}
	}
	if prev != idx {
		from := "none"
		if prev >= 0 {
			from = modes[prev]
		}
		c.mode.Store(idx)
		c.modeSince = now
		lvl := zap.InfoLevel
		if mode == ModeShedding {
			lvl = zap.WarnLevel
		}
		c.log.Log(lvl, "backpressure_mode", zap.String("from", from), zap.String("to", mode), zap.String("why", why))
	}
	c.modeWhy = why
}

// describe names the mode and explains it in one sentence.
func (c *Chain) describe(s *settings, sh *shedState, d decision) (string, string) {
	var b strings.Builder
	pressure := func() {
		if d.cause < 0 {
			return
		}
		sig := signals[d.cause]
		if c.gov.current()[d.cause] == d.level {
			fmt.Fprintf(&b, "%s is %s", sig, d.level)
		} else {
			fmt.Fprintf(&b, "%s was %s within shed_hold (%s); holding until %s", sig, d.level, s.shedHold, d.clearAt.UTC().Format(time.RFC3339))
		}
	}
	plan := func(sh *shedState, verb string) {
		if sh.normalFraction > 0 {
			fmt.Fprintf(&b, "; %s %.0f%% of new requests and all low-priority routes", verb, sh.normalFraction*100)
		} else {
			fmt.Fprintf(&b, "; %s %.0f%% of low-priority routes", verb, sh.lowFraction*100)
		}
	}
	switch {
	case !s.anyLimiter():
		return ModeOff, "no limiter configured (max_concurrency 0, rate limits 0, adaptive off, shedding disabled)"
	case s.dryRun:
		b.WriteString("dry_run is set: limiters count what they would reject and reject nothing")
		if sh != nil {
			b.WriteString("; ")
			pressure()
			plan(sh, "would shed")
		}
		return ModeDryRun, b.String()
	case sh != nil:
		pressure()
		plan(sh, "shedding")
		return ModeShedding, b.String()
	}
	var parts []string
	if s.maxConcurrency > 0 {
		parts = append(parts, fmt.Sprintf("max_concurrency %d", s.maxConcurrency))
	}
	if s.adaptive.Enabled {
		parts = append(parts, fmt.Sprintf("adaptive limit %d (%d..%d)", c.adaptiveLimit.Load(), s.adaptive.MinLimit, s.adaptive.MaxLimit))
	}
	if s.limitActive() {
		parts = append(parts, fmt.Sprintf("queue ≤ %d for ≤ %s", s.queueBound, s.queueTimeout))
	}
	if s.rateRPS > 0 {
		parts = append(parts, fmt.Sprintf("rate %g/s burst %d", s.rateRPS, s.rateBurst))
	}
	if s.clientRPS > 0 {
		parts = append(parts, fmt.Sprintf("per client %g/s burst %d", s.clientRPS, s.clientBurst))
	}
	if s.shedding {
		p := "shedding armed, no pressure"
		if d.level > levelOK && d.cause >= 0 {
			p = fmt.Sprintf("shedding armed, %s %s (no low-priority routes to shed)", signals[d.cause], d.level)
		}
		parts = append(parts, p)
	}
	return ModeEnforcing, strings.Join(parts, "; ")
}

// QueueDepth returns how many requests wait for a concurrency slot (the
// product's "Request Queue" figure, queue_depth).
func (c *Chain) QueueDepth() int { return int(c.lim.waiting.Load()) }

// Run drives the background work: the drain-rate estimate behind
// Retry-After (every second), the adaptive limiter's windows and min-RTT
// re-measurements, and the shedding hold timer. It returns nil when ctx ends.
func (c *Chain) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.tick(c.now())
		}
	}
}

// tick is one pass of Run's loop.
func (c *Chain) tick(now time.Time) {
	c.drain.tick(now, c.lim.releases.Load())
	c.adMu.Lock()
	changed := false
	if c.gradient != nil {
		c.gradient.Tick(now)
		l := int64(c.gradient.Limit())
		changed = c.adaptiveLimit.Swap(l) != l
	}
	c.adMu.Unlock()
	if changed {
		c.applyLimit()
	}
	c.refresh(now)
}
