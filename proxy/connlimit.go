package proxy

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// ConnLimit caps the client connections the proxy holds open at once, so
// that a flood of connections cannot take a memory-limited sidecar past
// its container limit (each open connection costs tens of KiB: its
// goroutines, buffers and request). At the cap, the connection that has
// been idle longest between keep-alive requests is closed to make room
// (as nginx reuses keep-alive connections when it runs out); when none is
// idle, new connections wait in the kernel's accept queue until one
// closes. Build it with NewConnLimit; wrap the listener with Listener and
// set the server's ConnState to ConnState.
type ConnLimit struct {
	max    int
	slots  chan struct{}
	open   atomic.Int64
	evicts atomic.Uint64
	mu     sync.Mutex
	idle   *list.List // of *limitedClientConn, longest idle first
	// wentIdle wakes an Accept waiting at the cap when a connection
	// becomes idle (and so can be closed to make room).
	wentIdle chan struct{}
}

// NewConnLimit allows max connections at once (max ≥ 1).
func NewConnLimit(max int) *ConnLimit {
	return &ConnLimit{max: max, slots: make(chan struct{}, max), idle: list.New(), wentIdle: make(chan struct{}, 1)}
}

// Max is the cap.
func (l *ConnLimit) Max() int { return l.max }

// Open is how many client connections are open now.
func (l *ConnLimit) Open() int64 { return l.open.Load() }

// Evicted counts idle keep-alive connections closed to make room.
func (l *ConnLimit) Evicted() uint64 { return l.evicts.Load() }

// Listener wraps ln: Accept hands a connection to the server only while
// fewer than max are open.
func (l *ConnLimit) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: l, done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	l         *ConnLimit
	done      chan struct{}
	closeOnce sync.Once
}

func (ll *limitListener) Accept() (net.Conn, error) {
	c, err := ll.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l := ll.l
	// A new connection is here: take a slot, or make one by closing the
	// longest-idle keep-alive connection (its Close frees its slot at
	// once); with none idle, wait for a connection to close or go idle.
	// Connections arriving meanwhile wait in the kernel's accept queue.
	select {
	case <-l.wentIdle: // stale: the idle list is looked at below anyway
	default:
	}
	for {
		select {
		case l.slots <- struct{}{}:
			l.open.Add(1)
			return &limitedClientConn{Conn: c, l: l}, nil
		default:
		}
		if l.evictIdle() {
			continue
		}
		select {
		case l.slots <- struct{}{}:
			l.open.Add(1)
			return &limitedClientConn{Conn: c, l: l}, nil
		case <-l.wentIdle:
		case <-ll.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

func (ll *limitListener) Close() error {
	ll.closeOnce.Do(func() { close(ll.done) })
	return ll.Listener.Close()
}

// limitedClientConn holds a slot until it is closed (also after a
// hijack: an upgraded connection costs memory as long as it is open).
type limitedClientConn struct {
	net.Conn
	l       *ConnLimit
	once    sync.Once
	idleElt *list.Element // guarded by l.mu
}

func (c *limitedClientConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.setIdle(c, false)
		c.l.open.Add(-1)
		<-c.l.slots
	})
	return err
}

// ConnState is the http.Server hook that tells idle keep-alive
// connections (the ones that can be closed to make room) from busy ones.
func (l *ConnLimit) ConnState(c net.Conn, s http.ConnState) {
	lc, ok := c.(*limitedClientConn)
	if !ok {
		return
	}
	switch s {
	case http.StateIdle:
		l.setIdle(lc, true)
	case http.StateActive, http.StateHijacked, http.StateClosed:
		l.setIdle(lc, false)
	}
}

func (l *ConnLimit) setIdle(c *limitedClientConn, idle bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.idleElt != nil {
		l.idle.Remove(c.idleElt)
		c.idleElt = nil
	}
	if idle {
		c.idleElt = l.idle.PushBack(c)
		if len(l.slots) == l.max {
			select {
			case l.wentIdle <- struct{}{}:
			default:
			}
		}
	}
}

// evictIdle closes the connection idle longest; false when none is idle.
func (l *ConnLimit) evictIdle() bool {
	l.mu.Lock()
	front := l.idle.Front()
	var c *limitedClientConn
	if front != nil {
		c = front.Value.(*limitedClientConn)
		l.idle.Remove(front)
		c.idleElt = nil
	}
	l.mu.Unlock()
	if c == nil {
		return false
	}
	l.evicts.Add(1)
	_ = c.Close()
	return true
}
