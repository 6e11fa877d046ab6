package demo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// AppPoolSize is the sample app's database pool (like SQLAlchemy's
// pool_size + max_overflow); the demo tells pulsegate with
// RESPONSIVENESS_DATABASE_APP_POOL_SIZE.
const AppPoolSize = 10

// Timings of the scenario at speed 1: one cycle every Cycle, each with a
// leaked connection, an idle transaction, slow queries and a stalled job
// worker, so every database and session alert shows within ~3 minutes.
const (
	Cycle = 3 * time.Minute
	// LeakAge is what the demo sets database.leak_age to: the leaked
	// connection becomes a suspect this long after it went idle.
	LeakAge = 45 * time.Second
	// IdleInTransactionWarning is what the demo sets
	// database.idle_in_transaction_warning to (critical is twice that).
	IdleInTransactionWarning = 15 * time.Second
	// DBQueryWarning and DBQueryCritical are the demo's
	// thresholds.db_query_*; a query running longer than the critical one
	// is a long query.
	DBQueryWarning  = 1 * time.Second
	DBQueryCritical = 2 * time.Second
)

// Scenario makes the sample app misbehave the way real apps do, on a
// schedule, against the demo's own database and keys:
//
//	0:00  /api/export leaks a database connection (held idle until 2:15)
//	0:15  a transaction is left open and idle for 40 s
//	0:05, then every 30 s  a slow report query (SELECT SLEEP / pg_sleep) of 6 s
//	0:45  the email worker stalls until 2:15 while jobs keep coming
//
// Sessions with and without a TTL come from the traffic (/login, /api/cart).
// Speed divides every duration (tests use it to see a cycle in seconds).
type Scenario struct {
	App   *App
	Speed float64
	// Out receives one line per scheduled event (nil = discard).
	Out io.Writer

	mu sync.Mutex
}

func (s *Scenario) d(x time.Duration) time.Duration {
	if s.Speed <= 0 {
		return x
	}
	return time.Duration(float64(x) / s.Speed)
}

func (s *Scenario) say(format string, args ...any) {
	if s.Out == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.Out, "%s  app: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Run plays the schedule until ctx ends, then releases everything it holds
// and returns after every goroutine it started has stopped.
func (s *Scenario) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.App.db != nil {
		wg.Add(3)
		go func() { defer wg.Done(); s.every(ctx, 0, Cycle, s.leak) }()
		go func() { defer wg.Done(); s.every(ctx, 15*time.Second, Cycle, s.idleInTransaction) }()
		go func() { defer wg.Done(); s.every(ctx, 5*time.Second, 30*time.Second, s.slowQuery) }()
	}
	if s.App.rdb != nil {
		wg.Add(2)
		go func() { defer wg.Done(); s.produceJobs(ctx) }()
		go func() { defer wg.Done(); s.worker(ctx) }()
	}
}

// every runs f at offset, then every period, until ctx ends; f runs to its
// end (it watches ctx itself) before the next run is due.
func (s *Scenario) every(ctx context.Context, offset, period time.Duration, f func(context.Context)) {
	next := time.Now().Add(s.d(offset))
	for {
		if !sleepUntil(ctx, next) {
			return
		}
		f(ctx)
		next = next.Add(s.d(period))
		for !next.After(time.Now()) {
			next = next.Add(s.d(period))
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	tm := time.NewTimer(time.Until(t))
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// discard closes a held connection instead of returning it to the pool,
// so an idle pooled connection never looks like the leak.
func discard(c *sql.Conn) {
	c.Raw(func(any) error { return driver.ErrBadConn })
	c.Close()
}

// leak checks out a connection, uses it once and "forgets" it: it stays
// open and idle until 2:15, as a connection taken outside a `with` block
// would.
func (s *Scenario) leak(ctx context.Context) {
	c, err := s.App.db.Conn(ctx)
	if err != nil {
		s.say("/api/export could not get a connection: %v", err)
		return
	}
	defer discard(c)
	var n int
	if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM orders").Scan(&n); err != nil {
		s.say("/api/export query failed: %v", err)
		return
	}
	hold := s.d(135 * time.Second)
	s.say("/api/export leaked a database connection (idle, never returned to the pool; a leak suspect after %s, released after %s)", s.d(LeakAge).Round(time.Second/10), hold.Round(time.Second))
	if sleepUntil(ctx, time.Now().Add(hold)) {
		s.say("the leaked connection is closed (the leak alert resolves)")
	}
}

// idleInTransaction opens a transaction, writes a row and then sits idle
// for 40 s before rolling back: locks and a snapshot held by nobody working.
func (s *Scenario) idleInTransaction(ctx context.Context) {
	c, err := s.App.db.Conn(ctx)
	if err != nil {
		return
	}
	defer discard(c)
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		s.say("BEGIN failed: %v", err)
		return
	}
	if _, err := tx.ExecContext(ctx, s.App.sql("INSERT INTO orders (item, status) VALUES (?, 'held')"), "idle-transaction"); err != nil {
		s.say("INSERT failed: %v", err)
		tx.Rollback()
		return
	}
	hold := s.d(40 * time.Second)
	s.say("/api/orders/bulk left a transaction open and idle for %s (warning after %s, critical after %s)", hold.Round(time.Second),
		s.d(IdleInTransactionWarning).Round(time.Second/10), s.d(2*IdleInTransactionWarning).Round(time.Second/10))
	sleepUntil(ctx, time.Now().Add(hold))
	tx.Rollback()
}

// slowQuery runs one slow report query, longer than thresholds.db_query_critical.
func (s *Scenario) slowQuery(ctx context.Context) {
	d := max(s.d(6*time.Second), DBQueryCritical+time.Second)
	s.say("/reports/annual runs a %s query (a long query above %s)", d.Round(time.Second/10), DBQueryCritical)
	s.App.sleepQuery(ctx, d)
}

// produceJobs enqueues an email job every 2 s.
func (s *Scenario) produceJobs(ctx context.Context) {
	t := time.NewTicker(s.d(2 * time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.App.enqueue(ctx, "welcome-email")
		}
	}
}

// worker takes a job every second, except from 0:45 to 2:15 of each cycle,
// when it is stuck and the queue grows.
func (s *Scenario) worker(ctx context.Context) {
	start := time.Now()
	t := time.NewTicker(s.d(time.Second))
	defer t.Stop()
	stalled := false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			phase := now.Sub(start) % s.d(Cycle)
			stall := phase >= s.d(45*time.Second) && phase < s.d(135*time.Second)
			if stall != stalled {
				stalled = stall
				if stall {
					s.say("the email worker is stuck on a slow SMTP server: %s grows", QueueKey)
				} else {
					s.say("the email worker is back and drains %s", QueueKey)
				}
			}
			if stall {
				continue
			}
			n := 1
			if phase < s.d(150*time.Second) && phase >= s.d(135*time.Second) {
				n = 8 // catching up
			}
			for range n {
				if err := s.App.rdb.LPop(ctx, QueueKey).Err(); err == redis.Nil {
					break
				}
			}
		}
	}
}

// sql rewrites ? placeholders for PostgreSQL.
func (a *App) sql(q string) string {
	if a.engine != EnginePostgres {
		return q
	}
	out := make([]byte, 0, len(q)+8)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			out = append(out, fmt.Sprintf("$%d", n)...)
			continue
		}
		out = append(out, q[i])
	}
	return string(out)
}

// sleepQuery runs a query that takes d on the server.
func (a *App) sleepQuery(ctx context.Context, d time.Duration) error {
	q := "SELECT SLEEP(?)"
	if a.engine == EnginePostgres {
		q = "SELECT pg_sleep($1)"
	}
	_, err := a.db.ExecContext(ctx, q, d.Seconds())
	return err
}

func (a *App) enqueue(ctx context.Context, kind string) {
	a.rdb.RPush(ctx, QueueKey, fmt.Sprintf(`{"job":%q,"id":%d}`, kind, rand.IntN(1_000_000)))
}
