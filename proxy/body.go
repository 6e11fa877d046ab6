package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// timedBody bounds how long a client may pause while sending a request
// body: before each read it moves the connection's read deadline to now +
// timeout, and clears it once the body is complete (the server's
// background read, which watches for the client leaving, must not inherit
// it). A client that stalls gets a timeout error, the Transport's body
// writer returns, and the handler with it. Without this, on Go 1.26 a
// client that stalls mid-upload after the app died pins its handler and a
// Transport goroutine for as long as it stays connected (go#78973); and a
// slow-body client could hold an app worker indefinitely.
type timedBody struct {
	io.ReadCloser
	rc        *http.ResponseController
	timeout   time.Duration
	remaining int64 // bytes still expected when the length is known; -1 = unknown
	done      bool
	timedOut  atomic.Bool
}

func newTimedBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) *timedBody {
	return &timedBody{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: timeout, remaining: r.ContentLength}
}

type timedBodyKey struct{}

// errBodyTimeout: the client stopped sending its body; whatever the app
// answered to a truncated request is not passed on.
var errBodyTimeout = errors.New("request body timed out")

// bodyCompleteOrError is ModifyResponse: an answer to a request whose
// body stalled (the app got a truncated body) becomes a 408.
func bodyCompleteOrError(resp *http.Response) error {
	if resp.Request == nil {
		return nil
	}
	if tb, ok := resp.Request.Context().Value(timedBodyKey{}).(*timedBody); ok && tb.timedOut.Load() {
		return errBodyTimeout
	}
	return nil
}

func (b *timedBody) Read(p []byte) (int, error) {
	if !b.done {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	n, err := b.ReadCloser.Read(p)
	if b.remaining >= 0 {
		b.remaining -= int64(n)
	}
	if !b.done && (err == io.EOF || (b.remaining <= 0 && b.remaining != -1)) {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		b.timedOut.Store(true)
	}
	return n, err
}
