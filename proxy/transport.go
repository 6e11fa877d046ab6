package proxy

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/pulsegate/pulsegate/config"
)

// newTransport builds the upstream Transport:
//   - a keep-alive pool sized for concurrency (the default of 2 idle
//     connections per host churns sockets into TIME_WAIT under bursts);
//   - an idle timeout below the app server's keep-alive (gunicorn closes
//     idle connections after 2 s; reusing one it is closing fails a POST
//     with EOF → 502, and POSTs are not retried);
//   - the response-header timeout is RESPONSIVENESS_REQUEST_TIMEOUT_THRESHOLD (504 past it);
//   - no environment proxy and no transparent gzip: bytes pass as they are.
func newTransport(cfg *config.Config, dials *atomic.Uint64) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1) // connection churn: ≈ 0 per second once the pool is warm
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:          0, // no global cap; per host below
		MaxIdleConnsPerHost:   cfg.Proxy.MaxIdleConnsPerHost,
		MaxConnsPerHost:       cfg.Proxy.MaxConnsPerHost,
		IdleConnTimeout:       cfg.Proxy.UpstreamIdleTimeout.Duration(),
		ResponseHeaderTimeout: cfg.Responsiveness.RequestTimeoutThreshold.Duration(),
		ExpectContinueTimeout: time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
}

// swappableTransport lets Apply replace the Transport while requests run.
type swappableTransport struct {
	cur atomic.Pointer[http.Transport]
}

func (t *swappableTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.cur.Load().RoundTrip(r)
}
