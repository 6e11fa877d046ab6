package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pulsegate/pulsegate/config"
)

// upstreamTransport sends requests to the app: bodiless, non-upgrade
// requests to a plain-HTTP app are exchanged inline on the handler's
// goroutine (transport_inline.go); the rest go through http.Transport.
// Both share max_conns_per_host and the dial counter.
type upstreamTransport struct {
	inline *inlineTransport
	std    *http.Transport
	// limit is max_conns_per_host (nil: none).
	limit *connLimit
}

func (t *upstreamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if takesInline(r) {
		return t.inline.RoundTrip(r)
	}
	if t.limit != nil {
		// Requests waiting for a slot learn that a Transport connection went
		// idle (they close it to free its slot). WithClientTrace composes
		// into the trace it is given: a new one per request.
		r = r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{PutIdleConn: t.limit.putIdle}))
	}
	return t.std.RoundTrip(r)
}

// CloseIdleConnections closes both transports' idle connections.
func (t *upstreamTransport) CloseIdleConnections() {
	t.inline.CloseIdleConnections()
	t.std.CloseIdleConnections()
}

// close is CloseIdleConnections for a transport that was replaced:
// connections finishing their request afterwards are closed, not kept.
func (t *upstreamTransport) close() {
	t.inline.close()
	t.std.CloseIdleConnections()
}

// newTransport builds the upstream transports:
//   - a keep-alive pool sized for concurrency (the default of 2 idle
//     connections per host churns sockets into TIME_WAIT under bursts);
//   - an idle timeout below the app server's keep-alive (gunicorn closes
//     idle connections after 2 s; reusing one it is closing fails a POST
//     with EOF → 502, and POSTs are not retried);
//   - the response-header timeout is RESPONSIVENESS_REQUEST_TIMEOUT_THRESHOLD (504 past it);
//   - no environment proxy and no transparent gzip: bytes pass as they are.
func newTransport(cfg *config.Config, dials *atomic.Uint64) *upstreamTransport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if upstreamIsLoopback(cfg.Proxy.UpstreamURL) {
		// TCP keep-alive probes find peers that vanished without a word; on
		// loopback the kernel tells us at once. Off, a dial makes 4
		// setsockopt calls fewer, and a sync-worker app (a new connection
		// per request) dials on every request.
		d.KeepAlive = -1
	}
	limit := newConnLimit(cfg.Proxy.MaxConnsPerHost)
	t := &upstreamTransport{}
	t.inline = &inlineTransport{
		dialer:        d,
		dials:         dials,
		headerTimeout: cfg.Responsiveness.RequestTimeoutThreshold.Duration(),
		idleTimeout:   cfg.Proxy.UpstreamIdleTimeout.Duration(),
		maxIdle:       cfg.Proxy.MaxIdleConnsPerHost,
		limit:         limit,
	}
	t.std = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var release func()
			if limit != nil {
				var err error
				// Idle inline connections may hold the slots this dial waits for.
				if release, err = limit.acquire(ctx, t.inline.CloseIdleConnections); err != nil {
					return nil, err
				}
			}
			dials.Add(1) // connection churn: ≈ 0 per second once the pool is warm
			c, err := d.DialContext(ctx, network, addr)
			if err != nil || release == nil {
				if release != nil {
					release()
				}
				return c, err
			}
			return &limitedConn{Conn: c, release: release}, nil
		},
		MaxIdleConns:          0, // no global cap; per host below
		MaxIdleConnsPerHost:   cfg.Proxy.MaxIdleConnsPerHost,
		IdleConnTimeout:       cfg.Proxy.UpstreamIdleTimeout.Duration(),
		ResponseHeaderTimeout: cfg.Responsiveness.RequestTimeoutThreshold.Duration(),
		ExpectContinueTimeout: time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	t.inline.closeSlowIdles = t.std.CloseIdleConnections
	t.limit = limit
	return t
}

// upstreamIsLoopback: the app's host is a loopback address or localhost.
func upstreamIsLoopback(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// swappableTransport lets Apply replace the transports while requests run.
type swappableTransport struct {
	cur atomic.Pointer[upstreamTransport]
}

func (t *swappableTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.cur.Load().RoundTrip(r)
}
