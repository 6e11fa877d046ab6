package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
)

// ConfigSource is where the fleet's live configuration is read: *SQL.
type ConfigSource interface {
	FleetConfig(ctx context.Context, fleet string) (ConfigVersion, error)
}

// ConfigWatcher polls the fleet's stored configuration and hands every new
// version to apply, so a change posted on any sidecar reaches this one
// within one poll interval, and a sidecar (re)started, or a store that
// comes back after an outage, applies the version stored there. While the
// store cannot be read it keeps the version it has (and says so once in
// the log).
type ConfigWatcher struct {
	src   ConfigSource
	fleet string
	every time.Duration
	apply func(ConfigVersion)
	log   *zap.Logger

	// turn (a one-slot semaphore, so waiting for it honours a context) is
	// held through each read and apply (Poll) and each change made by this
	// sidecar (Exclusive): a poll that read an older version never applies
	// it over a newer one this sidecar just stored.
	turn chan struct{}

	mu      sync.Mutex
	last    ConfigVersion // the last version seen (applied, or handed to apply)
	seen    bool
	failing bool
}

// NewConfigWatcher returns a watcher of fleet's configuration that calls
// apply (from its own goroutine, one call at a time) with each version
// that differs from the last one applied.
func NewConfigWatcher(src ConfigSource, fleet string, every time.Duration, apply func(ConfigVersion), log *zap.Logger) (*ConfigWatcher, error) {
	if src == nil || apply == nil {
		return nil, errors.New("config watcher: nil source or apply")
	}
	if every <= 0 {
		return nil, errors.New("config watcher: poll interval must be > 0")
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &ConfigWatcher{src: src, fleet: fleet, every: every, apply: apply, log: log, turn: make(chan struct{}, 1)}, nil
}

// Version is the last version applied (0: none stored, or none read yet).
func (c *ConfigWatcher) Version() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last.Version
}

// Current is the last version seen: handed to apply, or stored by
// Exclusive (zero before the first successful read).
func (c *ConfigWatcher) Current() (ConfigVersion, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.seen
}

// take waits for the watcher's turn until ctx ends.
func (c *ConfigWatcher) take(ctx context.Context) error {
	select {
	case c.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *ConfigWatcher) release() { <-c.turn }

// Exclusive runs fn while no poll reads or applies (waiting for a poll
// under way at most until ctx ends: then fn is not run and the context's
// error is returned). fn gets the last version seen; when it returns ok,
// it stored cv and applied it itself, and the watcher counts cv as
// applied (apply is not called for it).
func (c *ConfigWatcher) Exclusive(ctx context.Context, fn func(last ConfigVersion) (cv ConfigVersion, ok bool)) error {
	if err := c.take(ctx); err != nil {
		return err
	}
	defer c.release()
	last, _ := c.Current()
	cv, ok := fn(last)
	if !ok {
		return nil
	}
	c.mu.Lock()
	c.last, c.seen = cv, true
	c.mu.Unlock()
	return nil
}

// sameVersion: a version number alone is not enough, as a deleted row
// starts again at version 1; the time of the change tells them apart.
func sameVersion(a, b ConfigVersion) bool {
	return a.Version == b.Version && a.Updated.Equal(b.Updated)
}

// Poll reads the stored version once and applies it if it is new. A read
// error is returned and changes nothing.
func (c *ConfigWatcher) Poll(ctx context.Context) error {
	if err := c.take(ctx); err != nil {
		return err
	}
	defer c.release()
	cv, err := c.src.FleetConfig(ctx, c.fleet)
	c.mu.Lock()
	if err != nil {
		first := !c.failing
		c.failing = true
		c.mu.Unlock()
		if first && ctx.Err() == nil {
			c.log.Warn("store_config_poll_failed", zap.String("fleet", c.fleet), zap.Int64("keeping_version", c.Version()), zap.String("error", err.Error()))
		}
		return err
	}
	recovered := c.failing
	c.failing = false
	wasSeen := c.seen
	changed := !c.seen || !sameVersion(cv, c.last)
	c.seen = true
	old := c.last.Version
	c.last = cv
	c.mu.Unlock()
	if recovered {
		c.log.Info("store_config_poll_recovered", zap.String("fleet", c.fleet), zap.Int64("version", cv.Version))
	}
	if changed {
		// Not logged: the first read finding nothing stored.
		if wasSeen || cv.Version != 0 {
			c.log.Info("fleet_config_version", zap.String("fleet", c.fleet), zap.Int64("from", old), zap.Int64("to", cv.Version),
				zap.String("by_instance", cv.Instance), zap.String("actor", EscapeText(cv.Actor)))
		}
		c.apply(cv)
	}
	return nil
}

// Run polls at once and then every interval until ctx ends; it returns nil.
func (c *ConfigWatcher) Run(ctx context.Context) error {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		_ = c.Poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
