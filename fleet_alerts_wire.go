package main

import (
	"context"
	"time"

	"github.com/pulsegate/pulsegate/adminapi"
	"github.com/pulsegate/pulsegate/alerts"
	"github.com/pulsegate/pulsegate/store"
)

// The shared store link stores alerts for the Writer (store.AlertSink):
// this instance's alert history and the fleet's alerts.
var _ store.AlertSink = (*storeLink)(nil)

func (l *storeLink) SaveAlerts(as ...store.AlertRecord) error {
	s, err := l.open(context.Background())
	if err != nil {
		return err
	}
	return s.SaveAlerts(as...)
}

func (l *storeLink) PruneAlerts(keep int) error {
	s, err := l.open(context.Background())
	if err != nil {
		return err
	}
	return s.PruneAlerts(keep)
}

func (l *storeLink) RaiseFleetAlert(ctx context.Context, fleet, instance string, a store.AlertRecord) (store.FleetAlert, error) {
	s, err := l.open(ctx)
	if err != nil {
		return store.FleetAlert{}, err
	}
	return s.RaiseFleetAlert(ctx, fleet, instance, a)
}

func (l *storeLink) ResolveFleetAlert(ctx context.Context, fleet, instance, key string, at time.Time) (store.FleetAlert, error) {
	s, err := l.open(ctx)
	if err != nil {
		return store.FleetAlert{}, err
	}
	return s.ResolveFleetAlert(ctx, fleet, instance, key, at)
}

func (l *storeLink) FleetAlerts(ctx context.Context, fleet string, activeOnly bool) ([]store.FleetAlert, error) {
	s, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	return s.FleetAlerts(ctx, fleet, activeOnly)
}

// useFleetAlerts links the alert manager to the shared store (store.dsn
// set): transitions and acknowledgements go through the Writer, and the
// manager polls the fleet's alerts each monitoring interval. When the
// embedded store stands in (the shared one was down at start), the alert
// history is kept there as well.
func (a *app) useFleetAlerts() error {
	if a.writer == nil {
		return nil
	}
	_, shared := a.st.(*store.SQL)
	return a.alerts.UseFleet(alerts.FleetOptions{
		Fleet: a.fleetName, Instance: a.instance, Queue: a.writer, LocalHistory: !shared,
		Source: func() alerts.FleetSource {
			if s := a.link.sql.Load(); s != nil {
				return s
			}
			return nil
		},
	})
}

var _ adminapi.FleetAlertsView = fleetView{}

// FleetAlerts reads the fleet's alerts and instances for the admin API,
// and hands the active alerts to the alert manager so an id just served
// can be acknowledged on this sidecar.
func (f fleetView) FleetAlerts(ctx context.Context, now time.Time, activeOnly bool) ([]store.FleetAlert, []store.InstanceStatus, error) {
	s, err := f.opened()
	if err != nil {
		return nil, nil, err
	}
	fas, err := s.FleetAlerts(ctx, f.a.fleetName, activeOnly)
	if err != nil {
		return nil, nil, err
	}
	insts, err := s.Instances(ctx, f.a.fleetName, now)
	if err != nil {
		return nil, nil, err
	}
	f.a.alerts.SeeFleet(fas)
	return fas, insts, nil
}
