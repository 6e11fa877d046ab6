package proxy

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// Hijacked (upgraded) connections are invisible to http.Server.Shutdown
// (go#17721), so the proxy tracks them itself and closes them at the end
// of a drain: WebSockets get a close frame with status 1001 ("going
// away") first, so clients reconnect instead of reporting an error.

type hijackedConns struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

type trackedConn struct {
	net.Conn
	set       *hijackedConns
	websocket bool
	once      sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.conns, c)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}

func (h *hijackedConns) track(c net.Conn, websocket bool) net.Conn {
	t := &trackedConn{Conn: c, set: h, websocket: websocket}
	h.mu.Lock()
	if h.conns == nil {
		h.conns = map[*trackedConn]struct{}{}
	}
	h.conns[t] = struct{}{}
	h.mu.Unlock()
	return t
}

func (h *hijackedConns) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// wsGoingAway is an unmasked server-to-client close frame, status 1001.
var wsGoingAway = []byte{0x88, 0x02, 0x03, 0xE9}

func (h *hijackedConns) closeAll() int {
	h.mu.Lock()
	all := make([]*trackedConn, 0, len(h.conns))
	for c := range h.conns {
		all = append(all, c)
	}
	h.mu.Unlock()
	for _, c := range all {
		if c.websocket {
			_ = c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			_, _ = c.Write(wsGoingAway)
		}
		c.Close()
	}
	return len(all)
}

// CloseHijacked closes every upgraded connection (WebSockets with a 1001
// close frame) and returns how many there were. Call it at the end of a drain.
func (p *Proxy) CloseHijacked() int { return p.hijacked.closeAll() }

// OpenUpgraded is the number of upgraded connections open now.
func (p *Proxy) OpenUpgraded() int { return p.hijacked.count() }

// appAnswered records that the app sent a response: readiness may turn
// (or stay) true. Cheap on the hot path: loads before stores.
func (p *Proxy) appAnswered() {
	if p.consecFail.Load() != 0 {
		p.consecFail.Store(0)
	}
	if !p.seen.Load() {
		p.seen.Store(true)
	}
}

// UpstreamSeen reports whether the app has answered since start: a
// proxied request got a response, or CheckUpstream connected.
func (p *Proxy) UpstreamSeen() bool { return p.seen.Load() }

// NeedsUpstreamCheck reports whether readiness is waiting on the app:
// it has not answered since start, or the last requests failed. Without
// an active check, a pod taken out of rotation would get no traffic and
// so never see the app recover.
func (p *Proxy) NeedsUpstreamCheck() bool { return !p.seen.Load() || p.consecFail.Load() > 0 }

// CheckUpstream sends one HEAD / to the app: any HTTP answer, whatever its
// status, proves the app answers, marks it seen and clears the failure
// count. The monitor calls it once a tick while NeedsUpstreamCheck.
func (p *Proxy) CheckUpstream(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, p.target.Load().String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "pulsegate-readiness")
	// Never reuse this connection: if the app streams its root, its handler
	// keeps running after the headers, and a request sent on the same
	// connection would wait behind it.
	req.Close = true
	resp, err := p.rt.RoundTrip(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	p.seen.Store(true)
	p.consecFail.Store(0)
	return nil
}

// ConsecutiveUpstreamFailures counts requests in a row that could not get
// an answer from the app (refused, reset, timeout); any answer resets it.
func (p *Proxy) ConsecutiveUpstreamFailures() int64 { return p.consecFail.Load() }
