package store

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
)

// TestOpenFromConfig: store.dsn unset opens the embedded store (no fleet);
// set, the shared store under fleet and instance (the host name when
// instance is empty); a bad data_dir names its setting.
func TestOpenFromConfig(t *testing.T) {
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	o, err := OpenFromConfig(context.Background(), cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if o.Shared() || o.FleetName != "default" || o.Instance != cfg.InstanceName() {
		t.Errorf("embedded: %+v", o)
	}
	if _, ok := o.Backend.(*Store); !ok {
		t.Errorf("embedded backend is %T", o.Backend)
	}
	_ = o.Backend.Close()

	bad := config.Defaults()
	bad.DataDir = "/proc/pulsegate-cannot-be-here"
	if _, err := OpenFromConfig(context.Background(), bad, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "RESPONSIVENESS_DATA_DIR") {
		t.Errorf("bad data_dir: %v", err)
	}

	sqlServers(t, func(t *testing.T, sv *server) {
		c := config.Defaults()
		c.Store.DSN = config.Secret(sv.storeDSN(sv.adminUser(), "", testDB))
		c.Fleet, c.Instance = fleetName(t), "pod-a"
		o, err := OpenFromConfig(context.Background(), c, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		defer o.Backend.Close()
		if !o.Shared() || o.FleetName != c.Fleet || o.Instance != "pod-a" {
			t.Errorf("shared: %+v", o)
		}
	})
}
