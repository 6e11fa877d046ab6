package backpressure

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Catalogue case 23: MAX_CONCURRENCY=8, queue critical 50, 200 concurrent
// slow requests → the app never sees more than 8, at most 50 wait, the rest
// get 503 + Retry-After while the app is still busy, nothing hangs, and the
// gauges return to 0.
func TestOverloadBoundedQueue(t *testing.T) {
	up := newBlockingUpstream()
	cfg := baseConfig()
	cfg.Backpressure.MaxConcurrency = 8
	cfg.Backpressure.QueueSize = 50
	cfg.Backpressure.QueueTimeout = 60
	c, reg, _ := newTestChain(t, cfg, up)
	srv := httptest.NewServer(c)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	defer client.CloseIdleConnections()

	type answer struct {
		status int
		retry  string
		reason string
		body   string
	}
	const n = 200
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", srv.URL+"/sleep", nil)
			req.Header.Set("X-Seq", strconv.Itoa(i))
			req.Header.Set("Accept", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get(HeaderReject), string(b)}
		}()
	}
	// With the app still holding every slot, 8 are in flight, 50 queued and
	// the other 142 have already been answered.
	waitFor(t, "8 in flight, 50 queued, 142 rejected", func() bool {
		return c.lim.inFlight.Load() == 8 && c.QueueDepth() == 50 && len(answers) == n-58
	})
	if got := metricValue(t, reg, "pulsegate_backpressure_queue_depth", ""); got != 50 {
		t.Errorf("queue_depth gauge = %v, want 50", got)
	}
	for range n - 58 {
		a := <-answers
		if a.status != http.StatusServiceUnavailable || a.reason != "queue_full" {
			t.Fatalf("rejected answer = %d %q, want 503 queue_full", a.status, a.reason)
		}
		if s, err := strconv.Atoi(a.retry); err != nil || s < 1 || s > 60 {
			t.Fatalf("Retry-After = %q, want whole seconds in 1..60", a.retry)
		}
		var body struct {
			Error      string `json:"error"`
			Reason     string `json:"reason"`
			RetryAfter int    `json:"retry_after"`
		}
		if err := json.Unmarshal([]byte(a.body), &body); err != nil || body.Reason != "queue_full" || body.Error == "" || strconv.Itoa(body.RetryAfter) != a.retry {
			t.Fatalf("JSON body = %q (err %v)", a.body, err)
		}
	}
	up.open()
	wg.Wait()
	close(answers)
	ok := 0
	for a := range answers {
		if a.status == http.StatusOK {
			ok++
		}
	}
	if ok != 58 {
		t.Errorf("served = %d, want 58", ok)
	}
	if m := up.max.Load(); m != 8 {
		t.Errorf("upstream saw %d concurrent requests, want exactly 8", m)
	}
	st := c.State()
	if st.InFlight != 0 || st.Queued != 0 {
		t.Errorf("after the burst in_flight=%d queued=%d, want 0/0", st.InFlight, st.Queued)
	}
	if st.Rejections["queue_full"] != n-58 {
		t.Errorf("rejections[queue_full] = %d, want %d", st.Rejections["queue_full"], n-58)
	}
	if got := metricValue(t, reg, "pulsegate_backpressure_rejections_total", "queue_full"); got != n-58 {
		t.Errorf("rejections_total{queue_full} = %v", got)
	}
	// The heartbeat's peaks: the burst's 8 in flight and 50 queued, then,
	// read again once it is over, the idle levels.
	if f, q := c.TakePeaks(); f != 8 || q != 50 {
		t.Errorf("TakePeaks after the burst = %d in flight, %d queued; want 8, 50", f, q)
	}
	if f, q := c.TakePeaks(); f != 0 || q != 0 {
		t.Errorf("TakePeaks once idle = %d, %d; want 0, 0", f, q)
	}
}

func TestQueueTimeout(t *testing.T) {
	up := newBlockingUpstream()
	defer up.open()
	cfg := baseConfig()
	cfg.Backpressure.MaxConcurrency = 1
	cfg.Backpressure.QueueSize = 5
	cfg.Backpressure.QueueTimeout = 0.05
	c, _, _ := newTestChain(t, cfg, up)

	done := make(chan struct{})
	go func() {
		defer close(done)
		c.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/hold", nil))
	}()
	waitFor(t, "first request in flight", func() bool { return up.cur.Load() == 1 })

	rec := &recorderWriter{ResponseWriter: httptest.NewRecorder()}
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/waits", nil))
	res := rec.ResponseWriter.(*httptest.ResponseRecorder)
	if res.Code != http.StatusServiceUnavailable || res.Header().Get(HeaderReject) != "queue_timeout" {
		t.Fatalf("got %d %q, want 503 queue_timeout", res.Code, res.Header().Get(HeaderReject))
	}
	if rec.rejected != "queue_timeout" {
		t.Errorf("recorder reason = %q", rec.rejected)
	}
	if rec.wait < 50*time.Millisecond {
		t.Errorf("recorder queue wait = %v, want ≥ the 50 ms timeout", rec.wait)
	}
	if ra := res.Header().Get("Retry-After"); ra != "1" {
		// No drain measured yet: fallback is the queue timeout, clamped to ≥ 1.
		t.Errorf("Retry-After = %q, want 1", ra)
	}
	if up.total.Load() != 1 {
		t.Errorf("timed-out request was forwarded")
	}
	up.open()
	<-done
}

func TestFIFOOrder(t *testing.T) {
	up := newBlockingUpstream()
	cfg := baseConfig()
	cfg.Backpressure.MaxConcurrency = 1
	cfg.Backpressure.QueueSize = 10
	cfg.Backpressure.QueueTimeout = 60
	// Each request is released one at a time so arrival order is observable.
	step := make(chan struct{})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up.mu.Lock()
		up.order = append(up.order, r.Header.Get("X-Seq"))
		up.mu.Unlock()
		<-step
	})
	c, _, _ := newTestChain(t, cfg, next)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("X-Seq", strconv.Itoa(i))
			c.ServeHTTP(httptest.NewRecorder(), req)
		}()
		// Wait until this request holds the slot or sits in the queue.
		waitFor(t, "request queued", func() bool { return int(c.lim.inFlight.Load())+c.QueueDepth() == i+1 })
	}
	for range 6 {
		step <- struct{}{}
	}
	wg.Wait()
	want := "[0 1 2 3 4 5]"
	if got := fmt.Sprint(up.order); got != want {
		t.Errorf("upstream order = %s, want %s (FIFO)", got, want)
	}
}

// Catalogue case 24: 10 000 requests, many cancelled at random while queued:
// a cancelled one leaves the queue at once and is never forwarded, the
// gauges never go negative nor past their bounds, and end at 0.
func TestRandomCancelsWhileQueued(t *testing.T) {
	const limit, bound = 4, 64
	cfg := baseConfig()
	cfg.Backpressure.MaxConcurrency = limit
	cfg.Backpressure.QueueSize = bound
	cfg.Backpressure.QueueTimeout = 30

	var forwarded sync.Map // request id → true
	var cur atomic.Int64
	var overLimit atomic.Bool
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cur.Add(1) > limit {
			overLimit.Store(true)
		}
		defer cur.Add(-1)
		forwarded.Store(r.Header.Get("X-Seq"), true)
		time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		_, _ = w.Write([]byte("ok"))
	})
	c, _, _ := newTestChain(t, cfg, next)

	stop := make(chan struct{})
	var bad atomic.Value
	var samplerWG sync.WaitGroup
	samplerWG.Add(1)
	go func() {
		defer samplerWG.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			f, q := c.lim.inFlight.Load(), c.lim.waiting.Load()
			if f < 0 || q < 0 || f > limit || q > bound {
				bad.Store(fmt.Sprintf("in_flight=%d queued=%d", f, q))
			}
			time.Sleep(10 * time.Microsecond)
		}
	}()

	const n = 10000
	var abandonedIDs sync.Map
	var nAbandoned atomic.Uint64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 128)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if rand.IntN(2) == 0 {
				time.AfterFunc(time.Duration(rand.IntN(300))*time.Microsecond, cancel)
			}
			id := strconv.Itoa(i)
			req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
			req.Header.Set("X-Seq", id)
			res := httptest.NewRecorder()
			c.ServeHTTP(res, req)
			// Nothing written and no rejection: the request left the queue.
			if res.Body.Len() == 0 && res.Header().Get(HeaderReject) == "" {
				abandonedIDs.Store(id, true)
				nAbandoned.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	samplerWG.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("gauge out of bounds: %v", v)
	}
	if overLimit.Load() {
		t.Fatalf("upstream saw more than %d concurrent requests", limit)
	}
	abandonedIDs.Range(func(k, _ any) bool {
		if _, ok := forwarded.Load(k); ok {
			t.Errorf("request %v was abandoned in the queue and still forwarded", k)
		}
		return true
	})
	st := c.State()
	if st.InFlight != 0 || st.Queued != 0 {
		t.Fatalf("end state in_flight=%d queued=%d, want 0/0", st.InFlight, st.Queued)
	}
	if st.QueueAbandoned != nAbandoned.Load() {
		t.Errorf("queue_abandoned = %d, but %d requests left the queue", st.QueueAbandoned, nAbandoned.Load())
	}
	if st.QueueAbandoned == 0 {
		t.Errorf("no request was abandoned while queued; the test did not exercise cancellation")
	}
	t.Logf("abandoned while queued: %d, queue_full: %d", st.QueueAbandoned, st.Rejections["queue_full"])
}

// A panic in the forwarder — including http.ErrAbortHandler, which
// ReverseProxy uses when the client leaves mid-body — propagates and does
// not leak the slot.
func TestPanicReleasesSlot(t *testing.T) {
	cfg := baseConfig()
	cfg.Backpressure.MaxConcurrency = 1
	cfg.Backpressure.Adaptive.Enabled = true
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	c, _, _ := newTestChain(t, cfg, next)
	for range 3 {
		func() {
			defer func() {
				if v := recover(); v != http.ErrAbortHandler {
					t.Fatalf("recovered %v, want http.ErrAbortHandler to propagate", v)
				}
			}()
			c.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		}()
		if f := c.lim.inFlight.Load(); f != 0 {
			t.Fatalf("in_flight after panic = %d, want 0", f)
		}
	}
	if st := c.State(); st.Adaptive == nil || st.Adaptive.DroppedSamples != 3 {
		t.Errorf("adaptive dropped samples = %+v, want 3 (a panic carries no latency)", st.Adaptive)
	}
}

// Apply raising the limit admits queued requests at once; lowering it lets
// in-flight requests finish and admits no one new until below it.
func TestApplyChangesLimitLive(t *testing.T) {
	up := newBlockingUpstream()
	cfg := baseConfig()
	cfg.Backpressure.MaxConcurrency = 2
	cfg.Backpressure.QueueSize = 10
	cfg.Backpressure.QueueTimeout = 60
	c, _, _ := newTestChain(t, cfg, up)
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		}()
	}
	waitFor(t, "2 in flight, 4 queued", func() bool { return up.cur.Load() == 2 && c.QueueDepth() == 4 })
	cfg2 := *cfg
	cfg2.Backpressure.MaxConcurrency = 5
	if err := c.Apply(&cfg2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "5 in flight, 1 queued", func() bool { return up.cur.Load() == 5 && c.QueueDepth() == 1 })
	if st := c.State(); st.Limit != 5 || st.MaxConcurrency != 5 {
		t.Errorf("state limit = %d/%d, want 5", st.Limit, st.MaxConcurrency)
	}
	// Turning the limit off admits everyone.
	off := *cfg
	off.Backpressure.MaxConcurrency = 0
	if err := c.Apply(&off); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "6 in flight", func() bool { return up.cur.Load() == 6 && c.QueueDepth() == 0 })
	up.open()
	wg.Wait()
	if f := c.lim.inFlight.Load(); f != 0 {
		t.Errorf("in_flight = %d, want 0", f)
	}
}

// Queue wait lands in the recorder (the proxy's timing split) and in the
// histogram.
func TestQueueWaitReported(t *testing.T) {
	up := newBlockingUpstream()
	cfg := baseConfig()
	cfg.Backpressure.MaxConcurrency = 1
	cfg.Backpressure.QueueTimeout = 60
	c, reg, _ := newTestChain(t, cfg, up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
	waitFor(t, "first in flight", func() bool { return up.cur.Load() == 1 })
	rec := &recorderWriter{ResponseWriter: httptest.NewRecorder()}
	second := make(chan struct{})
	go func() {
		defer close(second)
		c.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	}()
	waitFor(t, "second queued", func() bool { return c.QueueDepth() == 1 })
	time.Sleep(20 * time.Millisecond)
	up.open()
	<-done
	<-second
	rec.mu.Lock()
	wait := rec.wait
	rec.mu.Unlock()
	if wait < 20*time.Millisecond {
		t.Errorf("queue wait = %v, want ≥ 20ms", wait)
	}
	if n := histogramCount(t, reg, "pulsegate_backpressure_queue_wait_seconds"); n != 2 {
		t.Errorf("queue_wait_seconds count = %d, want 2", n)
	}
}

func TestRetryAfterFromDrainRate(t *testing.T) {
	cases := []struct {
		ahead    int64
		rate     float64
		fallback time.Duration
		want     int
	}{
		{0, 10, time.Second, 1},
		{49, 10, time.Second, 5},
		{99, 4, time.Second, 25},
		{1000, 1, time.Second, 60},
		{5, 0, 10 * time.Second, 10},
		{5, 0, 100 * time.Millisecond, 1},
		{5, 0, 5 * time.Minute, 60},
	}
	for _, tc := range cases {
		if got := retryAfterSeconds(tc.ahead, tc.rate, tc.fallback); got != tc.want {
			t.Errorf("retryAfterSeconds(%d, %v, %v) = %d, want %d", tc.ahead, tc.rate, tc.fallback, got, tc.want)
		}
	}
	var d drainMeter
	t0 := time.Unix(1000, 0)
	d.tick(t0, 0)
	d.tick(t0.Add(time.Second), 20)
	if got := d.perSecond(); got != 20 {
		t.Fatalf("first reading = %v, want 20", got)
	}
	d.tick(t0.Add(2*time.Second), 30) // 10/s
	if got := d.perSecond(); got < 16.9 || got > 17.1 {
		t.Fatalf("EWMA = %v, want 0.3·10 + 0.7·20 = 17", got)
	}
}

func TestQueueBoundZeroRejectsAtOnce(t *testing.T) {
	up := newBlockingUpstream()
	cfg := baseConfig()
	cfg.Backpressure.MaxConcurrency = 1
	cfg.Backpressure.QueueSize = 0
	c, _, _ := newTestChain(t, cfg, up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
	waitFor(t, "first in flight", func() bool { return up.cur.Load() == 1 })
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 503 || rec.Header().Get(HeaderReject) != "queue_full" {
		t.Errorf("got %d %q, want 503 queue_full", rec.Code, rec.Header().Get(HeaderReject))
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" || rec.Body.Len() == 0 {
		t.Errorf("plain-text body expected for a non-JSON client, got %q %q", ct, rec.Body.String())
	}
	up.open()
	<-done
}
