package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func okServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestRunSendsEveryScheduledRequest(t *testing.T) {
	var hits atomic.Int64
	srv := okServer(t, func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("ok"))
	})
	res, err := Run(context.Background(), Config{URL: srv.URL + "/x", Rate: 200, Duration: time.Second, Conns: 4, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheduled != 200 || res.Requests != 200 || hits.Load() != 200 {
		t.Fatalf("scheduled %d, completed %d, server saw %d; want 200 each", res.Scheduled, res.Requests, hits.Load())
	}
	if res.Errors != (Errors{}) {
		t.Fatalf("errors %+v, want none", res.Errors)
	}
	l := res.Latency
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Fatalf("percentiles out of order: %+v", l)
	}
	// Latency from the schedule includes the service time and the send lag.
	if res.Latency.Max < res.Service.Max {
		t.Fatalf("latency max %v < service max %v", res.Latency.Max, res.Service.Max)
	}
	if res.AchievedRPS <= 0 {
		t.Fatalf("achieved rps %v", res.AchievedRPS)
	}
}

// A server that stalls once must show up in the latency of every request
// scheduled during the stall, not only in the one it stalled: the generator
// keeps its schedule instead of waiting (no coordinated omission).
func TestRunCountsQueueingFromTheSchedule(t *testing.T) {
	const stall = 300 * time.Millisecond
	var first atomic.Bool
	srv := okServer(t, func(w http.ResponseWriter, _ *http.Request) {
		if first.CompareAndSwap(false, true) {
			time.Sleep(stall)
		}
		_, _ = w.Write([]byte("ok"))
	})
	// One connection, 100 req/s for 1 s: requests 0..29 are scheduled during
	// the stall and wait behind request 0, request k by about 300-10k ms.
	res, err := Run(context.Background(), Config{URL: srv.URL, Rate: 100, Duration: time.Second, Conns: 1, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 {
		t.Fatalf("completed %d, want 100", res.Requests)
	}
	if res.Service.Max < ms(stall) {
		t.Fatalf("service max %.1f ms, want ≥ %v (the stalled request)", res.Service.Max, stall)
	}
	// At least 10 of 100 requests waited ≥ 200 ms: p90 must see it.
	if res.Latency.P90 < 200 {
		t.Fatalf("latency p90 %.1f ms, want ≥ 200 ms: queueing behind the stall was not counted", res.Latency.P90)
	}
	if res.SendLag.P90 < 150 {
		t.Fatalf("send lag p90 %.1f ms, want ≥ 150 ms", res.SendLag.P90)
	}
}

func TestRunCountsStatusErrorsAndSurvivesConnectionClose(t *testing.T) {
	srv := okServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	res, err := Run(context.Background(), Config{URL: srv.URL, Rate: 100, Duration: 500 * time.Millisecond, Conns: 2, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 50 || res.Errors.Status != 50 || res.Errors.IO != 0 || res.Errors.Connect != 0 {
		t.Fatalf("requests %d errors %+v; want 50 requests, 50 status errors, no I/O errors", res.Requests, res.Errors)
	}
}

func TestRunReportsIOErrorsWhenTheServerHangsUp(t *testing.T) {
	srv := okServer(t, func(w http.ResponseWriter, _ *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = c.Close()
		}
	})
	res, err := Run(context.Background(), Config{URL: srv.URL, Rate: 50, Duration: 200 * time.Millisecond, Conns: 1, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Errors.IO != 10 {
		t.Fatalf("requests %d errors %+v; want 0 requests and 10 I/O errors", res.Requests, res.Errors)
	}
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	good := Config{URL: "http://127.0.0.1:1/", Rate: 1, Duration: time.Second, Conns: 1, Timeout: time.Second}
	for _, tc := range []struct {
		mutate func(*Config)
		flag   string
	}{
		{func(c *Config) { c.URL = "ftp://x/" }, "-url"},
		{func(c *Config) { c.URL = "" }, "-url"},
		{func(c *Config) { c.Rate = 0 }, "-rate"},
		{func(c *Config) { c.Duration = 0 }, "-duration"},
		{func(c *Config) { c.Conns = 0 }, "-conns"},
		{func(c *Config) { c.Timeout = -1 }, "-timeout"},
	} {
		c := good
		tc.mutate(&c)
		_, err := Run(context.Background(), c)
		if err == nil || !strings.HasPrefix(err.Error(), tc.flag+":") {
			t.Errorf("config %+v: error %v, want one naming %s", c, err, tc.flag)
		}
	}
}

func TestRunFailsClearlyWhenNothingListens(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := Run(context.Background(), Config{URL: url, Rate: 10, Duration: time.Second, Conns: 1, Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "connecting to") {
		t.Fatalf("error %v, want a connect error", err)
	}
}

func TestRankIsNearestRank(t *testing.T) {
	v := make([]int64, 1000)
	for i := range v {
		v[i] = int64(i + 1)
	}
	for _, tc := range []struct {
		p    float64
		want int64
	}{{50, 500}, {99, 990}, {99.9, 999}, {100, 1000}, {0, 1}} {
		if got := rank(v, tc.p); got != tc.want {
			t.Errorf("rank(1..1000, %v) = %d, want %d", tc.p, got, tc.want)
		}
	}
	if got := rank([]int64{7}, 99.9); got != 7 {
		t.Errorf("rank of one value = %d, want 7", got)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
