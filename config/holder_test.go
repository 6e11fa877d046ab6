package config

import (
	"errors"
	"sync"
	"testing"
)

func TestHolderGetUpdate(t *testing.T) {
	c1 := Defaults()
	h := NewHolder(c1)
	if c, v := h.Get(); c != c1 || v != 1 {
		t.Fatalf("Get = %p, %d; want the initial config at version 1", c, v)
	}
	c2 := Defaults()
	c2.Log.Level = "debug"
	v, err := h.Update(1, c2)
	if err != nil || v != 2 {
		t.Fatalf("Update = %d, %v", v, err)
	}
	if _, err := h.Update(1, Defaults()); !errors.Is(err, ErrStaleVersion) {
		t.Errorf("Update from a stale version = %v, want ErrStaleVersion", err)
	}
	if c, v := h.Get(); c != c2 || v != 2 {
		t.Errorf("a refused update changed the holder: version %d", v)
	}
	if _, err := h.Update(0, nil); err == nil {
		t.Error("Update(nil) accepted")
	}
}

func TestHolderSubscribersRunInOrder(t *testing.T) {
	h := NewHolder(Defaults())
	var got []int
	h.Subscribe(func(c *Config) { got = append(got, c.Proxy.MaxRoutes) })
	h.Subscribe(func(c *Config) {
		// Get from inside a subscriber sees the new config, without deadlock.
		if cur, _ := h.Get(); cur != c && cur.Proxy.MaxRoutes < c.Proxy.MaxRoutes {
			t.Errorf("subscriber saw an older config from Get")
		}
	})
	for i := 1; i <= 3; i++ {
		c := Defaults()
		c.Proxy.MaxRoutes = i
		if _, err := h.Update(0, c); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Errorf("subscriber saw %v, want [1 2 3]", got)
	}
}

// TestHolderUpdateFromSubscriber: an Update made by a subscriber is delivered
// after the current one, without deadlock.
func TestHolderUpdateFromSubscriber(t *testing.T) {
	h := NewHolder(Defaults())
	var seen []int
	h.Subscribe(func(c *Config) {
		seen = append(seen, c.Proxy.MaxRoutes)
		if c.Proxy.MaxRoutes == 1 {
			n := c.Clone()
			n.Proxy.MaxRoutes = 2
			if _, err := h.Update(0, n); err != nil {
				t.Errorf("nested Update: %v", err)
			}
		}
	})
	c := Defaults()
	c.Proxy.MaxRoutes = 1
	if _, err := h.Update(0, c); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0] != 1 || seen[1] != 2 {
		t.Errorf("subscriber saw %v, want [1 2]", seen)
	}
	if cur, v := h.Get(); cur.Proxy.MaxRoutes != 2 || v != 3 {
		t.Errorf("holder at max_routes %d version %d", cur.Proxy.MaxRoutes, v)
	}
}

// TestHolderConcurrency: 20 writers with versions and 4 readers under -race.
// Versioned writes either win or get ErrStaleVersion; every win is seen by
// the subscriber exactly once, in version order; readers never see a torn
// (config, version) pair.
func TestHolderConcurrency(t *testing.T) {
	h := NewHolder(Defaults())
	var mu sync.Mutex
	var delivered []int
	h.Subscribe(func(c *Config) {
		mu.Lock()
		delivered = append(delivered, c.Proxy.MaxRoutes)
		mu.Unlock()
	})

	const writers, perWriter = 20, 50
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, v := h.Get()
				// Each config carries its own version in MaxRoutes (set below).
				if c.Proxy.MaxRoutes != 200 && uint64(c.Proxy.MaxRoutes) != v {
					t.Errorf("torn read: config for version %d at version %d", c.Proxy.MaxRoutes, v)
					return
				}
			}
		}()
	}
	var wins, stale sync.Map
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWriter {
				cur, v := h.Get()
				next := cur.Clone()
				next.Proxy.MaxRoutes = int(v + 1)
				_, err := h.Update(v, next)
				switch {
				case err == nil:
					wins.Store(v+1, w)
				case errors.Is(err, ErrStaleVersion):
					stale.Store(w, true)
				default:
					t.Errorf("Update: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()

	_, final := h.Get()
	n := 0
	wins.Range(func(any, any) bool { n++; return true })
	if uint64(n) != final-1 {
		t.Errorf("%d successful updates but version %d", n, final)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != n {
		t.Fatalf("subscriber ran %d times for %d updates", len(delivered), n)
	}
	for i, mr := range delivered {
		if mr != i+2 {
			t.Fatalf("delivery %d carried version %d: out of order", i, mr)
		}
	}
}

// BenchmarkHolderGet is the cost every request pays to read the live config.
func BenchmarkHolderGet(b *testing.B) {
	h := NewHolder(Defaults())
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c, _ := h.Get(); c == nil {
				b.Fatal("nil config")
			}
		}
	})
}
