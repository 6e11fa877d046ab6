package probes

import "github.com/pulsegate/pulsegate/dsn"

// The URL splitting and secret scrubbing live in package dsn, shared with
// the SQL store; these names keep the probes' code short.
type (
	dsnParts       = dsn.Parts
	secretScrubber = dsn.Scrubber
)

func splitDSN(raw string) (dsnParts, error) { return dsn.Split(raw) }

func newSecretScrubber(secrets ...string) secretScrubber { return dsn.NewScrubber(secrets...) }
