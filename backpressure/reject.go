package backpressure

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// reason is a bounded rejection reason (the metric label and the
// X-Pulsegate-Reject header value).
type reason uint8

const (
	reasonQueueFull reason = iota
	reasonQueueTimeout
	reasonRate
	reasonRateClient
	reasonOverload // + signal index: overload:<signal>
)

const nReasons = int(reasonOverload) + nSignals

// Reasons lists every rejection reason, in a fixed order.
var Reasons = func() [nReasons]string {
	var r [nReasons]string
	r[reasonQueueFull] = "queue_full"
	r[reasonQueueTimeout] = "queue_timeout"
	r[reasonRate] = "rate"
	r[reasonRateClient] = "rate_client"
	for i, s := range signals {
		r[int(reasonOverload)+i] = "overload:" + s
	}
	return r
}()

func (r reason) String() string { return Reasons[r] }

func overloadReason(signal int) reason {
	if signal < 0 || signal >= nSignals {
		signal = 0
	}
	return reasonOverload + reason(signal)
}

func (r reason) isOverload() bool { return r >= reasonOverload }

func (r reason) status() int {
	if r == reasonRate || r == reasonRateClient {
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

// message is the human sentence each reason's body carries.
func (r reason) message() string {
	switch r {
	case reasonQueueFull:
		return "the app is at its concurrency limit and the wait queue is full"
	case reasonQueueTimeout:
		return "no slot to the app freed up within the queue timeout"
	case reasonRate:
		return "request rate limit exceeded"
	case reasonRateClient:
		return "request rate limit for this client exceeded"
	}
	return "the app is overloaded (" + signals[r-reasonOverload] + " pressure) and this request was shed"
}

// Header names set on every rejection.
const (
	// HeaderReject carries the rejection reason (queue_full, queue_timeout,
	// rate, rate_client, overload:<signal>).
	HeaderReject = "X-Pulsegate-Reject"
)

// rejectSetter is implemented by proxy.Instrument's recorder.
type rejectSetter interface{ SetRejected(reason string) }

// queueWaitSetter is implemented by proxy.Instrument's recorder: the time
// spent queued for a slot.
type queueWaitSetter interface{ SetQueueWait(time.Duration) }

// acceptsJSON reports whether the client asked for JSON.
func acceptsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "json")
}

// reject is the one place that answers a rejected request: status,
// Retry-After, X-Pulsegate-Reject, a JSON or plain-text body, the counter,
// the recorder's reason, and a sampled log line.
func (c *Chain) reject(w http.ResponseWriter, r *http.Request, rs reason, retryAfter int) {
	n := c.rejections[rs].Add(1)
	if rec, ok := w.(rejectSetter); ok {
		rec.SetRejected(rs.String())
	}
	name := rs.String()
	ra := strconv.Itoa(retryAfter)
	h := w.Header()
	h.Set("Retry-After", ra)
	h.Set(HeaderReject, name)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	var body []byte
	if acceptsJSON(r) {
		h.Set("Content-Type", "application/json")
		body = append(body, `{"error":"`...)
		body = append(body, rs.message()...)
		body = append(body, `","reason":"`...)
		body = append(body, name...)
		body = append(body, `","retry_after":`...)
		body = append(body, ra...)
		body = append(body, "}\n"...)
	} else {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		body = append(body, rs.message()...)
		body = append(body, " ("...)
		body = append(body, name...)
		body = append(body, "); retry after "...)
		body = append(body, ra...)
		body = append(body, " s\n"...)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rs.status())
	_, _ = w.Write(body)
	if sampled(n) {
		event := "backpressure_reject"
		if rs.isOverload() {
			event = "shed"
		}
		c.log.Info(event,
			zap.String("reason", name),
			zap.Uint64("count", n),
			zap.Int("status", rs.status()),
			zap.Int("retry_after", retryAfter),
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.Int64("in_flight", c.lim.inFlight.Load()),
			zap.Int64("queued", c.lim.waiting.Load()),
		)
	}
}

// wouldReject counts a rejection dry-run mode did not carry out.
func (c *Chain) wouldReject(r *http.Request, rs reason) {
	n := c.dryRun[rs].Add(1)
	if sampled(n) {
		c.log.Info("backpressure_dry_run",
			zap.String("reason", rs.String()),
			zap.Uint64("count", n),
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.Int64("in_flight", c.lim.inFlight.Load()),
		)
	}
}

// sampled selects the first and every 100th event of a kind for logging.
func sampled(n uint64) bool { return n == 1 || n%100 == 0 }
