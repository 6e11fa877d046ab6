package probes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// taskClock is a settable clock.
type taskClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *taskClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *taskClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTaskClock() *taskClock {
	return &taskClock{t: time.Date(2025, 1, 6, 10, 30, 0, 0, time.UTC)}
}

func TestTasksCountsAndVerdict(t *testing.T) {
	clk := newTaskClock()
	core, logs := observer.New(zapcore.DebugLevel)
	tasks := NewTasks(clk.Now, WithTaskLogger(zap.New(core)), WithTaskWindow(4))
	run := func(err error) {
		end := tasks.Begin("cleanup_001", 10*time.Second)
		clk.Add(2 * time.Second)
		end(err)
	}
	run(nil)
	if st, r := tasks.Status(clk.Now()); st != StatusOK || len(r) != 0 {
		t.Errorf("after a success: %s %v; want ok", st, r)
	}
	run(errors.New("posting to http://app:5000/cleanup: 500"))
	st, reasons := tasks.Status(clk.Now())
	if st != StatusWarning || !strings.Contains(reasons[0], "failed its last run (1 in a row)") {
		t.Errorf("after one failure: %s %v; want warning", st, reasons)
	}
	run(errors.New("connecting to postgres://app:hunter2@db:5432/app: refused"))
	run(errors.New("again"))
	st, reasons = tasks.Status(clk.Now())
	if st != StatusCritical || !strings.Contains(reasons[0], "3 consecutive failures") {
		t.Errorf("after 3 failures: %s %v; want critical", st, reasons)
	}
	run(nil)
	s := tasks.Snapshot()[0]
	want := TaskStatus{Name: "cleanup_001", Runs: 5, Failures: 3, LastDurationSeconds: 2, ConsecutiveFailures: 0,
		ErrorRate: 0.75, Window: 4, Recoveries: 1, DeadlineSeconds: 10}
	if s.Runs != want.Runs || s.Failures != want.Failures || s.LastDurationSeconds != want.LastDurationSeconds ||
		s.ErrorRate != want.ErrorRate || s.Window != want.Window || s.Recoveries != want.Recoveries || s.Running ||
		!s.LastSuccess.Equal(clk.Now()) || !s.LastEnd.Equal(clk.Now()) || !s.LastStart.Equal(clk.Now().Add(-2*time.Second)) {
		t.Errorf("snapshot = %+v; want %+v", s, want)
	}
	// Error rate 3 of the last 4 runs is above 0.5 although the last run succeeded.
	if st, reasons := tasks.Status(clk.Now()); st != StatusWarning || !strings.Contains(reasons[0], "error rate 0.75 over its last 4 runs") {
		t.Errorf("after recovery: %s %v; want warning on the error rate", st, reasons)
	}
	js, _ := json.Marshal(tasks.Snapshot())
	if strings.Contains(string(js), "hunter2") {
		t.Errorf("snapshot leaks a password: %s", js)
	}
	for _, k := range []string{`"task_id":"cleanup_001"`, `"consecutive_failures":0`, `"error_rate":0.75`, `"recoveries":1`, `"last_error":"again"`} {
		if !strings.Contains(string(js), k) {
			t.Errorf("snapshot JSON lacks %s: %s", k, js)
		}
	}
	failures := logs.FilterMessage("Background task coordination failure - task_id: cleanup_001")
	if failures.Len() != 2 { // first of the streak, and the one reaching critical
		t.Errorf("task_failure lines = %d; want 2", failures.Len())
	}
	for _, e := range failures.All() {
		if e.Level != zapcore.ErrorLevel || e.ContextMap()["event"] != "task_failure" {
			t.Errorf("failure line %v %v", e.Level, e.ContextMap())
		}
	}
	rec := logs.FilterMessage("Task recovery successful - task_id: cleanup_001")
	if rec.Len() != 1 || rec.All()[0].ContextMap()["event"] != "task_recovery" || rec.All()[0].Level != zapcore.InfoLevel {
		t.Errorf("task_recovery lines = %v", rec.All())
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), "hunter2") {
			t.Errorf("log leaks a password: %v", e.ContextMap())
		}
	}
}

func TestTasksStuckAndCheck(t *testing.T) {
	clk := newTaskClock()
	core, logs := observer.New(zapcore.DebugLevel)
	tasks := NewTasks(clk.Now, WithTaskLogger(zap.New(core)))
	end := tasks.Begin("probe:database_manager", 3*time.Second)
	clk.Add(2 * time.Second)
	if s := tasks.Snapshot()[0]; !s.Running || s.Stuck {
		t.Errorf("within deadline: %+v", s)
	}
	prev := tasks.Check(StatusOK)
	clk.Add(5 * time.Second)
	s := tasks.Snapshot()[0]
	if !s.Stuck || s.StuckForSeconds != 4 {
		t.Errorf("past deadline: %+v; want stuck for 4 s", s)
	}
	prev = tasks.Check(prev)
	prev = tasks.Check(prev)
	if prev != StatusCritical {
		t.Errorf("Check = %s; want critical", prev)
	}
	if n := logs.FilterField(zap.Bool("stuck", true)).Len(); n != 1 {
		t.Errorf("stuck log lines = %d; want 1 per episode", n)
	}
	if n := logs.FilterMessage("task_health_changed").Len(); n != 1 {
		t.Errorf("task_health_changed lines = %d; want 1", n)
	}
	end(nil)
	end(errors.New("second call is a no-op"))
	if s := tasks.Snapshot()[0]; s.Stuck || s.Running || s.Runs != 1 || s.Failures != 0 {
		t.Errorf("after end: %+v", s)
	}
}

func TestTasksDisabled(t *testing.T) {
	tasks := NewTasks(nil)
	tasks.Begin("a", time.Second)(errors.New("x"))
	tasks.SetEnabled(false)
	end := tasks.Begin("b", time.Second)
	end(errors.New("y"))
	tasks.Skip("b")
	if st, r := tasks.Status(time.Now()); st != StatusDisabled || !strings.Contains(r[0], "RESPONSIVENESS_TASK_MONITORING_ENABLED") {
		t.Errorf("Status = %s %v; want disabled", st, r)
	}
	if s := tasks.Snapshot(); len(s) != 0 {
		t.Errorf("Snapshot while disabled = %+v; want empty", s)
	}
	tasks.SetEnabled(true)
	if st, _ := tasks.Status(time.Now()); st != StatusOK {
		t.Errorf("re-enabled: %s; want ok with a fresh slate", st)
	}
}

func TestTasksRunLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zapcore.DebugLevel)
		tasks := NewTasks(time.Now, WithTaskLogger(zap.New(core)))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- tasks.Run(ctx, time.Minute) }()
		end := tasks.Begin("cleanup", 10*time.Second)
		time.Sleep(61 * time.Second)
		synctest.Wait()
		if n := logs.FilterField(zap.Bool("stuck", true)).Len(); n != 1 {
			t.Errorf("stuck lines after one check = %d; want 1", n)
		}
		tasks.SetCheckInterval(10 * time.Second)
		end(nil)
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if n := logs.FilterMessage("task_health_changed").Len(); n != 2 { // ok→critical, critical→ok
			t.Errorf("task_health_changed lines = %d; want 2 (the faster interval took effect)", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		if err := tasks.Run(t.Context(), 0); err == nil || !strings.Contains(err.Error(), "interval") {
			t.Errorf("Run(0) = %v; want an error naming the interval", err)
		}
	})
}

func TestRedactText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"dial mysql://app:s3cret@db:3306/app: refused", "dial mysql://app:xxxxx@db:3306/app: refused"},
		{"postgres://u:p@ss#w@rd@h:5432/db failed", "postgres://u:xxxxx@h:5432/db failed"},
		{"app:s3cret@tcp(127.0.0.1:3306)/app", "app:xxxxx@tcp(127.0.0.1:3306)/app"},
		{"auth failed password=hunter2 user=x", "auth failed password=xxxxx user=x"},
		{"redis://:tok@localhost:6379/0", "redis://:xxxxx@localhost:6379/0"},
		{"nothing secret here", "nothing secret here"},
	} {
		if got := RedactText(tc.in); got != tc.want {
			t.Errorf("RedactText(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}
