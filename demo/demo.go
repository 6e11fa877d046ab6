// Package demo is what `pulsegate demo` runs beside the real sidecar: a
// sample app with fast, slow, failing and streaming routes, and a traffic
// generator that sends it steady load through the proxy with periodic
// bursts — slow requests that fill the queue and a wave of errors — so that
// every figure, alert and dashboard widget moves within a minute.
// Everything shown is measured by pulsegate's real code path.
package demo

import (
	"context"
	"database/sql"
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// VersionHeader is the response header the sample app names its release
// in; the demo points RESPONSIVENESS_APP_VERSION_HEADER at it.
const VersionHeader = "X-App-Version"

// The sample app's two releases: the demo starts on ReleaseOld and, after
// --release-after, rolls out ReleaseNew, whose /api/search is slower (a
// planted regression the route page's release comparison flags).
const (
	ReleaseOld = "1.4.0"
	ReleaseNew = "1.5.0"
)

// App is the sample upstream. The zero value is not usable; use NewApp.
type App struct {
	mux      *http.ServeMux
	burst    atomic.Bool
	cleanups atomic.Int64
	version  atomic.Pointer[string]

	// Real services (UseServices); nil when the demo runs without them.
	db     *sql.DB
	engine string
	rdb    *redis.Client
}

// NewApp returns the sample app.
func NewApp() *App {
	a := &App{mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /{$}", a.index)
	a.mux.HandleFunc("GET /api/items/{id}", a.items)
	a.mux.HandleFunc("GET /api/search", a.search)
	a.mux.HandleFunc("GET /reports/{id}", a.report)
	a.mux.HandleFunc("GET /api/flaky", a.flaky)
	a.mux.HandleFunc("GET /events", a.events)
	a.mux.HandleFunc("GET /admin/users", a.adminUsers)
	a.mux.HandleFunc("POST /internal/cleanup", a.cleanup)
	a.mux.HandleFunc("GET /login", a.login)
	a.mux.HandleFunc("GET /api/cart/{id}", a.cart)
	a.mux.HandleFunc("GET /api/orders/{id}", a.order)
	a.mux.HandleFunc("GET /api/checkout/{id}", a.checkout)
	return a
}

// UseServices makes the app use the demo's own database and Redis keys:
// call it before serving. Either may be nil.
func (a *App) UseServices(s *Services) {
	if s == nil {
		return
	}
	if s.DB != nil {
		a.db, a.engine = s.DB.App(), s.DB.Engine
	}
	if s.Redis != nil {
		a.rdb = s.Redis.Client()
	}
}

// HasServices reports whether the app uses a real database or Redis.
func (a *App) HasServices() bool { return a.db != nil || a.rdb != nil }

// ServeHTTP serves the sample app, naming its release in VersionHeader
// when one is set.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if v := a.Version(); v != "" {
		w.Header().Set(VersionHeader, v)
	}
	a.mux.ServeHTTP(w, r)
}

// SetVersion sets the release the app reports ("" = none).
func (a *App) SetVersion(v string) { a.version.Store(&v) }

// Version is the release the app reports ("" = none).
func (a *App) Version() string {
	if p := a.version.Load(); p != nil {
		return *p
	}
	return ""
}

// SetBurst switches the app into (or out of) its bad phase: slower reports
// and many more failures.
func (a *App) SetBurst(on bool) { a.burst.Store(on) }

// Cleanups is how many times the cleanup hook was called.
func (a *App) Cleanups() int64 { return a.cleanups.Load() }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (a *App) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, `<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>sample app</title><h1>The pulsegate demo's sample app</h1><ul>
<li><a href="/api/items/42">/api/items/42</a> fast</li><li><a href="/api/search?q=x">/api/search</a> moderate</li>
<li><a href="/reports/7">/reports/7</a> slow</li><li><a href="/api/flaky">/api/flaky</a> sometimes fails</li>
<li><a href="/events">/events</a> server-sent events</li><li><a href="/admin/users">/admin/users</a> the app's own admin page, with a pulsegate widget</li>
<li><a href="/login">/login</a> writes a session with a TTL</li><li><a href="/api/cart/7">/api/cart/7</a> writes a session without a TTL (the bug)</li>
<li><a href="/api/orders/7">/api/orders/7</a> reads the database</li><li><a href="/api/checkout/7">/api/checkout/7</a> writes an order and queues an email job</li></ul>`)
}

func (a *App) items(w http.ResponseWriter, r *http.Request) {
	sleep(r.Context(), time.Duration(1+rand.IntN(10))*time.Millisecond)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":%q,"name":"item"}`, html.EscapeString(r.PathValue("id")))
}

func (a *App) search(w http.ResponseWriter, r *http.Request) {
	d := time.Duration(20+rand.IntN(180)) * time.Millisecond
	if a.Version() == ReleaseNew {
		d = time.Duration(600+rand.IntN(600)) * time.Millisecond // the new release's slower search: slow enough to stand out of a queue's wait
	}
	sleep(r.Context(), d)
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"results":[]}`)
}

func (a *App) report(w http.ResponseWriter, r *http.Request) {
	d := time.Duration(300+rand.IntN(900)) * time.Millisecond
	if a.burst.Load() {
		d = time.Duration(1500+rand.IntN(2500)) * time.Millisecond
	}
	if a.db != nil {
		// The report's time is spent in the database, as a real one's is.
		if err := a.sleepQuery(r.Context(), d); err != nil && r.Context().Err() == nil {
			http.Error(w, "database error", http.StatusInternalServerError)
			return
		}
	} else {
		sleep(r.Context(), d)
	}
	io.WriteString(w, "report ready\n")
}

func (a *App) flaky(w http.ResponseWriter, r *http.Request) {
	failPct := 3
	if a.burst.Load() {
		failPct = 60
	}
	if rand.IntN(100) < failPct {
		http.Error(w, "database error", http.StatusInternalServerError)
		return
	}
	io.WriteString(w, "ok\n")
}

func (a *App) events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	for i := 0; i < 30; i++ {
		fmt.Fprintf(w, "data: tick %d\n\n", i)
		if rc.Flush() != nil {
			return
		}
		sleep(r.Context(), time.Second)
		if r.Context().Err() != nil {
			return
		}
	}
}

func (a *App) adminUsers(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Admin · users</title></head><body>
<h1>Users (the app's own admin page)</h1><p>Below, pulsegate widgets embedded with one script tag:</p>
<pulsegate-widget kind="health"></pulsegate-widget>
<pulsegate-widget kind="resources"></pulsegate-widget>
<pulsegate-widget kind="performance"></pulsegate-widget>
<script src="/admin/responsiveness/widget.js"></script>
</body></html>`)
}

func (a *App) cleanup(w http.ResponseWriter, r *http.Request) {
	a.cleanups.Add(1)
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"cleaned":true}`)
}

// sessionTTL is the lifetime /login gives its sessions.
const sessionTTL = 30 * time.Minute

func (a *App) login(w http.ResponseWriter, r *http.Request) {
	if a.rdb != nil {
		key := SessionPrefix + randomHex(12)
		if err := a.rdb.Set(r.Context(), key, `{"user_id":`+fmt.Sprint(rand.IntN(10000))+`}`, sessionTTL).Err(); err != nil {
			http.Error(w, "session store error", http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"logged_in":true}`)
}

// cart writes the session the way a buggy code path does: without a TTL,
// so it lives in Redis forever (the product's "session-related memory leak").
func (a *App) cart(w http.ResponseWriter, r *http.Request) {
	if a.rdb != nil {
		key := SessionPrefix + randomHex(12)
		if err := a.rdb.Set(r.Context(), key, `{"cart":[`+html.EscapeString(r.PathValue("id"))+`]}`, 0).Err(); err != nil {
			http.Error(w, "session store error", http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"cart":"saved"}`)
}

func (a *App) order(w http.ResponseWriter, r *http.Request) {
	n := 0
	if a.db != nil {
		if err := a.db.QueryRowContext(r.Context(), "SELECT COUNT(*) FROM orders").Scan(&n); err != nil {
			http.Error(w, "database error", http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"orders":%d}`, n)
}

func (a *App) checkout(w http.ResponseWriter, r *http.Request) {
	if a.db != nil {
		if _, err := a.db.ExecContext(r.Context(), a.sql("INSERT INTO orders (item) VALUES (?)"), "item-"+r.PathValue("id")); err != nil {
			http.Error(w, "database error", http.StatusInternalServerError)
			return
		}
	}
	if a.rdb != nil {
		a.enqueue(r.Context(), "order-confirmation")
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ordered":true}`)
}

// Traffic sends load to base (the proxy) until ctx ends: about rps
// requests per second over a mix of routes, and every period a burst
// phase of burstFor during which app switches to its bad phase and extra
// concurrent slow requests pile up in pulsegate's queue.
type Traffic struct {
	Base     string
	App      *App
	RPS      int
	Period   time.Duration
	BurstFor time.Duration
	Client   *http.Client

	sent atomic.Int64
}

// Sent is how many requests were sent.
func (t *Traffic) Sent() int64 { return t.sent.Load() }

var mix = []struct {
	path   string
	weight int
}{{"/api/items/%d", 50}, {"/api/search?q=%d", 25}, {"/api/flaky?n=%d", 15}, {"/reports/%d", 10}}

// Run generates traffic until ctx ends; it returns after every request it
// started has finished.
func (t *Traffic) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Second / time.Duration(max(t.RPS, 1)))
	defer tick.Stop()
	start := time.Now()
	inBurst := false
	for {
		select {
		case <-ctx.Done():
			t.App.SetBurst(false)
			return nil
		case now := <-tick.C:
			phase := now.Sub(start) % t.Period
			burst := phase > t.Period-t.BurstFor
			if burst != inBurst {
				inBurst = burst
				t.App.SetBurst(burst)
			}
			n := 1
			if burst {
				n = 4 // the burst: four times the load, heavy on slow reports
			}
			for i := 0; i < n; i++ {
				path := t.pick(burst)
				wg.Add(1)
				go func() {
					defer wg.Done()
					t.get(ctx, path)
				}()
			}
		}
	}
}

// serviceMix is added to the mix when the app uses real services: one
// request in five touches the database or Redis.
var serviceMix = []struct {
	path   string
	weight int
}{{"/login?n=%d", 6}, {"/api/cart/%d", 4}, {"/api/orders/%d", 6}, {"/api/checkout/%d", 4}}

func (t *Traffic) pick(burst bool) string {
	id := rand.IntN(1000)
	if burst && rand.IntN(2) == 0 {
		return fmt.Sprintf("/reports/%d", id)
	}
	if t.App.HasServices() && rand.IntN(100) < 20 {
		r := rand.IntN(20)
		for _, m := range serviceMix {
			if r < m.weight {
				return fmt.Sprintf(m.path, id)
			}
			r -= m.weight
		}
	}
	r := rand.IntN(100)
	for _, m := range mix {
		if r < m.weight {
			return fmt.Sprintf(m.path, id)
		}
		r -= m.weight
	}
	return "/api/items/1"
}

func (t *Traffic) get(ctx context.Context, path string) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(t.Base, "/")+path, nil)
	if err != nil {
		return
	}
	t.sent.Add(1)
	resp, err := t.Client.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
