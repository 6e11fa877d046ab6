package probes

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// runnerFake is a Prober whose behaviour a test scripts: fn runs on every
// call with the call number (1-based).
type runnerFake struct {
	name   string
	fn     func(ctx context.Context, n int) Result
	calls  atomic.Int64
	closed atomic.Bool
	mu     sync.Mutex
	times  []time.Time
}

func (f *runnerFake) Name() string { return f.name }
func (f *runnerFake) Close() error { f.closed.Store(true); return nil }
func (f *runnerFake) Probe(ctx context.Context) Result {
	n := int(f.calls.Add(1))
	f.mu.Lock()
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	return f.fn(ctx, n)
}

func (f *runnerFake) callTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times...)
}

func okResult(context.Context, int) Result {
	return Result{Status: StatusOK, Figures: map[string]float64{"memory_usage": 0.5}}
}

// startRunner runs r in the background and returns a stop function that
// cancels it and returns Run's error.
func startRunner(t *testing.T, r *Runner) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

func TestRunnerFirstRunAtOnceThenEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &runnerFake{name: "system_optimizer", fn: okResult}
		var got []Result
		var mu sync.Mutex
		r := NewRunner(RunnerConfig{Interval: 10 * time.Second}, nil, nil, nil, f)
		r.OnResult = func(res Result) {
			mu.Lock()
			got = append(got, res)
			mu.Unlock()
		}
		start := time.Now()
		stop := startRunner(t, r)
		synctest.Wait()
		if n := f.calls.Load(); n != 1 {
			t.Fatalf("calls at start = %d; want 1 (first run immediately)", n)
		}
		time.Sleep(35 * time.Second)
		synctest.Wait()
		if err := stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		times := f.callTimes()
		if len(times) != 4 {
			t.Fatalf("calls in 35 s = %d; want 4 (0, 10, 20, 30 s)", len(times))
		}
		for i, at := range times {
			if want := start.Add(time.Duration(i) * 10 * time.Second); !at.Equal(want) {
				t.Errorf("call %d at %v; want %v", i, at.Sub(start), want.Sub(start))
			}
		}
		res, ok := r.Store().Get("system_optimizer")
		if !ok || res.Status != StatusOK || res.Figures["memory_usage"] != 0.5 || !res.Started.Equal(start.Add(30*time.Second)) {
			t.Errorf("stored = %+v, %v", res, ok)
		}
		if len(got) != 4 {
			t.Errorf("OnResult calls = %d; want 4", len(got))
		}
		if !res.NextRun.Equal(start.Add(40 * time.Second)) {
			t.Errorf("NextRun = %v; want 40 s", res.NextRun.Sub(start))
		}
	})
}

func TestRunnerJitterStaysWithinTenPercent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &runnerFake{name: "p", fn: okResult}
		r := NewRunner(RunnerConfig{Interval: 10 * time.Second, Jitter: 0.1}, nil, nil, nil, f)
		stop := startRunner(t, r)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		_ = stop()
		times := f.callTimes()
		if len(times) < 50 {
			t.Fatalf("calls = %d; want about 60", len(times))
		}
		distinct := map[time.Duration]bool{}
		for i := 1; i < len(times); i++ {
			gap := times[i].Sub(times[i-1])
			distinct[gap] = true
			if gap < 9*time.Second || gap > 11*time.Second {
				t.Errorf("gap %d = %v; want 10 s ± 10 %%", i, gap)
			}
		}
		if len(distinct) < 2 {
			t.Errorf("all gaps equal (%v): no jitter", distinct)
		}
	})
}

func TestRunnerPanicBecomesDownAndLoopContinues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zapcore.DebugLevel)
		f := &runnerFake{name: "database_manager", fn: func(_ context.Context, n int) Result {
			if n == 1 {
				panic("boom: mysql://app:s3cret@db:3306/app")
			}
			return Result{Status: StatusOK}
		}}
		tasks := NewTasks(nil)
		r := NewRunner(RunnerConfig{Interval: 10 * time.Second}, zap.New(core), nil, tasks, f)
		stop := startRunner(t, r)
		synctest.Wait()
		res, _ := r.Store().Get("database_manager")
		if res.Status != StatusDown || !strings.Contains(res.Error, "panic: boom") || strings.Contains(res.Error, "s3cret") {
			t.Errorf("after panic: %+v; want down with the redacted panic message", res)
		}
		ts := tasks.Snapshot()
		if len(ts) != 1 || ts[0].Name != "probe:database_manager" || ts[0].ConsecutiveFailures != 1 || ts[0].Running {
			t.Errorf("task after panic = %+v", ts)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		_ = stop()
		res, _ = r.Store().Get("database_manager")
		if res.Status != StatusOK || f.calls.Load() != 2 {
			t.Errorf("after the next tick: %s, calls %d; want ok, 2", res.Status, f.calls.Load())
		}
		ts = tasks.Snapshot()
		if ts[0].Recoveries != 1 || ts[0].ConsecutiveFailures != 0 || ts[0].Runs != 2 || ts[0].Failures != 1 {
			t.Errorf("task after recovery = %+v", ts[0])
		}
		if n := logs.FilterMessage("probe_panic").Len(); n != 1 {
			t.Errorf("probe_panic lines = %d; want 1", n)
		}
		for _, e := range logs.All() {
			for _, f := range e.Context {
				if strings.Contains(f.String, "s3cret") {
					t.Errorf("log %q leaks the password: %v", e.Message, f)
				}
			}
		}
	})
}

// TestRunnerHangingProbeNeverPilesUp: a probe that ignores its context is
// given up at timeout + grace, recorded Down, later ticks are skipped (no
// second goroutine) and the task is stuck; when it returns, runs resume.
func TestRunnerHangingProbeNeverPilesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var inside atomic.Int64
		f := &runnerFake{name: "session_monitoring", fn: func(_ context.Context, n int) Result {
			if n == 1 {
				inside.Add(1)
				<-release // ignores ctx
				inside.Add(-1)
			}
			return Result{Status: StatusOK}
		}}
		core, logs := observer.New(zapcore.DebugLevel)
		tasks := NewTasks(nil)
		r := NewRunner(RunnerConfig{
			Interval:   10 * time.Second,
			Timeouts:   map[string]time.Duration{"session_monitoring": 2 * time.Second},
			StuckGrace: time.Second,
		}, zap.New(core), nil, tasks, f)
		stop := startRunner(t, r)
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		res, _ := r.Store().Get("session_monitoring")
		if res.Status != StatusDown || !strings.Contains(res.Error, "did not return within its 2s timeout") {
			t.Errorf("after timeout + grace: %+v; want down, stuck", res)
		}
		time.Sleep(60 * time.Second)
		synctest.Wait()
		if c, in := f.calls.Load(), inside.Load(); c != 1 || in != 1 {
			t.Fatalf("calls = %d, in flight = %d; want 1 and 1 (ticks skipped, no pile-up)", c, in)
		}
		ts := tasks.Snapshot()[0]
		if !ts.Stuck || !ts.Running || ts.Skipped < 5 {
			t.Errorf("task = %+v; want stuck, running, ≥ 5 skipped ticks", ts)
		}
		if st, reasons := tasks.Status(time.Now()); st != StatusCritical || !strings.Contains(strings.Join(reasons, ";"), "stuck") {
			t.Errorf("tasks status = %s %v; want critical, stuck", st, reasons)
		}
		if n := logs.FilterMessage("probe_skipped").Len(); n != 1 {
			t.Errorf("probe_skipped lines = %d; want 1 per episode", n)
		}
		close(release)
		time.Sleep(20 * time.Second)
		synctest.Wait()
		res, _ = r.Store().Get("session_monitoring")
		if res.Status != StatusOK || f.calls.Load() < 2 {
			t.Errorf("after release: %s, calls %d; want ok and new runs", res.Status, f.calls.Load())
		}
		ts = tasks.Snapshot()[0]
		if ts.Stuck || ts.Failures != 1 || !strings.Contains(ts.LastError, "past its 3s deadline") {
			t.Errorf("task after release = %+v; want not stuck, the overrun counted as a failure", ts)
		}
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestRunnerShutdownWithStuckProbe: Run returns within its shutdown grace
// even when a probe never returns, and says which.
func TestRunnerShutdownWithStuckProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		f := &runnerFake{name: "database_manager", fn: func(context.Context, int) Result {
			<-release
			return Result{Status: StatusOK}
		}}
		r := NewRunner(RunnerConfig{Interval: 10 * time.Second, ShutdownGrace: 2 * time.Second}, nil, nil, nil, f)
		stop := startRunner(t, r)
		synctest.Wait()
		err := stop()
		if err == nil || !strings.Contains(err.Error(), "database_manager") {
			t.Errorf("Run = %v; want an error naming the stuck probe", err)
		}
		close(release)
		if err := r.Close(); err != nil || !f.closed.Load() {
			t.Errorf("Close = %v, closed %v", err, f.closed.Load())
		}
	})
}

func TestRunnerTimeoutIsPassedToProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &runnerFake{name: "database_manager", fn: func(ctx context.Context, _ int) Result {
			<-ctx.Done()
			return Result{Status: StatusDown, Error: "connecting to db: " + ctx.Err().Error()}
		}}
		tasks := NewTasks(nil)
		r := NewRunner(RunnerConfig{Interval: 10 * time.Second, Timeouts: map[string]time.Duration{"database_manager": 1500 * time.Millisecond}},
			nil, nil, tasks, f)
		res := r.RunOnce(t.Context())
		if len(res) != 1 || res[0].Status != StatusDown || res[0].Duration != 1500*time.Millisecond || !strings.Contains(res[0].Error, "deadline exceeded") {
			t.Errorf("RunOnce = %+v; want down after exactly the 1.5 s timeout", res)
		}
		// A target that is down is not a task failure: the loop did its job.
		if ts := tasks.Snapshot()[0]; ts.Failures != 0 || ts.Runs != 1 {
			t.Errorf("task = %+v; want 1 run, 0 failures", ts)
		}
	})
}

// TestRunnerBackoffWhileDown: waits double from the interval while the
// target stays down, capped at max(interval, 30 s), visible in the result; one log
// line per transition.
func TestRunnerBackoffWhileDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var down atomic.Bool
		down.Store(true)
		f := &runnerFake{name: "session_monitoring", fn: func(context.Context, int) Result {
			if down.Load() {
				return Result{Status: StatusDown, Error: "dial tcp 127.0.0.1:6379: connection refused"}
			}
			return Result{Status: StatusOK}
		}}
		core, logs := observer.New(zapcore.DebugLevel)
		r := NewRunner(RunnerConfig{Interval: 10 * time.Second}, zap.New(core), nil, nil, f)
		stop := startRunner(t, r)
		time.Sleep(200 * time.Second)
		synctest.Wait()
		times := f.callTimes()
		var gaps []time.Duration
		for i := 1; i < len(times); i++ {
			gaps = append(gaps, times[i].Sub(times[i-1]))
		}
		want := []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
		if len(gaps) < len(want) {
			t.Fatalf("gaps = %v; want at least %v", gaps, want)
		}
		for i, w := range want {
			if gaps[i] != w {
				t.Errorf("gaps = %v; want %v…", gaps, want)
				break
			}
		}
		res, _ := r.Store().Get("session_monitoring")
		if res.ConsecutiveDown != len(times) || !strings.Contains(strings.Join(res.Reasons, ";"), "backing off: next attempt in 30s") ||
			!res.NextRun.Equal(times[len(times)-1].Add(30*time.Second)) {
			t.Errorf("result = %+v; want the backoff visible", res)
		}
		down.Store(false)
		time.Sleep(35 * time.Second) // the pending 30 s attempt succeeds
		synctest.Wait()
		res, _ = r.Store().Get("session_monitoring")
		if res.Status != StatusOK || res.ConsecutiveDown != 0 {
			t.Errorf("after recovery: %+v", res)
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		_ = stop()
		after := f.callTimes()[len(times):]
		for i := 1; i < len(after); i++ {
			if gap := after[i].Sub(after[i-1]); gap != 10*time.Second {
				t.Errorf("gap after recovery = %v; want back to the 10 s interval", gap)
			}
		}
		if len(after) < 3 {
			t.Errorf("calls after recovery = %d; want ≥ 3", len(after))
		}
		if a, b := logs.FilterMessage("probe_failed").Len(), logs.FilterMessage("probe_recovered").Len(); a != 1 || b != 1 {
			t.Errorf("probe_failed %d, probe_recovered %d; want 1 each", a, b)
		}
	})
}

func TestRunnerFlappingLogsOncePerTransition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pattern := []Status{StatusOK, StatusDown, StatusDown, StatusOK, StatusOK, StatusWarning, StatusDown, StatusOK}
		f := &runnerFake{name: "p", fn: func(_ context.Context, n int) Result {
			return Result{Status: pattern[(n-1)%len(pattern)], Error: "x"}
		}}
		core, logs := observer.New(zapcore.DebugLevel)
		r := NewRunner(RunnerConfig{Interval: time.Second, MaxBackoff: time.Second}, zap.New(core), nil, nil, f)
		for range pattern {
			r.RunOnce(t.Context())
			// The run's goroutine clears its busy flag just after handing
			// over the result; without this wait the next RunOnce may find
			// the run still in flight and skip (as the runner should).
			synctest.Wait()
		}
		if a, b, c := logs.FilterMessage("probe_failed").Len(), logs.FilterMessage("probe_recovered").Len(),
			logs.FilterMessage("probe_status_changed").Len(); a != 2 || b != 2 || c != 1 {
			t.Errorf("probe_failed %d, probe_recovered %d, probe_status_changed %d; want 2, 2, 1", a, b, c)
		}
	})
}

func TestRunnerSetIntervalRearms(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &runnerFake{name: "p", fn: okResult}
		r := NewRunner(RunnerConfig{Interval: time.Hour}, nil, nil, nil, f)
		start := time.Now()
		stop := startRunner(t, r)
		synctest.Wait()
		r.SetInterval(5 * time.Second)
		time.Sleep(11 * time.Second)
		synctest.Wait()
		_ = stop()
		times := f.callTimes()
		if len(times) != 3 || times[1].Sub(start) != 5*time.Second {
			t.Errorf("calls at %v; want 0, 5, 10 s after the change", times)
		}
	})
}

func TestRunOnceRunsEveryProbeAndRegistersMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := &runnerFake{name: "b_probe", fn: okResult}
	b := &runnerFake{name: "a_probe", fn: func(context.Context, int) Result {
		return Result{Status: StatusWarning, Reasons: []string{"slow"}}
	}}
	r := NewRunner(RunnerConfig{}, nil, reg, nil, a, b)
	res := r.RunOnce(t.Context())
	if len(res) != 2 || res[0].Probe != "a_probe" || res[1].Probe != "b_probe" || res[0].Status != StatusWarning {
		t.Fatalf("RunOnce = %+v", res)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"pulsegate_probe_up", "pulsegate_probe_status", "pulsegate_memory_usage_ratio", "pulsegate_task_runs_total"} {
		if !names[n] {
			t.Errorf("metric %s missing from %v", n, names)
		}
	}
	if err := r.Close(); err != nil || !a.closed.Load() || !b.closed.Load() {
		t.Errorf("Close = %v", err)
	}
}
