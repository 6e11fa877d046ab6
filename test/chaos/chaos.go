// Package chaos is a small fault-injecting TCP proxy for pulsegate's fault
// suite. It listens on 127.0.0.1:0, forwards every accepted connection to a
// target, and misbehaves on demand: added latency, accept-and-never-reply,
// reply-headers-then-stall (HTTP), a TCP reset after N bytes, a half-close,
// or a bandwidth cap. The fault is switched at runtime with Set and applies
// to connections already open as well as to new ones, the way a real network
// or a stopped process would.
//
// All goroutines belong to the Proxy and have returned when Close returns.
package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is the kind of fault applied to forwarded bytes.
type Mode int

// Modes. The zero value is Pass.
const (
	// Pass forwards bytes unchanged.
	Pass Mode = iota
	// Latency delays every chunk, in each direction, by Fault.Latency.
	Latency
	// Blackhole accepts connections and never replies: new connections are
	// not dialed to the target, bytes on open ones are held (not dropped)
	// until the mode changes, as with a process stopped by SIGSTOP.
	Blackhole
	// HeadersThenStall forwards the target's reply until the end of the next
	// HTTP response header block (CRLF CRLF), then holds the rest until the
	// mode changes.
	HeadersThenStall
	// Reset forwards Fault.Bytes bytes in direction Fault.Dir (counted from
	// the moment the fault was set, per connection) and then resets both
	// sides of that connection (SO_LINGER 0 + Close: the peer sees RST).
	Reset
	// HalfClose ends the reply direction with a FIN (the client reads EOF)
	// while the request direction keeps flowing to the target.
	HalfClose
	// Bandwidth caps each direction of each connection at Fault.BytesPerSec.
	Bandwidth
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Latency:
		return "latency"
	case Blackhole:
		return "blackhole"
	case HeadersThenStall:
		return "headers-then-stall"
	case Reset:
		return "reset"
	case HalfClose:
		return "half-close"
	case Bandwidth:
		return "bandwidth"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Dir is a direction of a proxied connection.
type Dir int

// Directions.
const (
	// Both means either direction (for Reset: whichever reaches Bytes first).
	Both Dir = iota
	// ToTarget is the request direction: client → target.
	ToTarget
	// ToClient is the reply direction: target → client.
	ToClient
)

// Fault describes the current misbehaviour.
type Fault struct {
	// Mode selects the fault.
	Mode Mode
	// Latency is the delay per chunk for Latency.
	Latency time.Duration
	// Bytes is how many bytes Reset lets through before resetting.
	Bytes int64
	// Dir is the direction Reset counts.
	Dir Dir
	// BytesPerSec is the cap for Bandwidth (per direction, per connection).
	BytesPerSec int64
}

// Proxy is a running chaos proxy. Use New to create one.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	fault   Fault
	gen     uint64        // bumped by every Set
	changed chan struct{} // closed and replaced by every Set
	conns   map[*link]struct{}
	closed  bool

	done     chan struct{}
	wg       sync.WaitGroup
	accepted atomic.Int64
	dialErrs atomic.Int64
}

// New starts a proxy on 127.0.0.1:0 that forwards to target (host:port).
func New(target string) (*Proxy, error) {
	return Listen("127.0.0.1:0", target)
}

// Listen starts a proxy on addr (e.g. a port a test reserved earlier, to
// make a dependency "come up" where a client already points) that forwards
// to target.
func Listen(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("chaos: listening on %s for %s: %w", addr, target, err)
	}
	p := &Proxy{
		target:  target,
		ln:      ln,
		changed: make(chan struct{}),
		conns:   make(map[*link]struct{}),
		done:    make(chan struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the proxy's listening address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address connections are forwarded to.
func (p *Proxy) Target() string { return p.target }

// Accepted counts connections accepted since New.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// DialErrors counts failed dials to the target.
func (p *Proxy) DialErrors() int64 { return p.dialErrs.Load() }

// Open is the number of client connections currently open.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Set switches the fault for open and new connections.
func (p *Proxy) Set(f Fault) {
	p.mu.Lock()
	p.fault = f
	p.gen++
	close(p.changed)
	p.changed = make(chan struct{})
	var half []*link
	if f.Mode == HalfClose {
		for l := range p.conns {
			half = append(half, l)
		}
	}
	p.mu.Unlock()
	for _, l := range half {
		l.halfClose()
	}
}

// Fault returns the current fault.
func (p *Proxy) Fault() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault
}

// ResetAll resets every open connection at once (both sides see RST).
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	var all []*link
	for l := range p.conns {
		all = append(all, l)
	}
	p.mu.Unlock()
	for _, l := range all {
		l.reset()
	}
}

// Close stops accepting, closes every connection and waits for all of the
// proxy's goroutines to return.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	var all []*link
	for l := range p.conns {
		all = append(all, l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range all {
		l.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) state() (Fault, uint64, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault, p.gen, p.changed
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.accepted.Add(1)
		l := &link{p: p, client: c.(*net.TCPConn), dead: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go l.run()
	}
}

// link is one proxied connection.
type link struct {
	p      *Proxy
	client *net.TCPConn

	dead chan struct{} // closed by close

	mu       sync.Mutex
	target   *net.TCPConn
	halfDone bool
	closed   bool
}

func (l *link) run() {
	defer l.p.wg.Done()
	defer func() {
		l.p.mu.Lock()
		delete(l.p.conns, l)
		l.p.mu.Unlock()
		l.close()
	}()

	// Accept-and-never-reply: hold the connection undialed while the mode lasts.
	for {
		f, _, changed := l.p.state()
		if f.Mode != Blackhole {
			break
		}
		select {
		case <-changed:
		case <-l.p.done:
			return
		}
	}

	d := net.Dialer{Timeout: 5 * time.Second}
	tc, err := d.Dial("tcp", l.p.target)
	if err != nil {
		l.p.dialErrs.Add(1)
		// The target refused: the client sees a reset, like a refused connection.
		l.client.SetLinger(0)
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		tc.Close()
		return
	}
	l.target = tc.(*net.TCPConn)
	l.mu.Unlock()
	if f, _, _ := l.p.state(); f.Mode == HalfClose {
		l.halfClose()
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pipe(ToTarget, l.client, l.target) }()
	go func() { defer wg.Done(); l.pipe(ToClient, l.target, l.client) }()
	wg.Wait()
}

// pipe copies src to dst applying the current fault; on EOF it passes the
// half-close on; on a reset or error it tears the whole link down.
func (l *link) pipe(dir Dir, src, dst *net.TCPConn) {
	buf := make([]byte, 32<<10)
	st := &pipeState{}
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !l.forward(dir, dst, buf[:n], st) {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if dir == ToClient && l.isHalfClosed() {
					return
				}
				if f, _, _ := l.p.state(); dir == ToTarget && (f.Mode == Blackhole || f.Mode == HeadersThenStall) {
					// The client gave up while replies are held: nothing
					// more can reach it, so drop the link.
					l.close()
					return
				}
				dst.CloseWrite()
				return
			}
			l.close()
			return
		}
	}
}

// pipeState is one direction's memory across chunks.
type pipeState struct {
	gen     uint64 // fault generation the counters belong to
	count   int64  // bytes forwarded under this generation (Reset)
	tail    []byte // last bytes seen, to find CRLFCRLF across chunks
	stalled bool   // HeadersThenStall: header end passed, hold the rest
}

// forward writes b to dst under the current fault. It returns false when the
// link is finished (reset, closed, or write failed).
func (l *link) forward(dir Dir, dst *net.TCPConn, b []byte, st *pipeState) bool {
	for len(b) > 0 {
		f, gen, changed := l.p.state()
		if st.gen != gen {
			*st = pipeState{gen: gen}
		}
		switch f.Mode {
		case Pass:
			return l.write(dst, b)
		case Latency:
			if !l.sleep(f.Latency) {
				return false
			}
			return l.write(dst, b)
		case Blackhole:
			if !l.wait(changed) {
				return false
			}
		case HeadersThenStall:
			if dir != ToClient {
				return l.write(dst, b)
			}
			if st.stalled {
				if !l.wait(changed) {
					return false
				}
				continue
			}
			scan := append(append([]byte{}, st.tail...), b...)
			i := bytes.Index(scan, []byte("\r\n\r\n"))
			if i < 0 {
				if len(scan) > 3 {
					st.tail = append(st.tail[:0], scan[len(scan)-3:]...)
				} else {
					st.tail = append(st.tail[:0], scan...)
				}
				if !l.write(dst, b) {
					return false
				}
				return true
			}
			end := i + 4 - len(st.tail) // offset in b just past the header block
			if !l.write(dst, b[:end]) {
				return false
			}
			b = b[end:]
			st.stalled = true
		case Reset:
			if f.Dir != Both && f.Dir != dir {
				return l.write(dst, b)
			}
			left := f.Bytes - st.count
			if int64(len(b)) < left {
				st.count += int64(len(b))
				return l.write(dst, b)
			}
			if left > 0 {
				l.write(dst, b[:left])
			}
			l.reset()
			return false
		case HalfClose:
			if dir == ToClient {
				l.halfClose()
				return true // the reply direction is discarded
			}
			return l.write(dst, b)
		case Bandwidth:
			rate := f.BytesPerSec
			if rate <= 0 {
				return l.write(dst, b)
			}
			// Send a tenth of a second's worth, then wait that tenth.
			slice := max(rate/10, 1)
			n := min(int64(len(b)), slice)
			if !l.write(dst, b[:n]) {
				return false
			}
			b = b[n:]
			if !l.sleep(time.Duration(float64(n) / float64(rate) * float64(time.Second))) {
				return false
			}
		default:
			return l.write(dst, b)
		}
	}
	return true
}

func (l *link) write(dst *net.TCPConn, b []byte) bool {
	if _, err := dst.Write(b); err != nil {
		l.close()
		return false
	}
	return true
}

// wait blocks until the fault changes; false if the proxy closed meanwhile.
func (l *link) wait(changed <-chan struct{}) bool {
	select {
	case <-changed:
		return !l.isClosed()
	case <-l.dead:
		return false
	case <-l.p.done:
		return false
	}
}

func (l *link) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !l.isClosed()
	case <-l.dead:
		return false
	case <-l.p.done:
		return false
	}
}

func (l *link) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

func (l *link) isHalfClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.halfDone
}

func (l *link) halfClose() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.halfDone || l.closed {
		return
	}
	l.halfDone = true
	l.client.CloseWrite()
}

// reset aborts both sides with RST.
func (l *link) reset() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.client.SetLinger(0)
	if l.target != nil {
		l.target.SetLinger(0)
	}
	l.mu.Unlock()
	l.close()
}

func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.dead)
	l.client.Close()
	if l.target != nil {
		l.target.Close()
	}
}
