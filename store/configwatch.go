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

	mu      sync.Mutex
	applied int64
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
	return &ConfigWatcher{src: src, fleet: fleet, every: every, apply: apply, log: log}, nil
}

// Version is the last version applied (0: none stored, or none read yet).
func (c *ConfigWatcher) Version() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied
}

// Poll reads the stored version once and applies it if it is new. A read
// error is returned and changes nothing.
func (c *ConfigWatcher) Poll(ctx context.Context) error {
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
	changed := !c.seen || cv.Version != c.applied
	c.seen = true
	old := c.applied
	c.applied = cv.Version
	c.mu.Unlock()
	if recovered {
		c.log.Info("store_config_poll_recovered", zap.String("fleet", c.fleet), zap.Int64("version", cv.Version))
	}
	if changed {
		if old != cv.Version {
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
