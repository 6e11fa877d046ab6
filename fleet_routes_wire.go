package main

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/adminapi"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/store"
)

// Per-route rollups and each instance's long history in the shared store
// (store/sql_routes.go): every archive flush hands the rows it wrote to
// the Writer (queueFlushed), and the fleet's route view, releases and a
// named instance's history read them back (sqlRoutes, instanceHistory).

// routeReadTimeout bounds one read of the shared store's route rows (a
// route view or one route of the releases comparison).
const routeReadTimeout = 10 * time.Second

var (
	_ store.RouteSink          = (*storeLink)(nil)
	_ history.RouteStore       = sqlRoutes{}
	_ adminapi.InstanceHistory = instanceHistory{}
)

func (l *storeLink) WriteRouteBatch(ctx context.Context, b store.RouteBatch) error {
	s, err := l.open(ctx)
	if err != nil {
		return err
	}
	return s.WriteRouteBatch(ctx, b)
}

// tierStep is the shared store's step of an archive tier.
func tierStep(tier int) time.Duration {
	if tier == history.Tier1h {
		return store.StepHour
	}
	return store.StepMinute
}

// queueFlushed hands what one archive flush wrote to the Writer (never
// blocking the flush: the Writer coalesces and bounds it).
func (a *app) queueFlushed(f history.Flushed) {
	if err := a.writer.Routes(a.routeBatch(f)); err != nil {
		a.log.Named("store").Warn("store_routes_not_queued", zap.String("error", err.Error()))
	}
}

// routeBatch is what an archive flush (or the backfill's read) wrote, as
// this sidecar's rows for the shared store.
func (a *app) routeBatch(f history.Flushed) store.RouteBatch {
	b := store.RouteBatch{Fleet: a.fleetName, Instance: a.instance,
		Routes: make([]store.RouteRow, 0, len(f.Routes)), Points: make([]store.HistoryPoint, 0, len(f.Points))}
	for _, r := range f.Routes {
		b.Routes = append(b.Routes, store.RouteRow{Route: r.Route, Version: r.Version, Step: r.Step, Start: r.Start,
			Requests: r.Requests, Errors: r.Errors, AppErrors: r.AppErrors, SumUS: uint64(r.SumSeconds*1e6 + 0.5), Buckets: r.Buckets})
	}
	for _, p := range f.Points {
		b.Points = append(b.Points, store.HistoryPoint{Step: tierStep(p.Tier), Start: p.Start, Data: p.Data})
	}
	return b
}

// openedSQL is the shared store once opened, or an error saying why not.
func (a *app) openedSQL() (*store.SQL, error) {
	if s := a.link.sql.Load(); s != nil {
		return s, nil
	}
	reason := "not reached yet"
	if h := a.writer.Health(); h.Reason != "" {
		reason = h.Reason
	}
	return nil, errors.New("the shared store has not been opened: " + reason)
}

// sqlRoutes is history's RouteStore over the shared store's route rows:
// instance "" merges every instance of the fleet.
type sqlRoutes struct {
	a        *app
	instance string
}

// RouteTier picks the tier by history.retention_1m, as the archive does.
func (s sqlRoutes) RouteTier(from, now time.Time) int {
	return history.TierFor(from, now, s.a.historyRetention())
}

func (s sqlRoutes) ScanRoute(tier int, route string, from, to time.Time, fn func(r *history.RouteRollup)) error {
	db, err := s.a.openedSQL()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), routeReadTimeout)
	defer cancel()
	var rr history.RouteRollup
	return db.ScanRouteRows(ctx, s.a.fleetName, s.instance, tierStep(tier), route, from, to, func(r *store.RouteRow) {
		rr = history.RouteRollup{Route: route, Version: r.Version, Start: r.Start, Step: r.Step, Requests: r.Requests,
			Errors: r.Errors, AppErrors: r.AppErrors, Buckets: r.Buckets, SumSeconds: float64(r.SumUS) / 1e6}
		fn(&rr)
	})
}

func (s sqlRoutes) RouteVolumes(tier int, from, to time.Time) (map[string]uint64, error) {
	db, err := s.a.openedSQL()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), routeReadTimeout)
	defer cancel()
	return db.RouteVolumes(ctx, s.a.fleetName, s.instance, tierStep(tier), from, to)
}

// fleetRoutes is the admin API's Deps.FleetRoutes: a history.Reader
// (a value: the route endpoints read it as one, with HourlyRoutes off)
// over the fleet's route rows in the shared store, reading the 1 h rows
// whatever the span as report.HourlyRoutes does (the fleet report merges
// days); nil without a shared store.
func (a *app) fleetRoutes() report.RouteSource {
	if a.link == nil {
		return nil
	}
	return history.Reader{Routes: sqlRoutes{a: a}, HourlyRoutes: true}
}

// instanceHistory reads a named instance's long history from the shared store.
type instanceHistory struct{ a *app }

func (h instanceHistory) InstanceView(ctx context.Context, instance string, req history.Request) (history.View, error) {
	db, err := h.a.openedSQL()
	if err != nil {
		return history.View{}, err
	}
	var missing error
	v, err := history.QueryStored(req, func(tier int, from, to time.Time) ([]history.StoredPoint, error) {
		ps, err := db.HistoryPoints(ctx, h.a.fleetName, instance, tierStep(tier), from, to)
		if err != nil {
			missing = err
			return nil, err
		}
		out := make([]history.StoredPoint, len(ps))
		for i, p := range ps {
			out[i] = history.StoredPoint{Tier: tier, Start: p.Start, Data: p.Data}
		}
		return out, nil
	})
	if missing != nil {
		return history.View{}, missing
	}
	return v, err
}

// instanceHistoryAPI is the admin API's Deps.InstanceHistory: nil without a shared store.
func (a *app) instanceHistoryAPI() adminapi.InstanceHistory {
	if a.link == nil {
		return nil
	}
	return instanceHistory{a}
}
