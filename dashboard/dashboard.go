// Package dashboard serves pulsegate's live dashboard under
// /admin/responsiveness/: server-rendered HTML shells for the overview,
// performance, health, monitoring, route and login pages, the embedded JavaScript
// modules and styles that fill them from the admin JSON API and its
// Server-Sent Events stream, the embeddable <pulsegate-widget> script for
// the app's own admin templates, and the history ring behind the trend
// graphs (GET /admin/responsiveness/api/history).
//
// The admin API (package adminapi) authenticates every request before it
// reaches this handler, except the login page, static assets and
// widget.js, which hold no data. Every response carries a strict
// Content-Security-Policy: no inline scripts or styles, nothing from
// another origin. Data is only ever put into pages with DOM text APIs, so
// route names, URL paths and alert notes (attacker-controlled) stay text.
package dashboard

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/history"
)

// Prefix is where the dashboard lives on both listeners.
const Prefix = "/admin/responsiveness/"

// ContentSecurityPolicy is sent with every dashboard response.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'; form-action 'self'"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure a Dashboard. The zero value is usable.
type Options struct {
	// Log receives one line per failed page render; nil = no logging.
	Log *zap.Logger
	// Now is the clock for history queries; nil = time.Now.
	Now func() time.Time
	// Resolution is the history step; 0 = 10 s.
	Resolution time.Duration
	// Retention is how far back the history goes; 0 = 24 h.
	Retention time.Duration
}

// Dashboard is the http.Handler for everything under Prefix. It also
// implements Record(*monitor.Tick), so the monitor feeds its history.
type Dashboard struct {
	log     *zap.Logger
	now     func() time.Time
	hist    *history.History
	pages   *template.Template
	assets  map[string]asset
	handler http.Handler
}

// page is one server-rendered HTML shell.
type page struct {
	Name  string // template name and data-page attribute
	Title string
	Path  string // canonical path under Prefix
}

var pages = []page{
	{"overview", "Overview", ""},
	{"performance", "Performance", "performance"},
	{"health", "Health", "health"},
	{"monitoring", "Monitoring", "monitoring"},
}

// New builds the dashboard: templates parsed and assets hashed once.
func New(o Options) (*Dashboard, error) {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Resolution == 0 {
		o.Resolution = 10 * time.Second
	}
	if o.Retention == 0 {
		o.Retention = 24 * time.Hour
	}
	hist, err := history.New(o.Resolution, o.Retention)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	tpl, err := template.New("").ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: parsing page templates: %w", err)
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: opening embedded assets: %w", err)
	}
	assets, err := loadAssets(static)
	if err != nil {
		return nil, fmt.Errorf("dashboard: loading embedded assets: %w", err)
	}
	d := &Dashboard{log: o.Log, now: o.Now, hist: hist, pages: tpl, assets: assets}
	d.handler = http.HandlerFunc(d.route)
	return d, nil
}

// History is the ring behind the trend graphs; the monitor feeds it
// (serve registers History().Record with Monitor.OnTick).
func (d *Dashboard) History() *history.History { return d.hist }

// ServeHTTP serves every path under Prefix.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	d.handler.ServeHTTP(w, r)
}

func (d *Dashboard) route(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok {
		if r.URL.Path+"/" == Prefix {
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
			return
		}
		d.notFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: the dashboard only serves GET")
		return
	}
	switch {
	case rest == "widget.js":
		d.serveAsset(w, r, "widget.js")
		return
	case strings.HasPrefix(rest, "static/"):
		d.serveAsset(w, r, strings.TrimPrefix(rest, "static/"))
		return
	case rest == "api/history":
		d.serveHistory(w, r)
		return
	case rest == "route":
		// One route's long view (route.html, js/route.js); not in the
		// navigation: the routes table links each route here.
		route := r.URL.Query().Get("route")
		title := "Route"
		if route != "" {
			title = "Route " + route
		}
		d.renderData(w, r, http.StatusOK, "route", pageData{Page: page{Name: "route", Title: title, Path: "route"}, Pages: pages, Prefix: Prefix, Route: route})
		return
	case rest == "login":
		d.render(w, r, http.StatusOK, "login", page{Name: "login", Title: "Sign in", Path: "login"})
		return
	}
	for _, p := range pages {
		if rest == p.Path {
			d.render(w, r, http.StatusOK, p.Name, p)
			return
		}
	}
	d.notFound(w, r)
}

// pageData is what the templates see. Every field is escaped by
// html/template in its context.
type pageData struct {
	Page    page
	Pages   []page
	Prefix  string
	Missing string // the requested path on the 404 page
	Route   string // the route page's route (?route=)
}

func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, tpl string, p page) {
	d.renderData(w, r, status, tpl, pageData{Page: p, Pages: pages, Prefix: Prefix})
}

func (d *Dashboard) renderData(w http.ResponseWriter, r *http.Request, status int, tpl string, data pageData) {
	var buf bytes.Buffer
	if err := d.pages.ExecuteTemplate(&buf, tpl, data); err != nil {
		d.log.Error("page_render_failed", zap.String("page", tpl), zap.Error(err))
		writeError(w, http.StatusInternalServerError, "rendering the page failed")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

func (d *Dashboard) notFound(w http.ResponseWriter, r *http.Request) {
	d.renderData(w, r, http.StatusNotFound, "notfound", pageData{
		Page: page{Name: "notfound", Title: "Not found"}, Pages: pages, Prefix: Prefix,
		Missing: r.URL.Path,
	})
}

func (d *Dashboard) serveHistory(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("range")
	if name == "" {
		name = "15m"
	}
	dur, ok := history.RingRange(name)
	if !ok {
		writeError(w, http.StatusBadRequest, "range: want 15m, 1h or 24h")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, d.hist.Query(name, dur, d.now()))
}

// writeJSON and writeError answer in the admin API's shapes.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]any{"error": msg, "status": status})
}
