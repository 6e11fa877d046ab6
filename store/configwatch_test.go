package store

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestConfigWatcherFollowsTheFleet: the first poll applies what is stored;
// a change by another sidecar is applied at the next poll, once; while the
// store is cut the watcher keeps its version; when the store comes back
// with a newer version (set meanwhile by a sidecar that could reach it),
// that version wins.
func TestConfigWatcherFollowsTheFleet(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		ctx := context.Background()
		s, p := proxiedStore(t, sv)
		other := openSQLTest(t, sv.storeDSN(sv.adminUser(), "", testDB), WithInstance(s.fleet, "web-2"))
		if _, err := other.SetFleetConfig(ctx, s.fleet, 0, json.RawMessage(`{"a":1}`), "web-2", "alice", t0); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var got []int64
		w, err := NewConfigWatcher(s, s.fleet, time.Hour, func(cv ConfigVersion) {
			mu.Lock()
			got = append(got, cv.Version)
			mu.Unlock()
		}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		applied := func() []int64 {
			mu.Lock()
			defer mu.Unlock()
			return append([]int64(nil), got...)
		}
		if err := w.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		if a := applied(); len(a) != 1 || a[0] != 1 {
			t.Fatalf("applied %v after two polls; want [1] (the stored version, once)", a)
		}
		if _, err := other.SetFleetConfig(ctx, s.fleet, 1, json.RawMessage(`{"a":2}`), "web-2", "alice", t0); err != nil {
			t.Fatal(err)
		}
		_ = w.Poll(ctx)
		if a := applied(); len(a) != 2 || a[1] != 2 {
			t.Fatalf("applied %v; want the new version 2 next", a)
		}

		p.down()
		if err := w.Poll(ctx); err == nil {
			t.Fatal("poll with the store cut succeeded")
		}
		if w.Version() != 2 || len(applied()) != 2 {
			t.Errorf("while cut: version %d, applied %v; want version 2 kept, nothing applied", w.Version(), applied())
		}
		if _, err := other.SetFleetConfig(ctx, s.fleet, 2, json.RawMessage(`{"a":3}`), "web-2", "bob", t0); err != nil {
			t.Fatal(err)
		}
		p.up(t)
		if err := w.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		if a := applied(); len(a) != 3 || a[2] != 3 || w.Version() != 3 {
			t.Errorf("after the store came back: applied %v; want 3 applied", a)
		}
	})
}

type fixedSource struct{ v int64 }

func (f fixedSource) FleetConfig(context.Context, string) (ConfigVersion, error) {
	return ConfigVersion{Version: f.v}, nil
}

// TestConfigWatcherRunStops: Run polls at once and returns when its
// context ends (goleak checks the goroutine).
func TestConfigWatcherRunStops(t *testing.T) {
	applied := make(chan int64, 1)
	w, err := NewConfigWatcher(fixedSource{v: 7}, "f", time.Hour, func(cv ConfigVersion) { applied <- cv.Version }, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	if v := <-applied; v != 7 {
		t.Errorf("applied %d; want 7", v)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := NewConfigWatcher(fixedSource{}, "f", 0, func(ConfigVersion) {}, nil); err == nil {
		t.Error("a zero poll interval was accepted")
	}
}

// memSource is a ConfigSource in memory.
type memSource struct {
	mu sync.Mutex
	cv ConfigVersion
}

func (m *memSource) FleetConfig(context.Context, string) (ConfigVersion, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cv, nil
}

func (m *memSource) set(cv ConfigVersion) {
	m.mu.Lock()
	m.cv = cv
	m.mu.Unlock()
}

// TestConfigWatcherSeesARecreatedRow: a stored row deleted and written
// again starts at version 1 once more; the watcher applies it even when it
// last applied another version 1 (the time of the change differs). A
// version this sidecar stored itself (Exclusive) is not applied again.
func TestConfigWatcherSeesARecreatedRow(t *testing.T) {
	ctx := context.Background()
	src := &memSource{cv: ConfigVersion{Version: 1, Doc: json.RawMessage(`{"a":1}`), Updated: t0}}
	var got []string
	w, err := NewConfigWatcher(src, "f", time.Hour, func(cv ConfigVersion) { got = append(got, string(cv.Doc)) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Poll(ctx)
	src.set(ConfigVersion{Version: 1, Doc: json.RawMessage(`{"a":2}`), Updated: t0.Add(time.Minute)})
	_ = w.Poll(ctx)
	if len(got) != 2 || got[1] != `{"a":2}` {
		t.Fatalf("applied %q; want the recreated version 1 applied too", got)
	}
	stored := ConfigVersion{Version: 2, Doc: json.RawMessage(`{"a":3}`), Updated: t0.Add(2 * time.Minute)}
	_ = w.Exclusive(ctx, func(last ConfigVersion) (ConfigVersion, bool) {
		if last.Version != 1 {
			t.Errorf("Exclusive saw version %d; want 1", last.Version)
		}
		src.set(stored)
		return stored, true
	})
	_ = w.Poll(ctx)
	if len(got) != 2 || w.Version() != 2 {
		t.Fatalf("applied %q, version %d; want the version stored by Exclusive counted as applied", got, w.Version())
	}
	if cur, ok := w.Current(); !ok || cur.Version != 2 || string(cur.Doc) != `{"a":3}` {
		t.Fatalf("current %+v", cur)
	}
}
