package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Backend is what pulsegate keeps for its alerts and its audit log: alert
// history, acknowledgements and the audit log. Two implementations: *Store
// (the embedded bbolt file, the zero-setup default for one instance) and
// *SQL (MySQL/MariaDB or PostgreSQL shared by the replicas of one app).
// Every method is safe for concurrent use.
//
// With *SQL, alerts and acknowledgements are this instance's (rows keyed
// by fleet and instance), and the audit log is the fleet's: every entry
// records the instance that wrote it.
type Backend interface {
	// SaveAlert writes one alert record (and its acknowledgement, if any).
	SaveAlert(a AlertRecord) error
	// SaveAlerts writes alert records and their acknowledgements: all or none.
	SaveAlerts(as ...AlertRecord) error
	// LoadAlerts returns every stored alert, newest first (by first_seen).
	LoadAlerts() ([]AlertRecord, error)
	// Acknowledgements returns every stored acknowledgement, newest first.
	Acknowledgements() ([]Acknowledgement, error)
	// PruneAlerts keeps the newest keep resolved alerts; active ones stay.
	PruneAlerts(keep int) error
	// AppendAudit appends one entry (a zero Time is stamped with the clock).
	AppendAudit(e AuditEntry) error
	// Audit returns up to limit entries older than before, newest first.
	Audit(limit int, before time.Time) ([]AuditEntry, error)
	// Close releases the store.
	Close() error
}

// Fleet is what replicas sharing one SQL store know of each other:
// heartbeats with their rollups, the fleet's live configuration and the
// fleet's alerts. Only *SQL implements it; with the embedded store there is
// one instance and no fleet.
type Fleet interface {
	// WriteHeartbeats stores heartbeats (one transaction per call) and
	// moves each instance's latest row forward.
	WriteHeartbeats(ctx context.Context, hbs []Heartbeat) error
	// Instances is the latest heartbeat of every instance of fleet, with
	// Stale set for those silent for StaleIntervals monitoring intervals.
	Instances(ctx context.Context, fleet string, now time.Time) ([]InstanceStatus, error)
	// FleetNow is Instances with the merge of the fresh instances' latest
	// rollups (the fleet's last interval), from one query.
	FleetNow(ctx context.Context, fleet string, now time.Time) ([]InstanceStatus, MergedRollup, error)
	// MergedRollup merges the rollups of fleet's heartbeats stamped in
	// (from, to]: counts summed, latency buckets merged.
	MergedRollup(ctx context.Context, fleet string, from, to time.Time) (MergedRollup, error)
	// PruneFleet merges old heartbeat rows into per-window rows, deletes
	// rows past their retention and instances silent for r.KeepStale.
	PruneFleet(ctx context.Context, fleet string, now time.Time, r Retention) (PruneResult, error)

	// FleetConfig is fleet's stored live configuration (Version 0 when none).
	FleetConfig(ctx context.Context, fleet string) (ConfigVersion, error)
	// SetFleetConfig stores doc as the next version if the stored version is
	// still expect (0: none stored yet); otherwise ErrVersionConflict.
	SetFleetConfig(ctx context.Context, fleet string, expect int64, doc json.RawMessage, instance, actor string, at time.Time) (ConfigVersion, error)

	// RaiseFleetAlert records that instance sees a's condition: the fleet's
	// active alert with a's key (created when none is active, with a.ID as
	// its id) gains or updates instance. Every sidecar gets the same id.
	RaiseFleetAlert(ctx context.Context, fleet, instance string, a AlertRecord) (FleetAlert, error)
	// ResolveFleetAlert records that instance no longer sees key; the fleet
	// alert resolves when no instance sees it.
	ResolveFleetAlert(ctx context.Context, fleet, instance, key string, at time.Time) (FleetAlert, error)
	// AcknowledgeFleetAlert acknowledges an active fleet alert by id, for
	// every instance, until it resolves everywhere.
	AcknowledgeFleetAlert(ctx context.Context, fleet, id string, ack Acknowledgement) (FleetAlert, error)
	// FleetAlerts returns fleet's alerts, newest first; activeOnly skips resolved ones.
	FleetAlerts(ctx context.Context, fleet string, activeOnly bool) ([]FleetAlert, error)
}

// ErrVersionConflict is returned (wrapped) by SetFleetConfig when the
// stored version is not the expected one.
var ErrVersionConflict = errors.New("fleet configuration version conflict")

// ErrNotFound is returned (wrapped) for an unknown fleet alert id.
var ErrNotFound = errors.New("not found")

var (
	_ Backend = (*Store)(nil)
	_ Backend = (*SQL)(nil)
	_ Fleet   = (*SQL)(nil)
)
