package proxy

import (
	"context"
	"net"
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

// UpstreamSeen reports whether the app has answered since start: a
// proxied request got a response, or CheckUpstream connected.
func (p *Proxy) UpstreamSeen() bool { return p.seen.Load() }

// CheckUpstream opens (and closes) one TCP connection to the app, so that
// readiness can turn true before any traffic arrives. It is for the
// monitor's tick while the app has not been seen; a connection says the
// app is listening, only a response says it answers.
func (p *Proxy) CheckUpstream(ctx context.Context) error {
	u := p.target.Load()
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	c.Close()
	p.seen.Store(true)
	return nil
}

// ConsecutiveUpstreamFailures counts requests in a row that could not get
// an answer from the app (refused, reset, timeout); any answer resets it.
func (p *Proxy) ConsecutiveUpstreamFailures() int64 { return p.consecFail.Load() }
