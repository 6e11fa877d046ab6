package proxy

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// recorder wraps the client's ResponseWriter for one request: it captures
// status, bytes and timings, and lets inner layers (backpressure, the
// forwarder, the error handler) report queue wait and rejections. It
// exposes Flush, Hijack and Unwrap so streaming, SSE and WebSocket
// upgrades work through it. Recorders are pooled; one must not be used
// after its request finished.
type recorder struct {
	http.ResponseWriter
	p          *Proxy
	websocket  bool          // the client asked for a WebSocket upgrade
	start      time.Duration // monotonic offsets from Proxy.base (cheaper than time.Now)
	headerAt   time.Duration // when the response status was written; 0 = not yet
	status     int
	bytes      int64
	queueWait  time.Duration
	rejected   string
	errClass   int
	stream     bool // text/event-stream or an upgraded connection
	hijacked   bool
	aborted    bool // the handler panicked (ReverseProxy's ErrAbortHandler)
	admittedAt int64
	version    *appVersion // read from the app's version header; nil = none
}

var recorderPool = sync.Pool{New: func() any { return new(recorder) }}

// WriteHeader records the first final status; 1xx informational answers
// pass through without being taken for the final one.
func (r *recorder) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		r.ResponseWriter.WriteHeader(code)
		return
	}
	if r.status == 0 {
		r.status = code
		if r.p != nil {
			r.headerAt = r.p.mono()
			if r.errClass == errNone && r.rejected == "" {
				r.p.appAnswered() // at the headers: a stream may never finish
			}
			r.version = r.p.stats.versions.fromHeader(r.Header()) // read only
		}
		// Header() keys are canonical already: index the map, skip Get's canonicalisation.
		if ct := r.Header()["Content-Type"]; len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream") {
			r.stream = true
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Flush sends buffered data to the client (SSE, streamed bodies).
func (r *recorder) Flush() {
	_ = r.FlushError()
}

// FlushError is what http.ResponseController calls.
func (r *recorder) FlushError() error {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(r.ResponseWriter).Flush()
}

// Hijack hands the connection over (WebSocket upgrades) and marks the
// request as a stream.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil && r.p != nil {
		c = r.p.hijacked.track(c, r.websocket)
	}
	if err == nil {
		r.hijacked, r.stream = true, true
		if r.status == 0 {
			r.status = http.StatusSwitchingProtocols
			r.headerAt = r.p.mono()
			r.p.appAnswered()
		}
	}
	return c, brw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// recorderOf finds Instrument's recorder under w, through any wrappers that
// follow the Unwrap convention (http.ResponseController's): a middleware
// added between Instrument and the forwarder must not lose the error class.
func recorderOf(w http.ResponseWriter) *recorder {
	for w != nil {
		if rec, ok := w.(*recorder); ok {
			return rec
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
	return nil
}

// SetQueueWait is called by backpressure with the time spent queued.
func (r *recorder) SetQueueWait(d time.Duration) { r.queueWait = d }

// SetRejected is called by backpressure when it answers itself.
func (r *recorder) SetRejected(reason string) { r.rejected = reason }

// Instrument wraps next (backpressure and the forwarder) so that every
// request is timed and counted exactly once, even when an inner handler
// panics with http.ErrAbortHandler (which is re-raised, never swallowed).
func (p *Proxy) Instrument(next http.Handler) http.Handler {
	return &instrumented{p: p, next: next}
}

type instrumented struct {
	p    *Proxy
	next http.Handler
}

func (h *instrumented) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rec := recorderPool.Get().(*recorder)
	*rec = recorder{ResponseWriter: w, p: h.p, start: h.p.mono()}
	if req.Header.Get("Upgrade") != "" {
		rec.websocket = strings.EqualFold(req.Header.Get("Upgrade"), "websocket")
	}
	rec.admittedAt = h.p.stats.inFlight.Add(1)
	defer func() {
		v := recover()
		if v != nil {
			rec.aborted = true
		}
		h.p.finish(rec, req)
		*rec = recorder{}
		recorderPool.Put(rec)
		if v != nil {
			panic(v)
		}
	}()
	h.next.ServeHTTP(rec, req)
}

// finish classifies and records one request.
func (p *Proxy) finish(rec *recorder, req *http.Request) {
	s := p.stats
	s.inFlight.Add(-1)
	endMono := p.mono()
	end := p.base.Add(endMono)
	x := sample{total: endMono - rec.start, queueWait: rec.queueWait, bytes: rec.bytes}
	status := rec.status
	errClass := rec.errClass
	clientGone := req.Context().Err() != nil
	switch {
	case rec.rejected != "":
		x.class, errClass = classRejected, errRejected
	case errClass == errClientClosed, clientGone && (status == 0 || rec.aborted):
		x.class, errClass = classClientClosed, errClientClosed
	default:
		if status == 0 {
			status = http.StatusOK // the handler wrote nothing: net/http answers 200
		}
		x.class = statusClass(status)
		switch {
		case rec.aborted:
			errClass = errUpstreamReset // the app's body broke off after the headers
		case errClass == errNone && status >= 500:
			errClass = errAppError
		}
		x.isError = errClass != errNone
		x.timed = !rec.stream && !rec.aborted
	}
	if x.timed {
		if rec.headerAt != 0 {
			// The forwarder starts when the queue wait ends.
			x.ttfb = rec.headerAt - rec.start - rec.queueWait
			x.transfer = endMono - rec.headerAt
		}
		x.slow = x.total >= time.Duration(p.slowNS.Load())
	}

	apdexT := time.Duration(p.apdexNS.Load())
	s.global.record(end, &x, apdexT)
	s.total.record(&x)
	var buf [maxRouteLen + 8]byte
	name := templateRoute(req.URL.Path, *p.patterns.Load(), buf[:0])
	r := s.routeFor(name)
	if r == s.other {
		p.m.overflow.Inc()
	}
	r.win.record(end, &x, apdexT)
	ver := rec.version
	if ver == nil {
		ver = s.versions.current()
	}
	r.cumFor(ver).record(&x)
	p.m.observer(r, methodIndex(req.Method), x.class).Observe(x.total.Seconds())
	p.m.requests[x.class].Inc()
	s.totalByClass[x.class].Add(1)
	if errClass != errNone {
		p.m.errors[errClass].Inc()
		s.totalErrors[errClass].Add(1)
	}
	if x.slow {
		p.m.slow.Inc()
		p.slowRequest(rec, req, r.name, status, &x)
	}
	if errClass == errClientClosed {
		if ce := p.log.Check(zap.DebugLevel, "client_closed"); ce != nil {
			ce.Write(zap.String("method", req.Method), zap.String("route", r.name),
				zap.Float64("duration", x.total.Seconds()))
		}
	}
}

func statusClass(status int) int {
	switch {
	case status < 200:
		return class1xx
	case status < 300:
		return class2xx
	case status < 400:
		return class3xx
	case status < 500:
		return class4xx
	}
	return class5xx
}

// maxLoggedPath bounds the request path in logs and the slow ring.
const maxLoggedPath = 256

func (p *Proxy) slowRequest(rec *recorder, req *http.Request, route string, status int, x *sample) {
	path := req.URL.Path
	if len(path) > maxLoggedPath {
		path = path[:maxLoggedPath] + "..."
	}
	e := SlowRequest{
		Time: p.base.Add(rec.start).UTC(), Method: req.Method, Route: route, Path: path, Status: status,
		Duration: x.total.Seconds(), QueueWait: x.queueWait.Seconds(),
		UpstreamTTFB: x.ttfb.Seconds(), Transfer: x.transfer.Seconds(),
		InFlightAtAdmission: rec.admittedAt,
	}
	p.stats.addSlow(e)
	p.log.Warn("slow_request",
		zap.String("method", e.Method), zap.String("route", route), zap.String("path", path),
		zap.Int("status", status), zap.Float64("duration", e.Duration),
		zap.Float64("upstream_ttfb", e.UpstreamTTFB), zap.Float64("queue_wait", e.QueueWait),
		zap.Float64("transfer", e.Transfer), zap.Int64("in_flight", e.InFlightAtAdmission),
		zap.String("summary", "Slow request detected: "+path+" took "+formatSeconds(e.Duration)))
}

func formatSeconds(s float64) string { return strconv.FormatFloat(s, 'f', 1, 64) + "s" }
