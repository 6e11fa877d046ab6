package store

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
)

// Opened is the store chosen by the configuration.
type Opened struct {
	// Backend holds alert history, acknowledgements and the audit log.
	Backend Backend
	// Fleet is the shared store's fleet tables; nil with the embedded store
	// (one instance, no fleet).
	Fleet Fleet
	// Sink is what a Writer writes to; nil with the embedded store.
	Sink Sink
	// Fleet and instance names this sidecar writes under.
	FleetName, Instance string
}

// Shared reports whether the store is shared by a fleet (store.dsn set).
func (o Opened) Shared() bool { return o.Fleet != nil }

// OpenFromConfig opens the store cfg selects: the SQL store at store.dsn
// when it is set (as instance cfg.InstanceName() of fleet cfg.Fleet),
// otherwise the embedded bbolt store in data_dir. Errors name the setting.
func OpenFromConfig(ctx context.Context, cfg *config.Config, log *zap.Logger, opts ...Option) (Opened, error) {
	if log == nil {
		log = zap.NewNop()
	}
	instance := cfg.InstanceName()
	if cfg.Store.DSN.IsSet() {
		s, err := OpenSQL(ctx, cfg.Store.DSN.Reveal(), log, append([]Option{WithInstance(cfg.Fleet, instance)}, opts...)...)
		if err != nil {
			return Opened{}, err
		}
		return Opened{Backend: s, Fleet: s, Sink: s, FleetName: s.Fleet(), Instance: s.Instance()}, nil
	}
	s, err := Open(cfg.DataDir, log, opts...)
	if err != nil {
		return Opened{}, fmt.Errorf("data_dir (RESPONSIVENESS_DATA_DIR): %w", err)
	}
	return Opened{Backend: s, FleetName: cfg.Fleet, Instance: instance}, nil
}
