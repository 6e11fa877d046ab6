package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
)

// inlineTransport does an HTTP/1.1 exchange with the app on the calling
// goroutine: the handler writes the request and reads the response
// itself, instead of handing the request to http.Transport's per-connection
// write and read loop goroutines and waiting for them. At an everyday rate,
// where requests do not arrive in batches, each of those hand-offs is a
// goroutine wake-up (often on another core, with an idle P spinning to find
// it), and they made up most of the proxy's CPU per request in front of a
// small Flask route (docs/performance.md).
//
// It takes requests without a body that are not upgrades (GETs, HEADs,
// DELETEs... the bulk of traffic); the rest go to http.Transport, which
// keeps 100-continue, concurrent body writing and the go#78973 protection
// for uploads, and WebSocket upgrades. What it keeps of http.Transport:
//   - keep-alive reuse, most recently used first, with the idle timeout
//     (below the app server's keep-alive) and a per-host idle cap; a reused
//     connection is checked for a close by the app before it is used (the
//     Transport's read loop notices that while idle), and an idempotent
//     request that finds its reused connection closed before any answer
//     byte is retried once on a new one, as the Transport does;
//   - the response-header timeout (504), cancellation by the client
//     (client_closed), and the error classes errors.go maps (dial → refused,
//     EOF/reset → reset, timeouts);
//   - 1xx answers passed to the ClientTrace (ReverseProxy forwards them),
//     chunked and streamed bodies and trailers (http.ReadResponse);
//   - max_conns_per_host, shared with the fallback Transport's connections.
type inlineTransport struct {
	dialer         *net.Dialer
	dials          *atomic.Uint64
	headerTimeout  time.Duration
	idleTimeout    time.Duration
	maxIdle        int
	limit          *connLimit
	closed         atomic.Bool
	mu             sync.Mutex
	idle           []*inlineConn // most recently used last
	reaperArmed    bool
	reaper         *time.Timer
	closeSlowIdles func() // the fallback Transport's CloseIdleConnections
	// readers recycles the connections' 4 KiB read buffers: with an app
	// that closes every connection (gunicorn's sync workers) each request
	// dials, and a fresh buffer per dial was a quarter of the bytes
	// allocated per request. A connection holds one only while an answer
	// is read from it (exchange, putIdle).
	readers sync.Pool
}

// inlineConn is one upstream connection of the inline transport.
type inlineConn struct {
	net.Conn
	br        *bufio.Reader
	idleSince time.Time
	release   func() // frees the connection's max_conns_per_host slot
	readers   *sync.Pool
}

// close closes the connection and gives its slot and read buffer back;
// nothing reads c.br afterwards (the body reports EOF once finished).
func (c *inlineConn) close() {
	_ = c.Conn.Close()
	if c.release != nil {
		c.release()
		c.release = nil
	}
	if c.br != nil && c.readers != nil {
		c.br.Reset(nil)
		c.readers.Put(c.br)
		c.br = nil
	}
}

// bufWriters are shared by every connection: a request's head is written
// and flushed at once, so no connection needs its own 4 KiB writer while idle.
var bufWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// takesInline reports whether r can be exchanged inline: no request body
// and no protocol upgrade.
func takesInline(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	if _, ok := r.Header["Upgrade"]; ok {
		return false
	}
	return r.URL.Scheme == "http"
}

// replayable: safe to send again when a reused connection turned out
// closed before any answer arrived (http.Transport's rule).
func replayable(r *http.Request) bool {
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, k1 := r.Header["Idempotency-Key"]
	_, k2 := r.Header["X-Idempotency-Key"]
	return k1 || k2
}

// errStaleConn: a reused connection was closed by the app before it
// answered anything.
var errStaleConn = errors.New("reused upstream connection closed before the answer")

func (t *inlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := t.getConn(req)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(c, req, reused)
		if errors.Is(err, errStaleConn) && attempt == 0 && replayable(req) && req.Context().Err() == nil {
			continue
		}
		if errors.Is(err, errStaleConn) {
			err = io.EOF // the reset class, as http.Transport reports it
		}
		return resp, err
	}
}

// exchange writes req on c and reads the answer's head. On success the
// response body owns c.
func (t *inlineTransport) exchange(c *inlineConn, req *http.Request, reused bool) (*http.Response, error) {
	ctx := req.Context()
	// The client going away unblocks whatever read or write is in progress;
	// no goroutine waits for it.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	bw := bufWriters.Get().(*bufio.Writer)
	bw.Reset(c.Conn)
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	bufWriters.Put(bw)
	if err != nil {
		if reused {
			err = fmt.Errorf("%w: %w", errStaleConn, err)
		}
		return fail(err)
	}
	if t.headerTimeout > 0 {
		_ = c.SetReadDeadline(time.Now().Add(t.headerTimeout))
		// Set, then checked: a cancellation before the set would have been
		// overwritten; one after it poisons the new deadline.
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
	}
	// The read buffer is taken once the answer (or EOF, or a reset) is
	// there to read, not while the app works on the request: at high
	// concurrency most upstream connections wait for the app, and 4 KiB
	// each was the proxy's largest allocation per connection after
	// net/http's own (docs/performance.md).
	if err := waitReadable(c.Conn); err != nil {
		return fail(err)
	}
	c.br = t.reader(c.Conn)
	if _, err := c.br.Peek(1); err != nil {
		if reused && !isTimeout(err) && ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", errStaleConn, err)
		}
		return fail(err)
	}
	trace := httptrace.ContextClientTrace(ctx)
	var resp *http.Response
	for n1xx := 0; ; n1xx++ {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err)
		}
		code := resp.StatusCode
		if code < 100 || code > 199 {
			break
		}
		if code == http.StatusSwitchingProtocols || n1xx >= 10 {
			return fail(fmt.Errorf("upstream answered %d to a request that did not ask for it", code))
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	if t.headerTimeout > 0 {
		// The body streams for as long as it takes.
		_ = c.SetReadDeadline(time.Time{})
	}
	if ctx.Err() != nil { // as above: cleared, then checked
		return fail(ctx.Err())
	}
	resp.Body = &inlineBody{rc: resp.Body, t: t, c: c, stop: stop, keep: !resp.Close && !req.Close}
	return resp, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// aLongTimeAgo is a deadline that has passed: it unblocks I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// inlineBody is the response body: at EOF the connection goes back to the
// pool (when the app keeps it alive); closed early, the connection is
// closed (the rest of the body is not drained).
type inlineBody struct {
	rc   io.ReadCloser
	t    *inlineTransport
	c    *inlineConn
	stop func() bool
	keep bool
	done bool
}

func (b *inlineBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *inlineBody) Close() error {
	if !b.done {
		// A body with nothing in it (HEAD, 204, 304) is complete without a read.
		b.finish(b.rc == http.NoBody)
	}
	return nil
}

// finish hands the connection back or closes it.
func (b *inlineBody) finish(complete bool) {
	b.done = true
	c := b.c
	b.c = nil
	// stop false: the client-gone callback ran, the deadline is poisoned.
	if !b.stop() || !complete || !b.keep || c.br.Buffered() > 0 {
		c.close()
		return
	}
	_ = b.rc.Close()
	b.t.putIdle(c)
}

// getConn returns an idle connection (reused=true) or dials a new one,
// waiting while max_conns_per_host connections are open and none is idle.
func (t *inlineTransport) getConn(req *http.Request) (*inlineConn, bool, error) {
	ctx := req.Context()
	for {
		// Taken first: a connection coming back after this point wakes us.
		wait := t.limit.waitCh()
		if c := t.popIdle(); c != nil {
			return c, true, nil
		}
		if release, ok := t.limit.tryAcquire(); ok {
			t.dials.Add(1)
			nc, err := t.dialer.DialContext(ctx, "tcp", canonicalAddr(req))
			if err != nil {
				release()
				return nil, false, err
			}
			return &inlineConn{Conn: nc, release: release, readers: &t.readers}, false, nil
		}
		// Every slot is taken and no inline connection is idle: idle
		// connections of the fallback Transport may hold slots.
		if t.closeSlowIdles != nil {
			t.closeSlowIdles()
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// reader takes a read buffer for nc from the pool.
func (t *inlineTransport) reader(nc net.Conn) *bufio.Reader {
	br, _ := t.readers.Get().(*bufio.Reader)
	if br == nil {
		return bufio.NewReaderSize(nc, 4<<10)
	}
	br.Reset(nc)
	return br
}

// popIdle takes the most recently used idle connection that is still
// usable; expired or closed ones are closed on the way.
func (t *inlineTransport) popIdle() *inlineConn {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.idle) > 0 {
		c := t.idle[len(t.idle)-1]
		t.idle[len(t.idle)-1] = nil
		t.idle = t.idle[:len(t.idle)-1]
		if now.Sub(c.idleSince) < t.idleTimeout && connAlive(c.Conn) {
			return c
		}
		c.close()
	}
	return nil
}

func canonicalAddr(r *http.Request) string {
	host, port := r.URL.Hostname(), r.URL.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(host, port)
}

// putIdle keeps c for the next request, or closes it when the pool is full
// or the transport was replaced.
func (t *inlineTransport) putIdle(c *inlineConn) {
	c.idleSince = time.Now()
	// An idle connection holds no read buffer (finish checked that nothing
	// is buffered): the 4 KiB go back to the pool until the next answer
	// arrives on it (exchange).
	c.br.Reset(nil)
	t.readers.Put(c.br)
	c.br = nil
	t.mu.Lock()
	if t.closed.Load() || len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		c.close()
		return
	}
	t.idle = append(t.idle, c)
	if !t.reaperArmed {
		t.reaperArmed = true
		if t.reaper == nil {
			t.reaper = time.AfterFunc(t.idleTimeout, t.reap)
		} else {
			t.reaper.Reset(t.idleTimeout)
		}
	}
	t.mu.Unlock()
	t.limit.wake()
}

// reap closes connections idle for the idle timeout (the app would close
// them soon after; closing first keeps a request from racing its close).
func (t *inlineTransport) reap() {
	now := time.Now()
	var expired []*inlineConn
	t.mu.Lock()
	keep := t.idle[:0]
	for _, c := range t.idle {
		if now.Sub(c.idleSince) >= t.idleTimeout {
			expired = append(expired, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(t.idle[len(keep):])
	t.idle = keep
	t.reaperArmed = len(t.idle) > 0
	if t.reaperArmed {
		t.reaper.Reset(t.idleTimeout - now.Sub(t.idle[0].idleSince))
	}
	t.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}

// CloseIdleConnections closes every idle connection; after the transport
// was replaced (close), connections coming back are closed too.
func (t *inlineTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	if t.reaper != nil {
		t.reaper.Stop()
	}
	t.reaperArmed = false
	t.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

func (t *inlineTransport) close() {
	t.closed.Store(true)
	t.CloseIdleConnections()
}

// connLimit is max_conns_per_host, shared by the inline transport and the
// fallback Transport (whose dials take a slot and whose connections give it
// back when closed). A nil *connLimit, or max 0, is unlimited.
type connLimit struct {
	max  int
	mu   sync.Mutex
	open int
	wait chan struct{} // closed and replaced when a slot or an idle connection frees
}

func newConnLimit(max int) *connLimit {
	if max <= 0 {
		return nil
	}
	return &connLimit{max: max, wait: make(chan struct{})}
}

// waitCh is closed when a slot or an idle connection frees; nil (blocks
// forever) when there is no limit, which tryAcquire then never refuses.
func (l *connLimit) waitCh() chan struct{} {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.wait
}

// tryAcquire takes a slot if one is free. The returned func gives it back.
func (l *connLimit) tryAcquire() (func(), bool) {
	if l == nil {
		return func() {}, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.max {
		return nil, false
	}
	l.open++
	var once sync.Once
	return func() { once.Do(l.releaseSlot) }, true
}

// acquire takes a slot, waiting for one while all are taken (after asking
// closeIdle to free the slots idle connections hold).
func (l *connLimit) acquire(ctx context.Context, closeIdle func()) (func(), error) {
	for {
		wait := l.waitCh()
		if release, ok := l.tryAcquire(); ok {
			return release, nil
		}
		closeIdle()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (l *connLimit) releaseSlot() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
	l.wake()
}

// putIdle is httptrace's PutIdleConn hook for the fallback Transport.
func (l *connLimit) putIdle(error) { l.wake() }

// wake lets waiting requests look again.
func (l *connLimit) wake() {
	if l == nil {
		return
	}
	l.mu.Lock()
	close(l.wait)
	l.wait = make(chan struct{})
	l.mu.Unlock()
}

// limitedConn is a fallback Transport connection holding a slot.
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
