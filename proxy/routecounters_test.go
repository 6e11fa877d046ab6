package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
)

// counter finds one (route, version)'s totals.
func counter(t *testing.T, s *Stats, route, version string) RouteCounter {
	t.Helper()
	for _, c := range s.RouteCounters() {
		if c.Route == route && c.Version == version {
			return c
		}
	}
	t.Fatalf("no counters for %s %q in %+v", route, version, s.RouteCounters())
	return RouteCounter{}
}

// TestVersionHeaderReadNotAltered: the app's version header reaches the
// client byte for byte (odd spacing and all), and every request is
// counted under the version its answer carried; before the first answer
// with the header, and for answers without it, app.version applies.
func TestVersionHeaderReadNotAltered(t *testing.T) {
	var ver atomic.Value
	ver.Store("")
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := ver.Load().(string); v != "" {
			w.Header()["X-App-Version"] = []string{v}
		}
		if r.URL.Path == "/fail" {
			w.WriteHeader(500)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer app.Close()
	f := newFixture(t, app.URL, func(c *config.Config) {
		c.App.Version = "env-1.0"
		c.App.VersionHeader = "x-app-version" // any case; matched canonically
	})
	get := func(path string) *http.Response {
		resp := f.get(t, path, nil)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	get("/users/1") // no header yet: app.version
	const v = "2.4.1+build.7 (rc; ÄÖ)"
	ver.Store(v)
	for i := range 3 {
		resp := get("/users/" + string(rune('2'+i)))
		if got := resp.Header["X-App-Version"]; len(got) != 1 || got[0] != v {
			t.Fatalf("the client got X-App-Version %q, want the app's %q unchanged", got, v)
		}
	}
	get("/fail")
	ver.Store("") // an answer without the header: the last version seen
	get("/users/9")

	s := f.p.Stats()
	if c := counter(t, s, "/users/:id", "env-1.0"); c.Requests != 1 {
		t.Errorf("env version: %+v, want 1 request", c)
	}
	c := counter(t, s, "/users/:id", v)
	if c.Requests != 4 || c.Errors != 0 {
		t.Errorf("header version on /users/:id: %d requests, %d errors; want 4, 0", c.Requests, c.Errors)
	}
	var timed uint64
	for _, b := range c.Buckets {
		timed += b
	}
	if timed != 4 || c.SumUS == 0 {
		t.Errorf("latency: %d timed, %d µs; want 4 timed", timed, c.SumUS)
	}
	if c := counter(t, s, "/fail", v); c.Requests != 1 || c.Errors != 1 || c.AppErrors != 1 {
		t.Errorf("/fail: %+v, want 1 request, 1 error, 1 app error", c)
	}
	if s.Version() != v {
		t.Errorf("current version %q", s.Version())
	}
}

// TestVersionFromEnvLive: without a header, app.version names every
// request's release, and a live change applies to the next request.
func TestVersionFromEnvLive(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer app.Close()
	cfg := config.Defaults()
	f := newFixture(t, app.URL, func(c *config.Config) { c.App.Version = "v1" })
	f.get(t, "/a", nil).Body.Close()
	cfg.Proxy.UpstreamURL = app.URL
	cfg.App.Version = "v2"
	if err := f.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	f.get(t, "/a", nil).Body.Close()
	f.get(t, "/a", nil).Body.Close()
	if c1, c2 := counter(t, f.p.Stats(), "/a", "v1"), counter(t, f.p.Stats(), "/a", "v2"); c1.Requests != 1 || c2.Requests != 2 {
		t.Errorf("v1 %d, v2 %d requests; want 1, 2", c1.Requests, c2.Requests)
	}
}

// TestVersionsAreBounded: an app sending a new version on every answer
// cannot grow the table past maxVersions; later ones count as unknown,
// and values are cleaned (control characters, length).
func TestVersionsAreBounded(t *testing.T) {
	s := newStats(time.Now(), 10, 0)
	s.versions.apply(config.App{VersionHeader: "X-App-Version"})
	for i := range 40 {
		v := s.versions.fromHeader(http.Header{"X-App-Version": {"build-" + strings.Repeat("x", i)}})
		if i >= maxVersions-1 && v.name != "" {
			t.Fatalf("version %d interned as %q past the cap", i, v.name)
		}
	}
	if len(s.versions.table) != maxVersions {
		t.Errorf("%d versions interned, want %d", len(s.versions.table), maxVersions)
	}
	if got := cleanVersion("v1\x00\r\n" + strings.Repeat("é", 40)); strings.ContainsAny(got, "\x00\r\n") || len(got) > config.MaxAppVersionLen {
		t.Errorf("cleanVersion kept %q", got)
	}
}

// TestVersionHeaderNoAllocation: reading an unchanged version does not allocate.
func TestVersionHeaderNoAllocation(t *testing.T) {
	s := newStats(time.Now(), 10, 0)
	s.versions.apply(config.App{VersionHeader: "X-App-Version"})
	h := http.Header{"X-App-Version": {"2.4.1"}}
	s.versions.fromHeader(h)
	r := s.routeFor([]byte("/x"))
	x := sample{class: class2xx, timed: true, total: time.Millisecond}
	if n := testing.AllocsPerRun(1000, func() {
		r.cumFor(s.versions.fromHeader(h)).record(&x)
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

// TestRouteCountersMatchWindows: the per-route totals count what the
// route's window counts: answered requests, errors with rejections, app
// errors without, and client_closed not at all.
func TestRouteCountersMatchWindows(t *testing.T) {
	s := newStats(time.Now(), 10, 0)
	r := s.routeFor([]byte("/r"))
	c := r.cumFor(s.versions.current())
	for _, x := range []sample{
		{class: class2xx, timed: true, total: time.Millisecond},
		{class: class5xx, isError: true, timed: true, total: 2 * time.Millisecond},
		{class: classRejected},
		{class: classClientClosed},
	} {
		c.record(&x)
	}
	got := counter(t, s, "/r", "")
	if got.Requests != 3 || got.Errors != 2 || got.AppErrors != 1 || got.SumUS != 3000 || len(got.Buckets) != histIndex(2*time.Millisecond)+1 {
		t.Errorf("%+v: want 3 requests, 2 errors, 1 app error, 3000 µs, buckets trimmed after 2 ms", got)
	}
}

// versionedTransport is cannedTransport with the app's version header.
type versionedTransport struct{ cannedTransport }

func (c versionedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.cannedTransport.RoundTrip(r)
	resp.Header["X-App-Version"] = []string{"2.4.1"}
	return resp, err
}

// BenchmarkInstrumentedProxyVersionHeader is BenchmarkInstrumentedProxy
// with app.version_header set and every answer carrying it.
func BenchmarkInstrumentedProxyVersionHeader(b *testing.B) {
	cfg := config.Defaults()
	cfg.App.VersionHeader = "X-App-Version"
	p, err := New(cfg, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	p.rp.Transport = versionedTransport{cannedTransport{body: []byte("hello world")}}
	benchServe(b, p.Instrument(p.Forwarder()), benchPaths)
}

// BenchmarkRouteVersionRecord is what this file adds to each request:
// the version header read (unchanged version), the route's counters for
// that version and their atomic adds. Compare with BenchmarkWindowRecord.
func BenchmarkRouteVersionRecord(b *testing.B) {
	s := newStats(time.Now(), 10, 0)
	s.versions.apply(config.App{VersionHeader: "X-App-Version"})
	h := http.Header{"X-App-Version": {"2.4.1"}, "Content-Type": {"text/plain"}}
	r := s.routeFor([]byte("/x"))
	x := sample{class: class2xx, timed: true, total: 3 * time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.cumFor(s.versions.fromHeader(h)).record(&x)
		}
	})
}
