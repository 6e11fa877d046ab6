// Package adminapi serves pulsegate's admin surface: the responsiveness
// JSON API (performance, health, config, alerts), its live event stream and
// the dashboard pages, on both listeners; and /healthz, /readyz, /metrics
// on the admin listener. It never touches the DB or Redis: every answer is
// read from state the probes and the proxy already hold.
package adminapi

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/backpressure"
	"github.com/pulsegate/pulsegate/config"
	"github.com/pulsegate/pulsegate/events"
	"github.com/pulsegate/pulsegate/figures"
	"github.com/pulsegate/pulsegate/health"
	"github.com/pulsegate/pulsegate/history"
	"github.com/pulsegate/pulsegate/proxy"
	"github.com/pulsegate/pulsegate/report"
	"github.com/pulsegate/pulsegate/store"
)

// Route prefixes that belong to pulsegate on the proxy port. Everything
// else, including the app's own /admin pages, goes to the app.
const (
	APIPrefix       = "/admin/api/"
	DashboardPrefix = "/admin/responsiveness/"
)

var apiFamilies = []string{"health", "performance", "config", "alerts", "report", "releases"}

// IsAdminPath reports whether a request path (as net/http decoded it) is
// one of pulsegate's routes. The path is cleaned first, so routing and
// auth agree on "//admin/api/…", "/admin/./api/…" and "%63onfig".
func IsAdminPath(p string) bool {
	c := cleanPath(p)
	if c == strings.TrimSuffix(DashboardPrefix, "/") || strings.HasPrefix(c, DashboardPrefix) {
		return true
	}
	if !strings.HasPrefix(c, APIPrefix) {
		return false
	}
	rest := strings.TrimPrefix(c, APIPrefix)
	for _, f := range apiFamilies {
		base := f + "/responsiveness"
		if rest == base || strings.HasPrefix(rest, base+"/") {
			return true
		}
	}
	return false
}

func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// Resources are the resource figures the probes measured; nil = not measured.
type Resources struct {
	MemoryUsage               *float64 // fraction of the container (or host) limit
	CPUUsage                  *float64 // fraction of the CPU quota (or host)
	ConnectionPoolUtilization *float64 // DB connections in use ÷ max_connections
	DBLatency                 *float64 // seconds
}

// Alerts is what the API needs from the alert manager.
type Alerts interface {
	// List returns the alerts as JSON-ready values, newest first.
	List(state, severity string, limit int) any
	// Acknowledge acknowledges ids. It returns ErrUnknownAlert (wrapped)
	// when an id does not exist, and changes nothing then.
	Acknowledge(ids []string, note, actor string) (any, error)
}

// ErrUnknownAlert is what Alerts.Acknowledge wraps for an unknown id (404).
var ErrUnknownAlert = errors.New("unknown alert id")

// ErrAlertConflict is what Alerts.Acknowledge wraps for an alert that can
// no longer be acknowledged, e.g. resolved (409).
var ErrAlertConflict = errors.New("alert cannot be acknowledged")

// ErrAlertsUnavailable is what Alerts.Acknowledge wraps when the change
// cannot be kept now (the shared store's queue is full): a 503 saying so,
// nothing changed.
var ErrAlertsUnavailable = errors.New("acknowledgement cannot be recorded now")

// Events is a live event source (an *events.Hub).
type Events interface {
	Subscribe(buf int) (<-chan events.Event, func())
}

// Deps are the parts of pulsegate the API reads. Functions may be nil
// where a part is absent (tests); the matching fields are then null.
type Deps struct {
	Log      *zap.Logger
	Config   *config.Holder
	Gatherer prometheus.Gatherer
	Requests *proxy.Stats
	// Resources returns the latest probe figures.
	Resources func() Resources
	// Health returns the latest health verdict.
	Health func() health.Verdict
	// Backpressure returns the limiter state.
	Backpressure func() backpressure.State
	// Judgements judges every figure with cfg (the "judgements" object of
	// the performance JSON, per figure: value, level, thresholds); nil
	// serves an empty object.
	Judgements func(cfg *config.Config) map[figures.Name]figures.Judgement
	// Extra returns more sections merged into the performance JSON (e.g. probes, tasks).
	Extra  func() map[string]any
	Alerts Alerts
	// Audit persists config changes and refusals; nil disables the audit endpoint.
	Audit store.Backend
	// Fleet reads the shared store for ?scope=fleet; nil without one.
	Fleet  FleetView
	Events Events
	// Ready reports readiness for /readyz, with a reason when not ready.
	Ready func() (bool, string)
	// Dashboard serves /admin/responsiveness/ (after auth); nil = 404.
	Dashboard http.Handler
	// Now is the clock; nil = time.Now.
	Now func() time.Time
	// History answers GET /admin/responsiveness/api/history (ring and
	// archive); nil leaves the route to Dashboard. HistoryEvents gives its
	// events (alert transitions, config changes); nil = none.
	History       *history.Reader
	FleetRoutes   report.RouteSource // the fleet's per-route rollups from the shared store; nil without one
	HistoryEvents HistoryEvents
	// InstanceHistory reads one instance's long history from the shared
	// store (?scope=instance&instance= on the history endpoint); nil without one.
	InstanceHistory InstanceHistory

	// FleetConfig keeps the live configuration in the shared store for the
	// whole fleet (config GET and POST); nil without a shared store.
	FleetConfig FleetConfig
}

// API is the admin surface. Build it with New.
type API struct {
	d        Deps
	delegate *delegate
	routes   *http.ServeMux
	csrf     *http.CrossOriginProtection
}

// New builds the API.
func New(d Deps) *API {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	a := &API{d: d, delegate: newDelegate(), routes: http.NewServeMux(), csrf: http.NewCrossOriginProtection()}
	m := a.routes
	m.HandleFunc("GET /admin/api/performance/responsiveness", a.read(a.performance))
	m.HandleFunc("GET /admin/api/performance/responsiveness/stream", a.read(a.stream))
	m.HandleFunc("GET /admin/api/health/responsiveness", a.read(a.health))
	m.HandleFunc("GET /admin/api/config/responsiveness", a.read(a.getConfig))
	m.HandleFunc("POST /admin/api/config/responsiveness", a.write(a.postConfig))
	m.HandleFunc("GET /admin/api/config/responsiveness/audit", a.read(a.audit))
	m.HandleFunc("GET /admin/api/alerts/responsiveness", a.read(a.listAlerts))
	m.HandleFunc("GET /admin/api/alerts/responsiveness/stream", a.read(a.stream))
	m.HandleFunc("POST /admin/api/alerts/responsiveness/acknowledge", a.write(a.acknowledge))
	m.HandleFunc("GET /admin/api/report/responsiveness", a.read(a.reportAnswer))
	m.HandleFunc("POST /admin/responsiveness/login", a.login)
	m.HandleFunc("POST /admin/responsiveness/logout", a.logout)
	m.HandleFunc("GET /admin/responsiveness/api/whoami", a.whoami)
	// The login page, static assets and the embeddable widget script hold
	// no data; everything they fetch goes through auth.
	m.HandleFunc("GET /admin/responsiveness/login", a.public)
	m.HandleFunc("GET /admin/responsiveness/static/", a.public)
	m.HandleFunc("GET /admin/responsiveness/widget.js", a.public)
	m.HandleFunc("GET /admin/responsiveness/api/history", a.read(a.history))
	m.HandleFunc("GET /admin/responsiveness/api/history/route", a.read(a.routeHistory)) // routes.go
	m.HandleFunc("GET /admin/api/releases/responsiveness", a.read(a.releasesList))      // routes.go
	m.HandleFunc("/admin/responsiveness/", a.read(a.dashboard))
	// Unknown admin paths (a trailing slash, a typo) answer 404 only after
	// auth, like every other admin route.
	m.HandleFunc("/", a.read(func(w http.ResponseWriter, r *http.Request, _ principal) {
		writeError(w, http.StatusNotFound, "no such admin route")
	}))
	return a
}

// Routes serves the admin routes (auth included) for either listener.
func (a *API) Routes() http.Handler { return http.HandlerFunc(a.serveRoutes) }

func (a *API) serveRoutes(w http.ResponseWriter, r *http.Request) {
	if c := cleanPath(r.URL.Path); c != r.URL.Path {
		// One spelling per route: auth and routing see the same path.
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = c, ""
		r = r2
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	a.routes.ServeHTTP(w, r)
}

// ProxyHandler is the proxy port: pulsegate's admin routes are answered
// here and never forwarded; every other request goes to app.
func (a *API) ProxyHandler(app http.Handler) http.Handler {
	routes := a.Routes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsAdminPath(r.URL.Path) {
			routes.ServeHTTP(w, r)
			return
		}
		app.ServeHTTP(w, r)
	})
}

// AdminHandler is the admin listener: /healthz, /readyz and /metrics
// without auth, the admin routes with it, and a Host check against DNS
// rebinding while no token is configured.
func (a *API) AdminHandler(listenAddr string) http.Handler {
	routes := a.Routes()
	metrics := promhttp.HandlerFor(a.d.Gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true, MaxRequestsInFlight: 4})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("ok\n"))
			return
		case "/readyz":
			ready, why := true, ""
			if a.d.Ready != nil {
				ready, why = a.d.Ready()
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if !ready {
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte("not ready: " + why + "\n"))
				return
			}
			w.Write([]byte("ready\n"))
			return
		case "/metrics":
			metrics.ServeHTTP(w, r)
			return
		}
		cfg, _ := a.d.Config.Get()
		if !cfg.Admin.Token.IsSet() && !hostAllowed(r, listenAddr, cfg.Admin.AllowedHosts) {
			writeError(w, http.StatusForbidden, "Host header not allowed on the admin listener (DNS rebinding guard); add it to admin.allowed_hosts or set RESPONSIVENESS_ADMIN_TOKEN")
			return
		}
		routes.ServeHTTP(w, r)
	})
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, who principal)

// read wraps a handler that changes nothing.
func (a *API) read(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cfg, _ := a.d.Config.Get()
		who, status, msg := a.authenticate(r, cfg)
		if status != 0 {
			a.deny(w, r, status, msg)
			return
		}
		h(w, r, who)
	}
}

// write wraps a state-changing handler: auth with write permission, a
// JSON body (so a cross-site HTML form cannot send it) and a cross-origin
// check (Sec-Fetch-Site, or Origin against Host).
func (a *API) write(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := a.csrf.Check(r); err != nil {
			writeError(w, http.StatusForbidden, "cross-origin request refused")
			return
		}
		cfg, _ := a.d.Config.Get()
		who, status, msg := a.authenticate(r, cfg)
		if status != 0 {
			a.deny(w, r, status, msg)
			return
		}
		if !who.canWrite {
			writeError(w, http.StatusForbidden, "admin writes are disabled: set RESPONSIVENESS_ADMIN_TOKEN and send it as a Bearer token")
			return
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "application/json") {
			writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return
		}
		h(w, r, who)
	}
}

// deny refuses a request. A browser opening a dashboard page without a
// session is sent to the login page (which returns it here afterwards);
// API clients get the JSON error.
func (a *API) deny(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if status == http.StatusUnauthorized && r.Method == http.MethodGet &&
		strings.HasPrefix(r.URL.Path, DashboardPrefix) && isNavigation(r) {
		http.Redirect(w, r, DashboardPrefix+"login?next="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
		return
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pulsegate"`)
	}
	writeError(w, status, msg)
}

// isNavigation reports a browser loading a page (not a fetch or a script).
func isNavigation(r *http.Request) bool {
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" {
		return m == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string, details ...string) {
	body := map[string]any{"error": msg, "status": status}
	if len(details) > 0 {
		body["details"] = details
	}
	writeJSON(w, status, body)
}

func (a *API) dashboard(w http.ResponseWriter, r *http.Request, _ principal) {
	if a.d.Dashboard == nil {
		writeError(w, http.StatusNotFound, "dashboard not built into this binary")
		return
	}
	a.d.Dashboard.ServeHTTP(w, r)
}

func (a *API) public(w http.ResponseWriter, r *http.Request) { a.dashboard(w, r, principal{}) }

func equalHash(a, b [32]byte) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }
