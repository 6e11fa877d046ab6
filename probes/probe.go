// Package probes watches what the app depends on, beside the request path:
// the host/container (system_optimizer), the database (database_manager) and
// Redis (session_monitoring). A Runner ticks each Prober on its own
// goroutine with a timeout, jitter, backoff and panic recovery, and keeps
// the latest Result of each in a Store. Readers (the admin API, /metrics,
// alerts, backpressure) only read the Store: no request or scrape ever
// touches the DB or Redis.
package probes

import (
	"context"
	"time"
)

// Status is a probe's verdict on its target.
type Status string

// Statuses, in rising order of severity; Down means the target could not be
// reached at all, Disabled that the probe has no configuration.
const (
	StatusOK       Status = "ok"
	StatusWarning  Status = "warning"
	StatusCritical Status = "critical"
	StatusDown     Status = "down"
	StatusDisabled Status = "disabled"
)

// Result is one probe run's outcome.
type Result struct {
	// Probe is the component name: system_optimizer, database_manager, session_monitoring.
	Probe string `json:"probe"`
	// Status is the verdict for this run.
	Status Status `json:"status"`
	// Reasons explain a non-ok status in words with numbers.
	Reasons []string `json:"reasons,omitempty"`
	// Error is the failure, redacted (never a DSN password).
	Error string `json:"error,omitempty"`
	// Started and Duration time the run.
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	// Figures are the named numbers of docs/ARCHITECTURE.md (fractions 0..1, seconds).
	Figures map[string]float64 `json:"figures,omitempty"`
	// Details is the probe's full, JSON-ready report. Readers share it:
	// a probe must not change a Details value after returning it.
	Details any `json:"details,omitempty"`
	// ConsecutiveDown counts Down results in a row, this one included
	// (0 unless Down). Set by the Runner.
	ConsecutiveDown int `json:"consecutive_down,omitempty"`
	// NextRun is when the Runner will run this probe again (later than one
	// interval while the target is down: backoff). Set by the Runner.
	NextRun time.Time `json:"next_run,omitzero"`
}

// Prober is one probe. Probe must honour ctx's deadline and must not keep
// goroutines running after it returns. Close releases connections.
type Prober interface {
	Name() string
	Probe(ctx context.Context) Result
	Close() error
}
