package backpressure

import (
	"context"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"
)

// Run's loop ends shedding when the hold expires even if no new pressure
// reading arrives, and returns nil when ctx ends.
func TestRunLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := baseConfig()
		cfg.Backpressure.SheddingEnabled = true
		cfg.Backpressure.ShedHold = 30
		cfg.Backpressure.MaxConcurrency = 4
		c, _, _ := newTestChain(t, cfg, okHandler)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()

		c.SetPressure(SignalMemory, "critical")
		c.SetPressure(SignalMemory, "ok")
		if c.State().Mode != ModeShedding {
			t.Fatal("not shedding during the hold")
		}
		time.Sleep(31 * time.Second)
		synctest.Wait()
		if st := c.State(); st.Mode != ModeEnforcing {
			t.Errorf("mode %s 31 s after memory fell below critical (hold 30 s), want enforcing", st.Mode)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	})
}

func TestRunMeasuresDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := baseConfig()
		cfg.Backpressure.MaxConcurrency = 4
		c, _, _ := newTestChain(t, cfg, okHandler)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = c.Run(ctx) }()
		time.Sleep(500 * time.Millisecond)
		for range 5 {
			for range 20 {
				c.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
			}
			time.Sleep(time.Second)
		}
		if r := c.State().DrainPerSecond; r != 20 {
			t.Errorf("drain rate = %v, want 20/s", r)
		}
		cancel()
		synctest.Wait()
	})
}
