// Package proxy is pulsegate's data path: an httputil.ReverseProxy in front
// of the app, with a tuned Transport, error classification (502/504,
// client_closed) and an Instrument middleware that times and counts every
// request into rolling windows, per-route statistics and Prometheus series.
//
// The hot path takes no lock shared by all requests: counters are atomics,
// per-route state is found in a copy-on-write map, and metric children are
// bound once and cached.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
)

// Proxy forwards requests to the app and measures them. Build it with New;
// it must not be copied.
type Proxy struct {
	// base anchors the monotonic clock the hot path reads (time.Since is a
	// third of time.Now's cost on KVM guests).
	base   time.Time
	log    *zap.Logger
	rp     *httputil.ReverseProxy
	target atomic.Pointer[url.URL]
	rt     *swappableTransport
	stats  *Stats
	m      *metrics
	slowNS atomic.Int64
	// bodyTimeoutNS is proxy.client_body_timeout.
	bodyTimeoutNS atomic.Int64
	apdexNS       atomic.Int64
	patterns      atomic.Pointer[[]routePattern]
	trusted       atomic.Pointer[[]netip.Prefix]
	errLog        sampler
	// consecFail counts upstream failures in a row (readiness).
	consecFail atomic.Int64
	hijacked   hijackedConns
	dials      atomic.Uint64 // upstream connections opened
	// seen: the app has answered (a request, or CheckUpstream's dial).
	seen atomic.Bool
}

// New builds the proxy for cfg.Proxy.UpstreamURL. Metrics go to reg.
func New(cfg *config.Config, log *zap.Logger, reg prometheus.Registerer) (*Proxy, error) {
	target, err := parseUpstream(cfg.Proxy.UpstreamURL)
	if err != nil {
		return nil, err
	}
	base := time.Now()
	p := &Proxy{
		base:  base,
		log:   log,
		stats: newStats(base, cfg.Proxy.MaxRoutes, cfg.Proxy.SlowRequestRing),
		rt:    &swappableTransport{},
	}
	p.stats.versions.log = log
	p.target.Store(target)
	p.rt.cur.Store(newTransport(cfg, &p.dials))
	p.applyTunables(cfg)
	if p.m, err = newMetrics(reg, p); err != nil {
		return nil, fmt.Errorf("registering proxy metrics: %w", err)
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      p.rt,
		BufferPool:     bufferPool{},
		ErrorHandler:   p.errorHandler,
		ModifyResponse: bodyCompleteOrError,
		ErrorLog:       zap.NewStdLog(log.Named("reverseproxy")),
	}
	return p, nil
}

func parseUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("proxy.upstream_url (RESPONSIVENESS_UPSTREAM_URL): want an absolute http(s) URL, got %q", config.RedactURL(raw))
	}
	return u, nil
}

func (p *Proxy) applyTunables(cfg *config.Config) {
	p.slowNS.Store(int64(cfg.Responsiveness.SlowRequestThreshold.Duration()))
	p.bodyTimeoutNS.Store(int64(cfg.Proxy.ClientBodyTimeout.Duration()))
	p.apdexNS.Store(int64(cfg.Proxy.ApdexThreshold.Duration()))
	pats := compilePatterns(cfg.Proxy.RoutePatterns)
	p.patterns.Store(&pats)
	var trusted []netip.Prefix
	for _, s := range cfg.Proxy.TrustedProxies {
		if pfx, err := config.ParsePrefix(s); err == nil {
			trusted = append(trusted, pfx)
		}
	}
	p.trusted.Store(&trusted)
	p.stats.maxRoutes.Store(int64(cfg.Proxy.MaxRoutes))
	p.stats.versions.apply(cfg.App)
}

// Apply takes a new configuration live: thresholds, route patterns and cap,
// upstream URL and Transport settings (a new Transport is swapped in; the
// old one's idle connections are closed, in-flight requests finish on it).
func (p *Proxy) Apply(cfg *config.Config) error {
	target, err := parseUpstream(cfg.Proxy.UpstreamURL)
	if err != nil {
		return err
	}
	p.applyTunables(cfg)
	p.target.Store(target)
	old := p.rt.cur.Swap(newTransport(cfg, &p.dials))
	old.close()
	return nil
}

// UpstreamDials is how many connections to the app were opened so far.
func (p *Proxy) UpstreamDials() uint64 { return p.dials.Load() }

// Stats returns the live request statistics.
func (p *Proxy) Stats() *Stats { return p.stats }

// CloseIdleConnections drops idle upstream connections (the "recycle
// upstream connections" action).
func (p *Proxy) CloseIdleConnections() { p.rt.cur.Load().CloseIdleConnections() }

// Forwarder is the innermost handler: it sends the request to the app.
func (p *Proxy) Forwarder() http.Handler { return forwarder{p} }

type forwarder struct{ p *Proxy }

func (f forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		if d := time.Duration(f.p.bodyTimeoutNS.Load()); d > 0 {
			r.Body = newTimedBody(w, r, d)
		}
	}
	f.p.rp.ServeHTTP(w, r)
}

// mono is the hot path's clock: time since base, monotonic only.
func (p *Proxy) mono() time.Duration { return time.Since(p.base) }

// rewrite builds the outbound request. ReverseProxy has already removed
// hop-by-hop headers and every client-sent Forwarded/X-Forwarded-*
// header; SetXForwarded writes ours from the socket peer only.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.target.Load())
	if tb, ok := pr.In.Body.(*timedBody); ok {
		pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), timedBodyKey{}, tb))
	}
	// The app sees the Host the client asked for, as it would without the
	// sidecar; X-Forwarded-Host carries it too.
	pr.Out.Host = pr.In.Host
	trusted := p.trustedPeer(pr.In.RemoteAddr)
	if trusted {
		// A trusted hop (the ingress): keep its chain and append our peer.
		pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	}
	pr.SetXForwarded()
	if trusted {
		for _, h := range []string{"X-Forwarded-Proto", "X-Forwarded-Host"} {
			if v := pr.In.Header.Get(h); v != "" {
				pr.Out.Header.Set(h, v)
			}
		}
	}
	// h2c upgrades would tunnel HTTP/2 past the proxy (go#80416): drop them.
	if up := pr.Out.Header.Get("Upgrade"); up != "" && strings.Contains(strings.ToLower(up), "h2c") {
		pr.Out.Header.Del("Upgrade")
		pr.Out.Header.Del("Connection")
		pr.Out.Header.Del("Http2-Settings")
	}
}

// trustedPeer reports whether the socket peer is a configured trusted proxy.
func (p *Proxy) trustedPeer(remoteAddr string) bool {
	pfx := *p.trusted.Load()
	if len(pfx) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, t := range pfx {
		if t.Contains(ip) {
			return true
		}
	}
	return false
}

// errorHandler answers a failed forward. r is the outbound request (its
// context carries the timedBody, when there is one).
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	rec := recorderOf(w)
	if tb, ok := r.Context().Value(timedBodyKey{}).(*timedBody); errors.Is(err, errBodyTimeout) || ok && tb.timedOut.Load() {
		// The client stopped sending its body: its fault, not the app's.
		if rec != nil {
			rec.errClass = errClientClosed
		}
		w.Header().Set("Connection", "close")
		http.Error(w, "pulsegate: 408 Request Timeout: the request body stopped arriving", http.StatusRequestTimeout)
		return
	}
	class, status := classifyError(r, err)
	if rec != nil {
		rec.errClass = class
	}
	if class == errClientClosed {
		// Usually nobody is listening; but the context is also cancelled
		// when reading the client's body fails, and then an empty implicit
		// 200 must not go out. finish() counts it and logs at debug.
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	p.consecFail.Add(1)
	// Go 1.26's ReverseProxy no longer closes the inbound body when the
	// upstream fails (go#78973): a Transport goroutine can stay blocked
	// reading a slow upload, and the handler with it. A read deadline in
	// the past unblocks that read; the connection is not reused anyway.
	if r.Body != nil && r.Body != http.NoBody {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	if n, ok := p.errLog.allow(time.Now()); ok {
		p.log.Warn("upstream_error", zap.String("class", errClassNames[class]), zap.Int("status", status),
			zap.String("method", r.Method), zap.String("path", truncate(r.URL.Path, maxLoggedPath)),
			zap.Error(err), zap.Uint64("suppressed", n))
	}
	writeProxyError(w, r, class, status)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// sampler lets one log line through per second and counts the rest, so an
// app outage under load does not flood the log.
type sampler struct {
	last       atomic.Int64
	suppressed atomic.Uint64
}

func (s *sampler) allow(now time.Time) (suppressed uint64, ok bool) {
	sec := now.Unix()
	if last := s.last.Load(); last != sec && s.last.CompareAndSwap(last, sec) {
		return s.suppressed.Swap(0), true
	}
	s.suppressed.Add(1)
	return 0, false
}

// bufferPool recycles ReverseProxy's copy buffers.
type bufferPool struct{}

// 16 KiB: every buffer in flight is resident, and halving Go's 32 KiB
// default cut peak RSS at 512 connections by ~25 MiB with no throughput
// loss we could measure.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
