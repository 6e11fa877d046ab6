package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
)

// Error classes of a finished request (the `class` label of
// pulsegate_request_errors_total). errNone means no error.
const (
	errNone             = iota
	errAppError         // the app answered 5xx
	errUpstreamRefused  // could not connect to the app (502)
	errUpstreamReset    // the app's connection broke (502)
	errUpstreamTimeout  // no response headers within request_timeout_threshold (504)
	errUpstreamProtocol // any other failure talking to the app (502)
	errClientClosed     // the client went away; not an app error
	errRejected         // backpressure answered 429/503
	numErrClasses
)

var errClassNames = [numErrClasses]string{"", "app_error", "upstream_refused", "upstream_reset", "upstream_timeout", "upstream_error", "client_closed", "rejected"}

// classifyError maps a ReverseProxy error to an error class and the status
// the client gets. A cancelled client context wins over everything else:
// the client is gone and nothing it sees matters.
func classifyError(r *http.Request, err error) (class, status int) {
	if r.Context().Err() != nil {
		return errClientClosed, 499
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return errUpstreamTimeout, http.StatusGatewayTimeout
	case errors.Is(err, syscall.ECONNREFUSED), isDialError(err):
		return errUpstreamRefused, http.StatusBadGateway
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errUpstreamReset, http.StatusBadGateway
	}
	return errUpstreamProtocol, http.StatusBadGateway
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

var errMessages = [numErrClasses]string{
	errUpstreamRefused:  "the app is not accepting connections",
	errUpstreamReset:    "the app closed the connection before answering",
	errUpstreamTimeout:  "the app did not answer in time",
	errUpstreamProtocol: "the app's answer could not be read",
}

// writeProxyError answers a failed forward: a short JSON body when the
// client accepts JSON, one line of text otherwise.
func writeProxyError(w http.ResponseWriter, r *http.Request, class, status int) {
	msg := errMessages[class]
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if acceptsJSON(r) {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"error":"`+errClassNames[class]+`","status":`+strconv.Itoa(status)+`,"message":"`+msg+`","source":"pulsegate"}`+"\n")
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, "pulsegate: "+strconv.Itoa(status)+" "+http.StatusText(status)+": "+msg+"\n")
}

// acceptsJSON reports whether the request prefers a JSON answer.
func acceptsJSON(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "application/json") || strings.Contains(v, "+json") {
			return true
		}
	}
	return false
}
