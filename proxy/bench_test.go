package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pulsegate/pulsegate/config"
)

// cannedTransport answers every request in memory, so the benchmarks
// measure the proxy's own work, not the network.
type cannedTransport struct{ body []byte }

func (c cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
	}
	return &http.Response{
		StatusCode:    200,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(bytes.NewReader(c.body)),
		ContentLength: int64(len(c.body)),
		Request:       r,
		ProtoMajor:    1, ProtoMinor: 1,
	}, nil
}

// discardWriter is a minimal ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

func benchServe(b *testing.B, h http.Handler, paths []string) {
	reqs := make([]*http.Request, len(paths))
	for i, p := range paths {
		reqs[i] = httptest.NewRequest("GET", p, nil)
		reqs[i].RemoteAddr = "127.0.0.1:40000"
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		i := 0
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, reqs[i%len(reqs)])
			i++
		}
	})
}

var benchPaths = []string{"/api/items/12345", "/users/7/posts", "/static/app.js", "/", "/api/search"}

// BenchmarkBareReverseProxy is the baseline: httputil.ReverseProxy with
// Rewrite and the same in-memory transport, nothing measured.
func BenchmarkBareReverseProxy(b *testing.B) {
	target, _ := url.Parse("http://127.0.0.1:5000")
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport: cannedTransport{body: []byte("hello world")},
	}
	benchServe(b, rp, benchPaths)
}

// BenchmarkInstrumentedProxy is pulsegate's data path without
// backpressure: Instrument + Forwarder (buffer pool, windows, routes,
// Prometheus).
func BenchmarkInstrumentedProxy(b *testing.B) {
	p := benchProxy(b)
	benchServe(b, p.Instrument(p.Forwarder()), benchPaths)
}

func benchProxy(b *testing.B) *Proxy {
	cfg := config.Defaults()
	p, err := New(cfg, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	p.rp.Transport = cannedTransport{body: []byte("hello world")}
	return p
}

// BenchmarkInstrumentOnly is the measurement alone around a no-op handler.
func BenchmarkInstrumentOnly(b *testing.B) {
	p := benchProxy(b)
	benchServe(b, p.Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })), benchPaths)
}

func BenchmarkTemplateRoute(b *testing.B) {
	pats := compilePatterns([]string{"/users/<id>/posts"})
	var buf [maxRouteLen + 8]byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		templateRoute(benchPaths[i%len(benchPaths)], pats, buf[:0])
	}
}

func BenchmarkWindowRecord(b *testing.B) {
	w := newWindow(10*time.Second, 91)
	x := &sample{class: class2xx, timed: true, total: 3 * time.Millisecond}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.record(now, x, 500*time.Millisecond)
		}
	})
}

func BenchmarkHistRecord(b *testing.B) {
	var h hist
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h.record(time.Duration(i%100000) * time.Microsecond)
	}
}

func BenchmarkRouteLookup(b *testing.B) {
	s := newStats(time.Now(), 200, 0)
	for i := 0; i < 150; i++ {
		s.routeFor([]byte("/r" + strconv.Itoa(i)))
	}
	name := []byte("/r77")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.routeFor(name)
		}
	})
}

func BenchmarkSnapshot(b *testing.B) {
	p := benchProxy(b)
	h := p.Instrument(p.Forwarder())
	for i := 0; i < 1000; i++ {
		h.ServeHTTP(&discardWriter{h: http.Header{}}, httptest.NewRequest("GET", "/r/"+strconv.Itoa(i%50)+"x", nil))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.stats.Snapshot(time.Now(), 10)
	}
}
