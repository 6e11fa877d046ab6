package main

import (
	"context"
	"errors"
	"time"

	"github.com/pulsegate/pulsegate/adminapi"
	"github.com/pulsegate/pulsegate/store"
)

var _ adminapi.FleetHistory = fleetView{}

// Series is the fleet's trend series from the shared store's heartbeat
// rows (GET /admin/responsiveness/api/history?scope=fleet).
func (f fleetView) Series(ctx context.Context, from, to time.Time, step time.Duration) (store.FleetSeries, error) {
	s := f.a.link.sql.Load()
	if s == nil {
		reason := "not reached yet"
		if h := f.a.writer.Health(); h.Reason != "" {
			reason = h.Reason
		}
		return store.FleetSeries{}, errors.New("the shared store has not been opened: " + reason)
	}
	return s.FleetSeries(ctx, f.a.fleetName, from, to, step)
}
