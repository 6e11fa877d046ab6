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
	raw, err := rawConn(c)
	if raw == nil {
		return err == nil
	}
	alive := false
	err = raw.Read(func(fd uintptr) bool {
		alive = nothingToRead(fd)
		return true
	})
	return err == nil && alive
}

// waitReadable blocks until c has something to read — data, EOF or an
// error — or its read deadline passes (the response-header timeout, or the
// client going away). It holds no buffer while it waits: a 1-byte peek
// that does not block, then the runtime's poller.
func waitReadable(c net.Conn) error {
	raw, err := rawConn(c)
	if raw == nil {
		return err
	}
	peeked := false
	return raw.Read(func(fd uintptr) bool {
		if peeked {
			// The poller says readable: no second peek (the read that
			// follows would repeat it). Were it a stale wake-up, that
			// read finds EAGAIN and waits as any read does.
			return true
		}
		peeked = true
		// Anything but EAGAIN (data, EOF, a reset, EINTR) is for the
		// buffered read that follows to report.
		return !nothingToRead(fd)
	})
}

// rawConn is c's raw connection; nil (and no error) when c has none.
func rawConn(c net.Conn) (syscall.RawConn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, nil
	}
	return sc.SyscallConn()
}

// nothingToRead peeks one byte without blocking: true when the socket has
// nothing to read yet (EAGAIN); data, EOF or an error are something.
func nothingToRead(fd uintptr) bool {
	var buf [1]byte
	_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}
