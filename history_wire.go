package main

import (
	"time"

	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/history"
	"go.uber.org/zap"
)

// historyFlushInterval is how often the ring's new points are written to
// <data_dir>/history.db: one bbolt transaction a minute (and one at
// shutdown), off the monitor tick and the request path.
const historyFlushInterval = time.Minute

// openHistory opens the persisted history, puts the last 24 h back into
// ring and returns the reader for the history endpoint. A history that
// cannot be opened is logged once and pulsegate runs on the in-memory
// ring alone: history never stops the proxy.
func (a *app) openHistory(cfg *config.Config, ring *history.History) *history.Reader {
	log := a.log.Named("history")
	ring.SetVersion(a.proxy.Stats().Version) // history rows carry the app version
	if ring.Resolution() != 10*time.Second {
		log.Error("history_unavailable", zap.String("reason", "the dashboard's history step is "+ring.Resolution().String()+"; the archive keeps 10s points"))
		return &history.Reader{Ring: ring}
	}
	ar, err := history.OpenArchive(cfg.DataDir, log, a.historyRetention)
	if err != nil {
		log.Error("history_unavailable", zap.Error(err))
		return &history.Reader{Ring: ring}
	}
	if err := ar.Load(ring, time.Now()); err != nil {
		log.Error("history_load_failed", zap.String("path", ar.Path()), zap.Error(err))
	}
	log.Info("history_opened", zap.String("path", ar.Path()), zap.Int64("bytes", ar.Size()))
	ar.SetRouteSourceLive(a.routeCounters, func() int { c, _ := a.holder.Get(); return c.History.MaxRoutes })
	if a.writer != nil {
		ar.OnFlush(a.queueFlushed) // the shared store keeps a copy (fleet_routes_wire.go)
	}
	a.archive = ar
	return &history.Reader{Ring: ring, Archive: ar}
}

// historyRetention is the live history.retention_* settings.
func (a *app) historyRetention() history.Retention {
	c, _ := a.holder.Get()
	h := c.History
	return history.Retention{h.Retention10s.Duration(), h.Retention1m.Duration(), h.Retention1h.Duration()}
}

// routeCounters hands the proxy's per-(route, version) totals to the
// archive, which samples them at every flush (once a minute).
func (a *app) routeCounters() []history.RouteCounter {
	cs := a.proxy.Stats().RouteCounters()
	out := make([]history.RouteCounter, len(cs))
	for i, c := range cs {
		out[i] = history.RouteCounter{Route: c.Route, Version: c.Version, Requests: c.Requests, Errors: c.Errors,
			AppErrors: c.AppErrors, Buckets: c.Buckets, SumUS: c.SumUS}
	}
	return out
}
