package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Config is one open-loop run.
type Config struct {
	// URL is the http:// URL every request goes to (GET).
	URL string
	// Rate is the fixed arrival rate in requests per second.
	Rate float64
	// Duration is how long requests are scheduled for; the run ends when the
	// last scheduled request completed (or timed out).
	Duration time.Duration
	// Conns is the number of keep-alive connections (one worker each). A
	// scheduled request goes to the first idle connection; when none is idle
	// it waits, and that wait counts in its latency.
	Conns int
	// Timeout bounds one request's round trip on its connection.
	Timeout time.Duration
}

// validate reports the first bad field of c, by flag name.
func (c Config) validate() (*url.URL, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("-url: %q is not an http:// URL", c.URL)
	}
	switch {
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return nil, fmt.Errorf("-rate: must be a positive number of requests per second, got %v", c.Rate)
	case c.Duration <= 0:
		return nil, fmt.Errorf("-duration: must be positive, got %v", c.Duration)
	case c.Conns < 1:
		return nil, fmt.Errorf("-conns: must be at least 1, got %d", c.Conns)
	case c.Timeout <= 0:
		return nil, fmt.Errorf("-timeout: must be positive, got %v", c.Timeout)
	}
	return u, nil
}

// Percentiles summarises one latency distribution, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Errors counts failed requests by kind.
type Errors struct {
	// Connect counts failed dials.
	Connect int `json:"connect"`
	// IO counts requests whose write or read failed or timed out.
	IO int `json:"io"`
	// Status counts responses with a status outside 200–399 (their latency is
	// still recorded, as wrk does).
	Status int `json:"status"`
}

// Result is what one run measured.
type Result struct {
	TargetRate float64 `json:"target_rate"`
	DurationS  float64 `json:"duration_s"`
	Conns      int     `json:"conns"`
	// Scheduled is how many requests the schedule held (Rate × Duration).
	Scheduled int `json:"scheduled"`
	// Requests is how many got a response.
	Requests int    `json:"requests"`
	Errors   Errors `json:"errors"`
	// AchievedRPS is Requests ÷ the time from the first scheduled send to
	// the last response.
	AchievedRPS float64 `json:"achieved_rps"`
	// Latency is measured from each request's scheduled send time to the end
	// of its response body: queueing behind a slow server shows here even
	// when the generator could not send on time (no coordinated omission).
	Latency Percentiles `json:"latency_ms"`
	// Service is measured from the moment the request was actually written to
	// the end of its response body (what a closed-loop tool would report).
	Service Percentiles `json:"service_ms"`
	// SendLag is actual send − scheduled send: queueing for a free
	// connection, or the generator itself running late.
	SendLag Percentiles `json:"send_lag_ms"`
}

// sample is one completed request, offsets in ns from the run's start.
type sample struct {
	latency, service, lag int64
}

// conn is one keep-alive HTTP/1.1 connection to the target.
type conn struct {
	c  net.Conn
	br *bufio.Reader
}

// Run executes one open-loop run. It returns when every scheduled request
// has completed or failed, or ctx is done.
func Run(ctx context.Context, cfg Config) (Result, error) {
	u, err := cfg.validate()
	if err != nil {
		return Result{}, err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	path := u.RequestURI()
	request := []byte("GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: pulsegate-bench-loadgen\r\nAccept: */*\r\n\r\n")

	total := int(cfg.Rate * cfg.Duration.Seconds())
	if total < 1 {
		total = 1
	}
	interval := float64(time.Second) / cfg.Rate

	// Connect every worker before the clock starts, as wrk does.
	dialer := net.Dialer{Timeout: cfg.Timeout}
	conns := make([]*conn, cfg.Conns)
	for i := range conns {
		c, err := dialer.DialContext(ctx, "tcp", host)
		if err != nil {
			for _, cc := range conns[:i] {
				_ = cc.c.Close()
			}
			return Result{}, fmt.Errorf("connecting to %s: %w", host, err)
		}
		conns[i] = &conn{c: c, br: bufio.NewReaderSize(c, 32<<10)}
	}

	jobs := make(chan int64, min(total, 1<<16))
	start := time.Now()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		all     = make([]sample, 0, total)
		errs    Errors
		lastEnd int64
	)
	for _, c := range conns {
		wg.Go(func() {
			local := make([]sample, 0, total/cfg.Conns+16)
			var le Errors
			var last int64
			for due := range jobs {
				if ctx.Err() != nil {
					continue // drain without sending
				}
				if c.c == nil {
					nc, err := dialer.DialContext(ctx, "tcp", host)
					if err != nil {
						le.Connect++
						continue
					}
					c.c, c.br = nc, bufio.NewReaderSize(nc, 32<<10)
				}
				sent := int64(time.Since(start))
				status, keep, err := roundTrip(c, request, cfg.Timeout)
				end := int64(time.Since(start))
				if err != nil {
					le.IO++
					_ = c.c.Close()
					c.c = nil
					continue
				}
				if status < 200 || status > 399 {
					le.Status++
				}
				if !keep {
					_ = c.c.Close()
					c.c = nil
				}
				local = append(local, sample{latency: end - due, service: end - sent, lag: sent - due})
				last = max(last, end)
			}
			if c.c != nil {
				_ = c.c.Close()
			}
			mu.Lock()
			all = append(all, local...)
			errs.Connect += le.Connect
			errs.IO += le.IO
			errs.Status += le.Status
			lastEnd = max(lastEnd, last)
			mu.Unlock()
		})
	}

	dispatch(ctx, start, total, interval, jobs)
	close(jobs)
	wg.Wait()

	res := Result{
		TargetRate: cfg.Rate,
		DurationS:  cfg.Duration.Seconds(),
		Conns:      cfg.Conns,
		Scheduled:  total,
		Requests:   len(all),
		Errors:     errs,
	}
	if lastEnd > 0 {
		res.AchievedRPS = float64(len(all)) / (float64(lastEnd) / float64(time.Second))
	}
	lat := make([]int64, len(all))
	svc := make([]int64, len(all))
	lag := make([]int64, len(all))
	for i, s := range all {
		lat[i], svc[i], lag[i] = s.latency, s.service, s.lag
	}
	res.Latency = summarize(lat)
	res.Service = summarize(svc)
	res.SendLag = summarize(lag)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("run interrupted: %w", err)
	}
	return res, nil
}

// dispatch hands out the scheduled send offsets (ns from start) of requests
// 0..total-1, request i being due at i×interval. It never sends early; when
// it wakes late it releases everything already due at once, each with its
// own scheduled time.
func dispatch(ctx context.Context, start time.Time, total int, interval float64, jobs chan<- int64) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := 0; i < total; {
		now := int64(time.Since(start))
		due := int64(float64(i) * interval)
		if due > now {
			timer.Reset(time.Duration(due - now))
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			continue
		}
		for i < total {
			due = int64(float64(i) * interval)
			if due > now {
				break
			}
			select {
			case jobs <- due:
			case <-ctx.Done():
				return
			}
			i++
		}
	}
}

// roundTrip writes one request on c and reads the whole response. keep is
// false when the server asked to close the connection.
func roundTrip(c *conn, request []byte, timeout time.Duration) (status int, keep bool, err error) {
	if err := c.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, false, fmt.Errorf("setting deadline: %w", err)
	}
	if _, err := c.c.Write(request); err != nil {
		return 0, false, fmt.Errorf("writing request: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, false, fmt.Errorf("reading response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, false, fmt.Errorf("reading response body: %w", err)
	}
	return resp.StatusCode, !resp.Close, nil
}

// summarize computes nearest-rank percentiles of ns values, in ms. It sorts v.
func summarize(v []int64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	slices.Sort(v)
	var sum float64
	for _, x := range v {
		sum += float64(x)
	}
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	return Percentiles{
		P50:  ms(rank(v, 50)),
		P90:  ms(rank(v, 90)),
		P99:  ms(rank(v, 99)),
		P999: ms(rank(v, 99.9)),
		Max:  ms(v[len(v)-1]),
		Mean: sum / float64(len(v)) / 1e6,
	}
}

// rank is the nearest-rank p-th percentile of sorted v: the smallest value
// with at least p % of the values at or below it.
func rank(sorted []int64, p float64) int64 {
	n := len(sorted)
	k := int(math.Ceil(p*float64(n)/100 - 1e-9)) // guard 99.9×1000/100 = 999.0000001
	k = max(1, min(k, n))
	return sorted[k-1]
}
