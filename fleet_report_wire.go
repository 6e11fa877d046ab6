package main

import (
	"context"
	"errors"
	"time"

	"github.com/pulsegate/pulsegate/adminapi"
	"github.com/pulsegate/pulsegate/store"
)

var _ adminapi.FleetReportView = fleetView{}

// FleetAudit pages the shared store's audit log for the fleet report
// (GET /admin/api/report/responsiveness?scope=fleet): every sidecar's
// configuration changes, also when this one fell back to its embedded
// store at start.
func (f fleetView) FleetAudit(ctx context.Context, limit int, before time.Time) ([]store.AuditEntry, error) {
	s, err := f.opened()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.Audit(limit, before)
}

// CompactionWindow is the shared store's merge window of old heartbeat
// rows (the Writer prunes with fleetRetention).
func (f fleetView) CompactionWindow() time.Duration {
	cfg, _ := f.a.holder.Get()
	return fleetRetention(cfg.History).Window
}

// opened is the shared store once open; before, an error with the
// Writer's reason.
func (f fleetView) opened() (*store.SQL, error) {
	s := f.a.link.sql.Load()
	if s == nil {
		reason := "not reached yet"
		if h := f.a.writer.Health(); h.Reason != "" {
			reason = h.Reason
		}
		return nil, errors.New("the shared store has not been opened: " + reason)
	}
	return s, nil
}
