package backpressure

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pulsegate/pulsegate/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a settable clock for the Chain's now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 6, 10, 30, 0, 0, time.UTC)}
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// blockingUpstream counts concurrent requests and holds each until released.
type blockingUpstream struct {
	cur, max, total atomic.Int64
	release         chan struct{}
	once            sync.Once
	mu              sync.Mutex
	order           []string // X-Seq of requests in arrival order
}

func newBlockingUpstream() *blockingUpstream {
	return &blockingUpstream{release: make(chan struct{})}
}

func (b *blockingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := b.cur.Add(1)
	defer b.cur.Add(-1)
	for {
		m := b.max.Load()
		if n <= m || b.max.CompareAndSwap(m, n) {
			break
		}
	}
	b.total.Add(1)
	b.mu.Lock()
	b.order = append(b.order, r.Header.Get("X-Seq"))
	b.mu.Unlock()
	select {
	case <-b.release:
	case <-r.Context().Done():
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok"))
}

// open lets every held and future request through.
func (b *blockingUpstream) open() { b.once.Do(func() { close(b.release) }) }

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// baseConfig returns defaults with every limiter off.
func baseConfig() *config.Config {
	cfg := config.Defaults()
	cfg.Backpressure.SheddingEnabled = false
	return cfg
}

// newTestChain builds a chain with a fresh registry and an observed logger.
func newTestChain(t *testing.T, cfg *config.Config, next http.Handler) (*Chain, *prometheus.Registry, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	reg := prometheus.NewRegistry()
	c, err := New(cfg, zap.New(core), reg, next)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, reg, logs
}

// recorderWriter mimics proxy.Instrument's recorder interfaces.
type recorderWriter struct {
	http.ResponseWriter
	mu       sync.Mutex
	wait     time.Duration
	rejected string
}

func (r *recorderWriter) SetQueueWait(d time.Duration) {
	r.mu.Lock()
	r.wait = d
	r.mu.Unlock()
}

func (r *recorderWriter) SetRejected(reason string) {
	r.mu.Lock()
	r.rejected = reason
	r.mu.Unlock()
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = w.Write([]byte("ok"))
})
