package proxy

import (
	"testing"
	"time"
)

// Two readings of the totals subtract to exactly what happened between them.
func TestCountersSubIsTheInterval(t *testing.T) {
	s := newStats(time.Now(), 10, 4)
	rec := func(d time.Duration, class int) {
		x := sample{class: class, timed: true, total: d, ttfb: d / 2}
		s.total.record(&x)
		s.totalByClass[class].Add(1)
	}
	rec(10*time.Millisecond, 1)
	before := s.Counters()
	for _, ms := range []int{5, 50, 50, 200} {
		rec(time.Duration(ms)*time.Millisecond, 1)
	}
	s.totalErrors[1].Add(1)
	d := s.Counters().Sub(before)
	if d.Timed != 4 || d.Classes["2xx"] != 4 || d.Errors["app_error"] != 1 {
		t.Fatalf("interval: timed %d, 2xx %d, app_error %d; want 4, 4, 1", d.Timed, d.Classes["2xx"], d.Errors["app_error"])
	}
	if len(d.Buckets) != 3 || d.Buckets[histIndex(50*time.Millisecond)] != 2 {
		t.Fatalf("buckets %v: want 3 buckets, 2 in the 50 ms one", d.Buckets)
	}
	if d.SumUS != 305000 || d.TTFBUS != 152500 {
		t.Fatalf("sums %d µs, ttfb %d µs", d.SumUS, d.TTFBUS)
	}
}
