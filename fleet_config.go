package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/adminapi"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/store"
)

// fleetConfigPollTimeout bounds one read of the stored configuration.
const fleetConfigPollTimeout = 5 * time.Second

// fleetConfigRetries is how often a POST without a version check retries
// its compare-and-set when another sidecar stored a version meanwhile.
const fleetConfigRetries = 3

// fleetConfigStore is where the fleet's configuration is kept: the storeLink.
type fleetConfigStore interface {
	store.ConfigSource
	SetFleetConfig(ctx context.Context, fleet string, expect int64, doc json.RawMessage, instance, actor string, at time.Time) (store.ConfigVersion, error)
}

// fleetConfig is the live configuration shared by the fleet (store.dsn
// set). The shared store holds one version per fleet: an overlay of the
// settings changed live (config.MergeOverlay); each sidecar runs its own
// files (base: env and YAML) with that overlay applied
// (config.ApplyOverlay). A POST on any sidecar stores the next version
// (compare-and-set) and applies it; every sidecar polls the stored version
// every half monitoring interval and applies what is new; a sidecar
// (re)started reads it before it builds anything.
type fleetConfig struct {
	log             *zap.Logger
	src             fleetConfigStore
	holder          func() *config.Holder
	base            *config.Config
	fleet, instance string
	now             func() time.Time
	watcher         *store.ConfigWatcher
	// instances reads every instance's heartbeat (nil while the store is not open).
	instances func() store.Fleet

	mu      sync.Mutex
	running store.ConfigVersion // the version this sidecar runs
	invalid string              // why the last version read was refused ("" when it runs it)
}

// startFleetConfig sets up the fleet's configuration and returns the
// configuration this sidecar starts with: cfg (its files) with the stored
// version applied when the store answers now. When it does not (down at
// start), the sidecar starts on its files and applies the stored version
// when the store is back. Without a shared store cfg is returned as is.
func (a *app) startFleetConfig(cfg *config.Config) *config.Config {
	if a.link == nil {
		return cfg
	}
	f := &fleetConfig{
		log: a.log.Named("fleet_config"), src: a.link, holder: func() *config.Holder { return a.holder },
		base: cfg, fleet: a.fleetName, instance: a.instance, now: time.Now, instances: a.link.Fleet,
	}
	w, err := store.NewConfigWatcher(f.src, f.fleet, time.Hour, f.apply, f.log)
	if err != nil { // only for a nil source or apply
		panic(err)
	}
	f.watcher = w
	a.fleetCfg = f
	if a.link.Fleet() == nil {
		f.log.Warn("fleet_config_start", zap.String("source", "files"),
			zap.String("reason", "the shared store is unreachable; the stored version is applied when it is back"))
		return cfg
	}
	start := cfg
	ctx, cancel := context.WithTimeout(context.Background(), fleetConfigPollTimeout)
	defer cancel()
	_ = w.Exclusive(ctx, func(store.ConfigVersion) (store.ConfigVersion, bool) { // nothing else runs yet
		cv, err := f.src.FleetConfig(ctx, f.fleet)
		if err != nil {
			f.log.Warn("fleet_config_start", zap.String("source", "files"), zap.String("reason", err.Error()))
			return cv, false
		}
		eff, err := config.ApplyOverlay(cfg, cv.Doc)
		if err != nil {
			f.refuse(cv, err)
			return cv, true // seen: refused once, not at every poll
		}
		start = eff
		f.mu.Lock()
		f.running = cv
		f.mu.Unlock()
		f.log.Info("fleet_config_start", zap.String("source", "store"), zap.Int64("version", cv.Version),
			zap.Strings("changed", changedKeys(cfg, eff)))
		return cv, true
	})
	a.holder = config.NewHolder(start)
	return start
}

// run polls the stored version every half monitoring interval (read from
// the live configuration each time) until ctx ends.
func (f *fleetConfig) run(ctx context.Context) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, fleetConfigPollTimeout)
		_ = f.watcher.Poll(pctx)
		cancel()
		cfg, _ := f.holder().Get()
		every := max(cfg.Responsiveness.MonitoringInterval.Duration()/2, 50*time.Millisecond)
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// apply is the watcher's: a new stored version, applied over the files
// when valid; an invalid one is logged and this sidecar keeps its version.
func (f *fleetConfig) apply(cv store.ConfigVersion) {
	eff, err := config.ApplyOverlay(f.base, cv.Doc)
	if err != nil {
		f.refuse(cv, err)
		return
	}
	f.install(cv, eff)
}

// refuse logs a stored version this sidecar cannot run.
func (f *fleetConfig) refuse(cv store.ConfigVersion, err error) {
	var fields []string
	var ve *config.ValidationError
	if errors.As(err, &ve) {
		for _, fe := range ve.Errors {
			fields = append(fields, fe.Key)
		}
	}
	f.mu.Lock()
	f.invalid = fmt.Sprintf("version %d refused: %v", cv.Version, err)
	running := f.running.Version
	f.mu.Unlock()
	f.log.Error("fleet_config_invalid", zap.Int64("version", cv.Version), zap.Strings("fields", fields),
		zap.String("error", err.Error()), zap.Int64("keeping_version", running),
		zap.String("by_instance", cv.Instance), zap.String("actor", store.EscapeText(cv.Actor)))
}

// install publishes eff (the files with cv applied) and records cv as run.
func (f *fleetConfig) install(cv store.ConfigVersion, eff *config.Config) {
	h := f.holder()
	// Under f.mu, so State reads the settings and the version together.
	f.mu.Lock()
	cur, _ := h.Get()
	changed := changedKeys(cur, eff)
	if len(changed) > 0 {
		_, _ = h.Update(0, eff) // eff is validated; Update(0) cannot be stale
	}
	from := f.running.Version
	f.running, f.invalid = cv, ""
	f.mu.Unlock()
	f.log.Info("fleet_config_applied", zap.Int64("version", cv.Version), zap.Int64("from", from),
		zap.Strings("changed", changed), zap.Strings("restart_required", h.PendingRestart()),
		zap.String("by_instance", cv.Instance), zap.String("actor", store.EscapeText(cv.Actor)))
}

func changedKeys(old, new *config.Config) []string {
	out := []string{}
	for _, c := range config.Diff(old, new) {
		out = append(out, c.Key)
	}
	return out
}

// version is the fleet version this sidecar runs (its heartbeat's).
func (f *fleetConfig) version() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running.Version
}

// State answers the config GET's "fleet" object.
func (f *fleetConfig) State(ctx context.Context) adminapi.FleetConfigState {
	last, _ := f.watcher.Current()
	f.mu.Lock()
	st := adminapi.FleetConfigState{Fleet: f.fleet, Instance: f.instance, Version: last.Version, UpdatedAt: last.Updated,
		UpdatedByInstance: last.Instance, Actor: last.Actor, Running: f.running.Version, Invalid: f.invalid}
	st.Config, _ = f.holder().Get()
	f.mu.Unlock()
	fl := f.instances()
	if fl == nil {
		st.StoreError = "the shared store has not been reached yet"
		return st
	}
	insts, err := fl.Instances(ctx, f.fleet, f.now())
	if err != nil {
		st.StoreError = err.Error()
		return st
	}
	for _, in := range insts {
		st.Instances = append(st.Instances, adminapi.FleetConfigInstance{Instance: in.Instance, ConfigVersion: in.ConfigVersion, Stale: in.Stale})
	}
	return st
}

// Change is the config POST: under the watcher's lock (no poll applies an
// older version meanwhile) it reads the stored version, checks expect,
// patches the fleet's configuration with body, merges the change into the
// overlay, validates the result over this sidecar's files, stores it as
// the next version (compare-and-set) and applies it here.
func (f *fleetConfig) Change(ctx context.Context, expect int64, body []byte, actor string) (adminapi.FleetConfigChange, error) {
	var res adminapi.FleetConfigChange
	var outErr error
	if err := f.watcher.Exclusive(ctx, func(store.ConfigVersion) (store.ConfigVersion, bool) {
		for attempt := 0; ; attempt++ {
			cv, err := f.src.FleetConfig(ctx, f.fleet)
			if err != nil {
				outErr = fmt.Errorf("%w (%v)", adminapi.ErrFleetStoreDown, err)
				return cv, false
			}
			if expect != 0 && expect != cv.Version {
				outErr = fmt.Errorf("%w %d: the fleet configuration is at version %d; GET it again and retry", adminapi.ErrFleetConfigStale, expect, cv.Version)
				return cv, false
			}
			// The fleet's configuration as this sidecar runs it; when the
			// stored overlay is not valid here, what this sidecar runs.
			cur, err := config.ApplyOverlay(f.base, cv.Doc)
			if err != nil {
				cur, _ = f.holder().Get()
			}
			next, err := config.Patch(cur, body)
			if err != nil {
				outErr = err
				return cv, false
			}
			doc, err := config.MergeOverlay(cv.Doc, cur, next, body)
			if err != nil {
				outErr = err
				return cv, false
			}
			eff, err := config.ApplyOverlay(f.base, doc)
			if err != nil {
				outErr = err
				return cv, false
			}
			stored, err := f.src.SetFleetConfig(ctx, f.fleet, cv.Version, doc, f.instance, actor, f.now())
			if errors.Is(err, store.ErrVersionConflict) {
				if expect == 0 && attempt < fleetConfigRetries {
					continue
				}
				outErr = fmt.Errorf("%w %d: the fleet configuration is at version %d; GET it again and retry", adminapi.ErrFleetConfigStale, cv.Version, stored.Version)
				return cv, false
			}
			if err != nil {
				outErr = fmt.Errorf("%w (%v)", adminapi.ErrFleetStoreDown, err)
				return cv, false
			}
			f.install(stored, eff)
			res.Version = stored.Version
			res.Changes = config.Diff(cur, next)
			return stored, true
		}
	}); err != nil {
		// A read of the store under way (a poll) did not end in time.
		return res, fmt.Errorf("%w (the store did not answer in time: %v)", adminapi.ErrFleetStoreDown, err)
	}
	if outErr != nil {
		return res, outErr
	}
	res.State = f.State(ctx)
	return res, nil
}

// configVersion is the configuration version this sidecar runs: the fleet
// version with a shared store, else the local one.
func (a *app) configVersion() int64 {
	if a.fleetCfg != nil {
		return a.fleetCfg.version()
	}
	_, v := a.holder.Get()
	return int64(v)
}

// fleetConfigAPI is the admin API's fleet configuration: nil without a shared store.
func (a *app) fleetConfigAPI() adminapi.FleetConfig {
	if a.fleetCfg == nil {
		return nil
	}
	return a.fleetCfg
}
