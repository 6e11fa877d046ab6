package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/figures"
)

// Level names used in Observe's levels map.
const (
	levelWarning  = "warning"
	levelCritical = "critical"
)

// levelOf returns levels[key] when present, else the level of figs[fig]
// against the warning/critical thresholds ("" when neither is known).
func levelOf(cfg *config.Config, levels map[string]string, key string, figs map[string]float64, fig figures.Name) string {
	if l, ok := levels[key]; ok {
		return l
	}
	v, ok := figs[string(fig)]
	if !ok || math.IsNaN(v) {
		return ""
	}
	return string(figures.LevelOf(cfg, fig, v))
}

// Observe takes the latest figures (names of docs/ARCHITECTURE.md:
// memory_usage, error_rate, queue_depth, upstream_dials_per_sec …) and
// levels (keys memory, error_rate, response_time, and backpressure = the
// Chain's mode) at every monitoring tick, and triggers what they call for.
// It never blocks: the cleanup POST runs on Run's goroutine.
func (a *Actions) Observe(figs map[string]float64, levels map[string]string) {
	now := a.now()
	cfg := a.cfg.Load()

	mem, hasMem := figs[string(figures.MemoryUsage)]
	if hasMem && !math.IsNaN(mem) {
		a.noteMemory(mem)
	} else {
		mem = math.NaN()
	}
	switch lvl := levelOf(cfg, levels, config.ShedMemory, figs, figures.MemoryUsage); lvl {
	case levelWarning, levelCritical:
		a.requestCleanup(cleanupTrigger{reason: "memory_" + lvl, memory: mem})
	}

	if lvl := levelOf(cfg, levels, config.ShedErrorRate, figs, figures.AppErrorRate); lvl == levelCritical {
		a.recycle(now, "error_rate_critical")
	} else if a.churnSpike(figs) {
		a.recycle(now, "connection_churn")
	}

	a.observeOverload(now, cfg, figs, levels)
}

// noteMemory logs the product's "Cleanup completed" line at the first
// memory reading after a successful cleanup.
func (a *Actions) noteMemory(mem float64) {
	a.mu.Lock()
	p := a.pending
	a.pending = nil
	a.lastMem, a.hasMem = mem, true
	a.mu.Unlock()
	if p == nil {
		return
	}
	fields := []zap.Field{
		zap.String("event", "cleanup_completed"),
		zap.Float64(string(figures.MemoryUsage), mem),
		zap.Time("cleanup_at", p.at),
	}
	if !math.IsNaN(p.before) {
		fields = append(fields, zap.Float64("memory_before", p.before))
	}
	if math.IsNaN(p.before) || mem < p.before {
		a.log.Info(fmt.Sprintf("Cleanup completed - memory reduced to %.0f%%", mem*100), fields...)
		return
	}
	a.log.Info(fmt.Sprintf("Cleanup completed - memory still at %.0f%%", mem*100), fields...)
}

// requestCleanup hands a trigger to Run's cleanup loop unless the action is
// cooling down or one is already pending.
func (a *Actions) requestCleanup(tr cleanupTrigger) {
	cfg := a.cfg.Load()
	if cfg.Actions.CleanupURL == "" {
		return
	}
	a.mu.Lock()
	left := a.cooldownLeftLocked(ActionCleanup, a.now())
	a.mu.Unlock()
	if left > 0 {
		return
	}
	select {
	case a.trigger <- tr:
	default: // one is already waiting
	}
}

// cleanupLoop runs triggered and periodic cleanups until ctx ends.
func (a *Actions) cleanupLoop(ctx context.Context) {
	interval := func() time.Duration {
		r := a.cfg.Load().Responsiveness
		if !r.CleanupEnabled {
			return 0
		}
		return r.CleanupInterval.Duration()
	}
	cur := interval()
	t := time.NewTicker(max(cur, time.Second))
	defer t.Stop()
	if cur == 0 {
		t.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case tr := <-a.trigger:
			a.runCleanup(ctx, tr)
		case <-t.C:
			a.mu.Lock()
			mem := math.NaN()
			if a.hasMem {
				mem = a.lastMem
			}
			a.mu.Unlock()
			a.runCleanup(ctx, cleanupTrigger{reason: "interval", memory: mem})
		case <-a.applied:
			if iv := interval(); iv != cur {
				cur = iv
				if cur > 0 {
					t.Reset(cur)
				} else {
					t.Stop()
				}
			}
			// Also wake the TTL loop.
			a.ttl.wake()
		}
	}
}

// runCleanup POSTs the cleanup URL once (cooldown and dry-run honoured).
func (a *Actions) runCleanup(ctx context.Context, tr cleanupTrigger) {
	cfg := a.cfg.Load()
	ac := cfg.Actions
	if ac.CleanupURL == "" {
		return
	}
	now := a.now()
	if !a.claim(ActionCleanup, tr.reason, now) {
		return
	}
	fields := []zap.Field{zap.String("event", "cleanup_triggered"), zap.String("trigger", tr.reason), zap.Bool("dry_run", ac.DryRun)}
	msg := "Periodic cleanup - triggering cleanup"
	if !math.IsNaN(tr.memory) {
		msg = fmt.Sprintf("Memory usage at %.0f%% - triggering cleanup", tr.memory*100)
		fields = append(fields, zap.Float64(string(figures.MemoryUsage), tr.memory))
	}
	if tr.reason == "interval" {
		a.log.Info(msg, fields...)
	} else {
		a.log.Warn(msg, fields...)
	}
	timeout := ac.CleanupTimeout.Duration()
	end := a.begin(ActionCleanup, timeout)
	if ac.DryRun {
		end(nil)
		a.done(ActionCleanup, tr.reason, true, "would POST "+config.RedactURL(ac.CleanupURL), nil, 0)
		return
	}
	start := time.Now()
	status, err := a.postCleanup(ctx, ac.CleanupURL, timeout, tr)
	end(err)
	detail := ""
	if status != 0 {
		detail = fmt.Sprintf("HTTP %d", status)
	}
	a.done(ActionCleanup, tr.reason, false, detail, err, time.Since(start))
	if err == nil {
		a.mu.Lock()
		a.pending = &pendingCleanup{before: tr.memory, at: now}
		a.mu.Unlock()
	}
}

// postCleanup sends the hook request; a 2xx answer is success.
func (a *Actions) postCleanup(ctx context.Context, rawURL string, timeout time.Duration, tr cleanupTrigger) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body := map[string]any{"trigger": tr.reason, "source": "pulsegate"}
	if !math.IsNaN(tr.memory) {
		body[string(figures.MemoryUsage)] = tr.memory
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(b))
	if err != nil {
		return 0, fmt.Errorf("building cleanup request to %s: invalid URL", config.RedactURL(rawURL))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pulsegate")
	resp, err := a.http.Do(req)
	if err != nil {
		// http.Client errors already strip URL passwords; say what timed out.
		if ctx.Err() == context.DeadlineExceeded {
			return 0, fmt.Errorf("posting cleanup hook %s: no answer within %s", config.RedactURL(rawURL), timeout)
		}
		return 0, fmt.Errorf("posting cleanup hook %s: %w", config.RedactURL(rawURL), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("posting cleanup hook %s: answered %s", config.RedactURL(rawURL), resp.Status)
	}
	return resp.StatusCode, nil
}

// recycle closes idle upstream connections (cooldown and dry-run honoured).
func (a *Actions) recycle(now time.Time, trigger string) {
	cfg := a.cfg.Load()
	if ok, _ := a.enabled(cfg, ActionRecycle); !ok {
		return
	}
	if !a.claim(ActionRecycle, trigger, now) {
		return
	}
	end := a.begin(ActionRecycle, time.Second)
	if cfg.Actions.DryRun {
		end(nil)
		a.done(ActionRecycle, trigger, true, "would close idle upstream connections", nil, 0)
		return
	}
	start := time.Now()
	a.deps.CloseIdleUpstream()
	end(nil)
	a.done(ActionRecycle, trigger, false, "closed idle upstream connections", nil, time.Since(start))
}

// churnSpike reports whether the upstream dial rate is far above its own
// moving baseline (and above churnFloor); the baseline then absorbs it.
func (a *Actions) churnSpike(figs map[string]float64) bool {
	v, ok := figs[ChurnFigure]
	if !ok || math.IsNaN(v) || v < 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.churnSeen {
		a.churnBase, a.churnSeen = v, true
		return false
	}
	spike := v >= churnFloor && v > churnFactor*a.churnBase
	a.churnBase = churnAlpha*v + (1-churnAlpha)*a.churnBase
	return spike
}

// observeOverload updates the readiness coupling with hysteresis: the
// condition (backpressure shedding, response time critical, or the request
// queue at its critical depth) must hold for backpressure.shed_hold before
// Overloaded turns true, and be clear for as long before it turns false.
func (a *Actions) observeOverload(now time.Time, cfg *config.Config, figs map[string]float64, levels map[string]string) {
	cause := ""
	switch {
	case levels["backpressure"] == "shedding":
		cause = "backpressure shedding"
	case levels["response_time"] == levelCritical:
		cause = "response time critical"
	case levelOf(cfg, nil, "", figs, figures.QueueDepth) == levelCritical:
		cause = fmt.Sprintf("request queue at %.0f (critical %d)", figs[string(figures.QueueDepth)], cfg.Thresholds.QueueCritical)
	}
	hold := cfg.Backpressure.ShedHold.Duration()
	a.mu.Lock()
	defer a.mu.Unlock()
	if cause != "" {
		a.clearSince = time.Time{}
		if a.condSince.IsZero() {
			a.condSince = now
		}
		a.overloadCause = cause
	} else {
		a.condSince = time.Time{}
		if a.clearSince.IsZero() {
			a.clearSince = now
		}
	}
	if !cfg.Actions.ReadinessOnOverload {
		if a.overloaded.Swap(false) {
			a.log.Info("overload_readiness", zap.Bool("overloaded", false), zap.String("why", "readiness_on_overload turned off"))
		}
		return
	}
	was := a.overloaded.Load()
	switch {
	case !was && cause != "" && now.Sub(a.condSince) >= hold:
		a.overloaded.Store(true)
		rec := a.records[ActionReadiness]
		rec.count++
		rec.lastRun, rec.trigger, rec.outcome, rec.detail = now, cause, "not_ready", "readiness fails until overload clears for "+hold.String()
		a.log.Warn("overload_readiness", zap.Bool("overloaded", true), zap.String("why", cause), zap.Duration("held", now.Sub(a.condSince)))
	case was && cause == "" && now.Sub(a.clearSince) >= hold:
		a.overloaded.Store(false)
		rec := a.records[ActionReadiness]
		rec.outcome, rec.detail = "ready", "overload cleared"
		a.log.Info("overload_readiness", zap.Bool("overloaded", false), zap.String("why", "overload cleared"), zap.Duration("clear_for", now.Sub(a.clearSince)))
	}
}

// Overloaded reports whether readiness should fail because of sustained
// overload (always false unless actions.readiness_on_overload is set).
func (a *Actions) Overloaded() bool { return a.overloaded.Load() }
