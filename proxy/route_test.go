package proxy

import (
	"math"
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestTemplateRoute(t *testing.T) {
	pats := compilePatterns([]string{"/users/<id>/posts", "/api/:version/items"})
	tests := []struct {
		desc, path, want string
	}{
		{"root", "/", "/"},
		{"empty", "", "/"},
		{"plain", "/ok", "/ok"},
		{"numeric id", "/users/12345", "/users/:id"},
		{"uuid", "/x/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "/x/:id"},
		{"long hex", "/blob/deadbeefcafebabe0011", "/blob/:id"},
		{"short hex word stays", "/cafe", "/cafe"},
		{"token", "/s/AbCdEfGhIjKlMnOpQrStUvWx12", "/s/:id"},
		{"pattern wins", "/users/alice/posts", "/users/<id>/posts"},
		{"pattern with colon", "/api/v2/items", "/api/:version/items"},
		{"pattern needs all segments", "/users/alice/posts/9", "/users/alice/posts/:id"},
		{"nested ids", "/orders/12/lines/7", "/orders/:id/lines/:id"},
		{"trailing slash kept", "/ok/", "/ok/"},
		{"dots are names", "/static/app.js", "/static/app.js"},
		{"invalid utf8", "/\xff\xfe", OtherRoute},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := string(templateRoute(tc.path, pats, nil))
			if got != tc.want {
				t.Errorf("templateRoute(%q) = %q; want %q", tc.path, got, tc.want)
			}
		})
	}
}

func TestTemplateRouteBoundsLength(t *testing.T) {
	long := "/" + string(make([]byte, 0))
	for i := 0; i < 100; i++ {
		long += "segment/"
	}
	got := templateRoute(long, nil, nil)
	if len(got) > maxRouteLen+3 {
		t.Fatalf("route label is %d bytes; want ≤ %d", len(got), maxRouteLen+3)
	}
}

func TestRouteCapOverflowsToOther(t *testing.T) {
	s := newStats(time.Now(), 3, 0)
	for _, n := range []string{"/a", "/b", "/c"} {
		if r := s.routeFor([]byte(n)); r.name != n {
			t.Fatalf("route %q got %q", n, r.name)
		}
	}
	if r := s.routeFor([]byte("/d")); r != s.other {
		t.Fatalf("4th route = %q; want %q", r.name, OtherRoute)
	}
	if r := s.routeFor([]byte("/a")); r.name != "/a" {
		t.Fatalf("existing route after cap = %q", r.name)
	}
}

// The histogram must report quantiles within 2 % of the exact value.
func TestHistogramQuantileAccuracy(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var h hist
	vals := make([]float64, 0, 20000)
	for i := 0; i < 20000; i++ {
		// log-uniform between 100 µs and 60 s
		v := math.Exp(math.Log(100e-6) + rng.Float64()*(math.Log(60)-math.Log(100e-6)))
		vals = append(vals, v)
		h.record(time.Duration(v * float64(time.Second)))
	}
	sort.Float64s(vals)
	var c histCounts
	h.addTo(&c)
	for _, q := range []float64{0.5, 0.9, 0.95, 0.99, 0.999} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := c.quantile(q)
		if rel := math.Abs(got-exact) / exact; rel > 0.02 {
			t.Errorf("q%.3f = %g; exact %g; relative error %.4f > 0.02", q, got, exact, rel)
		}
	}
}

func TestHistIndexMonotonic(t *testing.T) {
	prev := -1
	for us := int64(0); us < 1<<32; us = us*11/10 + 1 {
		i := histIndex(time.Duration(us) * time.Microsecond)
		if i < prev || i >= histNumBuckets {
			t.Fatalf("histIndex(%dµs) = %d after %d", us, i, prev)
		}
		prev = i
	}
}

func TestWindowAggregates(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	w := newWindow(10*time.Second, 91)
	apdexT := 500 * time.Millisecond
	now := start.Add(5 * time.Second)
	for i := 0; i < 40; i++ {
		w.record(now, &sample{class: class2xx, timed: true, total: 100 * time.Millisecond}, apdexT)
	}
	for i := 0; i < 10; i++ {
		w.record(now, &sample{class: class5xx, isError: true, timed: true, total: 100 * time.Millisecond}, apdexT)
	}
	w.record(now, &sample{class: classClientClosed}, apdexT)
	w.record(now, &sample{class: classRejected}, apdexT)
	st := w.sum(now, time.Minute, start).stats("1m")
	// error_rate is what clients felt: the app's 10 errors and the
	// rejection, of the 51 answered (the client-closed one was not).
	if st.Requests != 52 || st.Errors != 11 || st.AppErrors != 10 || st.Rejections != 1 {
		t.Fatalf("requests=%d errors=%d app_errors=%d rejections=%d; want 52, 11, 10, 1", st.Requests, st.Errors, st.AppErrors, st.Rejections)
	}
	if math.Abs(st.ErrorRate-11.0/51) > 1e-12 || math.Abs(st.RejectionRate-1.0/51) > 1e-12 {
		t.Fatalf("error_rate = %v, rejection_rate = %v; want 11/51 and 1/51", st.ErrorRate, st.RejectionRate)
	}
	// app_error_rate is what the app caused, of the 50 it answered.
	if st.AppErrorRate != 0.2 {
		t.Fatalf("app_error_rate = %v; want 0.2 (client-closed and rejected excluded)", st.AppErrorRate)
	}
	if st.Apdex == nil || math.Abs(*st.Apdex-40.0/51) > 1e-9 {
		t.Fatalf("apdex = %v; want 40/51", st.Apdex)
	}
	// 16 minutes later the window is empty again.
	later := now.Add(16 * time.Minute)
	if st := w.sum(later, 15*time.Minute, start).stats("15m"); st.Requests != 0 || st.AvgResponseTime != nil {
		t.Fatalf("stale slots counted: %+v", st)
	}
}

// TestRateCollectorsExportBothErrorRates: /metrics carries error_rate
// (clients' view), app_error_rate and rejection_rate, from the 1m window.
func TestRateCollectorsExportBothErrorRates(t *testing.T) {
	now := time.Unix(2_000_000, 0)
	s := newStats(now.Add(-time.Hour), 10, 0)
	for range 8 {
		s.global.record(now, &sample{class: class2xx, timed: true}, time.Second)
	}
	s.global.record(now, &sample{class: class5xx, isError: true, timed: true}, time.Second)
	s.global.record(now, &sample{class: classRejected}, time.Second)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.RateCollectors(func() time.Time { return now })...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	want := map[string]float64{"pulsegate_error_rate_ratio": 0.2, "pulsegate_app_error_rate_ratio": 1.0 / 9, "pulsegate_rejection_rate_ratio": 0.1}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-12 {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
