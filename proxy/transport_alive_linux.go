package proxy

import (
	"net"
	"syscall"
)

// connAlive reports whether an idle connection is still open: a peek that
// does not block finds nothing to read (EAGAIN). EOF means the app closed
// it, and stray bytes mean it cannot be reused either. One syscall, in
// place of the read loop goroutine http.Transport keeps per connection.
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		_ = n
		alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && alive
}

// waitReadable blocks until c has something to read — data, EOF or an
// error — or its read deadline passes (the response-header timeout, or the
// client going away). It holds no buffer while it waits: a 1-byte peek
// that does not block, then the runtime's poller.
func waitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var buf [1]byte
	peeked := false
	return raw.Read(func(fd uintptr) bool {
		if peeked {
			// The poller says readable: no second peek (the read that
			// follows would repeat it). Were it a stale wake-up, that
			// read finds EAGAIN and waits as any read does.
			return true
		}
		peeked = true
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: nothing yet, wait. Anything else (data, EOF, a reset,
		// EINTR) is for the buffered read that follows to report.
		return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
	})
}
