package probes

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// TaskComponent is the health component that Tasks feeds: the product's
// BackgroundCleanupManager.
const TaskComponent = "background_cleanup"

// Task health thresholds (see Tasks.Status).
const (
	// TaskCriticalConsecutiveFailures: this many failed runs in a row make
	// the component critical.
	TaskCriticalConsecutiveFailures = 3
	// TaskWarningErrorRate: an error rate above this over the recent runs
	// makes the component warning.
	TaskWarningErrorRate = 0.5
	// DefaultTaskWindow is how many recent runs the error rate covers.
	DefaultTaskWindow = 20
)

// TaskStatus is one background task's health, JSON-ready.
type TaskStatus struct {
	// Name is the task id, e.g. "probe:database_manager" or "cleanup".
	Name string `json:"task_id"`
	// Running: a run has begun and not ended.
	Running bool `json:"running"`
	// InFlight counts runs begun and not ended (more than 1 only for tasks
	// that allow overlap, never for probe loops).
	InFlight int `json:"in_flight"`
	// Runs counts completed runs; Failures those that ended with an error.
	Runs     int64 `json:"runs"`
	Failures int64 `json:"failures"`
	// Skipped counts ticks not run because the previous run was still in flight.
	Skipped int64 `json:"skipped"`
	// LastStart and LastEnd are the last run's start and end.
	LastStart time.Time `json:"last_start,omitzero"`
	LastEnd   time.Time `json:"last_end,omitzero"`
	// LastDurationSeconds is the last completed run's duration.
	LastDurationSeconds float64 `json:"last_duration_seconds"`
	// LastSuccess is the end of the last run without error.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// ConsecutiveFailures counts failed runs since the last success.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// ErrorRate is failures ÷ runs over the last Window runs (0 with no runs).
	ErrorRate float64 `json:"error_rate"`
	// Window is how many recent runs ErrorRate covers (≤ the window size).
	Window int `json:"window"`
	// Recoveries counts failure → success transitions.
	Recoveries int64 `json:"recoveries"`
	// LastError is the last failure's message, redacted.
	LastError string `json:"last_error,omitempty"`
	// Deadline is how long one run may take before the task counts as stuck.
	DeadlineSeconds float64 `json:"deadline_seconds"`
	// Stuck: a run is in flight past its deadline.
	Stuck bool `json:"stuck"`
	// StuckForSeconds is how far past its deadline the oldest in-flight run is.
	StuckForSeconds float64 `json:"stuck_for_seconds,omitempty"`
}

type taskState struct {
	name       string
	deadline   time.Duration
	inflight   map[uint64]time.Time // run id → start
	runs       int64
	failures   int64
	skipped    int64
	lastStart  time.Time
	lastEnd    time.Time
	lastDur    time.Duration
	lastOK     time.Time
	consec     int
	recoveries int64
	lastErr    string
	recent     []bool // ring of outcomes, true = failed
	recentPos  int
	stuckSeen  bool // a stuck episode was already logged
}

// Tasks tracks the health of every background task: each probe loop and
// each automated action wraps its runs in Begin/end. It is safe for
// concurrent use. Its own loop (Run) only evaluates and logs; tracking
// works without it.
type Tasks struct {
	now    func() time.Time
	log    *zap.Logger
	window int

	mu       sync.Mutex
	enabled  bool
	tasks    map[string]*taskState
	nextID   uint64
	interval chan time.Duration
}

// TaskOption configures NewTasks.
type TaskOption func(*Tasks)

// WithTaskLogger sets the logger (default: none).
func WithTaskLogger(log *zap.Logger) TaskOption {
	return func(t *Tasks) {
		if log != nil {
			t.log = log
		}
	}
}

// WithTaskWindow sets how many recent runs the error rate covers (default 20).
func WithTaskWindow(n int) TaskOption {
	return func(t *Tasks) {
		if n > 0 {
			t.window = n
		}
	}
}

// NewTasks returns an enabled task tracker reading time from now (nil:
// time.Now).
func NewTasks(now func() time.Time, opts ...TaskOption) *Tasks {
	if now == nil {
		now = time.Now
	}
	t := &Tasks{
		now:      now,
		log:      zap.NewNop(),
		window:   DefaultTaskWindow,
		enabled:  true,
		tasks:    map[string]*taskState{},
		interval: make(chan time.Duration, 1),
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

// SetEnabled turns tracking on or off (RESPONSIVENESS_TASK_MONITORING_ENABLED).
// While off, Begin records nothing, Status is disabled and Snapshot is empty;
// turning it off forgets what was tracked.
func (t *Tasks) SetEnabled(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.enabled && !on {
		t.tasks = map[string]*taskState{}
	}
	t.enabled = on
}

// Enabled reports whether tracking is on.
func (t *Tasks) Enabled() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.enabled
}

// Begin records the start of one run of the named task, which should end
// within deadline (0: never stuck), and returns the function that records
// its end: call it exactly once with the run's error (nil on success).
// Calling it again is a no-op.
func (t *Tasks) Begin(name string, deadline time.Duration) (end func(err error)) {
	t.mu.Lock()
	if !t.enabled {
		t.mu.Unlock()
		return func(error) {}
	}
	st := t.state(name)
	st.deadline = deadline
	now := t.now()
	t.nextID++
	id := t.nextID
	st.inflight[id] = now
	st.lastStart = now
	t.mu.Unlock()

	var once sync.Once
	return func(err error) {
		once.Do(func() { t.end(name, id, err) })
	}
}

// Skip records a tick that was not run because the previous run was still
// in flight.
func (t *Tasks) Skip(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.enabled {
		return
	}
	t.state(name).skipped++
}

func (t *Tasks) state(name string) *taskState {
	st, ok := t.tasks[name]
	if !ok {
		st = &taskState{name: name, inflight: map[uint64]time.Time{}, recent: make([]bool, 0, t.window)}
		t.tasks[name] = st
	}
	return st
}

func (t *Tasks) end(name string, id uint64, err error) {
	t.mu.Lock()
	st, ok := t.tasks[name]
	if !ok || !t.enabled {
		t.mu.Unlock()
		return
	}
	start, ok := st.inflight[id]
	if !ok { // tracking was reset while the run was in flight
		t.mu.Unlock()
		return
	}
	delete(st.inflight, id)
	now := t.now()
	st.runs++
	st.lastEnd = now
	st.lastDur = now.Sub(start)
	failed := err != nil
	if len(st.recent) < t.window {
		st.recent = append(st.recent, failed)
	} else {
		st.recent[st.recentPos] = failed
		st.recentPos = (st.recentPos + 1) % t.window
	}
	if len(st.inflight) == 0 {
		st.stuckSeen = false
	}
	var logFailure, logRecovery bool
	consec := 0
	msg := ""
	if failed {
		st.failures++
		st.consec++
		consec = st.consec
		msg = RedactText(err.Error())
		st.lastErr = msg
		logFailure = st.consec == 1 || st.consec == TaskCriticalConsecutiveFailures
	} else {
		if st.consec > 0 {
			st.recoveries++
			logRecovery = true
			consec = st.consec
		}
		st.consec = 0
		st.lastOK = now
	}
	t.mu.Unlock()

	if logFailure {
		t.log.Error("Background task coordination failure - task_id: "+name,
			zap.String("event", "task_failure"), zap.String("task_id", name),
			zap.String("error", msg), zap.Int("consecutive_failures", consec))
	}
	if logRecovery {
		t.log.Info("Task recovery successful - task_id: "+name,
			zap.String("event", "task_recovery"), zap.String("task_id", name),
			zap.Int("failures_before", consec))
	}
}

// Snapshot returns every task's status, sorted by name.
func (t *Tasks) Snapshot() []TaskStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	out := make([]TaskStatus, 0, len(t.tasks))
	for _, name := range slices.Sorted(maps.Keys(t.tasks)) {
		out = append(out, t.tasks[name].status(now))
	}
	return out
}

func (st *taskState) status(now time.Time) TaskStatus {
	s := TaskStatus{
		Name:                st.name,
		Running:             len(st.inflight) > 0,
		InFlight:            len(st.inflight),
		Runs:                st.runs,
		Failures:            st.failures,
		Skipped:             st.skipped,
		LastStart:           st.lastStart,
		LastEnd:             st.lastEnd,
		LastDurationSeconds: st.lastDur.Seconds(),
		LastSuccess:         st.lastOK,
		ConsecutiveFailures: st.consec,
		Window:              len(st.recent),
		Recoveries:          st.recoveries,
		LastError:           st.lastErr,
		DeadlineSeconds:     st.deadline.Seconds(),
	}
	failed := 0
	for _, f := range st.recent {
		if f {
			failed++
		}
	}
	if len(st.recent) > 0 {
		s.ErrorRate = float64(failed) / float64(len(st.recent))
	}
	if st.deadline > 0 {
		for _, start := range st.inflight {
			if over := now.Sub(start) - st.deadline; over > 0 {
				s.Stuck = true
				s.StuckForSeconds = max(s.StuckForSeconds, over.Seconds())
			}
		}
	}
	return s
}

// Status is the background_cleanup component's verdict at now, with the
// reasons for anything but ok:
//   - disabled: task monitoring is off;
//   - critical: a task is stuck (a run in flight past its deadline), or has
//     failed TaskCriticalConsecutiveFailures (3) times in a row;
//   - warning: a task's last run failed (1–2 in a row), or its error rate
//     over the recent runs is above TaskWarningErrorRate (0.5);
//   - ok otherwise (also with no tasks yet).
func (t *Tasks) Status(now time.Time) (Status, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.enabled {
		return StatusDisabled, []string{"task monitoring disabled (RESPONSIVENESS_TASK_MONITORING_ENABLED=false)"}
	}
	status := StatusOK
	var reasons []string
	raise := func(s Status, reason string) {
		if s == StatusCritical || status == StatusOK {
			status = s
		}
		reasons = append(reasons, reason)
	}
	for _, name := range slices.Sorted(maps.Keys(t.tasks)) {
		s := t.tasks[name].status(now)
		switch {
		case s.Stuck:
			raise(StatusCritical, fmt.Sprintf("task %s stuck: running %.1f s past its %.1f s deadline",
				name, s.StuckForSeconds, s.DeadlineSeconds))
		case s.ConsecutiveFailures >= TaskCriticalConsecutiveFailures:
			raise(StatusCritical, fmt.Sprintf("task %s failing: %d consecutive failures, last: %s",
				name, s.ConsecutiveFailures, s.LastError))
		case s.ConsecutiveFailures > 0:
			raise(StatusWarning, fmt.Sprintf("task %s failed its last run (%d in a row): %s",
				name, s.ConsecutiveFailures, s.LastError))
		case s.ErrorRate > TaskWarningErrorRate:
			raise(StatusWarning, fmt.Sprintf("task %s error rate %.2f over its last %d runs",
				name, s.ErrorRate, s.Window))
		}
	}
	return status, reasons
}

// SetCheckInterval changes the period of a running Run loop
// (RESPONSIVENESS_TASK_HEALTH_CHECK_INTERVAL). Non-positive values are ignored.
func (t *Tasks) SetCheckInterval(d time.Duration) {
	if d <= 0 {
		return
	}
	for {
		select {
		case t.interval <- d:
			return
		default:
		}
		select { // drop a value not yet picked up; the newest wins
		case <-t.interval:
		default:
		}
	}
}

// Run evaluates task health every interval until ctx ends, logging each
// newly stuck task once per episode (task_failure, error level) and each
// change of the component's status (task_health_changed). It returns nil
// when ctx ends; it starts no other goroutine.
func (t *Tasks) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("running task health checks: interval must be > 0, got %v", interval)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := StatusOK
	for {
		select {
		case <-ctx.Done():
			return nil
		case d := <-t.interval:
			tick.Reset(d)
			continue
		case <-tick.C:
		}
		last = t.Check(last)
	}
}

// Check runs one evaluation: it logs tasks that became stuck since the
// last check, and a task_health_changed line when the component's status
// differs from prev. It returns the current status. Run calls it on every
// tick; tests and the status command may call it directly.
func (t *Tasks) Check(prev Status) Status {
	now := t.now()
	type stuck struct {
		name string
		over float64
		dl   float64
	}
	var newlyStuck []stuck
	t.mu.Lock()
	for _, name := range slices.Sorted(maps.Keys(t.tasks)) {
		st := t.tasks[name]
		s := st.status(now)
		if s.Stuck && !st.stuckSeen {
			st.stuckSeen = true
			newlyStuck = append(newlyStuck, stuck{name, s.StuckForSeconds, s.DeadlineSeconds})
		}
	}
	t.mu.Unlock()
	for _, s := range newlyStuck {
		t.log.Error("Background task coordination failure - task_id: "+s.name,
			zap.String("event", "task_failure"), zap.String("task_id", s.name),
			zap.String("error", fmt.Sprintf("stuck: running %.1f s past its %.1f s deadline", s.over, s.dl)),
			zap.Bool("stuck", true))
	}
	status, reasons := t.Status(now)
	if status != prev {
		t.log.Info("task_health_changed", zap.String("event", "task_health_changed"),
			zap.String("from", string(prev)), zap.String("to", string(status)),
			zap.Strings("reasons", reasons))
	}
	return status
}

var (
	redactURLPassword = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^\s/]*@`)
	redactMySQLDSN    = regexp.MustCompile(`(^|[\s"'(])([^\s:/@"'(]+):[^\s/]*@(tcp|unix)\(`)
	redactKeyValue    = regexp.MustCompile(`(?i)\b(password|passwd|pwd|pass|token|secret)\s*[=:]\s*("[^"]*"|'[^']*'|[^\s,;&]+)`)
)

// RedactText hides credentials in free text such as error messages: the
// password of any scheme://user:password@host URL (or go-sql-driver
// user:password@tcp(host) DSN) becomes "xxxxx", and
// password=…, token=… style pairs lose their values. Probe and task error
// text goes through it before it is stored, logged or served.
func RedactText(s string) string {
	if !strings.ContainsAny(s, ":=") {
		return s
	}
	s = redactURLPassword.ReplaceAllString(s, "${1}:xxxxx@")
	s = redactMySQLDSN.ReplaceAllString(s, "${1}${2}:xxxxx@${3}(")
	return redactKeyValue.ReplaceAllString(s, "${1}=xxxxx")
}
