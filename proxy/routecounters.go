package proxy

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
)

// Per-(route, app version) cumulative counters, for the persisted
// per-route history and the release comparison: the history samples them
// once a minute (RouteCounters) and stores the differences.
//
// The app's version comes from app.version or, when app.version_header is
// set, from that header of the app's responses: read in WriteHeader, never
// changed. Versions are interned: a response carrying the same version as
// the previous one costs a map index and a string compare, no allocation.

// maxVersions bounds the distinct versions one process records (the
// first is "", unknown); later new versions are recorded as unknown.
const maxVersions = 16

// appVersion is one interned version; id indexes route.cum.
type appVersion struct {
	name string
	id   int
}

// versions interns the app's versions and knows the current one.
type versions struct {
	header atomic.Pointer[string]     // canonical header name; nil = not configured
	env    atomic.Pointer[appVersion] // app.version
	seen   atomic.Pointer[appVersion] // the last version read from the header
	mu     sync.Mutex                 // serialises interning
	table  []*appVersion              // table[0] is ""
	full   bool                       // logged once: past maxVersions
	log    *zap.Logger
}

func (vs *versions) init(log *zap.Logger) {
	vs.log = log
	vs.table = []*appVersion{{name: "", id: 0}}
	vs.env.Store(vs.table[0])
}

// apply takes app.version and app.version_header live; a new header name
// forgets the version read from the old one.
func (vs *versions) apply(a config.App) {
	vs.env.Store(vs.intern(a.Version))
	var h *string
	if a.VersionHeader != "" {
		c := http.CanonicalHeaderKey(a.VersionHeader)
		h = &c
	}
	if old := vs.header.Load(); (old == nil) != (h == nil) || old != nil && *old != *h {
		vs.seen.Store(nil)
	}
	vs.header.Store(h)
}

// current is the version a request is counted under when its response
// carried none: the last read from the header, else app.version.
func (vs *versions) current() *appVersion {
	if v := vs.seen.Load(); v != nil {
		return v
	}
	return vs.env.Load()
}

// fromHeader reads the version header of an answer's headers (nil when
// not configured or absent). The common case, the same version as the
// last answer, does not allocate.
func (vs *versions) fromHeader(h http.Header) *appVersion {
	name := vs.header.Load()
	if name == nil {
		return nil
	}
	vals := h[*name]
	if len(vals) == 0 {
		return nil
	}
	if last := vs.seen.Load(); last != nil && last.name == vals[0] {
		return last
	}
	v := vs.intern(vals[0])
	vs.seen.Store(v)
	return v
}

// intern returns the version named s (cleaned: printable, at most
// config.MaxAppVersionLen bytes), adding it while there is room.
func (vs *versions) intern(s string) *appVersion {
	s = cleanVersion(s)
	vs.mu.Lock()
	defer vs.mu.Unlock()
	for _, v := range vs.table {
		if v.name == s {
			return v
		}
	}
	if len(vs.table) >= maxVersions {
		if !vs.full {
			vs.full = true
			if vs.log != nil {
				vs.log.Warn("app_versions_full", zap.Int("max_versions", maxVersions), zap.String("version", s))
			}
		}
		return vs.table[0]
	}
	v := &appVersion{name: strings.Clone(s), id: len(vs.table)}
	vs.table = append(vs.table, v)
	return v
}

// cleanVersion trims space, drops control characters and invalid UTF-8,
// and cuts at config.MaxAppVersionLen bytes (on a rune boundary).
func cleanVersion(s string) string {
	s = strings.TrimSpace(s)
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == utf8.RuneError }) {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f || r == utf8.RuneError {
				return -1
			}
			return r
		}, strings.ToValidUTF8(s, ""))
	}
	if len(s) > config.MaxAppVersionLen {
		n := config.MaxAppVersionLen
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return s
}

// routeCum is one (route, version)'s counters since start. 7 KiB; made
// on the first request of the pair.
type routeCum struct {
	requests  atomic.Uint64 // answered (client_closed is not)
	errors    atomic.Uint64 // failed for the client: error_rate's numerator
	appErrors atomic.Uint64 // caused by the app: app_error_rate's numerator
	sumUS     atomic.Uint64 // total time of the timed requests
	buckets   [histNumBuckets]atomic.Uint64
}

func (c *routeCum) record(x *sample) {
	if x.class == classClientClosed {
		return
	}
	c.requests.Add(1)
	if x.isError || x.class == classRejected {
		c.errors.Add(1)
		if x.isError {
			c.appErrors.Add(1)
		}
	}
	if x.timed {
		c.buckets[histIndex(x.total)].Add(1)
		c.sumUS.Add(uint64(x.total.Microseconds()))
	}
}

// cumFor returns the route's counters for version v, making them on first use.
func (r *route) cumFor(v *appVersion) *routeCum {
	if c := r.cum[v.id].Load(); c != nil {
		return c
	}
	c := new(routeCum)
	if r.cum[v.id].CompareAndSwap(nil, c) {
		return c
	}
	return r.cum[v.id].Load()
}

// RouteCounter is one (route, version)'s totals since start.
type RouteCounter struct {
	Route, Version string
	// Requests counts answered requests; Errors those that failed for
	// their client (app 5xx, 502/504, 429/503 rejections); AppErrors
	// those the app caused (Errors without the rejections).
	Requests, Errors, AppErrors uint64
	// Buckets is the latency histogram of the timed requests (latency
	// package geometry, trimmed after the last non-empty bucket); SumUS
	// their total time in µs.
	Buckets []uint64
	SumUS   uint64
}

// RouteCounters reads every (route, version)'s totals since start (the
// per-route history samples them once a minute). Reads are atomic per
// counter, as Counters'.
func (s *Stats) RouteCounters() []RouteCounter {
	s.versions.mu.Lock()
	table := append([]*appVersion(nil), s.versions.table...)
	s.versions.mu.Unlock()
	routes := *s.routes.Load()
	out := make([]RouteCounter, 0, len(routes)+1)
	read := func(r *route) {
		for _, v := range table {
			c := r.cum[v.id].Load()
			if c == nil {
				continue
			}
			rc := RouteCounter{Route: r.name, Version: v.name, Requests: c.requests.Load(), Errors: c.errors.Load(),
				AppErrors: c.appErrors.Load(), SumUS: c.sumUS.Load()}
			last := -1
			var b [histNumBuckets]uint64
			for i := range c.buckets {
				if b[i] = c.buckets[i].Load(); b[i] != 0 {
					last = i
				}
			}
			rc.Buckets = append([]uint64(nil), b[:last+1]...)
			out = append(out, rc)
		}
	}
	for _, r := range routes {
		read(r)
	}
	read(s.other)
	return out
}

// Version is the app version requests are counted under now (the last
// read from app.version_header, else app.version; "" unknown).
func (s *Stats) Version() string { return s.versions.current().name }
