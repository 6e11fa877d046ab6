package main

import (
	"context"
	"time"

	"github.com/pulsegate/pulsegate/adminapi"
	"github.com/pulsegate/pulsegate/store"
)

var _ adminapi.FleetHistory = fleetView{}

// Series is the fleet's trend series from the shared store's heartbeat
// rows (GET /admin/responsiveness/api/history?scope=fleet).
func (f fleetView) Series(ctx context.Context, from, to time.Time, step time.Duration) (store.FleetSeries, error) {
	s, err := f.opened()
	if err != nil {
		return store.FleetSeries{}, err
	}
	return s.FleetSeries(ctx, f.a.fleetName, from, to, step)
}
